//! What stops the daemon from starting or from serving on: `main` prints it in one line and
//! exits non-zero.

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::cgroup::CgroupError;
use crate::image::ImageError;
use crate::io_context::IoError;
use crate::isolator::seccomp::SeccompError;

/// Why the daemon did not start, or stopped serving.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// The configuration file or a setting in it is wrong.
    #[error("{0}")]
    Config(String),
    /// The dev PKI could not be generated.
    #[error("cannot generate the dev PKI: {0}")]
    Pki(#[from] rrocker_certs::CertError),
    /// The TLS configuration was refused.
    #[error("invalid TLS configuration from {}: {reason}", path.display())]
    Tls {
        /// The PKI directory.
        path: PathBuf,
        /// What rustls or the PEM parser said.
        reason: String,
    },
    /// The seccomp profile cannot be used.
    #[error("{0}")]
    Seccomp(#[from] SeccompError),
    /// A directory tasks are set up from lies below one that the set-up may not search.
    #[error(
        "{flag} {}: {} (mode {mode:04o}, owner uid {owner}) cannot be searched by uid {uid} without capabilities, as tasks are set up; choose a directory below ones uid {uid} may search (e.g. under /run or /var/lib), or allow it (chmod o+x {})",
        dir.display(), blocker.display(), blocker.display()
    )]
    Unsearchable {
        /// The flag that names the directory.
        flag: String,
        /// The directory.
        dir: PathBuf,
        /// The directory on its way that cannot be searched.
        blocker: PathBuf,
        /// Its mode.
        mode: u32,
        /// Its owner.
        owner: u32,
        /// The daemon's uid.
        uid: u32,
    },
    /// Another process (another rrockerd) holds the state directory.
    #[error(
        "state directory {} is in use by another rrockerd: give this daemon its own --state-dir",
        .0.display()
    )]
    StateDirInUse(PathBuf),
    /// The daemon's cgroups could not be found, placed or prepared.
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    /// The default image could not be built, or the image store opened.
    #[error(transparent)]
    Image(#[from] ImageError),
    /// A directory or file of the daemon's could not be used.
    #[error(transparent)]
    Io(#[from] IoError),
    /// The listening socket could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The task engine could not be started.
    #[error("cannot start the task engine: {0}")]
    Engine(#[from] rrocker_uring::EngineError),
    /// The server reflection service could not be built from the API's descriptors.
    #[error("cannot build the server reflection service: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    /// The gRPC server failed.
    #[error("gRPC server failed: {0}")]
    Serve(#[from] tonic::transport::Error),
    /// The task engine's thread ended while the daemon served: it stops, so that its
    /// manager starts it again (and its restart clean-up runs).
    #[error("the task engine died ({0}); rrockerd stops so that it is started again")]
    EngineDied(String),
}
