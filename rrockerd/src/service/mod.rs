//! The gRPC face of the registry: each handler takes the caller that the TLS layer
//! authorised, converts the request into the domain's terms (`convert.rs`), calls the
//! registry, and converts the answer to `rrocker.v1` messages. No business logic lives here,
//! and no wire type goes further.

mod convert;
mod framed_stream;

pub use framed_stream::FramedStream;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use rrocker_proto::v1::task_service_server::TaskService;
use rrocker_proto::v1::{
    self as proto, InteractRequest, ListRequest, ListResponse, QueryRequest, RemoveRequest,
    RemoveResponse, SignalRequest, SignalResponse, StartRequest, StartResponse, StopRequest,
    StopResponse, StreamRequest, StreamResponse, interact_request, stream_response::Event,
};
use rrocker_uring::{Chunk, ExitStatus, LogReader, OutputFd, View};
use tokio::sync::mpsc;
use tonic::{Request, Response, Status, Streaming};

use crate::authz::{Access, Caller};
use crate::exec::Exec;
use crate::listener::Peer;
use crate::open_caps::{Held, OpenCap};
use crate::request_error::RequestError;
use crate::state::{KillReason, TaskState};
use crate::task::{self, Snapshot, Task};
use crate::tasks::TaskRegistry;

/// The `rrocker.v1.TaskService` implementation.
#[derive(Debug, Clone)]
pub struct Service {
    registry: Arc<TaskRegistry>,
    /// The output streams each identity holds open.
    streams: Arc<OpenCap>,
}

impl Service {
    /// A service over `registry`, with at most `streams_per_user` output streams open per
    /// identity (0: no cap).
    pub fn new(registry: Arc<TaskRegistry>, streams_per_user: usize) -> Self {
        Self { registry, streams: OpenCap::new(streams_per_user) }
    }

    /// One of the caller's open output streams, counted until the returned value is dropped;
    /// refused over `--max-streams-per-user`.
    fn hold_stream(&self, caller: &Caller) -> Result<Held, RequestError> {
        self.streams.take(&caller.identity).map_err(|cap| {
            RequestError::ResourceExhausted(format!(
                "Cannot open the stream: identity '{}' has {cap} output streams open, its limit (--max-streams-per-user); close one first",
                caller.identity
            ))
        })
    }

    /// The task's output as `view` selects it, then its final (or, not following or
    /// following until a time, current) status; `held` (and the metrics' count) is let go
    /// when the stream is dropped.
    async fn output_stream(&self, task: Arc<Task>, view: View, held: Held) -> OutputStream {
        let follow = view.follow && view.until_ns.is_none();
        let reader = task.output(view).await;
        let end = async move {
            if follow {
                let progress = task.finished().await;
                Event::Status(status(&Snapshot::as_kept(task, progress)))
            } else {
                Event::Status(status(&task::snapshot(task).await))
            }
        };
        self.stream_then(reader, held, end)
    }

    /// What `reader` reads, then the event `end` gives; `held` (and the metrics' count) is
    /// let go when the stream is dropped.
    fn stream_then(
        &self,
        reader: LogReader,
        held: Held,
        end: impl Future<Output = Event> + Send + 'static,
    ) -> OutputStream {
        let open = (self.registry.metrics().stream_opened(), held);
        let end: Pin<Box<dyn Future<Output = Event> + Send>> = Box::pin(end);
        let events = futures_util::stream::unfold(Some((reader, end, open)), |state| async move {
            let (mut reader, end, open) = state?;
            if let Some(chunk) = reader.next().await {
                open.0.streamed(chunk.data.len());
                return Some((Ok(output_event(chunk)), Some((reader, end, open))));
            }
            Some((Ok(StreamResponse { event: Some(end.await) }), None))
        });
        Box::pin(events)
    }
}

/// What an Interact call drives: a task (started or attached to), or a command run in one.
#[derive(Debug, Clone)]
enum Driven {
    Task(Arc<Task>),
    Exec(Arc<Exec>),
}

impl Driven {
    /// Resolves once what is driven has ended.
    async fn finished(&self) {
        match self {
            Self::Task(task) => drop(task.finished().await),
            Self::Exec(exec) => drop(exec.finished().await),
        }
    }

    /// Takes back a stdin a client leaves open.
    fn give_back_stdin(&self, stdin: mpsc::Sender<Bytes>) {
        match self {
            Self::Task(task) => task.give_back_stdin(stdin),
            // Nobody attaches to an exec: kept open for the command all the same.
            Self::Exec(exec) => exec.give_back_stdin(stdin),
        }
    }
}

