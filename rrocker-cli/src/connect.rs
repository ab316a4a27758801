//! Reaching the daemon: where the certificates are, the TLS 1.3 client configuration (trust
//! only the server CA, present the identity's certificate), and a tonic channel over it.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use hyper_util::rt::TokioIo;
use rrocker_proto::v1::task_service_client::TaskServiceClient;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tonic::transport::{Channel, Endpoint, Uri};

use crate::CliError;

/// HTTP/2 flow-control window per stream (bytes the daemon may send before we acknowledge).
const STREAM_WINDOW: u32 = 8 * 1024 * 1024;
/// HTTP/2 flow-control window per connection.
const CONNECTION_WINDOW: u32 = 16 * 1024 * 1024;

/// Where the daemon is and who we are to it.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// The daemon's address, `host:port`.
    pub addr: String,
    /// The PKI directory holding `server-ca.pem` and `<identity>.pem/.key`.
    pub pki_dir: PathBuf,
    /// The identity whose certificate to present.
    pub identity: String,
    /// Overrides `<pki>/<identity>.pem`.
    pub cert: Option<PathBuf>,
    /// Overrides `<pki>/<identity>.key`.
    pub key: Option<PathBuf>,
    /// Overrides `<pki>/server-ca.pem`.
    pub ca: Option<PathBuf>,
}

impl ConnectOptions {
    fn cert_path(&self) -> PathBuf {
        self.cert.clone().unwrap_or_else(|| self.pki_dir.join(format!("{}.pem", self.identity)))
    }

    fn key_path(&self) -> PathBuf {
        self.key.clone().unwrap_or_else(|| self.pki_dir.join(format!("{}.key", self.identity)))
    }

    fn ca_path(&self) -> PathBuf {
        self.ca.clone().unwrap_or_else(|| self.pki_dir.join("server-ca.pem"))
    }
}

/// The first Organization (O) of the identity's certificate, which is its role to the
/// daemon (`admin`, `client`); `None` when the certificate cannot be read or has none.
pub fn organization(options: &ConnectOptions) -> Option<String> {
    let certificate = CertificateDer::pem_file_iter(options.cert_path()).ok()?.next()?.ok()?;
    let (_, parsed) = x509_parser::parse_x509_certificate(&certificate).ok()?;
    let first = parsed.subject().iter_organization().next()?;
    first.as_str().ok().map(str::to_owned)
}

/// The client TLS configuration: TLS 1.3 only, the server CA as the only trust anchor, and
/// the identity's certificate chain for client authentication.
pub fn client_config(options: &ConnectOptions) -> Result<rustls::ClientConfig, CliError> {
    let hint = "set --pki-dir/RROCKER_PKI_DIR and --identity, or --cert/--key/--ca";
    let ca_path = options.ca_path();
    let mut roots = rustls::RootCertStore::empty();
    for ca in read_certificates(&ca_path, "server CA certificate", hint)? {
        roots.add(ca).map_err(|error| bad_file(&ca_path, "server CA certificate", error))?;
    }
    let cert_path = options.cert_path();
    let chain = read_certificates(&cert_path, "client certificate", hint)?;
    let key_path = options.key_path();
    let key = PrivateKeyDer::from_pem_file(&key_path).map_err(|error| CliError::File {
        what: "client key",
        path: key_path.clone(),
        reason: pem_reason(error),
        hint,
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|error| CliError::Tls(error.to_string()))?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .map_err(|error| bad_file(&cert_path, "client certificate or key", error))?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

/// Connects to the daemon with `config` and returns a gRPC client.
pub async fn connect_with(
    addr: &str,
    config: rustls::ClientConfig,
) -> Result<TaskServiceClient<Channel>, CliError> {
    Ok(task_client(channel_with(addr, config).await?))
}

/// The task service's client on `channel`.
pub fn task_client(channel: Channel) -> TaskServiceClient<Channel> {
    TaskServiceClient::new(channel).max_decoding_message_size(16 * 1024 * 1024)
}

/// Connects to the daemon with `config` and returns the channel, for any of its services
/// (the task service, grpc.health.v1).
pub async fn channel_with(addr: &str, config: rustls::ClientConfig) -> Result<Channel, CliError> {
    let (host, socket) = resolve(addr).await?;
    let server_name = match host.parse::<IpAddr>() {
        Ok(ip) => ServerName::IpAddress(ip.into()),
        Err(_) => ServerName::try_from(host.clone()).map_err(|_| CliError::Address {
            addr: addr.to_owned(),
            reason: "invalid host name".into(),
        })?,
    };
    let connector = TlsConnector::from(Arc::new(config));
    let endpoint = Endpoint::from_shared(format!("http://{socket}"))
        .map_err(|error| CliError::Address { addr: addr.to_owned(), reason: error.to_string() })?
        // Output streams are bulk transfers: HTTP/2's default 64 KiB window would cap them
        // at one window per round trip.
        .initial_stream_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW);
    endpoint
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let connector = connector.clone();
            let server_name = server_name.clone();
            async move {
                let tcp = TcpStream::connect(socket).await?;
                tcp.set_nodelay(true)?;
                let tls = connector.connect(server_name, tcp).await?;
                Ok::<_, std::io::Error>(TokioIo::new(tls))
            }
        }))
        .await
        .map_err(|error| CliError::connection(addr, &error))
}

/// Connects to the daemon as `options` describes.
pub async fn connect(options: &ConnectOptions) -> Result<TaskServiceClient<Channel>, CliError> {
    connect_with(&options.addr, client_config(options)?).await
}

/// Connects to the daemon `options` name and returns the channel (for output streams, read
/// without tonic's decoder, and the task service's client both).
pub async fn connect_channel(options: &ConnectOptions) -> Result<Channel, CliError> {
    channel_with(&options.addr, client_config(options)?).await
}

async fn resolve(addr: &str) -> Result<(String, SocketAddr), CliError> {
    let trimmed = addr.trim_start_matches("https://").trim_start_matches("http://");
    let address_error =
        |reason: &str| CliError::Address { addr: addr.to_owned(), reason: reason.into() };
    let (host, _) = trimmed.rsplit_once(':').ok_or_else(|| address_error("expected HOST:PORT"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']').to_owned();
    let socket = tokio::net::lookup_host(trimmed)
        .await
        .map_err(|error| address_error(&error.to_string()))?
        .next()
        .ok_or_else(|| address_error("the name resolves to no address"))?;
    Ok((host, socket))
}

fn read_certificates(
    path: &Path,
    what: &'static str,
    hint: &'static str,
) -> Result<Vec<CertificateDer<'static>>, CliError> {
    let file_error = |reason: String| CliError::File { what, path: path.to_owned(), reason, hint };
    let certificates = CertificateDer::pem_file_iter(path)
        .map_err(|error| file_error(pem_reason(error)))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| file_error(pem_reason(error)))?;
    if certificates.is_empty() {
        return Err(file_error("no certificate in it".into()));
    }
    Ok(certificates)
}

fn pem_reason(error: rustls::pki_types::pem::Error) -> String {
    match error {
        rustls::pki_types::pem::Error::Io(io) => io.to_string(),
        other => other.to_string(),
    }
}

fn bad_file(path: &Path, what: &'static str, error: impl std::fmt::Display) -> CliError {
    CliError::File { what, path: path.to_owned(), reason: error.to_string(), hint: "" }
}
