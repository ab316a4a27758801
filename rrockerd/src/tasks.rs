//! The task registry: every task's id, owner, command, state and output, and the operations
//! on them with their authorisation applied (a task another client owns is reported exactly
//! like a missing one). It owns the [`Engine`] and talks to it only through its handle.
//!
//! Concurrency: the map is behind a short-lived std lock; each task's state is a `watch`
//! channel (written by the task's watcher, read by anyone); stops of one task are serialised
//! by a per-task async lock, so a second stop waits and then finds the task finished.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use rrocker_uring::{Engine, EngineError};
use tokio::sync::mpsc::Sender;
use tokio::sync::{oneshot, watch};
use uuid::Uuid;

use crate::authz::Caller;
use crate::cgroup::Cgroups;
use crate::events::{EventKind, EventLog};
use crate::exec::{Exec, ExecProgress};
use crate::isolator::{Isolator, TaskCommand};
use crate::metrics::Metrics;
use crate::policy::{Figures, Policy};
use crate::quota::Quota;
use crate::request_error::RequestError;
use crate::retention::{self, Expirations, Finished, Retention};
use crate::spec::{ExecSpec, Limits, TaskSpec, Usage, WindowSize};
use crate::state::{StopCause, TaskState};
use crate::task_root::{self, TaskDir};
use crate::validate;
use rrocker_init::control::Control;

pub use crate::task::{Progress, Task};

/// How the registry runs tasks.
#[derive(Debug)]
pub struct Settings {
    /// Where task directories go.
    pub tasks_dir: PathBuf,
    /// The grace period of a stop that gives none.
    pub default_grace: Duration,
    /// The longest any task may run (`--max-task-duration`): its deadline if it asks none.
    pub max_duration: Option<Duration>,
    /// How long finished tasks are kept, and how many at most.
    pub retention: Retention,
    /// How many events are kept for replay (`--event-history`).
    pub event_history: usize,
    /// Default and maximum limits.
    pub policy: Policy,
}

/// All tasks of this daemon.
#[derive(Debug)]
pub struct TaskRegistry {
    engine: Engine,
    isolator: Isolator,
    cgroups: Option<Arc<dyn Cgroups>>,
    quota: Arc<Quota>,
    tasks_dir: PathBuf,
    tasks: Mutex<HashMap<Uuid, Arc<Task>>>,
    default_grace: Duration,
    max_duration: Option<Duration>,
    retention: Retention,
    /// Finished tasks waiting for their retention time to pass.
    expirations: Arc<Expirations>,
    /// What happened to tasks, for watchers.
    events: EventLog,
    /// Whether the task that forgets them runs.
    expiring: AtomicBool,
    policy: Policy,
    closing: AtomicBool,
    /// Held (shared) by every start from its check of `closing` until its task is listed, so
    /// that a shutdown, which takes it exclusively, sees every task a start made.
    start_gate: tokio::sync::RwLock<()>,
    metrics: Arc<Metrics>,
}

impl TaskRegistry {
    /// A registry whose tasks run on `engine`, isolated by `isolator`, limited by `cgroups`
    /// (if the host has cgroups this daemon may use), as many at once as `quota` allows,
    /// as `settings` say.
    pub fn new(
        engine: Engine,
        isolator: Isolator,
        cgroups: Option<Arc<dyn Cgroups>>,
        quota: Arc<Quota>,
        settings: Settings,
        metrics: Arc<Metrics>,
    ) -> Self {
        let Settings { tasks_dir, default_grace, max_duration, retention, event_history, policy } =
            settings;
        let tasks = Mutex::default();
        let closing = AtomicBool::new(false);
        let start_gate = tokio::sync::RwLock::new(());
        Self {
            engine,
            isolator,
            cgroups,
            quota,
            tasks_dir,
            tasks,
            default_grace,
            max_duration,
            retention,
            expirations: Arc::default(),
            events: EventLog::new(event_history),
            expiring: AtomicBool::new(false),
            policy,
            closing,
            start_gate,
            metrics,
        }
    }

    /// The daemon's metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Starts a task for `caller`; returns once its command runs.
    pub async fn start(
        self: &Arc<Self>,
        caller: &Caller,
        spec: TaskSpec,
    ) -> Result<Arc<Task>, RequestError> {
        Ok(self.start_with(caller, spec, false).await?.0)
    }