/// Follows an Interact client's messages: its stdin pieces go to the task's stdin, in order,
/// until the end of input; resizes go to its terminal, signals to its command; a detach gives the stdin back to the
/// task, open, and ends the call (`detach`); the client's end (it went away, or broke the
/// protocol) or the task's closes the stdin and ends this. A send waits while the engine's
/// queue is full, and meanwhile nothing more is read from the client: HTTP/2 flow control
/// slows it.
async fn follow_client(
    mut requests: Streaming<InteractRequest>,
    (registry, caller): (Arc<TaskRegistry>, Caller),
    driven: Driven,
    mut stdin: Option<mpsc::Sender<Bytes>>,
    detach: tokio::sync::oneshot::Sender<()>,
) {
    use interact_request::Event as Sent;
    loop {
        // Not past the task's end: a client that keeps its side open holds nothing of it.
        let message = tokio::select! {
            message = requests.message() => message,
            () = driven.finished() => return,
        };
        let Ok(Some(InteractRequest { event: Some(event) })) = message else { return };
        match event {
            Sent::Stdin(data) => {
                if let Some(open) = &stdin
                    && open.send(data).await.is_err()
                {
                    stdin = None;
                }
            }
            Sent::StdinEnd(_) => stdin = None,
            // A size out of range cannot be answered on this call: it is not set.
            Sent::Resize(size) => {
                if let Ok(size) = convert::window_size(size) {
                    match &driven {
                        Driven::Task(task) => registry.resize(task, size).await,
                        Driven::Exec(exec) => registry.resize_exec(exec, size).await,
                    }
                }
            }
            Sent::Detach(_) => {
                if let Some(open) = stdin.take() {
                    driven.give_back_stdin(open);
                }
                let _ = detach.send(());
                return;
            }
            Sent::Signal(named) => {
                let sent = match &driven {
                    Driven::Task(task) => {
                        registry.signal(&caller, &task.id.to_string(), &named).await
                    }
                    Driven::Exec(exec) => registry.signal_exec(exec, &named).await,
                };
                if let Err(error) = sent {
                    tracing::info!(%error, "a signal on an Interact call was not sent");
                }
            }
            Sent::Start(_) | Sent::Attach(_) | Sent::Exec(_) => return,
        }
    }
}

/// The caller of a request, as authorised when its connection was accepted.
fn caller<T>(request: &Request<T>) -> Result<Caller, RequestError> {
    let Some(peer) = request.extensions().get::<Peer>() else {
        return Err(RequestError::Unauthenticated);
    };
    match &peer.access {
        Access::Granted(_) if let Some(why) = &peer.over_cap => {
            Err(RequestError::ResourceExhausted(why.clone()))
        }
        Access::Granted(caller) => Ok(caller.clone()),
        Access::Denied(reason) => Err(RequestError::PermissionDenied(reason.clone())),
    }
}

type OutputStream = Pin<Box<dyn Stream<Item = Result<StreamResponse, Status>> + Send>>;

#[tonic::async_trait]
impl TaskService for Service {
    async fn start(
        &self,
        request: Request<StartRequest>,
    ) -> Result<Response<StartResponse>, Status> {
        let caller = caller(&request)?;
        let spec = crate::spec::TaskSpec::try_from(request.into_inner())?;
        let task = self.registry.start(&caller, spec).await?;
        Ok(Response::new(StartResponse { task_id: task.id.to_string() }))
    }

    async fn stop(&self, request: Request<StopRequest>) -> Result<Response<StopResponse>, Status> {
        let caller = caller(&request)?;
        let StopRequest { task_id, grace_ms, no_wait } = request.into_inner();
        // A stop goes on to its SIGKILL even if its caller leaves.
        let registry = Arc::clone(&self.registry);
        let (signalled, terminated) = tokio::sync::oneshot::channel();
        let stop = async move { registry.stop(&caller, &task_id, grace_ms, signalled).await };
        let stopping = tokio::spawn(stop);
        let failed = |_| Status::internal("the stop failed");
        if no_wait && let Ok(task) = terminated.await {
            let now = status(&task::snapshot(task).await);
            return Ok(Response::new(StopResponse { status: Some(now) }));
        }
        let (task, progress) = stopping.await.map_err(failed)??;
        Ok(Response::new(StopResponse { status: Some(status(&Snapshot::as_kept(task, progress))) }))
    }

