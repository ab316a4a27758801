//! What tests do with tasks: requests, starting and stopping, streaming and waiting for
//! output or a final status, and waiting for what the daemon gives no event for.

use rrocker_proto::v1::{StartRequest, StreamRequest, TaskStatus, stream_response::Event};

use crate::Client;

/// Waits until `done` holds, asking every 10 ms, for at most a minute; for conditions that
/// the daemon gives no event for (its log file, its fds). Panics naming `what` it waited for.
pub async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !done() {
        assert!(std::time::Instant::now() < deadline, "waited a minute for {what}");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// A `/proc/PID/status` memory figure in KiB (`VmRSS`, `VmHWM`...), if the process and the
/// field exist.
pub fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let value = status.lines().find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))?;
    value.split_whitespace().next()?.parse().ok()
}

/// CPU time (user + system, all threads) process `pid` has used so far, in seconds; `None`
/// for this process. Read from /proc/PID/stat.
pub fn cpu_seconds(pid: Option<u32>) -> f64 {
    let path = pid.map_or_else(|| "/proc/self/stat".to_owned(), |pid| format!("/proc/{pid}/stat"));
    stat_seconds(&path, [11, 12])
}

/// CPU time (user + system) of this process's children that have been waited for, in
/// seconds (`cutime` and `cstime` of /proc/self/stat).
pub fn children_cpu_seconds() -> f64 {
    stat_seconds("/proc/self/stat", [13, 14])
}

/// The sum of the clock-tick `fields` (counted after the command name) of the stat file at
/// `path`, in seconds; 0 if it cannot be read.
fn stat_seconds(path: &str, fields: [usize; 2]) -> f64 {
    let Ok(stat) = std::fs::read_to_string(path) else { return 0.0 };
    let Some(end_of_name) = stat.rfind(')') else { return 0.0 };
    let values: Vec<&str> = stat[end_of_name + 2..].split_whitespace().collect();
    let ticks = |index: usize| values.get(index).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
    let per_second = rustix::param::clock_ticks_per_second() as f64;
    fields.into_iter().map(ticks).sum::<u64>() as f64 / per_second
}

/// Waits until process `pid` is idle: its CPU time stands still over five looks 20 ms apart
/// (for what no event tells, such as every stalled stream having buffered all it will).
pub async fn until_idle(pid: u32) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let (mut last, mut still) = (cpu_seconds(Some(pid)), 0);
    while still < 5 {
        assert!(std::time::Instant::now() < deadline, "process {pid} never went idle");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        let now = cpu_seconds(Some(pid));
        still = if now == last { still + 1 } else { 0 };
        last = now;
    }
}

/// Sends `signal` to a process this test started.
pub fn signal(pid: u32, signal: i32) {
    let pid =
        i32::try_from(pid).ok().and_then(rustix::process::Pid::from_raw).expect("a valid pid");
    let signal = rustix::process::Signal::from_named_raw(signal).expect("a named signal");
    let _ = rustix::process::kill_process(pid, signal);
}

/// A start request for `argv`.
pub fn command(argv: &[&str]) -> StartRequest {
    StartRequest {
        argv: argv.iter().map(|a| a.as_bytes().to_vec()).collect(),
        ..Default::default()
    }
}

/// A start request for `sh -c script`.
pub fn shell(script: &str) -> StartRequest {
    command(&["/bin/sh", "-c", script])
}

/// Starts a task and returns its id.
pub async fn start(client: &mut Client, request: StartRequest) -> String {
    client.start(request).await.expect("start").into_inner().task_id
}

/// Stops task `id` at once (SIGTERM, then SIGKILL with no grace period).
pub async fn stop_now(client: &mut Client, id: &str) -> rrocker_proto::v1::StopResponse {
    let request = rrocker_proto::v1::StopRequest {
        task_id: id.to_owned(),
        grace_ms: Some(0),
        ..Default::default()
    };
    client.stop(request).await.expect("stop").into_inner()
}

/// Starts a task that runs until it is stopped, and returns its id once its command runs.
pub async fn start_running(client: &mut Client) -> String {
    let id = start(client, shell("echo up; exec sleep 600")).await;
    drop(wait_for_output(client, &id, "up").await);
    id
}

/// Everything a stream delivered: stdout bytes, stderr bytes, and the final status.
#[derive(Debug, Default)]
pub struct Streamed {
    /// The task's stdout.
    pub stdout: Vec<u8>,
    /// The task's stderr.
    pub stderr: Vec<u8>,
    /// The final status.
    pub status: Option<TaskStatus>,
}

