//! `rrocker-cli run`: start a task and stream it in one, like `docker run`. The CLI exits with
//! the task's exit code (128 + the signal's number when a signal ended it, 125 when it could
//! not start or failed). A first Ctrl-C (or SIGTERM) asks the daemon to stop the task and
//! keeps streaming until it has ended; a second one detaches, leaving the stop to the daemon.
//! With `-i`, the task is started by an Interact call that also carries what the CLI reads on
//! its stdin, then the end of it (or a detach, at Ctrl-P Ctrl-Q).

use rrocker_proto::v1::{
    RemoveRequest, StartRequest, StopRequest, StreamRequest, TaskState, TaskStatus,
};
use tokio::signal::unix::{Signal, SignalKind, signal};
use tonic::transport::Channel;

use crate::CliError;
use crate::interact::{Events, Followed};
use crate::output::Terminal;
use crate::raw_terminal::Resizes;
use crate::stream_body::OutputStream;

/// The exit code of a `run` whose task could not be started or failed to set up (docker's).
pub const RUN_FAILED: u8 = 125;
/// The exit code of a `run` detached by a second Ctrl-C (interrupted by SIGINT).
pub const DETACHED: u8 = 130;

/// The exit code that tells how a task ended.
pub fn exit_code(status: &TaskStatus) -> u8 {
    let code = match (status.state(), status.signal, status.exit_code) {
        (TaskState::Killed, Some(signal), _) => 128 + signal,
        (_, _, Some(code)) => code,
        _ => i32::from(RUN_FAILED),
    };
    u8::try_from(code.clamp(0, 255)).unwrap_or(RUN_FAILED)
}

/// How `run` follows its task.
#[derive(Debug, Clone, Copy, Default)]
pub struct Run {
    /// Print the id and return at once.
    pub detach: bool,
    /// Remove the task once it has ended (not after a detach).
    pub remove: bool,
}

/// Starts `request` as a task and follows it to its end (or prints its id, with `detach`);
/// returns the exit code the CLI ends with.
pub async fn run(channel: Channel, request: StartRequest, how: Run) -> Result<u8, CliError> {
    let client = &mut crate::task_client(channel.clone());
    // Armed before the task exists, so that no Ctrl-C falls between start and stream. A
    // SIGTERM (a supervisor's, `timeout`'s) counts as a Ctrl-C, as docker's sig-proxy would
    // pass it on.
    let handle = |kind| {
        signal(kind).map_err(|error| CliError::Usage(format!("Cannot handle signals: {error}")))
    };
    let (mut interrupts, mut terminations) =
        (handle(SignalKind::interrupt())?, handle(SignalKind::terminate())?);
    let mut terminal = Terminal::new()?;
    let interactive = request.stdin;
    let (id, mut events, mut resizes) = if (request.stdin || request.tty) && !how.detach {
        let (started, events) = Events::start(client, request).await?;
        let resizes = events.connect_local(&started, interactive, &mut terminal)?;
        (started.task_id, events, resizes)
    } else {
        let id = client.start(request).await.map_err(CliError::Status)?.into_inner().task_id;
        if how.detach {
            println!("{id}");
            return Ok(0);
        }
        let request = StreamRequest { task_id: id.clone(), ..StreamRequest::default() };
        let events = OutputStream::open(channel, request).await.map_err(CliError::Status)?;
        (id, Events::Stream(events), Resizes::watch(false)?)
    };
    // The stop asked by the first Ctrl-C, until the daemon has sent SIGTERM (it then sees
    // the stop through by itself); the stream tells how the task ended.
    let mut stop = None;
    let mut interrupted = false;
    loop {
        tokio::select! {
            step = events.follow(&mut terminal, &mut resizes) => match step? {
                Followed::Detached => {
                    terminal.note(&format!("Detached from task {id}; it goes on (rrocker-cli attach {id})\n"))?;
                    return Ok(0);
                }
                Followed::Ended(status) => {
                    terminal.note_end(&status)?;
                    if how.remove {
                        let removed = client.remove(RemoveRequest { task_id: id.clone() }).await;
                        if let Err(status) = removed {
                            terminal.note(&format!("{}\n", status.message()))?;
                        }
                    }
                    return Ok(exit_code(&status));
                }
            },
            () = interrupt(&mut interrupts, &mut terminations) => {
                if interrupted {
                    // Detach only once the daemon has the stop.
                    if let Some(stop) = stop.take() {
                        let _ = stop.await;
                    }
                    terminal.note(&format!("Detached from task {id}; rrockerd goes on stopping it\n"))?;
                    return Ok(DETACHED);
                }
                interrupted = true;
                terminal.note(&format!("Stopping task {id} (Ctrl-C again to detach)\n"))?;
                let mut stopper = client.clone();
                let request = StopRequest { task_id: id.clone(), grace_ms: None, no_wait: true };
                stop = Some(Box::pin(async move { stopper.stop(request).await }));
            }
            // A stop that finds the task ended is fine: the stream ends too.
            _ = async { stop.as_mut().expect("guarded").await }, if stop.is_some() => stop = None,
        }
    }
}

/// The next Ctrl-C or SIGTERM.
async fn interrupt(interrupts: &mut Signal, terminations: &mut Signal) {
    tokio::select! {
        _ = interrupts.recv() => {}
        _ = terminations.recv() => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ended(state: TaskState, signal: Option<i32>, code: Option<i32>) -> u8 {
        let mut status = TaskStatus { signal, exit_code: code, ..TaskStatus::default() };
        status.set_state(state);
        super::exit_code(&status)
    }

    #[test]
    fn the_exit_code_says_how_the_task_ended() {
        assert_eq!(ended(TaskState::Completed, None, Some(0)), 0);
        assert_eq!(ended(TaskState::Completed, None, Some(3)), 3);
        assert_eq!(ended(TaskState::Killed, Some(15), None), 143);
        assert_eq!(ended(TaskState::Killed, Some(9), None), 137);
        // Stopped, but it exited by itself within the grace period.
        assert_eq!(ended(TaskState::Killed, None, Some(2)), 2);
        assert_eq!(ended(TaskState::Failed, None, None), RUN_FAILED);
    }
}
