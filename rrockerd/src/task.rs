//! One task as the registry keeps it: what it was asked to run and under which limits, its
//! engine key, cgroup and output log, and its progress (a `watch` its watcher writes and
//! anyone reads, so waiting for its end or its release needs no lock).

use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use rrocker_uring::{LogReader, OutputLog, TaskKey, View};
use tokio::sync::watch;
use uuid::Uuid;

use crate::cgroup::TaskCgroup;
use crate::policy::Defaulted;
use crate::spec::{Limits, Usage};
use crate::state::{StopCause, TaskState};

/// A task's state and when it reached it.
#[derive(Debug, Clone)]
pub struct Progress {
    /// The state.
    pub state: TaskState,
    /// When the task ended, once it has.
    pub finished_at: Option<SystemTime>,
    /// What it used in all, once it has ended (read as its command ended).
    pub final_usage: Option<Usage>,
    /// Whether everything it held on the host is gone: every process, its cgroup and its
    /// directory. This follows its end by the few milliseconds its init takes to tear its
    /// namespaces down.
    pub released: bool,
}

/// One task.
#[derive(Debug)]
pub struct Task {
    /// Its id.
    pub id: Uuid,
    /// The identity that started it.
    pub owner: String,
    /// The command as requested.
    pub argv: Vec<Vec<u8>>,
    /// The image its root is a view of (`""`: the daemon's own).
    pub image: String,
    /// The seccomp profile it runs under.
    pub seccomp: String,
    /// Its limits: as requested, with the daemon's defaults for what the request left unset.
    pub limits: Limits,
    /// Which of its limits are the daemon's defaults.
    pub defaulted: Defaulted,
    /// When it was created.
    pub created_at: SystemTime,
    /// Host pid of its process.
    pub pid: u32,
    pub(crate) key: TaskKey,
    pub(crate) cgroup: Option<Box<dyn TaskCgroup>>,
    pub(crate) output: Arc<OutputLog>,
    pub(crate) progress: watch::Sender<Progress>,
    pub(crate) stop_cause: Mutex<Option<StopCause>>,
    pub(crate) stop_lock: tokio::sync::Mutex<()>,
}

impl Task {
    /// The task's current state.
    pub fn progress(&self) -> Progress {
        self.progress.borrow().clone()
    }

    /// What the task has used: final once it has ended, else read now from its cgroup.
    pub fn usage(&self) -> Option<Usage> {
        let progress = self.progress();
        progress.final_usage.or_else(|| self.cgroup.as_ref().map(|cgroup| cgroup.usage()))
    }

    /// Why the task's output cannot be kept now (the task waits for room), while that lasts.
    pub fn output_held(&self) -> Option<String> {
        self.output.held()
    }

    /// A reader of the part of the task's output that `view` selects.
    pub async fn output(&self, view: View) -> LogReader {
        self.output.reader_with(view).await
    }

    /// Waits until the task has ended and returns its final state.
    pub async fn finished(&self) -> Progress {
        let mut progress = self.progress.subscribe();
        // The sender lives in `self`, so it cannot be dropped while we wait.
        let ended = progress.wait_for(|progress| progress.state.is_final()).await;
        ended.map(|progress| progress.clone()).unwrap_or_else(|_| self.progress())
    }

    /// Waits until everything the task held on the host is gone.
    pub async fn released(&self) {
        let mut progress = self.progress.subscribe();
        // The sender lives in `self`, so it cannot be dropped while we wait.
        let _ = progress.wait_for(|progress| progress.released).await;
    }

    pub(crate) fn set_stop_cause(&self, cause: StopCause) {
        *self.stop_cause.lock().unwrap_or_else(PoisonError::into_inner) = Some(cause);
    }

    pub(crate) fn stop_cause(&self) -> Option<StopCause> {
        *self.stop_cause.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
