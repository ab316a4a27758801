//! The daemon's one error type, and how each error reaches a client as a gRPC status with
//! a one-line message the CLI prints as is.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;

use rrocker_uring::{EngineError, SetupStep};

use rrocker_init::step::InitStep;
use tonic::{Code, Status};

/// Everything that can go wrong in rrockerd.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The task does not exist, its id is malformed, or the caller may not see it.
    #[error("Task '{id}' doesn't exist")]
    TaskNotFound {
        /// The id as the caller gave it (shortened if absurdly long).
        id: String,
    },
    /// Stop of a task that has already ended.
    #[error("Task '{id}' already finished")]
    AlreadyFinished {
        /// The task's id.
        id: String,
    },
    /// Removal of a task that still runs.
    #[error("Task '{id}' is still running; stop it first")]
    StillRunning {
        /// The task's id.
        id: String,
    },
    /// Removal of an ended task whose processes, cgroup or directory are not gone yet.
    #[error("Task '{id}' has ended but is still releasing its resources; try again")]
    StillReleasing {
        /// The task's id.
        id: String,
    },
    /// The command's program does not exist or cannot be executed.
    #[error("Binary '{program}' not found in base image.")]
    BinaryNotFound {
        /// The program as the caller named it.
        program: String,
    },
    /// A malformed request.
    #[error("{0}")]
    InvalidArgument(String),
    /// The caller's certificate does not grant a role.
    #[error("{0}")]
    PermissionDenied(String),
    /// The request carried no verified client identity.
    #[error("no verified client certificate")]
    Unauthenticated,
    /// The daemon is stopping and takes no new tasks.
    #[error("rrockerd is shutting down")]
    ShuttingDown,
    /// The task engine's thread ended while the daemon served: it stops, so that its
    /// manager starts it again (and its restart clean-up runs).
    #[error("the task engine died ({0}); rrockerd stops so that it is started again")]
    EngineDied(String),
    /// The seccomp profile cannot be used.
    #[error("{0}")]
    Seccomp(#[from] crate::isolator::seccomp::SeccompError),
    /// The engine could not start or signal a task.
    #[error("{0}")]
    Engine(#[from] EngineError),
    /// A step of the task's set-up inside its namespaces failed.
    #[error("Task set-up failed: cannot {step}: {source}")]
    Setup {
        /// What init was doing.
        step: &'static str,
        /// Why.
        source: io::Error,
    },
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
    /// A file or directory could not be used.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// On which path.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// A cgroup file or directory could not be used.
    #[error("cannot {action} cgroup {}: {source}", path.display())]
    Cgroup {
        /// What was being done.
        action: &'static str,
        /// On which path.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// A limit this host's cgroups cannot apply.
    #[error("{0}")]
    LimitUnavailable(String),
    /// A cap of this daemon's (running tasks, request size) is reached.
    #[error("{0}")]
    ResourceExhausted(String),
    /// The PKI could not be generated.
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
    /// The listening socket could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: io::Error,
    },
    /// The gRPC server failed.
    #[error("gRPC server failed: {0}")]
    Serve(#[from] tonic::transport::Error),
    /// The server reflection service could not be built from the API's descriptors.
    #[error("cannot build the server reflection service: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
}

impl DaemonError {
    /// A spawn failure, with init's own set-up steps named.
    pub fn from_spawn(error: EngineError) -> Self {
        let out_of_processes = match &error {
            EngineError::Clone(source)
            | EngineError::ChildSetup { step: SetupStep::Init(_), source } => {
                source.raw_os_error() == Some(libc::EAGAIN)
            }
            _ => false,
        };
        if out_of_processes {
            return Self::ResourceExhausted(
                "Cannot start the task: no more processes may be created (the pids.max of rrocker's parent cgroup, or the host's limit, is reached)".into(),
            );
        }
        match error {
            EngineError::ChildSetup { step: SetupStep::Init(InitStep::Exec), source } => {
                Self::InvalidArgument(format!("Cannot execute the command: {source}"))
            }
            EngineError::ChildSetup { step: SetupStep::Init(InitStep::Workdir), source } => {
                Self::InvalidArgument(format!("Cannot enter the working directory: {source}"))
            }
            EngineError::ChildSetup { step: SetupStep::Init(step), source } => {
                Self::Setup { step: step.describe(), source }
            }
            other => Self::Engine(other),
        }
    }

    /// The gRPC code that carries this error to a client.
    pub fn code(&self) -> Code {
        match self {
            Self::TaskNotFound { .. } => Code::NotFound,
            Self::AlreadyFinished { .. }
            | Self::StillRunning { .. }
            | Self::StillReleasing { .. }
            | Self::LimitUnavailable(_) => Code::FailedPrecondition,
            Self::BinaryNotFound { .. } | Self::InvalidArgument(_) => Code::InvalidArgument,
            Self::PermissionDenied(_) => Code::PermissionDenied,
            Self::ResourceExhausted(_) => Code::ResourceExhausted,
            Self::Unauthenticated => Code::Unauthenticated,
            Self::ShuttingDown => Code::Unavailable,
            Self::Engine(EngineError::Exec { .. } | EngineError::Workdir { .. })
            | Self::Engine(EngineError::NulByte { .. }) => Code::InvalidArgument,
            Self::Engine(_)
            | Self::EngineDied(_)
            | Self::Setup { .. }
            | Self::Io { .. }
            | Self::Cgroup { .. }
            | Self::Pki(_)
            | Self::Seccomp(_)
            | Self::Unsearchable { .. }
            | Self::Tls { .. }
            | Self::Listen { .. }
            | Self::Serve(_)
            | Self::Reflection(_) => Code::Internal,
        }
    }
}

impl From<DaemonError> for Status {
    fn from(error: DaemonError) -> Self {
        Status::new(error.code(), error.to_string())
    }
}

/// Attaches what was being done, and on which path, to an I/O error.
pub trait IoContext<T> {
    /// `Err` becomes [`DaemonError::Io`]: "cannot `action` `path`: why".
    fn context(self, action: &'static str, path: &std::path::Path) -> Result<T, DaemonError>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn context(self, action: &'static str, path: &std::path::Path) -> Result<T, DaemonError> {
        self.map_err(|source| DaemonError::Io { action, path: path.to_owned(), source })
    }
}
