//! rrocker's PKI, generated with rcgen: a root CA signs a server CA and a client CA; the
//! server CA signs server certificates, the client CA signs client certificates. Every key is
//! ECDSA P-256. [`Pki::write_dev`] lays out the dev PKI the README's daemon uses;
//! tests build fresh PKIs with [`Pki::generate`] and issue odd certificates (expired, signed by
//! the wrong CA, self-signed, unknown organisation) with [`Pki::issue`], and revoke them
//! with a CRL of the client CA ([`Pki::client_revocation_list`]).
//!
//! Layout of a PKI directory (keys 0600, directory 0700):
//! `root-ca.pem`, `server-ca.pem`, `client-ca.pem` (+ `.key` of each CA),
//! `<name>.pem` (leaf then its CA) and `<name>.key` for `server`, `client1`, `client2`,
//! `admin1` and `rogue` (self-signed, trusted by nobody).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rcgen::{
    CertificateRevocationListParams, CertifiedIssuer, KeyIdMethod, KeyPair, RevocationReason,
    RevokedCertParams, SerialNumber,
};
use time::{Duration, OffsetDateTime};

pub use authority::Authority;
use authority::{ca_params, generate_error, new_key, sign_leaf};
use files::{create_pki_dir, write_file};

mod authority;
mod files;

/// What went wrong while making or writing certificates.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// rcgen refused the parameters or failed to sign.
    #[error("cannot generate certificate {name}: {source}")]
    Generate {
        /// Which certificate.
        name: String,
        /// rcgen's error.
        source: rcgen::Error,
    },
    /// More than two organisations were asked for (rcgen can encode two).
    #[error("certificate {name}: at most two organizations are supported")]
    TooManyOrganizations {
        /// Which certificate.
        name: String,
    },
    /// A CA's file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A self-signed "signer" was asked to load as a CA.
    #[error("only the server CA and the client CA issue certificates")]
    NotACa,
    /// A file or directory could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// Which key signs a leaf certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signer {
    /// The client CA (the normal case for client certificates).
    ClientCa,
    /// The server CA (normal for servers; a "wrong CA" for clients).
    ServerCa,
    /// The leaf signs itself (a rogue certificate).
    SelfSigned,
}

/// What a leaf certificate is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usage {
    /// TLS server authentication (serverAuth).
    Server,
    /// TLS client authentication (clientAuth).
    Client,
}

/// A description of a leaf certificate to issue.
#[derive(Debug, Clone)]
pub struct LeafSpec {
    /// Subject common name (the identity for clients).
    pub common_name: String,
    /// Subject organisations, in order (the first is the role for clients); at most two.
    pub organizations: Vec<String>,
    /// DNS names and IP addresses for the subjectAltName.
    pub subject_alt_names: Vec<String>,
    /// Server or client authentication.
    pub usage: Usage,
    /// Who signs it.
    pub signer: Signer,
    /// Validity start.
    pub not_before: OffsetDateTime,
    /// Validity end.
    pub not_after: OffsetDateTime,
}

impl LeafSpec {
    /// A client certificate with one organisation, signed by the client CA, valid for a year.
    pub fn client(organization: &str, common_name: &str) -> Self {
        let now = OffsetDateTime::now_utc();
        Self {
            common_name: common_name.to_owned(),
            organizations: vec![organization.to_owned()],
            subject_alt_names: Vec::new(),
            usage: Usage::Client,
            signer: Signer::ClientCa,
            not_before: now - Duration::hours(1),
            not_after: now + Duration::days(365),
        }
    }

    /// A server certificate for `names` (DNS names and IP addresses), signed by the server
    /// CA, valid for a year.
    pub fn server_for(names: &[String]) -> Self {
        Self { subject_alt_names: names.to_vec(), ..Self::server() }
    }

    /// A server certificate for localhost, 127.0.0.1 and ::1, signed by the server CA.
    pub fn server() -> Self {
        Self {
            common_name: "rrockerd".to_owned(),
            organizations: vec!["rrocker".to_owned()],
            subject_alt_names: ["localhost", "127.0.0.1", "::1"].map(String::from).to_vec(),
            usage: Usage::Server,
            signer: Signer::ServerCa,
            ..Self::client("rrocker", "rrockerd")
        }
    }

    /// The same certificate, but expired since yesterday.
    #[must_use]
    pub fn expired(mut self) -> Self {
        let now = OffsetDateTime::now_utc();
        self.not_before = now - Duration::days(30);
        self.not_after = now - Duration::days(1);
        self
    }