    /// Starts a task with a stdin pipe whose writer is the caller's from the start (an
    /// Interact start): no attach can take it first.
    pub async fn start_writing_stdin(
        self: &Arc<Self>,
        caller: &Caller,
        spec: TaskSpec,
    ) -> Result<(Arc<Task>, Option<Sender<Bytes>>), RequestError> {
        self.start_with(caller, TaskSpec { stdin: true, ..spec }, true).await
    }

    async fn start_with(
        self: &Arc<Self>,
        caller: &Caller,
        spec: TaskSpec,
        caller_writes: bool,
    ) -> Result<(Arc<Task>, Option<Sender<Bytes>>), RequestError> {
        let started = self.launch(caller, spec, caller_writes).await;
        if started.is_err() {
            self.metrics.start_failed();
        }
        started
    }

    async fn launch(
        self: &Arc<Self>,
        caller: &Caller,
        spec: TaskSpec,
        caller_writes: bool,
    ) -> Result<(Arc<Task>, Option<Sender<Bytes>>), RequestError> {
        let began = Instant::now();
        let _starting = self.start_gate.read().await;
        if self.closing.load(Ordering::SeqCst) {
            return Err(RequestError::ShuttingDown);
        }
        let TaskSpec { argv, env, workdir, limits: requested, image, stdin, terminal, timeout } =
            spec;
        let deadline = self.deadline(timeout)?;
        validate::limits(&requested, host_cpus())?;
        let (limits, defaulted) = self.policy.apply(&requested)?;
        for rule in &limits.io {
            crate::cgroup::check_io_device(Path::new(SYS_DEV_BLOCK), rule.major, rule.minor)?;
        }
        if self.cgroups.is_none() && requested != Limits::default() {
            return Err(RequestError::Cgroup(crate::cgroup::CgroupError::Unavailable(
                "this rrockerd runs tasks without cgroups (unprivileged, --cgroup-version off, or none on the host): limits cannot be applied".into(),
            )));
        }
        let output = self.engine.output_budget();
        if output.is_full() {
            return Err(RequestError::ResourceExhausted(format!(
                "Cannot start the task: rrockerd keeps {} bytes of task output, its limit (--max-output-bytes); remove finished tasks (rm) to free some",
                output.kept()
            )));
        }
        // Given back when the task ends, or at once if this start fails.
        let held = Figures {
            memory: limits.memory(),
            pids: limits.pids(),
            cpu_millis: limits.cpu_millis(),
        };
        let admin = caller.role == crate::authz::Role::Admin;
        let kept_output = || -> u64 {
            let tasks = self.lock();
            let mine = tasks.values().filter(|task| task.owner == caller.identity);
            mine.map(|task| task.output.kept_bytes()).sum()
        };
        let slot = self.quota.take(&caller.identity, admin, held, kept_output)?;
        let id = Uuid::new_v4();
        let hostname = &id.to_string()[..12];
        // The file-system work before the spawn (the image's view, made on its first use,
        // look-ups in it, the task directory, the cgroup) in one blocking step, off the
        // runtime's workers.
        let (lease, spec, task_dir, cgroup) = tokio::task::block_in_place(|| {
            // Held until everything the task held is gone; given back at once if this start
            // fails.
            let lease = self.isolator.lease(&caller.identity)?;
            let dir = TaskDir::path_for(&self.tasks_dir, id);
            let command =
                TaskCommand { image: &image, argv: argv.clone(), env, workdir: &workdir, terminal };
            let mut spec = self.isolator.spawn_spec(&lease, hostname, &dir, command)?;
            spec.stdin = stdin;
            task_root::check_room(&self.tasks_dir)?;
            // Both are removed again when dropped: on any failure below, or if this request
            // is cancelled.
            let task_dir = TaskDir::create(dir, lease.root_owner())?;
            let cgroup = match &self.cgroups {
                Some(cgroups) => Some(cgroups.create(&id.to_string(), &limits)?),
                None => None,
            };
            if let Some(cgroup) = &cgroup {
                spec.placement = cgroup.placement()?;
            }
            Ok::<_, RequestError>((lease, spec, task_dir, cgroup))
        })?;
        let mut spawned = self.engine.spawn(spec).await.map_err(RequestError::from_spawn)?;
        let has_stdin = spawned.stdin.is_some();
        let callers_stdin = if caller_writes { spawned.stdin.take() } else { None };
        let task = Arc::new(Task {
            id,
            owner: caller.identity.clone(),
            argv,
            image,
            seccomp: self.isolator.seccomp_mode().to_string(),
            limits,
            defaulted,
            created_at: SystemTime::now(),
            pid: spawned.pid,
            key: spawned.key,
            cgroup,
            output: spawned.output,
            progress: watch::Sender::new(Progress {
                state: TaskState::Running,
                finished_at: None,
                final_usage: None,
                released: false,
            }),
            stop_cause: Mutex::new(None),
            stop_lock: tokio::sync::Mutex::new(()),
            sent_signals: AtomicU64::new(0),
            has_stdin,
            has_terminal: terminal.is_some(),
            deadline,
            stdin: Mutex::new(spawned.stdin),
            execs: Mutex::new(Vec::new()),
        });
        // Counted before its watcher can count its end.
        self.metrics.started(began.elapsed());
        {
            // Published as the task is listed: no watcher sees its end before its start.
            let mut tasks = self.lock();
            tasks.insert(task.id, Arc::clone(&task));
            self.events.publish(task.id, &task.owner, EventKind::Created);
            self.events.publish(task.id, &task.owner, EventKind::Started);
        }
        // Every event of the task's life is logged in its span.
        let span = tracing::info_span!("task", id = %task.id);
        span.in_scope(|| tracing::info!(owner = %task.owner, pid = task.pid, "task started"));
        let watched = Arc::clone(&task);
        let metrics = Arc::clone(&self.metrics);
        let registry = Arc::downgrade(self);
        let (exit, gone) = (spawned.exit, spawned.gone);
        let watch = async move {
            let exit = exit.await;
            // The command has ended: what the task used is final, though its init may still
            // be tearing its namespaces down.
            let counted = Arc::clone(&watched);
            let final_usage = tokio::task::spawn_blocking(move || {
                // What it uses now is nothing, from its end on.
                let ended = |usage| Usage { memory_current_bytes: 0, pids_current: 0, ..usage };
                counted.cgroup.as_ref().map(|cgroup| ended(cgroup.usage()))
            })
            .await
            .ok()
            .flatten();
            let oom_killed = final_usage.as_ref().is_some_and(|usage| usage.oom_kills > 0);
            let state = match exit {
                Ok(exit) => {
                    TaskState::ended(exit, watched.stop_cause(), watched.sent_signals(), oom_killed)
                }
                Err(_) => TaskState::Failed { error: "the task engine stopped".into() },
            };
            tracing::info!(?state, "task ended");
            metrics.ended(&state);
            let finished_at = Some(SystemTime::now());
            let ended = Progress { state, finished_at, final_usage, released: false };
            // Given back first, so that whoever sees the end can start the next one.
            drop(slot);
            let ended_kind = EventKind::Ended(ended.state.clone());
            watched.progress.send_replace(ended);
            if let Some(registry) = registry.upgrade() {
                registry.events.publish(watched.id, &watched.owner, ended_kind);
            }
            // Every process of the task is gone with its init, but the parents of its execs,
            // outside its PID namespace, which follow their commands (and are killed with
            // the cgroup, if need be): then drop its cgroup and its files.
            let _ = gone.await;
            let execs = watched.execs();
            if execs.iter().any(|exec| !exec.progress().released)
                && let Some(cgroup) = &watched.cgroup
            {
                cgroup.kill();
            }
            for exec in execs {
                exec.released().await;
            }
            let cleaned = Arc::clone(&watched);
            let _ = tokio::task::spawn_blocking(move || {
                drop(task_dir);
                if let Some(Err(error)) = cleaned.cgroup.as_ref().map(|cgroup| cgroup.remove()) {
                    tracing::warn!(task = %cleaned.id, %error, "cannot remove the task's cgroup");
                }
                drop(lease);
            })
            .await;
            watched.progress.send_modify(|progress| progress.released = true);
            tracing::info!("task released");
            if let Some(registry) = registry.upgrade() {
                registry.kept_finished(watched.id);
            }
        };
        if let Some(deadline) = deadline {
            tokio::spawn(enforce_deadline(Arc::downgrade(self), Arc::clone(&task), deadline));
        }
        tokio::spawn(tracing::Instrument::instrument(watch, span));
        Ok((task, callers_stdin))
    }

