//! The engine thread: a tokio-uring runtime on one dedicated thread that owns every child.
//! Other threads talk to it only through [`Engine`], which sends [`Command`]s over an mpsc
//! channel and gets answers on oneshot channels; the engine never blocks on them.
//!
//! Per task the engine runs three futures on its own thread: one reads stdout and one stderr
//! with io_uring reads into the task's [`OutputLog`], one waits for the pidfd to become
//! readable and reaps with `waitid(P_PIDFD)`. No SIGCHLD handler, no `waitpid(-1)`, no
//! thread per task, no blocking `read(2)`.

use std::cell::RefCell;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::thread::JoinHandle;

use bytes::BytesMut;
use slab::Slab;
use tokio::sync::{mpsc, oneshot, watch};

use crate::chunk::{Chunk, OutputFd};
use crate::netns::NetnsPool;
use crate::output::{LineChunker, OutputBudget, OutputLog};
use crate::spawn::{self, SpawnSpec};
use crate::spawner::Spawner;
use crate::spill_writer::SpillWriter;
use crate::{EngineError, ExitStatus, sys};

/// Tuning of the engine.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Size of each io_uring read of a task's pipe.
    pub read_size: usize,
    /// Largest output chunk kept in a log.
    pub chunk_limit: usize,
    /// Pipe buffer size requested with F_SETPIPE_SZ.
    pub pipe_size: usize,
    /// io_uring submission queue entries.
    pub ring_entries: u32,
    /// Directory for spill files; `None` keeps every task's whole output in memory.
    pub spill_dir: Option<PathBuf>,
    /// Bytes of output a task keeps in memory when it has a spill directory; older output
    /// moves to its spill file.
    pub window_bytes: usize,
    /// Bytes of output all tasks together keep in memory (with a spill directory); over it,
    /// the windows of tasks that are writing shrink to 64 KiB.
    pub budget_bytes: usize,
    /// Bytes of output all tasks together keep, in memory and spill files; at it, tasks that
    /// write wait (their output is not spilled) until logs are dropped.
    pub kept_bytes: u64,
    /// Give isolated tasks network namespaces made ahead by a thread of the engine (needs
    /// CAP_SYS_ADMIN; without it, each clone3 makes its own).
    pub netns_pool: bool,
    /// The helper process that clones tasks (see [`Spawner`]); without it, the engine thread
    /// clones them itself.
    pub spawner: Option<Arc<Spawner>>,
    /// A fault for the tests (debug builds only): the engine thread panics at its first
    /// spawn, as a bug would make it.
    #[cfg(debug_assertions)]
    pub panic_at_spawn: bool,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            read_size: 64 * 1024,
            chunk_limit: 64 * 1024,
            pipe_size: 1024 * 1024,
            ring_entries: 1024,
            spill_dir: None,
            window_bytes: 4 << 20,
            budget_bytes: 256 << 20,
            kept_bytes: u64::MAX,
            netns_pool: false,
            spawner: None,
            #[cfg(debug_assertions)]
            panic_at_spawn: false,
        }
    }
}

/// The engine's handle on a task: a slab index plus a serial, so a stale key never reaches a
/// later task that reuses the slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskKey {
    index: usize,
    serial: u64,
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
}

enum Command {
    Spawn { spec: Box<SpawnSpec>, reply: oneshot::Sender<Result<Spawned, EngineError>> },
    Signal { key: TaskKey, signal: i32, reply: oneshot::Sender<Result<(), EngineError>> },
}

/// The handle other threads use to drive the engine. Dropping it stops the engine thread
/// (children still running then die with it through PR_SET_PDEATHSIG).
#[derive(Debug)]
pub struct Engine {
    commands: Option<mpsc::UnboundedSender<Command>>,
    thread: Option<JoinHandle<()>>,
    budget: Arc<OutputBudget>,
    /// Why the engine thread ended, once it has (see [`Engine::died`]).
    ended: watch::Receiver<Option<String>>,
}

