//! What crosses between the engine's handle and its thread: the commands, the key of a
//! task, and what a spawn gives back.

use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

use crate::child::SpawnSpec;
use crate::output::OutputLog;
use crate::{EngineError, ExitStatus};

/// The engine's handle on a task: a slab index plus a serial, so a stale key never reaches a
/// later task that reuses the slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskKey {
    pub(super) index: usize,
    pub(super) serial: u64,
}

/// A task that the engine started.
#[derive(Debug)]
pub struct Spawned {
    /// The engine's key for later commands.
    pub key: TaskKey,
    /// The host pid of the child.
    pub pid: u32,
    /// The task's output, filled by the engine.
    pub output: Arc<OutputLog>,
    /// Resolves with the command's end as soon as it is known: an init's report of its
    /// command, else the child's reap. Its output may still be draining.
    pub exit: oneshot::Receiver<ExitStatus>,
    /// Resolves once the child has been reaped and its pipes have ended, and the engine has
    /// closed its fds: every process of an isolated task is gone (an init's exit tears its
    /// namespaces down, which takes a few milliseconds more than its command's end).
    pub gone: oneshot::Receiver<()>,
    /// The child's stdin, when it has a pipe there: what is sent is written to it in order;
    /// dropping the sender closes it (end of input). Sends wait while [`STDIN_QUEUE`] pieces
    /// are queued, so a writer faster than the task reads is slowed, not buffered.
    pub stdin: Option<mpsc::Sender<Bytes>>,
}

/// How many pieces of a task's stdin may wait to be written.
pub const STDIN_QUEUE: usize = 4;

pub(super) enum Command {
    Spawn {
        spec: Box<SpawnSpec>,
        /// A running task whose namespaces the child joins.
        joins: Option<TaskKey>,
        reply: oneshot::Sender<Result<Spawned, EngineError>>,
    },
    Signal {
        key: TaskKey,
        signal: i32,
        /// A value to queue the signal with (SI_QUEUE), if any.
        value: Option<i32>,
        reply: oneshot::Sender<Result<(), EngineError>>,
    },
}
