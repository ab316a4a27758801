//! The engine thread: a tokio-uring runtime on one dedicated thread that owns every child.
//! Other threads talk to it only through [`Engine`], which sends [`Command`]s over an mpsc
//! channel and gets answers on oneshot channels; the engine never blocks on them.
//!
//! Per task the engine runs three futures on its own thread ([`thread`]): one reads stdout
//! and one stderr with io_uring reads into the task's [`OutputLog`], one waits for the pidfd
//! to become readable and reaps with `waitid(P_PIDFD)` ([`task_io`]). No SIGCHLD handler,
//! no `waitpid(-1)`, no thread per task, no blocking `read(2)`.
//!
//! [`OutputLog`]: crate::OutputLog

mod command;
mod config;
mod task_io;
mod thread;

use std::sync::Arc;
use std::thread::JoinHandle;

use tokio::sync::{mpsc, oneshot, watch};

use self::command::Command;
pub use self::command::{STDIN_QUEUE, Spawned, TaskKey};
pub use self::config::EngineConfig;
use crate::EngineError;
use crate::child::SpawnSpec;
use crate::output::OutputBudget;

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
                    runtime.block_on(thread::run(receiver, config, shared));
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
        self.send(Command::Spawn { spec: Box::new(spec), joins: None, reply })?;
        answer.await.map_err(|_| EngineError::Stopped)?
    }

    /// Starts `spec` inside the running task `task`: its child joins all of the task's
    /// namespaces (setns through the task's pidfd) and takes uid 0 there before it execs.
    /// [`EngineError::NotRunning`] if the task has ended.
    pub async fn spawn_in(&self, task: TaskKey, spec: SpawnSpec) -> Result<Spawned, EngineError> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Spawn { spec: Box::new(spec), joins: Some(task), reply })?;
        answer.await.map_err(|_| EngineError::Stopped)?
    }

    /// Sends `signal` to the task's process. A task that already exited is not an error.
    pub async fn signal(&self, key: TaskKey, signal: i32) -> Result<(), EngineError> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Signal { key, signal, value: None, reply })?;
        answer.await.map_err(|_| EngineError::Stopped)?
    }

    /// Queues `signal` with `value` for the task's process (sigqueue's SI_QUEUE): how a
    /// task's init is told things without a further channel. A task that already exited is
    /// not an error.
    pub async fn queue_signal(
        &self,
        key: TaskKey,
        signal: i32,
        value: i32,
    ) -> Result<(), EngineError> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Signal { key, signal, value: Some(value), reply })?;
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