    /// The deadline of a task that asks for `timeout`: it, or the daemon's longest, which it
    /// may not exceed.
    fn deadline(&self, timeout: Option<Duration>) -> Result<Option<Duration>, RequestError> {
        match (timeout, self.max_duration) {
            (Some(asked), Some(most)) if asked > most => {
                Err(RequestError::InvalidArgument(format!(
                    "Timeout {} exceeds this daemon's --max-task-duration {}",
                    humantime::format_duration(asked),
                    humantime::format_duration(most)
                )))
            }
            (None, most) => Ok(most),
            (asked, _) => Ok(asked),
        }
    }

    /// The task `id` if `caller` may see it; a missing, malformed or foreign id is NotFound.
    pub fn find(&self, caller: &Caller, id: &str) -> Result<Arc<Task>, RequestError> {
        let uuid = validate::task_id(id)?;
        self.lock()
            .get(&uuid)
            .filter(|task| caller.may_access(&task.owner))
            .cloned()
            .ok_or_else(|| RequestError::TaskNotFound { id: validate::echo(id) })
    }

    /// Every task `caller` may see, oldest first.
    pub fn list(&self, caller: &Caller) -> Vec<Arc<Task>> {
        let mut tasks: Vec<_> =
            self.lock().values().filter(|task| caller.may_access(&task.owner)).cloned().collect();
        tasks.sort_by_key(|task| task.created_at);
        tasks
    }

