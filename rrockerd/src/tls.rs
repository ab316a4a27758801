//! The daemon's TLS configuration, in one place: TLS 1.3 only, ring as the crypto provider,
//! the server's chain up to the server CA, and a mandatory client certificate verified
//! against the client CA only (not the root: a certificate of the server CA's branch is no
//! client). No session tickets, so a resumed session never outlives a certificate.

use std::path::Path;
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;

use crate::error::DaemonError;

/// Builds the server's rustls configuration from `server.pem`, `server.key` and
/// `client-ca.pem` in `pki_dir`.
pub fn server_config(pki_dir: &Path) -> Result<Arc<rustls::ServerConfig>, DaemonError> {
    let tls_error = |reason: String| DaemonError::Tls { path: pki_dir.to_owned(), reason };
    let chain = certificates(&pki_dir.join("server.pem")).map_err(tls_error)?;
    let key = PrivateKeyDer::from_pem_file(pki_dir.join("server.key"))
        .map_err(|error| tls_error(format!("server.key: {error}")))?;
    let mut client_roots = RootCertStore::empty();
    for ca in certificates(&pki_dir.join("client-ca.pem")).map_err(tls_error)? {
        client_roots.add(ca).map_err(|error| tls_error(format!("client-ca.pem: {error}")))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier =
        WebPkiClientVerifier::builder_with_provider(Arc::new(client_roots), Arc::clone(&provider))
            .build()
            .map_err(|error| tls_error(format!("client verifier: {error}")))?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|error| tls_error(error.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|error| tls_error(format!("server.pem/server.key: {error}")))?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    config.send_tls13_tickets = 0;
    Ok(Arc::new(config))
}

/// Every certificate in a PEM file, in order.
pub fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let name = path.display();
    let certificates = CertificateDer::pem_file_iter(path)
        .map_err(|error| format!("{name}: {error}"))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| format!("{name}: {error}"))?;
    if certificates.is_empty() {
        return Err(format!("{name}: no certificate"));
    }
    Ok(certificates)
}