    async fn signal(
        &self,
        request: Request<SignalRequest>,
    ) -> Result<Response<SignalResponse>, Status> {
        let caller = caller(&request)?;
        let SignalRequest { task_id, signal } = request.into_inner();
        let signal = self.registry.signal(&caller, &task_id, &signal).await?;
        Ok(Response::new(SignalResponse { signal }))
    }

    async fn query(
        &self,
        request: Request<QueryRequest>,
    ) -> Result<Response<proto::TaskStatus>, Status> {
        let caller = caller(&request)?;
        let task = self.registry.find(&caller, &request.get_ref().task_id)?;
        Ok(Response::new(status(&task::snapshot(task).await)))
    }

    type StreamStream = OutputStream;

    async fn stream(
        &self,
        request: Request<StreamRequest>,
    ) -> Result<Response<OutputStream>, Status> {
        let caller = caller(&request)?;
        let task = self.registry.find(&caller, &request.get_ref().task_id)?;
        let held = self.hold_stream(&caller)?;
        let only = only_fd(request.get_ref().fd());
        let StreamRequest { tail_lines, no_follow, since_ns, until_ns, .. } = *request.get_ref();
        if let (Some(since), Some(until)) = (since_ns, until_ns)
            && since > until
        {
            let why = format!("Since ({since} ns) is after until ({until} ns): no output is both");
            return Err(RequestError::InvalidArgument(why).into());
        }
        let view = View { only, tail_lines, follow: !no_follow, since_ns, until_ns };
        Ok(Response::new(self.output_stream(task, view, held).await))
    }

    type InteractStream = OutputStream;

    async fn interact(
        &self,
        request: Request<Streaming<InteractRequest>>,
    ) -> Result<Response<OutputStream>, Status> {
        let caller = caller(&request)?;
        let mut requests = request.into_inner();
        let first = requests.message().await?.and_then(|message| message.event);
        let (started, driven, stdin, output) = match first {
            Some(interact_request::Event::Start(start)) => {
                let spec = crate::spec::TaskSpec::try_from(start)?;
                // Before the task exists: a start over the cap on streams changes nothing.
                let held = self.hold_stream(&caller)?;
                let (task, stdin) = self.registry.start_writing_stdin(&caller, spec).await?;
                let output = self.output_stream(Arc::clone(&task), View::default(), held).await;
                (started(&task, None, stdin.is_some()), Driven::Task(task), stdin, output)
            }
            Some(interact_request::Event::Attach(attach)) => {
                let task = self.registry.find(&caller, &attach.task_id)?;
                let held = self.hold_stream(&caller)?;
                let stdin = task.attach(attach.stdin)?;
                // From now on, unless a tail is asked, as docker attach.
                let tail_lines = attach.tail_lines.or(Some(0));
                let view = View { only: only_fd(attach.fd()), tail_lines, ..View::default() };
                let output = self.output_stream(Arc::clone(&task), view, held).await;
                (started(&task, None, stdin.is_some()), Driven::Task(task), stdin, output)
            }
            Some(interact_request::Event::Exec(request)) => {
                // The task first: another's task answers NOT_FOUND whatever the request.
                let task = self.registry.find(&caller, &request.task_id)?;
                let spec = crate::spec::ExecSpec::try_from(request)?;
                let held = self.hold_stream(&caller)?;
                let exec = self.registry.exec(&task, spec).await?;
                let stdin = exec.take_stdin();
                let Some(reader) = exec.output().await else {
                    return Err(RequestError::AlreadyFinished { id: task.id.to_string() }.into());
                };
                let ended = Arc::clone(&exec);
                let end = async move {
                    ended.finished().await;
                    Event::ExecEnded(exec_status(&ended))
                };
                let output = self.stream_then(reader, held, end);
                (started(&task, Some(&exec), stdin.is_some()), Driven::Exec(exec), stdin, output)
            }
            _ => {
                let wrong = "the first message of an Interact call must be start, attach or exec";
                return Err(RequestError::InvalidArgument(wrong.into()).into());
            }
        };
        let started = StreamResponse { event: Some(Event::Started(started)) };
        let (detach, detached) = tokio::sync::oneshot::channel();
        let context = (Arc::clone(&self.registry), caller);
        tokio::spawn(follow_client(requests, context, driven, stdin, detach));
        // Only a detach ends the output early: a client's end of messages does not.
        let output = output.take_until(async {
            if detached.await.is_err() {
                std::future::pending::<()>().await;
            }
        });
        Ok(Response::new(Box::pin(futures_util::stream::once(async { Ok(started) }).chain(output))))
    }

