//! The engine thread's loop: it takes commands, starts each task's futures (its two output
//! pumps and its reaper) and keeps the live tasks' pidfds in a slab for signals.

use std::cell::RefCell;
use std::os::fd::{AsFd, OwnedFd};
use std::rc::Rc;
use std::sync::Arc;

use slab::Slab;
use tokio::sync::{mpsc, oneshot};

use super::command::{Command, STDIN_QUEUE, Spawned, TaskKey};
use super::config::EngineConfig;
use super::task_io::{feed, pump, reap};
use crate::child::SpawnSpec;
use crate::child::launch;
use crate::chunk::OutputFd;
use crate::netns::NetnsPool;
use crate::output::spill::SpillWriter;
use crate::output::{OutputBudget, OutputLog};
use crate::{EngineError, sys};

/// What the engine keeps per live task.
struct Entry {
    serial: u64,
    pidfd: Rc<OwnedFd>,
}

type Tasks = Rc<RefCell<Slab<Entry>>>;

pub(super) async fn run(
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
            Command::Spawn { spec, joins, reply } => {
                #[cfg(debug_assertions)]
                assert!(!config.panic_at_spawn, "the test fault panic_at_spawn");
                let joins = match joins.map(|key| live_pidfd(&tasks, key)) {
                    Some(None) => {
                        let _ = reply.send(Err(EngineError::NotRunning));
                        continue;
                    }
                    Some(Some(pidfd)) => Some(pidfd),
                    None => None,
                };
                serial += 1;
                let context =
                    (Rc::clone(&tasks), Rc::clone(&config), netns.clone(), Arc::clone(&budget));
                let task = start_task(context, *spec, joins, serial, reply);
                tokio_uring::spawn(task);
            }
            Command::Signal { key, signal, value, reply } => {
                let _ = reply.send(signal_task(&tasks, key, signal, value));
            }
        }
    }
}

/// The pidfd of the live task `key`, if it is still live.
fn live_pidfd(tasks: &Tasks, key: TaskKey) -> Option<Rc<OwnedFd>> {
    let tasks = tasks.borrow();
    let entry = tasks.get(key.index).filter(|entry| entry.serial == key.serial)?;
    Some(Rc::clone(&entry.pidfd))
}

fn signal_task(
    tasks: &Tasks,
    key: TaskKey,
    signal: i32,
    value: Option<i32>,
) -> Result<(), EngineError> {
    let Some(pidfd) = live_pidfd(tasks, key) else { return Ok(()) };
    let sent = match value {
        Some(value) => sys::pidfd_queue_signal(&pidfd, signal, value),
        None => sys::pidfd_send_signal(&pidfd, signal),
    };
    match sent {
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
    joins: Option<Rc<OwnedFd>>,
    serial: u64,
    reply: oneshot::Sender<Result<Spawned, EngineError>>,
) {
    let spawner = config.spawner.as_deref();
    let joined = joins.as_deref().map(AsFd::as_fd);
    let child =
        match launch::clone_child(&spec, config.pipe_size, netns.as_deref(), spawner, joined) {
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
            launch::place_and_go(child.pid, procs_files, go).await
        }
        None => Ok(()),
    };
    if placed.is_err() {
        let _ = sys::pidfd_send_signal(&pidfd, libc::SIGKILL);
    }
    let report = launch::ReportPipe::new(child.error_pipe);
    let isolated = spec.isolation.is_some();
    let outcome = launch::exec_outcome(report, &spec.program, isolated).await;
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
    let (stdin, stdin_pieces) = match child.stdin {
        Some(pipe) => {
            let (sender, pieces) = mpsc::channel(STDIN_QUEUE);
            (Some(sender), Some((pipe, pieces)))
        }
        None => (None, None),
    };
    let spawned = Spawned { key, pid: child.pid, output: Arc::clone(&output), exit, gone, stdin };
    if reply.send(Ok(spawned)).is_err() {
        // Nobody wants the task any more: make sure it does not run unobserved.
        let _ = sys::pidfd_send_signal(&pidfd, libc::SIGKILL);
    }
    let (reaped_tx, reaped) = oneshot::channel::<()>();
    let reaper = async {
        // An init's report of its command comes first and wins over init's own exit (the
        // report pipe ends with init at the latest).
        let reported = match final_report {
            Some(report) => launch::final_status(report).await,
            None => None,
        };
        let exit_tx = match reported {
            Some(status) => {
                let _ = exit_tx.send(status);
                None
            }
            None => Some(exit_tx),
        };
        let reaped = reap(pidfd, child.pid).await;
        let _ = reaped_tx.send(());
        match (reaped, exit_tx) {
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
    // Stdin is written until its end, or the task's.
    let input = async {
        if let Some((pipe, pieces)) = stdin_pieces {
            feed(pipe, pieces, async { drop(reaped.await) }).await;
        }
    };
    tokio::join!(reaper, output_read, input);
    spill.close().await;
    tasks.borrow_mut().remove(index);
    let _ = gone_tx.send(());
}