    /// Stops a running task: SIGTERM (then the task goes to `signalled`), then SIGKILL once
    /// `grace_ms` (or the default) passed.
    pub async fn stop(
        &self,
        caller: &Caller,
        id: &str,
        grace_ms: Option<u64>,
        signalled: oneshot::Sender<Arc<Task>>,
    ) -> Result<(Arc<Task>, Progress), RequestError> {
        let task = self.find(caller, id)?;
        let grace = validate::grace(grace_ms, self.default_grace)?;
        let progress = self.stop_task(&task, grace, StopCause::User, Some(signalled)).await?;
        self.metrics.stopped();
        Ok((task, progress))
    }

    /// Sends the signal `named` (see [`validate::signal`]) to a running task: to its init,
    /// which passes it on to the command, or, SIGKILL, to every process of the task at once.
    /// Returns the signal's number.
    pub async fn signal(
        &self,
        caller: &Caller,
        id: &str,
        named: &str,
    ) -> Result<i32, RequestError> {
        // The task first: another's task answers NOT_FOUND whatever the signal.
        let task = self.find(caller, id)?;
        let signal = validate::signal(named)?;
        if task.progress().state.is_final() {
            return Err(RequestError::AlreadyFinished { id: task.id.to_string() });
        }
        // Noted first: the signal may end the task before the engine answers.
        task.note_sent(signal);
        tracing::info!(task = %task.id, signal, "signal sent");
        if signal != libc::SIGKILL || !task.cgroup.as_ref().is_some_and(|cgroup| cgroup.kill()) {
            // (SIGKILL to init takes every process of its PID namespace with it.)
            self.engine.signal(task.key, signal).await?;
        }
        Ok(signal)
    }

    /// Runs `spec` in the running `task` (see [`Exec`]; found by the caller, who may see it):
    /// resolved in the task's root as it is now, started in its namespaces and cgroups under
    /// its restrictions, with a stdin pipe for the caller. FAILED_PRECONDITION if the task
    /// has ended.
    pub async fn exec(&self, task: &Task, spec: ExecSpec) -> Result<Arc<Exec>, RequestError> {
        let finished = || RequestError::AlreadyFinished { id: task.id.to_string() };
        if task.progress().state.is_final() {
            return Err(finished());
        }
        let ExecSpec { argv, env, workdir, terminal } = spec;
        let command =
            TaskCommand { image: "", argv: argv.clone(), env, workdir: &workdir, terminal };
        let spawn = tokio::task::block_in_place(|| {
            let mut spawn = self.isolator.exec_spec(task.pid, command)?;
            spawn.stdin = true;
            if let Some(cgroup) = &task.cgroup {
                spawn.placement = cgroup.placement()?;
            }
            Ok::<_, RequestError>(spawn)
        })?;
        let spawned = match self.engine.spawn_in(task.key, spawn).await {
            Err(EngineError::NotRunning) => return Err(finished()),
            spawned => spawned.map_err(RequestError::from_spawn)?,
        };
        let exec = {
            let mut execs = task.execs.lock().unwrap_or_else(PoisonError::into_inner);
            let exec = Arc::new(Exec {
                number: u32::try_from(execs.len() + 1).unwrap_or(u32::MAX),
                argv,
                pid: spawned.pid,
                has_terminal: terminal.is_some(),
                key: spawned.key,
                output: Mutex::new(Some(spawned.output)),
                progress: watch::Sender::new(ExecProgress::default()),
                stdin: Mutex::new(spawned.stdin),
            });
            execs.push(Arc::clone(&exec));
            exec
        };
        tracing::info!(task = %task.id, exec = exec.number, pid = exec.pid, "exec started");
        let watched = Arc::clone(&exec);
        let (exit, gone) = (spawned.exit, spawned.gone);
        tokio::spawn(async move {
            let ended = exit.await.ok();
            tracing::info!(exec = watched.number, ?ended, "exec ended");
            watched.progress.send_modify(|progress| progress.ended = Some(ended));
            let _ = gone.await;
            // Its call holds a reader of its own: the exec's output is kept no longer.
            watched.output.lock().unwrap_or_else(PoisonError::into_inner).take();
            watched.progress.send_modify(|progress| progress.released = true);
        });
        Ok(exec)
    }