    /// The same certificate, signed by `signer` instead.
    #[must_use]
    pub fn signed_by(mut self, signer: Signer) -> Self {
        self.signer = signer;
        self
    }
}

/// A certificate (PEM, leaf first then its issuing CA) with its private key (PEM).
#[derive(Debug, Clone)]
pub struct Issued {
    /// The certificate chain in PEM: the leaf, then the CA that signed it (if not self-signed).
    pub chain_pem: String,
    /// The PKCS#8 private key in PEM.
    pub key_pem: String,
    /// The leaf's serial number (unique among the certificates of one [`Pki`]).
    pub serial: u64,
}

impl Issued {
    /// Writes `<dir>/<name>.pem` and `<dir>/<name>.key` (0600), creating `dir` (0700) if
    /// needed.
    pub fn write(&self, dir: &Path, name: &str) -> Result<(), CertError> {
        create_pki_dir(dir)?;
        write_file(&dir.join(format!("{name}.pem")), &self.chain_pem, 0o644)?;
        write_file(&dir.join(format!("{name}.key")), &self.key_pem, 0o600)
    }
}

/// A root CA and the server and client CAs it signed.
pub struct Pki {
    root: CertifiedIssuer<'static, KeyPair>,
    server_ca: CertifiedIssuer<'static, KeyPair>,
    client_ca: CertifiedIssuer<'static, KeyPair>,
    /// The next leaf's serial number (and CRL number).
    next_serial: AtomicU64,
}

impl std::fmt::Debug for Pki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pki").finish_non_exhaustive()
    }
}

/// The names of the dev PKI's leaf certificates, as written by [`Pki::write_dev`].
pub const DEV_IDENTITIES: [(&str, &str); 3] =
    [("client", "client1"), ("client", "client2"), ("admin", "admin1")];

impl Pki {
    /// Generates a fresh root CA, server CA and client CA.
    pub fn generate() -> Result<Self, CertError> {
        let root = CertifiedIssuer::self_signed(ca_params("rrocker root CA")?, new_key("root")?)
            .map_err(generate_error("root CA"))?;
        let server_ca = CertifiedIssuer::signed_by(
            ca_params("rrocker server CA")?,
            new_key("server CA")?,
            &root,
        )
        .map_err(generate_error("server CA"))?;
        let client_ca = CertifiedIssuer::signed_by(
            ca_params("rrocker client CA")?,
            new_key("client CA")?,
            &root,
        )
        .map_err(generate_error("client CA"))?;
        Ok(Self { root, server_ca, client_ca, next_serial: AtomicU64::new(1) })
    }

    /// The root CA certificate in PEM.
    pub fn root_pem(&self) -> String {
        self.root.pem()
    }

    /// The server CA certificate in PEM: what clients trust.
    pub fn server_ca_pem(&self) -> String {
        self.server_ca.pem()
    }

    /// The client CA certificate in PEM: what the server trusts.
    pub fn client_ca_pem(&self) -> String {
        self.client_ca.pem()
    }

    /// Issues a leaf certificate as `spec` describes.
    pub fn issue(&self, spec: &LeafSpec) -> Result<Issued, CertError> {
        let serial = self.next_serial.fetch_add(1, Ordering::Relaxed);
        let signer = match spec.signer {
            Signer::ClientCa => Some((&*self.client_ca, self.client_ca.pem())),
            Signer::ServerCa => Some((&*self.server_ca, self.server_ca.pem())),
            Signer::SelfSigned => None,
        };
        sign_leaf(spec, serial, signer)
    }

