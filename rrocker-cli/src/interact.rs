//! The CLI's side of Interact calls: `run -i` starts its task with one, `attach` joins a
//! running task with one, `exec` runs a further command in one. The CLI's stdin goes to the task from a thread of its own (a
//! blocking read there never holds up the CLI's exit), which watches it for the detach keys,
//! Ctrl-P Ctrl-Q, as docker does, when it is a terminal (bytes piped in go through as they
//! are: any pair of bytes may occur in a file).

use std::io::Read;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use rrocker_proto::v1::stream_response::Event;
use rrocker_proto::v1::task_service_client::TaskServiceClient;
use rrocker_proto::v1::{
    AttachRequest, Detach, ExecRequest, InteractRequest, StartRequest, StdinEnd, StreamResponse,
    TaskStarted, TaskStatus, TerminalSize, interact_request,
};
use tokio::sync::mpsc;
use tonic::transport::Channel;

use crate::CliError;
use crate::output::{Terminal, ended_early};
use crate::raw_terminal::{RawMode, Resizes};
use crate::stream_body::OutputStream;

/// What the next message of a task's output was.
#[derive(Debug)]
enum Step {
    /// Output: more follows.
    Going,
    /// The task's final status: the end.
    Ended(Box<TaskStatus>),
    /// The end of a call the user detached from.
    Detached,
}

/// How a followed call ended.
#[derive(Debug)]
pub enum Followed {
    /// With the task's (or exec's) final status.
    Ended(Box<TaskStatus>),
    /// The user detached.
    Detached,
}

/// Bytes of stdin read and sent at a time.
const STDIN_PIECE: usize = 64 * 1024;
/// Ctrl-P, then Ctrl-Q: detach.
const DETACH_KEYS: [u8; 2] = [0x10, 0x11];

/// Where a task's output comes from: a Stream call, or the Interact call that started the
/// task or attached to it.
#[derive(Debug)]
pub enum Events {
    /// A Stream call (read without tonic's decoder).
    Stream(OutputStream),
    /// An Interact call: its output, the sender of its messages, and whether the user
    /// detached.
    Interact {
        /// The task's output and status.
        responses: tonic::Streaming<StreamResponse>,
        /// Messages to the daemon (kept open while the call lasts).
        requests: mpsc::Sender<InteractRequest>,
        /// Set once the detach keys were typed.
        detached: Arc<AtomicBool>,
    },
}

impl Events {
    /// Starts `request` as a task by an Interact call: the task (its id, whether the call
    /// writes its stdin, whether it has a terminal) and its output.
    pub async fn start(
        client: &mut TaskServiceClient<Channel>,
        request: StartRequest,
    ) -> Result<(TaskStarted, Self), CliError> {
        Self::open(client, interact_request::Event::Start(request)).await
    }

    /// Runs a further command in a running task as `request` says.
    pub async fn exec(
        client: &mut TaskServiceClient<Channel>,
        request: ExecRequest,
    ) -> Result<(TaskStarted, Self), CliError> {
        Self::open(client, interact_request::Event::Exec(request)).await
    }

    /// Attaches to a running task as `request` says.
    pub async fn attach(
        client: &mut TaskServiceClient<Channel>,
        request: AttachRequest,
    ) -> Result<(TaskStarted, Self), CliError> {
        Self::open(client, interact_request::Event::Attach(request)).await
    }

    async fn open(
        client: &mut TaskServiceClient<Channel>,
        first: interact_request::Event,
    ) -> Result<(TaskStarted, Self), CliError> {
        let (requests, mut queued) = mpsc::channel(4);
        requests.try_send(InteractRequest { event: Some(first) }).expect("an empty queue");
        let outgoing = futures_util::stream::poll_fn(move |cx| queued.poll_recv(cx));
        let mut responses = client.interact(outgoing).await.map_err(CliError::Status)?.into_inner();
        let started = match responses.message().await.map_err(CliError::Status)? {
            Some(StreamResponse { event: Some(Event::Started(started)) }) => started,
            _ => return Err(CliError::Status(ended_early())),
        };
        let detached = Arc::new(AtomicBool::new(false));
        let events = Self::Interact { responses, requests, detached };
        Ok((started, events))
    }

