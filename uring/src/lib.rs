//! rrocker's task engine.
//!
//! One dedicated thread runs a tokio-uring runtime and owns every child process: it clones
//! them (`clone3` with `CLONE_PIDFD`), reads their stdout and stderr pipes with io_uring
//! submissions into per-task [`OutputLog`]s, and reaps them when their pidfd becomes
//! readable (`waitid(P_PIDFD)`). Per-task engine state lives in a slab keyed by
//! [`TaskKey`].
//!
//! Other threads (the daemon's tokio runtime) drive it through [`Engine`]: commands go over
//! an mpsc channel with a oneshot for the answer, so callers never block the engine and the
//! engine never blocks on them. Output flows the other way through shared [`OutputLog`]s,
//! which any number of [`LogReader`]s follow at their own pace.
//!
//! Children are spawned from the engine thread so that `PR_SET_PDEATHSIG` ties their life to
//! it: if the engine (or the daemon) dies, its children die too.

mod child;
mod chunk;
mod engine;
mod netns;
mod output;
mod stats;
mod sys;

pub use rrocker_init::report;

use std::io;
use std::path::PathBuf;

pub use child::{
    ChildStep, Handed, IdMap, Isolation, Namespaces, Placement, Program, SpawnSpec, Spawner,
};
pub use chunk::{Chunk, OutputFd};
pub use engine::{Engine, EngineConfig, STDIN_QUEUE, Spawned, TaskKey};
pub use output::spill::format::MAX_CHUNK;
pub use output::{LineChunker, LogReader, OutputBudget, OutputLog, View};
pub use stats::uring_submissions;

/// How a task's process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// It called exit with this code.
    Exited(i32),
    /// A signal of this number killed it.
    Signaled(i32),
}

/// A step of a child's set-up, as the engine names it when it fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetupStep {
    /// Reading the child's report (it died before saying anything, or said nonsense).
    Report,
    /// Letting the child go on once it was placed.
    Go,
    /// One of the child's own steps before it execs.
    Child(ChildStep),
    /// One of its init's steps (an isolated child).
    Init(rrocker_init::step::InitStep),
}

impl std::fmt::Display for SetupStep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Report => "read the task's report",
            Self::Go => "let the task go on",
            Self::Child(step) => step.describe(),
            Self::Init(step) => step.describe(),
        })
    }
}

/// Everything that can go wrong in the engine.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The engine thread is gone.
    #[error("the task engine has stopped")]
    Stopped,
    /// The engine thread could not be created.
    #[error("cannot start the engine thread: {0}")]
    Thread(io::Error),
    /// io_uring could not be set up.
    #[error("cannot set up io_uring: {0}")]
    Ring(io::Error),
    /// A pipe could not be created.
    #[error("cannot create a pipe: {0}")]
    Pipe(io::Error),
    /// /dev/null could not be opened for the child's stdin.
    #[error("cannot open /dev/null: {0}")]
    DevNull(io::Error),
    /// `clone3` failed.
    #[error("cannot create the task's process: {0}")]
    Clone(io::Error),
    /// An argument, environment entry or path contains a NUL byte.
    #[error("the {what} contains a NUL byte")]
    NulByte {
        /// Which part of the request.
        what: &'static str,
    },
    /// `execve` of the program failed in the child.
    #[error("cannot execute {}: {source}", program.display())]
    Exec {
        /// The program.
        program: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The working directory could not be entered.
    #[error("cannot enter the working directory: {source}")]
    Workdir {
        /// Why.
        source: io::Error,
    },
    /// A step of the child's set-up failed (its own before exec, or its init's).
    #[error("task set-up failed: cannot {step}: {source}")]
    ChildSetup {
        /// Which step.
        step: SetupStep,
        /// Why.
        source: io::Error,
    },
    /// The child could not be moved into one of its v1 cgroups.
    #[error("cannot place the task in its cgroup {}: {source}", path.display())]
    Cgroup {
        /// The cgroup.procs file the pid could not be written to.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The child's uid/gid maps could not be written.
    #[error("cannot write the task's uid/gid maps: {source}")]
    IdMap {
        /// Why.
        source: io::Error,
    },
    /// Sending a signal failed.
    #[error("cannot signal the task: {0}")]
    Signal(io::Error),
    /// A spawn was to join a task that has ended.
    #[error("the task to join has ended")]
    NotRunning,
}

impl EngineError {
    /// Whether this says only that a child ended without reporting how its set-up went
    /// (it was killed, or its report pipe closed early).
    pub fn is_missing_report(&self) -> bool {
        matches!(self, Self::ChildSetup { step: SetupStep::Report, .. })
    }
}
