//! The rrocker command-line client as a library: connecting to the daemon ([`connect`]),
//! the one error type whose messages are the one-line sentences the CLI prints
//! ([`CliError`]), the pure formatting of statuses ([`format`]), limits ([`limits`]) and id
//! prefixes ([`ids`]), and the commands that do more than one call: [`run`], [`ps`] and
//! streaming to the terminal ([`output`], reading the stream with [`stream_body`], times
//! of output with [`timestamps`]). Tests use the same connection code as the CLI.

pub mod attach;
pub mod connect;
pub mod exec;
pub mod format;
pub mod ids;
pub mod interact;
pub mod limits;
pub mod output;
pub mod ps;
pub mod raw_terminal;
pub mod run;
pub mod stats;
pub mod stream_body;
pub mod timestamps;

use std::path::PathBuf;

pub use connect::{
    ConnectOptions, channel_with, client_config, connect, connect_channel, connect_with,
    organization, task_client,
};

/// Everything that can go wrong in the CLI, each shown as one sentence.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The daemon answered with an error; its message is meant for people.
    #[error("{}", .0.message())]
    Status(tonic::Status),
    /// The daemon could not be reached or the TLS session failed.
    #[error("Cannot talk to rrockerd at {addr}: {reason}")]
    Connection {
        /// The daemon's address.
        addr: String,
        /// The root cause, in plain words.
        reason: String,
    },
    /// The address is not usable.
    #[error("Invalid daemon address '{addr}': {reason}")]
    Address {
        /// The address as given.
        addr: String,
        /// Why.
        reason: String,
    },
    /// A certificate or key file is missing or unreadable.
    #[error("Cannot read the {what} at {}: {reason}{}", path.display(), hint_suffix(hint))]
    File {
        /// Which file.
        what: &'static str,
        /// Its path.
        path: PathBuf,
        /// Why.
        reason: String,
        /// Which flags or variables set it.
        hint: &'static str,
    },
    /// The TLS configuration could not be built.
    #[error("Invalid TLS configuration: {0}")]
    Tls(String),
    /// A flag's value is not acceptable.
    #[error("{0}")]
    Usage(String),
    /// Writing to stdout or stderr failed.
    #[error("Cannot write output: {0}")]
    Output(#[from] std::io::Error),
}

fn hint_suffix(hint: &str) -> String {
    if hint.is_empty() { String::new() } else { format!(" ({hint})") }
}

impl CliError {
    /// Turns a transport error into a plain sentence naming its root cause.
    pub fn connection(addr: &str, error: &(dyn std::error::Error + 'static)) -> Self {
        Self::Connection { addr: addr.to_owned(), reason: root_cause(error) }
    }

    /// Classifies a status from an RPC: transport failures become [`CliError::Connection`],
    /// the daemon's own answers stay as they are.
    pub fn from_status(addr: &str, status: tonic::Status) -> Self {
        use std::error::Error;
        // Only transport failures carry a source error; the daemon's own answers do not.
        match status.source() {
            Some(source) if is_transport(status.code()) => Self::connection(addr, source),
            _ => Self::Status(status),
        }
    }
}

fn is_transport(code: tonic::Code) -> bool {
    matches!(
        code,
        tonic::Code::Unavailable
            | tonic::Code::Unknown
            | tonic::Code::Internal
            | tonic::Code::Cancelled
    )
}

/// The innermost error of a chain, with a hint for the usual suspects.
fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error;
    while let Some(source) = cause.source() {
        cause = source;
    }
    let text = cause.to_string();
    if let Some(io) = cause.downcast_ref::<std::io::Error>() {
        match io.kind() {
            std::io::ErrorKind::ConnectionRefused => {
                return "connection refused (is rrockerd running there?)".into();
            }
            std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset => {
                return format!(
                    "the daemon closed the connection ({text}); it refuses client certificates \
                     its client CA did not sign, expired ones and TLS below 1.3"
                );
            }
            _ => {}
        }
    }
    if text.contains("connection closed") || text.contains("broken pipe") {
        return format!(
            "the daemon closed the connection ({text}); it refuses client certificates its \
             client CA did not sign, expired ones and TLS below 1.3"
        );
    }
    if text.contains("received fatal alert") {
        return format!("the daemon refused this client's certificate ({text})");
    }
    if text.contains("invalid peer certificate") {
        return format!("the daemon's certificate is not trusted ({text})");
    }
    text
}