    /// Sets a running task's terminal to `size` (its command gets SIGWINCH); nothing for a
    /// task without one, or one that has ended.
    pub async fn resize(&self, task: &Task, size: WindowSize) {
        if task.has_terminal && !task.progress().state.is_final() {
            self.resize_terminal(task.key, size).await;
        }
    }

    /// The same for a running exec's terminal.
    pub async fn resize_exec(&self, exec: &Exec, size: WindowSize) {
        if exec.has_terminal && exec.progress().ended.is_none() {
            self.resize_terminal(exec.key, size).await;
        }
    }

    /// Tells the init of `key` (which has a terminal) its new size.
    async fn resize_terminal(&self, key: rrocker_uring::TaskKey, size: WindowSize) {
        let (signal, value) = Control::Resize(size).encode();
        if let Err(error) = self.engine.queue_signal(key, signal, value).await {
            tracing::warn!(%error, "cannot resize a terminal");
        }
    }

    /// Sends the signal `named` (see [`validate::signal`]) to a running exec's command, by
    /// way of its init (which passes SIGKILL on too). Returns the signal's number.
    pub async fn signal_exec(&self, exec: &Exec, named: &str) -> Result<i32, RequestError> {
        let signal = validate::signal(named)?;
        if exec.progress().ended.is_some() {
            return Err(RequestError::ExecEnded { number: exec.number });
        }
        tracing::info!(exec = exec.number, signal, "signal sent to an exec");
        let (queued, value) = Control::Forward(signal).encode();
        self.engine.queue_signal(exec.key, queued, value).await?;
        Ok(signal)
    }

    /// Forgets a finished task and its output, once everything it held on the host is gone
    /// (waiting up to [`RELEASE_WAIT`] for that).
    pub async fn remove(&self, caller: &Caller, id: &str) -> Result<(), RequestError> {
        let task = self.find(caller, id)?;
        if !task.progress().state.is_final() {
            return Err(RequestError::StillRunning { id: task.id.to_string() });
        }
        if tokio::time::timeout(RELEASE_WAIT, task.released()).await.is_err() {
            return Err(RequestError::StillReleasing { id: task.id.to_string() });
        }
        self.forget(task.id, "rm");
        Ok(())
    }

    /// Keeps the task `id`, which has just been released, as long as retention allows:
    /// forgets the finished tasks now past `--max-finished-tasks`, and `id` itself once its
    /// `--retain-finished` time has passed.
    fn kept_finished(self: &Arc<Self>, id: Uuid) {
        let over = {
            let tasks = self.lock();
            let finished: Vec<Finished<'_>> = tasks
                .values()
                .map(|task| (task, task.progress()))
                .filter(|(_, progress)| progress.released)
                .map(|(task, progress)| Finished {
                    id: task.id,
                    owner: &task.owner,
                    ended: progress.finished_at,
                })
                .collect();
            retention::over_the_cap(&finished, self.retention.most)
        };
        for forgotten in over {
            self.forget(forgotten, "over --max-finished-tasks");
        }
        {
            let tasks = self.lock();
            self.expirations.compact(tasks.len(), |id| tasks.contains_key(id));
        }
        let expires = tokio::time::Instant::now() + self.retention.keep_for;
        self.expirations.add(id, expires);
        if !self.expiring.swap(true, Ordering::SeqCst) {
            tokio::spawn(expire(Arc::downgrade(self)));
        }
    }

    /// Forgets the finished task `id`, if it is still kept, saying `why`.
    fn forget(&self, id: Uuid, why: &'static str) {
        let Some(task) = self.lock().remove(&id) else { return };
        self.events.publish(id, &task.owner, EventKind::Removed(why));
        self.metrics.removed(&task.progress().state);
        tracing::info!(task = %id, "removed: {why}");
    }

