//! The task registry: every task's id, owner, command, state and output, and the operations
//! on them with their authorisation applied (a task another client owns is reported exactly
//! like a missing one). It owns the [`Engine`] and talks to it only through its handle.
//!
//! Concurrency: the map is behind a short-lived std lock; each task's state is a `watch`
//! channel (written by the task's watcher, read by anyone); stops of one task are serialised
//! by a per-task async lock, so a second stop waits and then finds the task finished.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use rrocker_proto::v1::{Limits, StartRequest};
use rrocker_uring::{Engine, LogReader, OutputLog, TaskKey};
use tokio::sync::watch;
use uuid::Uuid;

use crate::authz::Caller;
use crate::error::DaemonError;
use crate::state::{StopCause, TaskState};
use crate::validate;
use crate::worker::Isolator;
use crate::worker::rootfs::TaskDir;

/// A task's state and when it reached it.
#[derive(Debug, Clone)]
pub struct Progress {
    /// The state.
    pub state: TaskState,
    /// When the task ended, once it has.
    pub finished_at: Option<SystemTime>,
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
    /// Its limits as requested.
    pub limits: Limits,
    /// When it was created.
    pub created_at: SystemTime,
    /// Host pid of its process.
    pub pid: u32,
    key: TaskKey,
    output: Arc<OutputLog>,
    progress: watch::Sender<Progress>,
    stop_cause: Mutex<Option<StopCause>>,
    stop_lock: tokio::sync::Mutex<()>,
}

impl Task {
    /// The task's current state.
    pub fn progress(&self) -> Progress {
        self.progress.borrow().clone()
    }

    /// A reader of the task's output from its first byte.
    pub fn output(&self) -> LogReader {
        self.output.reader()
    }

    /// Waits until the task has ended and returns its final state.
    pub async fn finished(&self) -> Progress {
        let mut progress = self.progress.subscribe();
        // The sender lives in `self`, so it cannot be dropped while we wait.
        let ended = progress.wait_for(|progress| progress.state.is_final()).await;
        ended.map(|progress| progress.clone()).unwrap_or_else(|_| self.progress())
    }

    fn set_stop_cause(&self, cause: StopCause) {
        *self.stop_cause.lock().unwrap_or_else(PoisonError::into_inner) = Some(cause);
    }

