//! What can go wrong with a client's request, and how it reaches the client: the one error
//! type that maps to a gRPC status, with a one-line message the CLI prints as is.

use std::io;

use rrocker_init::step::InitStep;
use rrocker_uring::{EngineError, SetupStep};
use tonic::{Code, Status};

use crate::cgroup::CgroupError;
use crate::image::ImageError;
use crate::io_context::IoError;

/// A request that failed.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
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
    /// A signal to an exec whose command has already ended.
    #[error("Exec {number} has already ended")]
    ExecEnded {
        /// The exec's number in its task.
        number: u32,
    },
    /// An attach that asks to write a task's stdin while another client writes it, or once
    /// it is closed.
    #[error(
        "Task '{id}' has its stdin written by another client, or closed; attach without it (--no-stdin)"
    )]
    StdinTaken {
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
    /// A cap of this daemon's (running tasks, request size) is reached.
    #[error("{0}")]
    ResourceExhausted(String),
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
    /// The task's cgroup could not be made, or its limits applied.
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    /// The task's image is not there or could not be made ready.
    #[error(transparent)]
    Image(#[from] ImageError),
    /// A file or directory of the task's could not be used.
    #[error(transparent)]
    Io(#[from] IoError),
}

impl RequestError {
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
            | Self::ExecEnded { .. }
            | Self::StillRunning { .. }
            | Self::StdinTaken { .. }
            | Self::StillReleasing { .. }
            | Self::Cgroup(CgroupError::Unavailable(_)) => Code::FailedPrecondition,
            Self::BinaryNotFound { .. }
            | Self::InvalidArgument(_)
            | Self::Cgroup(CgroupError::BadDevice(_))
            | Self::Image(ImageError::Invalid(_))
            | Self::Engine(
                EngineError::Exec { .. }
                | EngineError::Workdir { .. }
                | EngineError::NulByte { .. },
            ) => Code::InvalidArgument,
            Self::PermissionDenied(_) => Code::PermissionDenied,
            Self::ResourceExhausted(_) => Code::ResourceExhausted,
            Self::Unauthenticated => Code::Unauthenticated,
            Self::ShuttingDown => Code::Unavailable,
            Self::Engine(_)
            | Self::Setup { .. }
            // (A parent in use only stops the daemon's start.)
            | Self::Cgroup(
                CgroupError::File { .. } | CgroupError::Io(_) | CgroupError::ParentInUse(_),
            )
            | Self::Image(ImageError::Io(_))
            | Self::Io(_) => Code::Internal,
        }
    }
}

impl From<RequestError> for Status {
    fn from(error: RequestError) -> Self {
        Status::new(error.code(), error.to_string())
    }
}