    /// Tells the daemon the local terminal's new size, for the task's.
    pub async fn resize(&self, size: TerminalSize) {
        if let Self::Interact { requests, .. } = self {
            let resize = interact_request::Event::Resize(size);
            let _ = requests.send(InteractRequest { event: Some(resize) }).await;
        }
    }

    /// The next message of the output.
    async fn message(&mut self) -> Result<Option<StreamResponse>, tonic::Status> {
        match self {
            Self::Stream(stream) => stream.message().await,
            Self::Interact { responses, .. } => responses.message().await,
        }
    }

    /// Whether the user detached (the output then ends without a status).
    fn detached(&self) -> bool {
        matches!(self, Self::Interact { detached, .. } if detached.load(Ordering::SeqCst))
    }

    /// Writes the output to `terminal` and passes the local terminal's `resizes` on, until
    /// the task's end or a detach.
    pub async fn follow(
        &mut self,
        terminal: &mut Terminal,
        resizes: &mut Resizes,
    ) -> Result<Followed, CliError> {
        loop {
            tokio::select! {
                size = resizes.next() => self.resize(size).await,
                step = self.step(terminal) => match step? {
                    Step::Going => {}
                    Step::Ended(status) => return Ok(Followed::Ended(status)),
                    Step::Detached => return Ok(Followed::Detached),
                },
            }
        }
    }

    /// [`Self::follow`], passing each Ctrl-C (SIGINT of the CLI) on to the command as SIGINT,
    /// as docker's sig-proxy does (on a raw terminal, Ctrl-C is a key instead).
    pub async fn follow_passing_interrupts(
        &mut self,
        terminal: &mut Terminal,
        resizes: &mut Resizes,
    ) -> Result<Followed, CliError> {
        use tokio::signal::unix::{SignalKind, signal};
        let mut interrupts = signal(SignalKind::interrupt())
            .map_err(|error| CliError::Usage(format!("Cannot handle signals: {error}")))?;
        loop {
            tokio::select! {
                followed = self.follow(terminal, resizes) => return followed,
                _ = interrupts.recv() => self.signal("INT").await,
            }
        }
    }

    /// Sends the command of this Interact call a signal.
    async fn signal(&self, named: &str) {
        if let Self::Interact { requests, .. } = self {
            let signal = interact_request::Event::Signal(named.to_owned());
            let _ = requests.send(InteractRequest { event: Some(signal) }).await;
        }
    }

    /// Writes the next message of the output to `terminal`; what it was.
    async fn step(&mut self, terminal: &mut Terminal) -> Result<Step, CliError> {
        match self.message().await.map_err(CliError::Status)? {
            None if self.detached() => Ok(Step::Detached),
            None => Err(CliError::Status(ended_early())),
            Some(message) => {
                Ok(terminal.write(message)?.map_or(Step::Going, |s| Step::Ended(Box::new(s))))
            }
        }
    }

    /// Connects the local side to `started`, this call's task: passes the CLI's stdin on
    /// when the call writes the task's and `stdin` is asked, with the local terminal raw
    /// (held by `terminal`) when the task has one too, and else ends the task's input at
    /// once (as docker's, a command run without -i reads nothing); the local terminal's
    /// resizes are for a task with a terminal to follow.
    pub fn connect_local(
        &self,
        started: &TaskStarted,
        stdin: bool,
        terminal: &mut Terminal,
    ) -> Result<Resizes, CliError> {
        if started.stdin && stdin {
            if started.tty {
                terminal.hold_raw(RawMode::enter()?);
            }
            self.pass_stdin();
        } else if started.stdin
            && let Self::Interact { requests, .. } = self
        {
            let end =
                InteractRequest { event: Some(interact_request::Event::StdinEnd(StdinEnd {})) };
            let _ = requests.try_send(end);
        }
        Ok(Resizes::watch(started.tty)?)
    }

