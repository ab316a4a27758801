//! The daemon's TLS configuration, in one place: TLS 1.3 only, ring as the crypto provider,
//! the server's chain up to the server CA, and a mandatory client certificate verified
//! against the client CA only (not the root: a certificate of the server CA's branch is no
//! client), checked against the client CA's revocation lists when given. No session tickets,
//! so a resumed session never outlives a certificate or a revocation. The server picks the
//! suite: AES-128-GCM first (see [`provider`]).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::io_context::IoContext;
use crate::startup_error::StartupError;

/// Builds the server's rustls configuration from `server.pem`, `server.key` and
/// `client-ca.pem` in `pki_dir`, and the client CA's revocation lists in `crl` (PEM), if
/// given: a client certificate they revoke is refused.
pub fn server_config(
    pki_dir: &Path,
    crl: Option<&Path>,
) -> Result<Arc<rustls::ServerConfig>, StartupError> {
    let tls_error = |reason: String| StartupError::Tls { path: pki_dir.to_owned(), reason };
    let chain = certificates(&pki_dir.join("server.pem")).map_err(tls_error)?;
    let key = PrivateKeyDer::from_pem_file(pki_dir.join("server.key"))
        .map_err(|error| tls_error(format!("server.key: {error}")))?;
    let mut client_roots = RootCertStore::empty();
    for ca in certificates(&pki_dir.join("client-ca.pem")).map_err(tls_error)? {
        client_roots.add(ca).map_err(|error| tls_error(format!("client-ca.pem: {error}")))?;
    }
    let provider = Arc::new(provider());
    let mut verifier =
        WebPkiClientVerifier::builder_with_provider(Arc::new(client_roots), Arc::clone(&provider));
    if let Some(crl) = crl {
        verifier = verifier.with_crls(revocation_lists(crl).map_err(tls_error)?);
    }
    let verifier =
        verifier.build().map_err(|error| tls_error(format!("client verifier: {error}")))?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|error| tls_error(error.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|error| tls_error(format!("server.pem/server.key: {error}")))?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    config.send_tls13_tickets = 0;
    config.ignore_client_order = true;
    Ok(Arc::new(config))
}

/// ring's provider with TLS13_AES_128_GCM_SHA256 as the preferred suite (ring's own order
/// puts AES-256-GCM-SHA384 first): its 10 AES rounds to 14 make every streamed byte cheaper to
/// encrypt, on both ends, and SHA-256 runs on the CPU's SHA extensions where SHA-384 does
/// not. All three suites stay offered.
fn provider() -> rustls::crypto::CryptoProvider {
    let mut provider = rustls::crypto::ring::default_provider();
    let preferred = rustls::CipherSuite::TLS13_AES_128_GCM_SHA256;
    provider.cipher_suites.sort_by_key(|suite| suite.suite() != preferred);
    provider
}

/// The acceptor for new connections, built now and again on every SIGHUP from the files as
/// they are then; a reload that fails (a file missing or malformed) keeps the acceptor in
/// use. Each SIGHUP prints one line on stdout: `rrockerd reloaded its TLS configuration`, or
/// `rrockerd kept its TLS configuration: REASON`.
pub fn reloaded_on_sighup(
    pki_dir: PathBuf,
    crl: Option<PathBuf>,
) -> Result<watch::Receiver<TlsAcceptor>, StartupError> {
    let config = server_config(&pki_dir, crl.as_deref())?;
    let (acceptors, current) = watch::channel(TlsAcceptor::from(config));
    let mut hangups = signal(SignalKind::hangup())
        .context("handle SIGHUP for", std::path::Path::new("rrockerd"))?;
    tokio::spawn(async move {
        while hangups.recv().await.is_some() {
            let line = match server_config(&pki_dir, crl.as_deref()) {
                Ok(config) => {
                    acceptors.send_replace(TlsAcceptor::from(config));
                    tracing::info!("SIGHUP: TLS configuration reloaded");
                    "rrockerd reloaded its TLS configuration".to_owned()
                }
                Err(error) => {
                    tracing::warn!(%error, "SIGHUP: TLS configuration kept");
                    format!("rrockerd kept its TLS configuration: {error}")
                }
            };
            // Nobody may be reading stdout any more: that is no reason to stop.
            let mut stdout = std::io::stdout().lock();
            let _ = writeln!(stdout, "{line}").and_then(|()| stdout.flush());
        }
    });
    Ok(current)
}

/// Every certificate in a PEM file, in order.
pub fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    pem_items(path, "certificate")
}

/// Every revocation list in a PEM file; at least one.
fn revocation_lists(path: &Path) -> Result<Vec<CertificateRevocationListDer<'static>>, String> {
    pem_items(path, "certificate revocation list")
}

/// Every item of one kind (`what`) in a PEM file, in order; at least one.
fn pem_items<T: PemObject>(path: &Path, what: &str) -> Result<Vec<T>, String> {
    let name = path.display();
    let items = T::pem_file_iter(path)
        .map_err(|error| format!("{name}: {error}"))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| format!("{name}: {error}"))?;
    if items.is_empty() {
        return Err(format!("{name}: no {what}"));
    }
    Ok(items)
}
