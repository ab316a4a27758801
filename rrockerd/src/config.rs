//! The daemon's configuration: flags with environment equivalents and working defaults, so
//! that `rrockerd` with no flags serves on 127.0.0.1:50051 with a dev PKI.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

/// rrockerd runs commands as isolated tasks and serves them over gRPC with mutual TLS.
#[derive(Debug, Clone, Parser)]
#[command(version, about)]
pub struct Config {
    /// Address to listen on (port 0 picks a free port; the bound address is printed).
    #[arg(long, env = "RROCKERD_LISTEN", default_value = "127.0.0.1:50051")]
    pub listen: SocketAddr,
    /// PKI directory (server.pem, server.key, client-ca.pem); a dev PKI is generated there
    /// if it holds none. Default: /etc/rrocker/pki as root, ~/.config/rrocker/pki otherwise.
    #[arg(long, env = "RROCKER_PKI_DIR")]
    pub pki_dir: Option<PathBuf>,
    /// Directory for runtime state (task roots, spilled output).
    #[arg(long, env = "RROCKERD_STATE_DIR", default_value = "/run/rrocker")]
    pub state_dir: PathBuf,
    /// Grace period between SIGTERM and SIGKILL when a stop request gives none, in ms.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(0..=MAX_GRACE_MS))]
    pub stop_grace_ms: u64,
}

/// The longest grace period a stop may ask for (one day).
pub const MAX_GRACE_MS: u64 = 24 * 60 * 60 * 1000;

impl Config {
    /// The PKI directory in use.
    pub fn pki_dir(&self) -> PathBuf {
        self.pki_dir.clone().unwrap_or_else(rrocker_certs::default_pki_dir)
    }

    /// The default stop grace period.
    pub fn stop_grace(&self) -> Duration {
        Duration::from_millis(self.stop_grace_ms)
    }
}