    /// Passes the CLI's stdin on to the task of this Interact call, from a thread of its own.
    fn pass_stdin(&self) {
        if let Self::Interact { requests, detached, .. } = self {
            let (requests, detached) = (requests.clone(), Arc::clone(detached));
            std::thread::spawn(move || pass_stdin(&requests, &detached));
        }
    }
}

/// Sends what the CLI's stdin holds, piece by piece as it comes, then its end; or, at the
/// detach keys, what came before them and a detach. Stops early once the call is over.
fn pass_stdin(requests: &mpsc::Sender<InteractRequest>, detached: &AtomicBool) {
    use std::io::IsTerminal;
    let send = |event| requests.blocking_send(InteractRequest { event: Some(event) }).is_ok();
    let mut stdin = std::io::stdin().lock();
    let watched = stdin.is_terminal();
    let mut keys = DetachKeys::default();
    loop {
        let mut piece = vec![0; STDIN_PIECE];
        let read = match stdin.read(&mut piece) {
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
            Ok(0) | Err(_) => break,
            Ok(read) => read,
        };
        let (data, detach) = if watched {
            keys.filter(&piece[..read])
        } else {
            piece.truncate(read);
            (piece, false)
        };
        if !data.is_empty() && !send(interact_request::Event::Stdin(data.into())) {
            return;
        }
        if detach {
            detached.store(true, Ordering::SeqCst);
            send(interact_request::Event::Detach(Detach {}));
            return;
        }
    }
    let held = keys.finish();
    if !held.is_empty() && !send(interact_request::Event::Stdin(held.into())) {
        return;
    }
    send(interact_request::Event::StdinEnd(StdinEnd {}));
}

/// Finds the detach keys in a byte stream read piece by piece: a Ctrl-P is held back until
/// the next byte shows whether Ctrl-Q follows it (then both are dropped and it is a detach)
/// or not (then it goes on with that byte).
#[derive(Debug, Default)]
struct DetachKeys {
    held: bool,
}

impl DetachKeys {
    /// What of `piece` goes on to the task, and whether the keys were typed (what follows
    /// them is not read).
    fn filter(&mut self, piece: &[u8]) -> (Vec<u8>, bool) {
        let mut passed = Vec::with_capacity(piece.len() + 1);
        for &byte in piece {
            if std::mem::take(&mut self.held) {
                if byte == DETACH_KEYS[1] {
                    return (passed, true);
                }
                passed.push(DETACH_KEYS[0]);
            }
            if byte == DETACH_KEYS[0] {
                self.held = true;
            } else {
                passed.push(byte);
            }
        }
        (passed, false)
    }

    /// A Ctrl-P still held at the end of input.
    fn finish(&mut self) -> Vec<u8> {
        if std::mem::take(&mut self.held) { vec![DETACH_KEYS[0]] } else { Vec::new() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_detach_keys_are_found_across_pieces_and_other_ctrl_p_go_through() {
        let mut keys = DetachKeys::default();
        assert_eq!(keys.filter(b"ab"), (b"ab".to_vec(), false));
        assert_eq!(keys.filter(b"c\x10"), (b"c".to_vec(), false));
        assert_eq!(keys.filter(b"\x11rest"), (Vec::new(), true));
        let mut keys = DetachKeys::default();
        assert_eq!(keys.filter(b"x\x10y\x10\x10\x11z"), (b"x\x10y\x10".to_vec(), true));
        let mut keys = DetachKeys::default();
        assert_eq!(keys.filter(b"\x11\x10"), (b"\x11".to_vec(), false));
        assert_eq!(keys.finish(), b"\x10".to_vec());
        assert_eq!(keys.finish(), Vec::<u8>::new());
    }
}