impl Engine {
    /// Starts the engine thread.
    pub fn start(config: EngineConfig) -> Result<Self, EngineError> {
        let (commands, receiver) = mpsc::unbounded_channel();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (ended_tx, ended) = watch::channel(None);
        let budget = OutputBudget::new(config.budget_bytes, config.kept_bytes);
        let shared = Arc::clone(&budget);
        let thread = std::thread::Builder::new()
            .name("rrocker-uring".into())
            .spawn(move || {
                let runtime = match tokio_uring::Runtime::new(
                    tokio_uring::builder().entries(config.ring_entries),
                ) {
                    Ok(runtime) => runtime,
                    Err(error) => {
                        let _ = ready_tx.send(Err(error));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok(()));
                let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    runtime.block_on(run(receiver, config, shared));
                }));
                let why = match ran {
                    Ok(()) => "it was stopped".to_owned(),
                    Err(panic) => format!("it panicked: {}", panic_message(panic.as_ref())),
                };
                let _ = ended_tx.send(Some(why));
            })
            .map_err(EngineError::Thread)?;
        match ready_rx.recv() {
            Ok(Ok(())) => {
                Ok(Self { commands: Some(commands), thread: Some(thread), budget, ended })
            }
            Ok(Err(error)) => Err(EngineError::Ring(error)),
            Err(_) => Err(EngineError::Stopped),
        }
    }

    /// Resolves once the engine thread has ended, with why (a panic's message). Its tasks
    /// cannot be driven any more: a daemon must not go on as if it could.
    pub fn died(&self) -> impl std::future::Future<Output = String> + Send + 'static {
        let mut ended = self.ended.clone();
        async move {
            match ended.wait_for(Option::is_some).await {
                Ok(why) => why.clone().unwrap_or_default(),
                Err(_) => "its thread is gone".to_owned(),
            }
        }
    }

    /// What all tasks' output holds, in memory and in all.
    pub fn output_budget(&self) -> &OutputBudget {
        &self.budget
    }

    /// Starts `spec` and returns once the command has been exec'd.
    pub async fn spawn(&self, spec: SpawnSpec) -> Result<Spawned, EngineError> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Spawn { spec: Box::new(spec), reply })?;
        answer.await.map_err(|_| EngineError::Stopped)?
    }

    /// Sends `signal` to the task's process. A task that already exited is not an error.
    pub async fn signal(&self, key: TaskKey, signal: i32) -> Result<(), EngineError> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Signal { key, signal, reply })?;
        answer.await.map_err(|_| EngineError::Stopped)?
    }

    /// Stops the engine thread and waits for it.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        self.commands = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }

    fn send(&self, command: Command) -> Result<(), EngineError> {
        let commands = self.commands.as_ref().ok_or(EngineError::Stopped)?;
        commands.send(command).map_err(|_| EngineError::Stopped)
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The message a panic was raised with.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    match (panic.downcast_ref::<&str>(), panic.downcast_ref::<String>()) {
        (Some(text), _) => (*text).to_owned(),
        (_, Some(text)) => text.clone(),
        _ => "(no message)".to_owned(),
    }
}

/// What the engine keeps per live task.
struct Entry {
    serial: u64,
    pidfd: Rc<OwnedFd>,
}

type Tasks = Rc<RefCell<Slab<Entry>>>;

async fn run(
    mut commands: mpsc::UnboundedReceiver<Command>,
    config: EngineConfig,
    budget: Arc<OutputBudget>,
) {
    let tasks: Tasks = Rc::new(RefCell::new(Slab::new()));
    let netns = match config.netns_pool.then(NetnsPool::start) {
        Some(Ok(pool)) => Some(Rc::new(pool)),
        Some(Err(error)) => {
            tracing::warn!(%error, "no network namespace pool; each spawn makes its own");
            None
        }
        None => None,
    };
    let config = Rc::new(config);
    let mut serial = 0u64;
    while let Some(command) = commands.recv().await {
        match command {
            Command::Spawn { spec, reply } => {
                #[cfg(debug_assertions)]
                assert!(!config.panic_at_spawn, "the test fault panic_at_spawn");
                serial += 1;
                let context =
                    (Rc::clone(&tasks), Rc::clone(&config), netns.clone(), Arc::clone(&budget));
                let task = start_task(context, *spec, serial, reply);
                tokio_uring::spawn(task);
            }
            Command::Signal { key, signal, reply } => {
                let _ = reply.send(signal_task(&tasks, key, signal));
            }
        }
    }
}