    fn stop_cause(&self) -> Option<StopCause> {
        *self.stop_cause.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// All tasks of this daemon.
#[derive(Debug)]
pub struct TaskRegistry {
    engine: Engine,
    isolator: Isolator,
    tasks_dir: PathBuf,
    tasks: Mutex<HashMap<Uuid, Arc<Task>>>,
    default_grace: Duration,
    closing: AtomicBool,
}

impl TaskRegistry {
    /// A registry whose tasks run on `engine`.
    /// A registry whose tasks run on `engine`, isolated by `isolator`, with their
    /// directories in `tasks_dir`.
    pub fn new(
        engine: Engine,
        isolator: Isolator,
        tasks_dir: PathBuf,
        default_grace: Duration,
    ) -> Self {
        let tasks = Mutex::default();
        let closing = AtomicBool::new(false);
        Self { engine, isolator, tasks_dir, tasks, default_grace, closing }
    }

    /// Starts a task for `caller`; returns once its command runs.
    pub async fn start(
        &self,
        caller: &Caller,
        request: StartRequest,
    ) -> Result<Arc<Task>, DaemonError> {
        if self.closing.load(Ordering::SeqCst) {
            return Err(DaemonError::ShuttingDown);
        }
        validate::start_request(&request)?;
        let StartRequest { argv, env, workdir, limits } = request;
        let id = Uuid::new_v4();
        let hostname = &id.to_string()[..12];
        let dir = TaskDir::path_for(&self.tasks_dir, id);
        let spec = self.isolator.spawn_spec(hostname, &dir, argv.clone(), env, &workdir)?;
        // Removed again when dropped: on any failure below, or if this request is cancelled.
        let task_dir = TaskDir::create(dir, self.isolator.root_owner())?;
        let spawned = self.engine.spawn(spec).await.map_err(DaemonError::from_spawn)?;
        let task = Arc::new(Task {
            id,
            owner: caller.identity.clone(),
            argv,
            limits: limits.unwrap_or_default(),
            created_at: SystemTime::now(),
            pid: spawned.pid,
            key: spawned.key,
            output: spawned.output,
            progress: watch::Sender::new(Progress { state: TaskState::Running, finished_at: None }),
            stop_cause: Mutex::new(None),
            stop_lock: tokio::sync::Mutex::new(()),
        });
        self.lock().insert(task.id, Arc::clone(&task));
        tracing::info!(task = %task.id, owner = %task.owner, pid = task.pid, "task started");
        let watched = Arc::clone(&task);
        let exit = spawned.exit;
        tokio::spawn(async move {
            let state = match exit.await {
                Ok(exit) => TaskState::ended(exit, watched.stop_cause()),
                Err(_) => TaskState::Failed { error: "the task engine stopped".into() },
            };
            // Every process of the task is gone with its init: drop its files.
            let _ = tokio::task::spawn_blocking(move || drop(task_dir)).await;
            tracing::info!(task = %watched.id, ?state, "task ended");
            watched.progress.send_replace(Progress { state, finished_at: Some(SystemTime::now()) });
        });
        Ok(task)
    }

    /// The task `id` if `caller` may see it; a missing, malformed or foreign id is NotFound.
    pub fn find(&self, caller: &Caller, id: &str) -> Result<Arc<Task>, DaemonError> {
        let uuid = validate::task_id(id)?;
        self.lock()
            .get(&uuid)
            .filter(|task| caller.may_access(&task.owner))
            .cloned()
            .ok_or_else(|| DaemonError::TaskNotFound { id: validate::echo(id) })
    }

    /// Every task `caller` may see, oldest first.
    pub fn list(&self, caller: &Caller) -> Vec<Arc<Task>> {
        let mut tasks: Vec<_> =
            self.lock().values().filter(|task| caller.may_access(&task.owner)).cloned().collect();
        tasks.sort_by_key(|task| task.created_at);
        tasks
    }

    /// Stops a running task: SIGTERM, then SIGKILL once `grace_ms` (or the default) passed.
    pub async fn stop(
        &self,
        caller: &Caller,
        id: &str,
        grace_ms: Option<u64>,
    ) -> Result<(Arc<Task>, Progress), DaemonError> {
        let task = self.find(caller, id)?;
        let grace = validate::grace(grace_ms, self.default_grace)?;
        let progress = self.stop_task(&task, grace, StopCause::User).await?;
        Ok((task, progress))
    }

    /// Forgets a finished task and its output.
    pub fn remove(&self, caller: &Caller, id: &str) -> Result<(), DaemonError> {
        let task = self.find(caller, id)?;
        if !task.progress().state.is_final() {
            return Err(DaemonError::StillRunning { id: task.id.to_string() });
        }
        self.lock().remove(&task.id);
        Ok(())
    }

    /// Refuses new tasks and stops every running one (SIGTERM, SIGKILL after `grace`).
    pub async fn shutdown(&self, grace: Duration) {
        self.closing.store(true, Ordering::SeqCst);
        let running: Vec<_> = self
            .lock()
            .values()
            .filter(|task| !task.progress().state.is_final())
            .cloned()
            .collect();
        tracing::info!(tasks = running.len(), "stopping every task");
        let stops = running.iter().map(|task| self.stop_task(task, grace, StopCause::Shutdown));
        futures_util::future::join_all(stops).await;
    }

    async fn stop_task(
        &self,
        task: &Task,
        grace: Duration,
        cause: StopCause,
    ) -> Result<Progress, DaemonError> {
        let _exclusive = task.stop_lock.lock().await;
        if task.progress().state.is_final() {
            return Err(DaemonError::AlreadyFinished { id: task.id.to_string() });
        }
        task.set_stop_cause(cause);
        self.engine.signal(task.key, libc::SIGTERM).await?;
        if let Ok(progress) = tokio::time::timeout(grace, task.finished()).await {
            return Ok(progress);
        }
        tracing::info!(task = %task.id, "grace period over; sending SIGKILL");
        self.engine.signal(task.key, libc::SIGKILL).await?;
        Ok(task.finished().await)
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<Uuid, Arc<Task>>> {
        self.tasks.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
