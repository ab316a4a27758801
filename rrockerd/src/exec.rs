//! A further command run in a running task (Exec), as its task keeps it: what it runs, its
//! engine key, its output while it has a reader, and how it ended. Its progress is a
//! `watch` its watcher writes, as a task's is.

use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use rrocker_uring::{ExitStatus, LogReader, OutputLog, TaskKey, View};
use tokio::sync::mpsc::Sender;
use tokio::sync::watch;

/// How far an exec has got.
#[derive(Debug, Clone, Copy, Default)]
pub struct ExecProgress {
    /// How its command ended, once it has; `Some(None)` if the engine could not say.
    pub ended: Option<Option<ExitStatus>>,
    /// Whether its processes are gone.
    pub released: bool,
}

/// One command run in a task.
#[derive(Debug)]
pub struct Exec {
    /// Its number in its task, from 1.
    pub number: u32,
    /// The command as run.
    pub argv: Vec<Vec<u8>>,
    /// The host pid of its process.
    pub pid: u32,
    /// Whether it runs on a pseudo-terminal.
    pub has_terminal: bool,
    pub(crate) key: TaskKey,
    /// Its output, until it has ended and its call has its own reader.
    pub(crate) output: Mutex<Option<Arc<OutputLog>>>,
    pub(crate) progress: watch::Sender<ExecProgress>,
    /// Its stdin, until the call that started it takes it.
    pub(crate) stdin: Mutex<Option<Sender<Bytes>>>,
}

impl Exec {
    /// How far it has got.
    pub fn progress(&self) -> ExecProgress {
        *self.progress.borrow()
    }

    /// Its stdin, for the call that started it.
    pub fn take_stdin(&self) -> Option<Sender<Bytes>> {
        self.stdin.lock().unwrap_or_else(PoisonError::into_inner).take()
    }

    /// Takes back a stdin its call leaves open (a detach): nobody attaches to an exec, but
    /// its command does not see the end of its input either.
    pub fn give_back_stdin(&self, stdin: Sender<Bytes>) {
        *self.stdin.lock().unwrap_or_else(PoisonError::into_inner) = Some(stdin);
    }

    /// A reader of all its output, if it is still kept.
    pub async fn output(&self) -> Option<LogReader> {
        let output = self.output.lock().unwrap_or_else(PoisonError::into_inner).clone()?;
        Some(output.reader_with(View::default()).await)
    }

    /// Waits until its command has ended; how.
    pub async fn finished(&self) -> Option<ExitStatus> {
        let mut progress = self.progress.subscribe();
        // The sender lives in `self`, so it cannot be dropped while we wait.
        let ended = progress.wait_for(|progress| progress.ended.is_some()).await;
        ended.ok().and_then(|progress| progress.ended).flatten()
    }

    /// Waits until its processes are gone.
    pub async fn released(&self) {
        let mut progress = self.progress.subscribe();
        // The sender lives in `self`, so it cannot be dropped while we wait.
        let _ = progress.wait_for(|progress| progress.released).await;
    }
}