    /// A CRL of the client CA (PEM), valid for a day, revoking `revoked` (certificates it
    /// issued).
    pub fn client_revocation_list(&self, revoked: &[&Issued]) -> Result<String, CertError> {
        let now = OffsetDateTime::now_utc();
        let params = CertificateRevocationListParams {
            this_update: now - Duration::minutes(1),
            next_update: now + Duration::days(1),
            // Increasing with every CRL, as the numbers of one issuer's CRLs must.
            crl_number: SerialNumber::from(self.next_serial.fetch_add(1, Ordering::Relaxed)),
            issuing_distribution_point: None,
            revoked_certs: revoked
                .iter()
                .map(|issued| RevokedCertParams {
                    serial_number: SerialNumber::from(issued.serial),
                    revocation_time: now - Duration::minutes(1),
                    reason_code: Some(RevocationReason::KeyCompromise),
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        };
        let crl = params.signed_by(&self.client_ca).map_err(generate_error("client CA CRL"))?;
        crl.pem().map_err(generate_error("client CA CRL"))
    }

    /// Writes the CA certificates and keys into `dir` (created 0700 if needed).
    pub fn write_authorities(&self, dir: &Path) -> Result<(), CertError> {
        create_pki_dir(dir)?;
        for (name, ca) in [
            ("root-ca", &self.root),
            ("server-ca", &self.server_ca),
            ("client-ca", &self.client_ca),
        ] {
            write_file(&dir.join(format!("{name}.pem")), &ca.pem(), 0o644)?;
            write_file(&dir.join(format!("{name}.key")), &ca.key().serialize_pem(), 0o600)?;
        }
        Ok(())
    }

    /// Generates and writes the whole dev PKI into `dir`: the CAs, `server`, `client1`,
    /// `client2`, `admin1` and the self-signed `rogue`.
    pub fn write_dev(dir: &Path) -> Result<Self, CertError> {
        let pki = Self::generate()?;
        pki.write_authorities(dir)?;
        pki.issue(&LeafSpec::server())?.write(dir, "server")?;
        for (organization, name) in DEV_IDENTITIES {
            pki.issue(&LeafSpec::client(organization, name))?.write(dir, name)?;
        }
        let rogue = LeafSpec::client("admin", "rogue").signed_by(Signer::SelfSigned);
        pki.issue(&rogue)?.write(dir, "rogue")?;
        Ok(pki)
    }
}

/// The PKI directory used when none is given: `/etc/rrocker/pki` for root, otherwise
/// `$XDG_CONFIG_HOME/rrocker/pki` (or `~/.config/rrocker/pki`). The daemon and the CLI share
/// this default so that a CLI run by the same user finds the daemon's dev PKI.
pub fn default_pki_dir() -> PathBuf {
    if rustix::process::geteuid().is_root() {
        return PathBuf::from("/etc/rrocker/pki");
    }
    let config = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".config")))
        .unwrap_or_else(|| PathBuf::from("."));
    config.join("rrocker").join("pki")
}

/// Whether `dir` already holds a PKI the daemon can serve with.
pub fn has_server_pki(dir: &Path) -> bool {
    ["server.pem", "server.key", "client-ca.pem"].iter().all(|file| dir.join(file).is_file())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use x509_parser::pem::Pem;

    fn first_cert_subject(chain_pem: &str) -> (Vec<String>, String, String) {
        let pem = Pem::iter_from_buffer(chain_pem.as_bytes())
            .next()
            .expect("one certificate")
            .expect("valid pem");
        let cert = pem.parse_x509().expect("valid certificate");
        let orgs = cert
            .subject()
            .iter_organization()
            .map(|o| o.as_str().expect("utf8").to_owned())
            .collect();
        let cn = cert.subject().iter_common_name().next().expect("cn").as_str().expect("utf8");
        (orgs, cn.to_owned(), cert.issuer().to_string())
    }

    #[test]
    fn dev_pki_has_every_file_with_private_keys_0600() {
        let dir = tempfile::tempdir().expect("tempdir");
        Pki::write_dev(dir.path()).expect("dev pki");
        for name in ["root-ca", "server-ca", "client-ca", "server", "client1", "client2", "admin1"]
        {
            let key = dir.path().join(format!("{name}.key"));
            let mode = std::fs::metadata(&key).expect("key exists").permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{name}.key mode");
            assert!(dir.path().join(format!("{name}.pem")).is_file(), "{name}.pem");
        }
        assert!(has_server_pki(dir.path()));
    }

    #[test]
    fn client_leaf_names_role_and_identity_and_is_signed_by_client_ca() {
        let pki = Pki::generate().expect("pki");
        let issued = pki.issue(&LeafSpec::client("admin", "admin1")).expect("issue");
        let (orgs, cn, issuer) = first_cert_subject(&issued.chain_pem);
        assert_eq!(orgs, ["admin"]);
        assert_eq!(cn, "admin1");
        assert!(issuer.contains("rrocker client CA"), "{issuer}");
        assert_eq!(issued.chain_pem.matches("BEGIN CERTIFICATE").count(), 2);
    }

    #[test]
    fn wrong_ca_and_self_signed_leaves_name_their_signer() {
        let pki = Pki::generate().expect("pki");
        let wrong =
            pki.issue(&LeafSpec::client("client", "x").signed_by(Signer::ServerCa)).expect("issue");
        assert!(first_cert_subject(&wrong.chain_pem).2.contains("server CA"));
        let rogue = pki
            .issue(&LeafSpec::client("client", "x").signed_by(Signer::SelfSigned))
            .expect("issue");
        assert_eq!(rogue.chain_pem.matches("BEGIN CERTIFICATE").count(), 1);
    }
}