    async fn wait(
        &self,
        request: Request<proto::WaitRequest>,
    ) -> Result<Response<proto::TaskStatus>, Status> {
        let caller = caller(&request)?;
        let task = self.registry.find(&caller, &request.get_ref().task_id)?;
        // Let go when the task ends or the client goes away (the call is dropped).
        let _held = self.hold_stream(&caller)?;
        let progress = task.finished().await;
        Ok(Response::new(status(&Snapshot::as_kept(task, progress))))
    }

    type WatchStream = Pin<Box<dyn Stream<Item = Result<proto::TaskEvent, Status>> + Send>>;

    async fn watch(
        &self,
        request: Request<proto::WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let caller = caller(&request)?;
        let held = self.hold_stream(&caller)?;
        let since = request.get_ref().since_ms.map(|ms| UNIX_EPOCH + Duration::from_millis(ms));
        let (replayed, live) = self.registry.watch(since);
        let visible = move |event: &crate::events::TaskEvent| caller.may_access(&event.owner);
        let replayed: Vec<_> = replayed.into_iter().filter(|event| visible(event)).collect();
        let live = futures_util::stream::unfold((live, held), move |(mut live, held)| {
            let visible = visible.clone();
            async move {
                loop {
                    match live.recv().await {
                        Ok(event) if visible(&event) => {
                            return Some((Ok(event_message(&event)), (live, held)));
                        }
                        Ok(_) => {}
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(missed)) => {
                            let behind = RequestError::ResourceExhausted(format!(
                                "This watcher fell {missed} events behind (the daemon keeps --event-history of them); watch again with --since"
                            ));
                            return Some((Err(behind.into()), (live, held)));
                        }
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
                    }
                }
            }
        });
        // Ends after the error a lagging watcher gets.
        let live = live.scan(false, |ended, item| {
            let was_ended = std::mem::replace(ended, item.is_err());
            std::future::ready((!was_ended).then_some(item))
        });
        let replayed =
            futures_util::stream::iter(replayed.into_iter().map(|event| Ok(event_message(&event))));
        Ok(Response::new(Box::pin(replayed.chain(live))))
    }

    async fn list(&self, request: Request<ListRequest>) -> Result<Response<ListResponse>, Status> {
        let caller = caller(&request)?;
        let snapshots = task::snapshots(self.registry.list(&caller)).await;
        let tasks = snapshots.iter().map(status).collect();
        Ok(Response::new(ListResponse { tasks }))
    }

    async fn remove(
        &self,
        request: Request<RemoveRequest>,
    ) -> Result<Response<RemoveResponse>, Status> {
        let caller = caller(&request)?;
        self.registry.remove(&caller, &request.get_ref().task_id).await?;
        Ok(Response::new(RemoveResponse {}))
    }
}

/// The descriptor whose output a request selects; `None`: both.
/// The first message of an Interact call: the task (and the exec) it drives.
fn started(task: &Task, exec: Option<&Exec>, stdin: bool) -> proto::TaskStarted {
    proto::TaskStarted {
        task_id: task.id.to_string(),
        stdin,
        tty: exec.map_or(task.has_terminal, |exec| exec.has_terminal),
        exec_id: exec.map_or(0, |exec| exec.number),
    }
}

/// An event on the wire.
fn event_message(event: &crate::events::TaskEvent) -> proto::TaskEvent {
    use crate::events::EventKind;
    let mut message = proto::TaskEvent {
        seq: event.seq,
        at_ms: unix_ms(event.at),
        task_id: event.task_id.to_string(),
        owner: event.owner.clone(),
        ..proto::TaskEvent::default()
    };
    let kind = match &event.kind {
        EventKind::Created => proto::TaskEventKind::Created,
        EventKind::Started => proto::TaskEventKind::Started,
        EventKind::Ended(state) => {
            let mut ended =
                proto::TaskStatus { task_id: message.task_id.clone(), ..Default::default() };
            set_state(&mut ended, state);
            message.ended = Some(ended);
            proto::TaskEventKind::Ended
        }
        EventKind::Removed(why) => {
            message.why = (*why).to_owned();
            proto::TaskEventKind::Removed
        }
    };
    message.set_kind(kind);
    message
}