fn signal_task(tasks: &Tasks, key: TaskKey, signal: i32) -> Result<(), EngineError> {
    let tasks = tasks.borrow();
    let Some(entry) = tasks.get(key.index).filter(|entry| entry.serial == key.serial) else {
        return Ok(());
    };
    match sys::pidfd_send_signal(&entry.pidfd, signal) {
        Err(error) if error.raw_os_error() == Some(libc::ESRCH) => Ok(()),
        result => result.map_err(EngineError::Signal),
    }
}

/// What every task start shares: the task slab, the configuration, the netns pool, and the
/// output memory budget.
type Context = (Tasks, Rc<EngineConfig>, Option<Rc<NetnsPool>>, Arc<OutputBudget>);

async fn start_task(
    (tasks, config, netns, budget): Context,
    mut spec: SpawnSpec,
    serial: u64,
    reply: oneshot::Sender<Result<Spawned, EngineError>>,
) {
    let spawner = config.spawner.as_deref();
    let child = match spawn::clone_child(&spec, config.pipe_size, netns.as_deref(), spawner) {
        Ok(child) => child,
        Err(error) => {
            let _ = reply.send(Err(error));
            return;
        }
    };
    let pidfd = Rc::new(child.pidfd);
    // The child is in its v2 cgroup: the directory fd is not needed for the task's life.
    spec.placement.clone_into = None;
    let placed = match child.go {
        Some(go) => {
            let procs_files = spec.placement.procs_files.clone();
            spawn::place_and_go(child.pid, procs_files, go).await
        }
        None => Ok(()),
    };
    if placed.is_err() {
        let _ = sys::pidfd_send_signal(&pidfd, libc::SIGKILL);
    }
    let report = spawn::ReportPipe::new(child.error_pipe);
    let isolated = spec.isolation.is_some();
    let outcome = spawn::exec_outcome(report, &spec.program, isolated).await;
    let final_report = match (placed, outcome) {
        (Ok(()), Ok(final_report)) => final_report,
        // A step the child reported failing explains more than a placement that failed
        // because the child had already exited.
        (_, Err(error)) if !error.is_missing_report() => {
            let _ = reap(Rc::clone(&pidfd), child.pid).await;
            let _ = reply.send(Err(error));
            return;
        }
        (Err(error), _) | (Ok(()), Err(error)) => {
            // The child failed or was killed and is exiting: reap it before answering.
            let _ = reap(Rc::clone(&pidfd), child.pid).await;
            let _ = reply.send(Err(error));
            return;
        }
    };
    let index = tasks.borrow_mut().insert(Entry { serial, pidfd: Rc::clone(&pidfd) });
    let key = TaskKey { index, serial };
    let output = match &config.spill_dir {
        Some(_) => Arc::new(OutputLog::with_window(config.window_bytes, Some(budget))),
        None => OutputLog::new(),
    };
    let spill = SpillWriter::new(config.spill_dir.clone(), child.pid);
    let (exit_tx, exit) = oneshot::channel();
    let (gone_tx, gone) = oneshot::channel();
    let spawned = Spawned { key, pid: child.pid, output: Arc::clone(&output), exit, gone };
    if reply.send(Ok(spawned)).is_err() {
        // Nobody wants the task any more: make sure it does not run unobserved.
        let _ = sys::pidfd_send_signal(&pidfd, libc::SIGKILL);
    }
    let reaper = async {
        // An init's report of its command comes first and wins over init's own exit (the
        // report pipe ends with init at the latest).
        let reported = match final_report {
            Some(report) => spawn::final_status(report).await,
            None => None,
        };
        let exit_tx = match reported {
            Some(status) => {
                let _ = exit_tx.send(status);
                None
            }
            None => Some(exit_tx),
        };
        match (reap(pidfd, child.pid).await, exit_tx) {
            (Ok(status), Some(exit_tx)) => {
                let _ = exit_tx.send(status);
            }
            (Err(error), _) => tracing::error!(%error, "cannot reap task"),
            (Ok(_), None) => {}
        }
        spill.end();
    };
    // No writer is left once both pipes have ended: the output is complete.
    let output_read = async {
        let stdout = pump(child.stdout, OutputFd::Stdout, &output, &spill, &config);
        let stderr = pump(child.stderr, OutputFd::Stderr, &output, &spill, &config);
        tokio::join!(stdout, stderr);
        output.close();
    };
    tokio::join!(reaper, output_read);
    tasks.borrow_mut().remove(index);
    let _ = gone_tx.send(());
}

