//! Who is calling and what they may see. The TLS layer has already verified the client's
//! certificate chain against the client CA; this module only reads the verified leaf: its
//! first Organization (O) is the role, its Common Name (CN) the identity. Pure: no I/O.

use x509_parser::prelude::{FromDer, X509Certificate};

/// What a caller may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Sees and acts on every task.
    Admin,
    /// Sees and acts on its own tasks only.
    Client,
}

/// An authorised caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The role from the certificate's first O.
    pub role: Role,
    /// The identity from the certificate's CN; owner of the tasks it starts.
    pub identity: String,
}

impl Caller {
    /// Whether this caller may see (and act on) a task owned by `owner`.
    pub fn may_access(&self, owner: &str) -> bool {
        self.role == Role::Admin || self.identity == owner
    }
}

/// The outcome of authorising a connection, kept with the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// The certificate grants a role.
    Granted(Caller),
    /// The certificate is valid but grants nothing; the reason is one line.
    Denied(String),
}

/// Authorises the holder of a verified leaf certificate (DER).
pub fn authorize(leaf_der: &[u8]) -> Access {
    let Ok((_, certificate)) = X509Certificate::from_der(leaf_der) else {
        return Access::Denied("the client certificate cannot be parsed".into());
    };
    let subject = certificate.subject();
    let organization = subject.iter_organization().next().and_then(|o| o.as_str().ok());
    let identity = subject.iter_common_name().next().and_then(|cn| cn.as_str().ok());
    decide(organization, identity)
}

/// The decision itself, from the certificate's first O and its CN. A refusal is one
/// sentence naming the identity and saying what certificate would do.
pub fn decide(organization: Option<&str>, identity: Option<&str>) -> Access {
    let who = match identity {
        Some(identity) if !identity.is_empty() => format!("identity '{identity}'"),
        _ => "a certificate without a common name (CN)".to_owned(),
    };
    let remedy = "use a certificate of the client CA with O=client or O=admin and a CN";
    let role = match organization {
        Some("admin") => Role::Admin,
        Some("client") => Role::Client,
        Some(other) => {
            return Access::Denied(format!(
                "Permission denied for {who}: its certificate's organization '{other}' grants no access; {remedy}"
            ));
        }
        None => {
            return Access::Denied(format!(
                "Permission denied for {who}: its certificate has no organization (O); {remedy}"
            ));
        }
    };
    match identity {
        Some(identity) if !identity.is_empty() => {
            Access::Granted(Caller { role, identity: identity.to_owned() })
        }
        _ => Access::Denied(format!("Permission denied for {who}; {remedy}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(role: Role, identity: &str) -> Caller {
        Caller { role, identity: identity.into() }
    }

    #[test]
    fn first_organization_decides_the_role() {
        assert_eq!(decide(Some("admin"), Some("a")), Access::Granted(caller(Role::Admin, "a")));
        assert_eq!(decide(Some("client"), Some("c")), Access::Granted(caller(Role::Client, "c")));
        assert!(matches!(decide(Some("Admin"), Some("a")), Access::Denied(_)));
        assert!(matches!(decide(Some("root"), Some("a")), Access::Denied(_)));
        assert!(matches!(decide(None, Some("a")), Access::Denied(_)));
        assert!(matches!(decide(Some("client"), None), Access::Denied(_)));
        assert!(matches!(decide(Some("client"), Some("")), Access::Denied(_)));
        assert_eq!(
            decide(Some("guest"), Some("visitor")),
            Access::Denied("Permission denied for identity 'visitor': its certificate's organization 'guest' grants no access; use a certificate of the client CA with O=client or O=admin and a CN".into())
        );
    }

    #[test]
    fn clients_see_their_own_tasks_and_admins_all() {
        assert!(caller(Role::Client, "c1").may_access("c1"));
        assert!(!caller(Role::Client, "c1").may_access("c2"));
        assert!(caller(Role::Admin, "a1").may_access("c2"));
    }

    #[test]
    fn real_certificates_are_read_by_their_first_organization() {
        let pki = rrocker_certs::Pki::generate().expect("pki");
        let mut spec = rrocker_certs::LeafSpec::client("client", "c1");
        spec.organizations = vec!["client".into(), "admin".into()];
        let issued = pki.issue(&spec).expect("issue");
        let der = first_der(&issued.chain_pem);
        assert_eq!(authorize(&der), Access::Granted(caller(Role::Client, "c1")));
        let other = pki.issue(&rrocker_certs::LeafSpec::client("guests", "g")).expect("issue");
        assert!(matches!(authorize(&first_der(&other.chain_pem)), Access::Denied(_)));
        assert!(matches!(authorize(b"not a certificate"), Access::Denied(_)));
    }

    fn first_der(pem: &str) -> Vec<u8> {
        let (_, pem) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).expect("pem");
        pem.contents
    }
}
