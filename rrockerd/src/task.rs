//! One task as the registry keeps it: what it was asked to run and under which limits, its
//! engine key, cgroup and output log, and its progress (a `watch` its watcher writes and
//! anyone reads, so waiting for its end or its release needs no lock).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use bytes::Bytes;
use rrocker_uring::{LogReader, OutputLog, TaskKey, View};
use tokio::sync::mpsc::Sender;
use tokio::sync::watch;
use uuid::Uuid;

use crate::cgroup::TaskCgroup;
use crate::exec::Exec;
use crate::policy::Defaulted;
use crate::request_error::RequestError;
use crate::spec::{Limits, Usage};
use crate::state::{SentSignals, StopCause, TaskState};

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
    /// The signals users sent it.
    pub(crate) sent_signals: AtomicU64,
    /// Whether it was started with a stdin pipe.
    pub has_stdin: bool,
    /// Whether its command runs on a pseudo-terminal.
    pub has_terminal: bool,
    /// How long it may run from its start (its own timeout, or the daemon's
    /// --max-task-duration), if it has a deadline.
    pub deadline: Option<std::time::Duration>,
    /// Its stdin, while no client writes it (one at a time); `None` once closed.
    pub(crate) stdin: Mutex<Option<Sender<Bytes>>>,
    /// The commands run in it by Exec, first first.
    pub(crate) execs: Mutex<Vec<Arc<Exec>>>,
}

impl Task {
    /// The task's current state.
    pub fn progress(&self) -> Progress {
        self.progress.borrow().clone()
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

    /// The commands run in it by Exec, first first.
    pub fn execs(&self) -> Vec<Arc<Exec>> {
        self.execs.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Its stdin, for the one client that writes it; `None` if it has none, or another took it.
    pub fn take_stdin(&self) -> Option<Sender<Bytes>> {
        self.stdin.lock().unwrap_or_else(PoisonError::into_inner).take()
    }

    /// Attaches a client to this running task: with `stdin`, its stdin for that client to
    /// write (refused while another client writes it, or once it is closed), unless it was
    /// started without one (then the client only follows its output).
    pub fn attach(&self, stdin: bool) -> Result<Option<Sender<Bytes>>, RequestError> {
        if self.progress().state.is_final() {
            return Err(RequestError::AlreadyFinished { id: self.id.to_string() });
        }
        if !(stdin && self.has_stdin) {
            return Ok(None);
        }
        let taken = self.take_stdin();
        taken.map(Some).ok_or_else(|| RequestError::StdinTaken { id: self.id.to_string() })
    }

    /// Gives its stdin back, open, for the next client (one that detached).
    pub fn give_back_stdin(&self, stdin: Sender<Bytes>) {
        *self.stdin.lock().unwrap_or_else(PoisonError::into_inner) = Some(stdin);
    }

    pub(crate) fn note_sent(&self, signal: i32) {
        self.sent_signals.fetch_or(SentSignals::default().with(signal).0, Ordering::SeqCst);
    }

    pub(crate) fn sent_signals(&self) -> SentSignals {
        SentSignals(self.sent_signals.load(Ordering::SeqCst))
    }
}

/// A task as it is now: its progress, and what it has used (its final usage once it has
/// ended, else its cgroup's counters read now).
#[derive(Debug)]
pub struct Snapshot {
    /// The task.
    pub task: Arc<Task>,
    /// Its state.
    pub progress: Progress,
    /// What it has used, if it has a cgroup.
    pub usage: Option<Usage>,
}

impl Snapshot {
    /// `task` at `progress`, with the usage the registry kept (the final one, once ended).
    pub fn as_kept(task: Arc<Task>, progress: Progress) -> Self {
        Self { usage: progress.final_usage, progress, task }
    }
}

/// Snapshots of `tasks`, in order. Ended tasks' usage is the one the registry kept; the
/// cgroups of tasks still running are read in one step on a blocking thread, never on the
/// async runtime.
pub async fn snapshots(tasks: Vec<Arc<Task>>) -> Vec<Snapshot> {
    let taken: Vec<Snapshot> = tasks
        .into_iter()
        .map(|task| {
            let progress = task.progress();
            Snapshot::as_kept(task, progress)
        })
        .collect();
    let unread = |snapshot: &Snapshot| snapshot.usage.is_none() && snapshot.task.cgroup.is_some();
    if !taken.iter().any(unread) {
        return taken;
    }
    let read = move || {
        let mut taken = taken;
        for snapshot in taken.iter_mut().filter(|snapshot| unread(snapshot)) {
            snapshot.usage = snapshot.task.cgroup.as_ref().map(|cgroup| cgroup.usage());
        }
        taken
    };
    tokio::task::spawn_blocking(read)
        .await
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic.into_panic()))
}

/// The snapshot of one task.
pub async fn snapshot(task: Arc<Task>) -> Snapshot {
    let mut one = snapshots(vec![task]).await;
    one.pop().expect("one snapshot of one task")
}