/// Waits for the pidfd to become readable (the child exited), kills what is left of the
/// child's process group (its session, made by `setsid` in the child), and reaps the child.
/// The group is killed before the reap, while the zombie leader still holds its number.
async fn reap(pidfd: Rc<OwnedFd>, pid: u32) -> io::Result<ExitStatus> {
    use rustix::process::{WaitId, WaitIdOptions, waitid};
    let pidfd = sys::watch_pidfd(pidfd)?;
    let wait = |options| {
        waitid(
            WaitId::PidFd(pidfd.get_ref().as_fd()),
            options | WaitIdOptions::EXITED | WaitIdOptions::NOHANG,
        )
    };
    loop {
        let mut ready = pidfd.readable().await?;
        // Peek first (NOWAIT): only a child that has really exited has its group killed.
        if wait(WaitIdOptions::NOWAIT)?.is_none() {
            ready.clear_ready();
            continue;
        }
        match sys::kill_process_group(pid) {
            Err(error) if error.raw_os_error() != Some(libc::ESRCH) => {
                tracing::warn!(%error, pid, "cannot kill the task's process group");
            }
            _ => {}
        }
        let status = wait(WaitIdOptions::empty())?
            .ok_or_else(|| io::Error::other("an exited child could not be reaped"))?;
        return Ok(match (status.exit_status(), status.terminating_signal()) {
            (_, Some(signal)) => ExitStatus::Signaled(signal),
            (Some(code), None) => ExitStatus::Exited(code),
            (None, None) => ExitStatus::Exited(0),
        });
    }
}

/// Reads one pipe to its end with io_uring and appends what it reads to `log`, moving the
/// log's oldest chunks to its spill file whenever its memory window is over budget.
async fn pump(
    pipe: OwnedFd,
    fd: OutputFd,
    log: &OutputLog,
    spill: &SpillWriter,
    config: &EngineConfig,
) {
    let file = tokio_uring::fs::File::from_std(std::fs::File::from(pipe));
    let mut chunker = LineChunker::new(config.chunk_limit);
    let mut emit = |data| log.append(Chunk { fd, data });
    let mut buffer = BytesMut::with_capacity(config.read_size);
    loop {
        if buffer.capacity() < config.read_size / 4 {
            buffer = BytesMut::with_capacity(config.read_size);
        }
        let asked = buffer.capacity();
        crate::stats::submitted();
        let (result, returned) = file.read_at(buffer, 0).await;
        buffer = returned;
        match result {
            Ok(0) => break,
            Ok(read) => {
                // A partial line is held back only if more bytes are already in the pipe
                // (FIONREAD is an ioctl, not a read); otherwise it goes out now.
                let more_waiting = read == asked && sys::bytes_waiting(&file) > 0;
                chunker.push(buffer.split().freeze(), more_waiting, &mut emit);
                if log.over_budget() {
                    spill.make_room(log).await;
                }
            }
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => {
                tracing::error!(%error, ?fd, "cannot read task output");
                break;
            }
        }
    }
    chunker.finish(&mut emit);
    crate::stats::submitted();
    let _ = file.close().await;
}