/// An exec's status on the wire.
fn exec_status(exec: &Exec) -> proto::ExecStatus {
    let progress = exec.progress();
    let (state, exit_code, signal) = match progress.ended {
        None => (proto::TaskState::Running, None, None),
        Some(Some(ExitStatus::Exited(code))) => (proto::TaskState::Completed, Some(code), None),
        Some(Some(ExitStatus::Signaled(signal))) => (proto::TaskState::Killed, None, Some(signal)),
        Some(None) => (proto::TaskState::Killed, None, None),
    };
    proto::ExecStatus {
        exec_id: exec.number,
        argv: exec.argv.clone(),
        state: state.into(),
        exit_code,
        signal,
        pid: if progress.ended.is_some() { 0 } else { exec.pid },
        tty: exec.has_terminal,
    }
}

fn only_fd(fd: proto::Fd) -> Option<OutputFd> {
    match fd {
        proto::Fd::Unspecified => None,
        proto::Fd::Stdout => Some(OutputFd::Stdout),
        proto::Fd::Stderr => Some(OutputFd::Stderr),
    }
}

fn output_event(chunk: Chunk) -> StreamResponse {
    let fd = match chunk.fd {
        OutputFd::Stdout => proto::Fd::Stdout,
        OutputFd::Stderr => proto::Fd::Stderr,
    };
    let output = proto::Output { fd: fd.into(), data: chunk.data, at_ns: chunk.at_ns };
    StreamResponse { event: Some(Event::Output(output)) }
}

/// The wire form of a task at some point of its life.
fn status(snapshot: &Snapshot) -> proto::TaskStatus {
    let Snapshot { task, progress, usage } = snapshot;
    let mut status = proto::TaskStatus {
        task_id: task.id.to_string(),
        owner: task.owner.clone(),
        argv: task.argv.clone(),
        image: task.image.clone(),
        seccomp: task.seccomp.clone(),
        tty: task.has_terminal,
        timeout_ms: task
            .deadline
            .map(|deadline| u64::try_from(deadline.as_millis()).unwrap_or(u64::MAX)),
        execs: task.execs().iter().map(|exec| exec_status(exec)).collect(),
        defaulted_limits: [
            (task.defaulted.memory, "memory"),
            (task.defaulted.pids, "pids"),
            (task.defaulted.cpu, "cpu"),
        ]
        .iter()
        .filter(|(defaulted, _)| *defaulted)
        .map(|(_, name)| (*name).to_owned())
        .collect(),
        held: if progress.state.is_final() {
            String::new()
        } else {
            task.output_held().map(held_reason).unwrap_or_default()
        },
        limits: Some(proto::Limits::from(&task.limits)),
        created_at_ms: unix_ms(task.created_at),
        finished_at_ms: progress.finished_at.map_or(0, unix_ms),
        pid: if progress.state.is_final() { 0 } else { task.pid },
        usage: usage.map(proto::Usage::from),
        ..proto::TaskStatus::default()
    };
    set_state(&mut status, &progress.state);
    status
}

/// The fields of a status that tell its state: the state, and the exit code, signal, reason
/// or error that go with it.
fn set_state(status: &mut proto::TaskStatus, state: &TaskState) {
    match state {
        TaskState::Running => status.set_state(proto::TaskState::Running),
        TaskState::Completed { exit_code } => {
            status.set_state(proto::TaskState::Completed);
            status.exit_code = Some(*exit_code);
        }
        TaskState::Killed { reason, signal, exit_code } => {
            status.set_state(proto::TaskState::Killed);
            status.set_reason(match reason {
                KillReason::Signal => proto::KillReason::Signal,
                KillReason::Stopped => proto::KillReason::Stopped,
                KillReason::Shutdown => proto::KillReason::Shutdown,
                KillReason::Signalled => proto::KillReason::Signalled,
                KillReason::TimedOut => proto::KillReason::TimedOut,
                KillReason::OutOfMemory => proto::KillReason::OutOfMemory,
            });
            status.signal = *signal;
            status.exit_code = *exit_code;
        }
        TaskState::Failed { error } => {
            status.set_state(proto::TaskState::Failed);
            status.error = error.clone();
        }
    }
}

/// Why a task's output is held, for people: the spill's error, with what frees room.
fn held_reason(error: String) -> String {
    format!(
        "its output cannot be kept ({error}); it waits until there is room: free some in the state directory, or rm finished tasks if --max-output-bytes is reached"
    )
}

fn unix_ms(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |since| u64::try_from(since.as_millis()).unwrap_or(u64::MAX))
}