    /// The kept events since `since` that `caller` may see, and a receiver of later ones
    /// (to be filtered the same way, with [`Caller::may_access`]).
    pub fn watch(&self, since: Option<SystemTime>) -> crate::events::Subscription {
        self.events.subscribe(since)
    }

    /// Refuses new tasks, stops every running one (SIGTERM, SIGKILL after `grace`) and waits
    /// until every task has released what it held on the host.
    pub async fn shutdown(&self, grace: Duration) {
        self.closing.store(true, Ordering::SeqCst);
        // Starts already past the check finish (and list their task) first.
        drop(self.start_gate.write().await);
        let running: Vec<_> = self
            .lock()
            .values()
            .filter(|task| !task.progress().state.is_final())
            .cloned()
            .collect();
        tracing::info!(tasks = running.len(), "stopping every task");
        let stops =
            running.iter().map(|task| self.stop_task(task, grace, StopCause::Shutdown, None));
        futures_util::future::join_all(stops).await;
        let tasks: Vec<_> = self.lock().values().cloned().collect();
        futures_util::future::join_all(tasks.iter().map(|task| task.released())).await;
        // Every task's end is published: watchers get it, then their streams end.
        self.events.close();
    }

    async fn stop_task(
        &self,
        task: &Arc<Task>,
        grace: Duration,
        cause: StopCause,
        signalled: Option<oneshot::Sender<Arc<Task>>>,
    ) -> Result<Progress, RequestError> {
        let _exclusive = task.stop_lock.lock().await;
        if task.progress().state.is_final() {
            return Err(RequestError::AlreadyFinished { id: task.id.to_string() });
        }
        task.set_stop_cause(cause);
        self.engine.signal(task.key, libc::SIGTERM).await?;
        if let Some(signalled) = signalled {
            let _ = signalled.send(Arc::clone(task));
        }
        if let Ok(progress) = tokio::time::timeout(grace, task.finished()).await {
            return Ok(progress);
        }
        tracing::info!(task = %task.id, "grace period over; killing every process of the task");
        // The whole tree at once where the kernel can; else SIGKILL to the task's init,
        // which takes every process of its PID namespace with it.
        if !task.cgroup.as_ref().is_some_and(|cgroup| cgroup.kill()) {
            self.engine.signal(task.key, libc::SIGKILL).await?;
        }
        Ok(task.finished().await)
    }

    /// Removes the parent cgroup, if no task cgroup is left in it (at shutdown).
    /// Resolves once the engine has died, with why (see `Engine::died`).
    pub fn engine_died(&self) -> impl std::future::Future<Output = String> + Send + 'static {
        self.engine.died()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<Uuid, Arc<Task>>> {
        self.tasks.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Forgets each finished task once its retention time has passed, for as long as the
/// registry lives.
async fn expire(registry: Weak<TaskRegistry>) {
    loop {
        let Some(strong) = registry.upgrade() else { return };
        let expirations = Arc::clone(&strong.expirations);
        drop(strong);
        let id = expirations.next().await;
        let Some(strong) = registry.upgrade() else { return };
        strong.forget(id, "its --retain-finished time passed");
    }
}

/// Stops `task` as a Stop with the daemon's grace period would, once `after` has passed
/// since its start, unless it has ended by then (or the daemon is gone).
async fn enforce_deadline(registry: Weak<TaskRegistry>, task: Arc<Task>, after: Duration) {
    tokio::select! {
        () = tokio::time::sleep(after) => {}
        _ = task.finished() => return,
    }
    let Some(registry) = registry.upgrade() else { return };
    tracing::info!(task = %task.id, "its deadline passed; stopping it");
    let grace = registry.default_grace;
    // A task that ended meanwhile, or another stop that came first, is fine.
    let _ = registry.stop_task(&task, grace, StopCause::Deadline, None).await;
}

/// How long `rm` waits for an ended task to release what it holds (normally milliseconds; a
/// process stuck in the kernel can make it longer).
const RELEASE_WAIT: Duration = Duration::from_secs(10);

/// Where the kernel lists block devices by `major:minor`.
const SYS_DEV_BLOCK: &str = "/sys/dev/block";

/// How many CPUs tasks may use on this host (asked once: std reads several cgroup files).
fn host_cpus() -> u64 {
    static CPUS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *CPUS.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get() as u64))
}
