//! Signing: a CA loaded from a PKI directory ([`Authority`]), and the certificates a CA or
//! its holder signs (leaves, CA parameters, keys).

use std::fs;
use std::path::Path;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, SanType, SerialNumber,
};
use time::{Duration, OffsetDateTime};

use crate::{CertError, Issued, LeafSpec, Signer, Usage};

/// One CA of a PKI directory (its `.pem` and `.key`), loaded to issue the certificates a
/// fleet needs after the dev PKI: a server certificate per host, a client certificate per
/// person or team.
pub struct Authority {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
    signer: Signer,
}

impl std::fmt::Debug for Authority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authority").field("signer", &self.signer).finish_non_exhaustive()
    }
}

impl Authority {
    /// The server CA (`server-ca.pem`/`.key`) or the client CA (`client-ca.pem`/`.key`) of
    /// the PKI in `dir`.
    pub fn load(dir: &Path, signer: Signer) -> Result<Self, CertError> {
        let name = match signer {
            Signer::ServerCa => "server-ca",
            Signer::ClientCa => "client-ca",
            Signer::SelfSigned => return Err(CertError::NotACa),
        };
        let read = |extension: &str| {
            let path = dir.join(format!("{name}.{extension}"));
            fs::read_to_string(&path).map_err(|source| CertError::Read { path, source })
        };
        let (pem, key) = (read("pem")?, read("key")?);
        let key = KeyPair::from_pem(&key).map_err(generate_error(name))?;
        let issuer = Issuer::from_ca_cert_pem(&pem, key).map_err(generate_error(name))?;
        Ok(Self { issuer, pem, signer })
    }

    /// Issues a leaf certificate as `spec` describes, signed by this CA (whatever
    /// `spec.signer` says). Its serial number is the time in nanoseconds, unique for one CA
    /// issuing one certificate at a time.
    pub fn issue(&self, spec: &LeafSpec) -> Result<Issued, CertError> {
        let now = OffsetDateTime::now_utc().unix_timestamp_nanos();
        let serial = u64::try_from(now).unwrap_or(u64::MAX);
        let spec = LeafSpec { signer: self.signer, ..spec.clone() };
        sign_leaf(&spec, serial, Some((&self.issuer, self.pem.clone())))
    }
}

/// Signs the leaf `spec` describes with `signer` (the CA and its PEM; `None` self-signs).
pub(crate) fn sign_leaf(
    spec: &LeafSpec,
    serial: u64,
    signer: Option<(&Issuer<'_, KeyPair>, String)>,
) -> Result<Issued, CertError> {
    let name = spec.common_name.as_str();
    let key = new_key(name)?;
    let mut params =
        CertificateParams::new(spec.subject_alt_names.clone()).map_err(generate_error(name))?;
    params.subject_alt_names = spec
        .subject_alt_names
        .iter()
        .map(|san| match san.parse() {
            Ok(ip) => Ok(SanType::IpAddress(ip)),
            Err(_) => san.clone().try_into().map(SanType::DnsName),
        })
        .collect::<Result<_, _>>()
        .map_err(generate_error(name))?;
    let mut subject = DistinguishedName::new();
    for (index, organization) in spec.organizations.iter().enumerate() {
        // rcgen keeps one value per attribute type: a second O goes in under its OID
        // (2.5.4.10) as a custom type, which the certificate then carries after the first.
        let attribute = match index {
            0 => DnType::OrganizationName,
            1 => DnType::CustomDnType(vec![2, 5, 4, 10]),
            _ => return Err(CertError::TooManyOrganizations { name: name.to_owned() }),
        };
        subject.push(attribute, organization.as_str());
    }
    subject.push(DnType::CommonName, name);
    params.distinguished_name = subject;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![match spec.usage {
        Usage::Server => ExtendedKeyUsagePurpose::ServerAuth,
        Usage::Client => ExtendedKeyUsagePurpose::ClientAuth,
    }];
    params.not_before = spec.not_before;
    params.not_after = spec.not_after;
    params.serial_number = Some(SerialNumber::from(serial));
    params.use_authority_key_identifier_extension = signer.is_some();
    let (cert, ca_pem) = match signer {
        Some((issuer, pem)) => (params.signed_by(&key, issuer), pem),
        None => (params.self_signed(&key), String::new()),
    };
    let cert = cert.map_err(generate_error(name))?;
    Ok(Issued { chain_pem: cert.pem() + &ca_pem, key_pem: key.serialize_pem(), serial })
}

/// The parameters of a CA certificate named `common_name`, valid for ten years.
pub(crate) fn ca_params(common_name: &str) -> Result<CertificateParams, CertError> {
    let mut params = CertificateParams::new(Vec::new()).map_err(generate_error(common_name))?;
    params.distinguished_name.push(DnType::OrganizationName, "rrocker");
    params.distinguished_name.push(DnType::CommonName, common_name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::hours(1);
    params.not_after = now + Duration::days(3650);
    Ok(params)
}

/// A new ECDSA P-256 key for the certificate `name`.
pub(crate) fn new_key(name: &str) -> Result<KeyPair, CertError> {
    KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(generate_error(name))
}

/// The error of rcgen for the certificate `name`.
pub(crate) fn generate_error(name: &str) -> impl FnOnce(rcgen::Error) -> CertError + '_ {
    move |source| CertError::Generate { name: name.to_owned(), source }
}