/// Streams a task to its end.
pub async fn stream_all(client: &mut Client, id: &str) -> Streamed {
    stream_view(client, StreamRequest { task_id: id.to_owned(), ..Default::default() }).await
}

/// Streams what `request` asks for (a descriptor, a tail, no following) to its last message.
pub async fn stream_view(client: &mut Client, request: StreamRequest) -> Streamed {
    let mut events = client.stream(request).await.expect("stream").into_inner();
    let mut streamed = Streamed::default();
    while let Some(message) = events.message().await.expect("stream message") {
        match message.event.expect("event") {
            Event::Output(output) if output.fd() == rrocker_proto::v1::Fd::Stderr => {
                streamed.stderr.extend_from_slice(&output.data)
            }
            Event::Output(output) => streamed.stdout.extend_from_slice(&output.data),
            Event::Status(status) => {
                assert!(streamed.status.is_none(), "one final status");
                streamed.status = Some(status);
            }
            Event::Started(started) => panic!("a Stream says nothing started: {started:?}"),
            Event::ExecEnded(ended) => panic!("a Stream runs no exec: {ended:?}"),
        }
    }
    assert!(streamed.status.is_some(), "the stream ends with the final status");
    streamed
}

/// Opens a stream of task `id`'s whole output, from its first byte, following it.
pub async fn open_stream(
    client: &mut Client,
    id: &str,
) -> tonic::Streaming<rrocker_proto::v1::StreamResponse> {
    let request = StreamRequest { task_id: id.to_owned(), ..Default::default() };
    client.stream(request).await.expect("stream").into_inner()
}

/// Streams a task until its stdout contains `marker` (the task says it is ready), then
/// returns the open stream so the caller can keep reading.
pub async fn wait_for_output(
    client: &mut Client,
    id: &str,
    marker: &str,
) -> tonic::Streaming<rrocker_proto::v1::StreamResponse> {
    let mut events = open_stream(client, id).await;
    let mut seen = Vec::new();
    while let Some(message) = events.message().await.expect("message") {
        if let Some(Event::Output(output)) = message.event {
            seen.extend_from_slice(&output.data);
            if String::from_utf8_lossy(&seen).contains(marker) {
                return events;
            }
        }
    }
    panic!("the task ended without printing {marker:?}: {}", String::from_utf8_lossy(&seen));
}

/// Reads what is left of a stream (a broken connection ends it too) and returns the final
/// status it ended with; panics if it ended without one.
pub async fn final_status_of(
    mut events: tonic::Streaming<rrocker_proto::v1::StreamResponse>,
) -> TaskStatus {
    let mut last = None;
    while let Ok(Some(message)) = events.message().await {
        last = message.event;
    }
    match last {
        Some(Event::Status(status)) => status,
        other => panic!("expected a final status, got {other:?}"),
    }
}

/// Opens an Interact call whose first message is `first`: its responses, and the sender of
/// its further messages (the call's side stays open while the sender lives).
pub async fn interact(
    client: &mut Client,
    first: rrocker_proto::v1::interact_request::Event,
) -> Result<
    (
        tonic::Streaming<rrocker_proto::v1::StreamResponse>,
        tokio::sync::mpsc::Sender<rrocker_proto::v1::InteractRequest>,
    ),
    tonic::Status,
> {
    use rrocker_proto::v1::InteractRequest;
    let (requests, mut queued) = tokio::sync::mpsc::channel(4);
    requests.try_send(InteractRequest { event: Some(first) }).expect("an empty queue");
    let outgoing = futures_util::stream::poll_fn(move |cx| queued.poll_recv(cx));
    let responses = client.interact(outgoing).await?.into_inner();
    Ok((responses, requests))
}

/// Hex sha256 of some bytes.
pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(data).iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Runs a shell script as a task and returns its stdout (asserting it completed with 0).
pub async fn run(client: &mut Client, script: &str) -> String {
    let id = start(client, shell(script)).await;
    let streamed = stream_all(client, &id).await;
    let status = streamed.status.expect("status");
    assert_eq!(
        status.exit_code,
        Some(0),
        "{script}: {}",
        String::from_utf8_lossy(&streamed.stderr)
    );
    String::from_utf8(streamed.stdout).expect("utf8")
}
