//! `rrocker-cli run`: start a task and stream it in one, like `docker run`. The CLI exits with
//! the task's exit code (128 + the signal's number when a signal ended it, 125 when it could
//! not start or failed). A first Ctrl-C (or SIGTERM) asks the daemon to stop the task and
//! keeps streaming until it has ended; a second one detaches, leaving the stop to the daemon.
//! With `-i`, the task is started by an Interact call that also carries what the CLI reads on
//! its stdin, then the end of it.

use std::io::Read;

use rrocker_proto::v1::stream_response::Event;
use rrocker_proto::v1::task_service_client::TaskServiceClient;
use rrocker_proto::v1::{
    InteractRequest, RemoveRequest, StartRequest, StdinEnd, StopRequest, StreamRequest,
    StreamResponse, TaskState, TaskStatus, interact_request,
};
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::sync::mpsc;
use tonic::transport::Channel;

use crate::output::{Terminal, ended_early};
use crate::stream_body::OutputStream;
use crate::{CliError, format};

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
    /// Pass the CLI's stdin on to the task.
    pub stdin: bool,
}

/// Bytes of stdin read and sent at a time.
const STDIN_PIECE: usize = 64 * 1024;

/// Where `run` reads its task's output from.
enum Events {
    /// A Stream call (read without tonic's decoder).
    Stream(OutputStream),
    /// The Interact call that started the task.
    Interact(tonic::Streaming<StreamResponse>),
}

impl Events {
    async fn message(&mut self) -> Result<Option<StreamResponse>, tonic::Status> {
        match self {
            Self::Stream(stream) => stream.message().await,
            Self::Interact(stream) => stream.message().await,
        }
    }
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
    let (id, mut events) = if how.stdin {
        interact(client, request).await?
    } else {
        let id = client.start(request).await.map_err(CliError::Status)?.into_inner().task_id;
        if how.detach {
            println!("{id}");
            return Ok(0);
        }
        let request = StreamRequest { task_id: id.clone(), ..StreamRequest::default() };
        let events = OutputStream::open(channel, request).await.map_err(CliError::Status)?;
        (id, Events::Stream(events))
    };
    let mut terminal = Terminal::new()?;
    // The stop asked by the first Ctrl-C, until the daemon has sent SIGTERM (it then sees
    // the stop through by itself); the stream tells how the task ended.
    let mut stop = None;
    let mut interrupted = false;
    loop {
        tokio::select! {
            message = events.message() => {
                let message = message.map_err(CliError::Status)?;
                let message = message.ok_or_else(|| CliError::Status(ended_early()))?;
                if let Some(status) = terminal.write(message)? {
                    // A command that ended by itself says so with its exit code alone.
                    if status.state() != TaskState::Completed {
                        terminal.note(&format::state_lines(&status))?;
                    }
                    if how.remove {
                        let removed = client.remove(RemoveRequest { task_id: id.clone() }).await;
                        if let Err(status) = removed {
                            terminal.note(&format!("{}\n", status.message()))?;
                        }
                    }
                    return Ok(exit_code(&status));
                }
            }
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

/// Starts `request` by an Interact call, and passes the CLI's stdin on to it from a thread
/// of its own (a blocking read there never holds up the CLI's exit); returns the task's id
/// and its output.
async fn interact(
    client: &mut TaskServiceClient<Channel>,
    request: StartRequest,
) -> Result<(String, Events), CliError> {
    let (requests, queued) = mpsc::channel(4);
    let start = InteractRequest { event: Some(interact_request::Event::Start(request)) };
    requests.try_send(start).expect("an empty queue");
    let mut queued = queued;
    let outgoing = futures_util::stream::poll_fn(move |cx| queued.poll_recv(cx));
    let mut events = client.interact(outgoing).await.map_err(CliError::Status)?.into_inner();
    let id = match events.message().await.map_err(CliError::Status)? {
        Some(StreamResponse { event: Some(Event::Started(started)) }) => started.task_id,
        _ => return Err(CliError::Status(ended_early())),
    };
    std::thread::spawn(move || pass_stdin(&requests));
    Ok((id, Events::Interact(events)))
}

/// Sends what the CLI's stdin holds, piece by piece as it comes, then its end; stops early
/// once the call is over.
fn pass_stdin(requests: &mpsc::Sender<InteractRequest>) {
    let mut stdin = std::io::stdin().lock();
    loop {
        let mut piece = vec![0; STDIN_PIECE];
        let event = match stdin.read(&mut piece) {
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
            Ok(0) | Err(_) => break,
            Ok(read) => {
                piece.truncate(read);
                interact_request::Event::Stdin(piece.into())
            }
        };
        if requests.blocking_send(InteractRequest { event: Some(event) }).is_err() {
            return;
        }
    }
    let end = interact_request::Event::StdinEnd(StdinEnd {});
    let _ = requests.blocking_send(InteractRequest { event: Some(end) });
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
