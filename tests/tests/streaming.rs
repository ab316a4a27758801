//! Output streaming: replay from byte 0, many identical subscribers, byte-exact binary data
//! with a long line, stdout/stderr separation, a stalled subscriber that holds up nobody, and
//! byte-exactness through the spill file: a reader slower than its task, and one that joins a
//! running task after its first output left memory.

use rrocker_proto::v1::{Fd, StopRequest, StreamRequest, TaskState, stream_response::Event};
use rrocker_tests::{Client, Daemon, open_stream, sha256_hex, shell, start, stream_all};

const MIB: usize = 1024 * 1024;

/// Reads a stream until at least `bytes` of stdout arrived; returns them and the open stream.
async fn read_at_least(
    client: &mut Client,
    id: &str,
    bytes: usize,
) -> (Vec<u8>, tonic::Streaming<rrocker_proto::v1::StreamResponse>) {
    let mut events = open_stream(client, id).await;
    let mut stdout = Vec::new();
    while stdout.len() < bytes {
        match events.message().await.expect("message").expect("more output").event {
            Some(Event::Output(output)) => stdout.extend_from_slice(&output.data),
            other => panic!("unexpected event {other:?}"),
        }
    }
    (stdout, events)
}

/// Reads one descriptor's output of a task until `done` holds for what arrived; returns it
/// and the open stream.
async fn read_fd_until(
    client: &mut Client,
    id: &str,
    fd: Fd,
    done: impl Fn(&[u8]) -> bool,
) -> (Vec<u8>, tonic::Streaming<rrocker_proto::v1::StreamResponse>) {
    let request = StreamRequest { task_id: id.to_owned(), fd: fd.into(), ..Default::default() };
    let mut events = client.stream(request).await.expect("stream").into_inner();
    let mut got = Vec::new();
    while !done(&got) {
        match events.message().await.expect("message").expect("more output").event {
            Some(Event::Output(output)) => got.extend_from_slice(&output.data),
            other => panic!("unexpected event {other:?}"),
        }
    }
    (got, events)
}

/// Drains an open stream: the rest of stdout, and the final state.
async fn drain(
    mut events: tonic::Streaming<rrocker_proto::v1::StreamResponse>,
    stdout: &mut Vec<u8>,
) -> TaskState {
    while let Some(message) = events.message().await.expect("message") {
        match message.event.expect("event") {
            Event::Output(output) if output.fd() == Fd::Stdout => {
                stdout.extend_from_slice(&output.data)
            }
            Event::Output(_) => {}
            Event::Status(status) => return status.state(),
            other @ (Event::Started(_) | Event::ExecEnded(_)) => {
                panic!("a Stream sends output and a status only: {other:?}")
            }
        }
    }
    panic!("no final status");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_subscriber_replays_from_the_first_byte() {
    let daemon = Daemon::start();
    let mut client = daemon.client("client1").await;
    // 1 MiB of data, then wait (until stopped) so the late subscriber joins mid-task.
    let script =
        "trap 'echo tail; exit 0' TERM; head -c 1048576 /dev/urandom; while :; do sleep 0.05; done";
    let id = start(&mut client, shell(script)).await;
    let (mut early, early_events) = read_at_least(&mut client, &id, MIB).await;
    let (mut late, late_events) = read_at_least(&mut client, &id, MIB).await;
    assert_eq!(late, early, "the late subscriber got the same first MiB");
    client
        .stop(StopRequest { task_id: id.clone(), grace_ms: Some(60_000), ..Default::default() })
        .await
        .expect("stop");
    drain(early_events, &mut early).await;
    drain(late_events, &mut late).await;
    assert_eq!(early.len(), MIB + 5);
    assert!(early.ends_with(b"tail\n"));
    assert_eq!(late, early);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_concurrent_subscribers_get_identical_bytes() {
    let daemon = Daemon::start();
    let mut client = daemon.client("client1").await;
    let id = start(
        &mut client,
        shell("for i in $(seq 1 2000); do echo line $i; head -c 512 /dev/urandom; done"),
    )
    .await;
    let subscribers = (0..8).map(|_| {
        let mut client = client.clone();
        let id = id.clone();
        tokio::spawn(async move { stream_all(&mut client, &id).await })
    });
    let results = futures_util::future::join_all(subscribers).await;
    let first = results[0].as_ref().expect("join");
    assert!(first.stdout.len() > 2000 * 512);
    for result in &results {
        let streamed = result.as_ref().expect("join");
        assert_eq!(sha256_hex(&streamed.stdout), sha256_hex(&first.stdout));
        assert_eq!(streamed.status, first.status);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_mib_of_binary_with_a_five_mib_line_arrive_byte_exact() {
    let daemon = Daemon::start();
    let mut client = daemon.client("client1").await;
    // A 5 MiB line without a newline, then 59 MiB of random bytes (invalid UTF-8 included),
    // written from a file whose sha256 goes to stderr.
    let script = "f=$(mktemp) && { head -c 5242880 /dev/zero | tr '\\0' x; head -c 61865984 /dev/urandom; } > \"$f\" \
                  && sha256sum \"$f\" >&2 && cat \"$f\"; rc=$?; rm -f \"$f\"; exit $rc";
    let id = start(&mut client, shell(script)).await;
    let streamed = stream_all(&mut client, &id).await;
    assert_eq!(streamed.status.as_ref().map(|s| s.exit_code), Some(Some(0)), "{streamed:?}");
    assert_eq!(streamed.stdout.len(), 64 * MIB);
    assert!(streamed.stdout[..5 * MIB].iter().all(|&byte| byte == b'x'));
    assert!(std::str::from_utf8(&streamed.stdout).is_err(), "contains invalid UTF-8");
    let expected = String::from_utf8_lossy(&streamed.stderr);
    let expected = expected.split_whitespace().next().expect("sha256sum output");
    assert_eq!(sha256_hex(&streamed.stdout), expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdout_and_stderr_arrive_on_their_own_streams_in_order() {
    let daemon = Daemon::start();
    let mut client = daemon.client("client1").await;
    let id = start(
        &mut client,
        shell("echo out1; echo err1 >&2; echo out2; echo err2 >&2; printf 'no newline'"),
    )
    .await;
    let streamed = stream_all(&mut client, &id).await;
    assert_eq!(streamed.stdout, b"out1\nout2\nno newline");
    assert_eq!(streamed.stderr, b"err1\nerr2\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_subscriber_holds_up_neither_the_task_nor_other_subscribers() {
    let daemon = Daemon::start();
    let mut client = daemon.client("client1").await;
    let id = start(&mut client, shell("head -c 67108864 /dev/urandom")).await;
    // This subscriber reads one message, then stops reading while keeping its stream open.
    let (mut stalled, stalled_events) = read_at_least(&mut client, &id, 1).await;
    // The task still runs to its end and another subscriber gets everything.
    let other = stream_all(&mut client, &id).await;
    assert_eq!(other.status.as_ref().map(|s| s.state()), Some(TaskState::Completed));
    assert_eq!(other.stdout.len(), 64 * MIB);
    // The stalled subscriber lost nothing meanwhile.
    assert_eq!(drain(stalled_events, &mut stalled).await, TaskState::Completed);
    assert_eq!(sha256_hex(&stalled), sha256_hex(&other.stdout));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_printing_512_mib_unwatched_keeps_the_daemon_small_and_replays_exactly() {
    // A 4 MiB window per task (the default): the rest goes to the task's spill file.
    let daemon = Daemon::start_with(&["--output-window-bytes", "4194304"]);
    let mut client = daemon.client("client1").await;
    let line = "the quick brown fox jumps over the lazy dog 0123456789\n";
    let total = 512 * MIB;
    let id =
        start(&mut client, shell(&format!("yes '{}' | head -c {total}", line.trim_end()))).await;
    // Nobody streams until the task has ended: wait for its end with Query's final status.
    let status = loop {
        let status = client.query(rrocker_proto::v1::QueryRequest { task_id: id.clone() }).await;
        let status = status.expect("query").into_inner();
        if status.state() != TaskState::Running {
            break status;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(status.exit_code, Some(0));
    // VmHWM: the peak the kernel tracked, not a sample.
    let peak = rrocker_tests::status_kib(daemon.pid(), "VmHWM").expect("VmHWM");
    assert!(peak < 96 * 1024, "daemon peak RSS {peak} KiB for 512 MiB of output");
    let streamed = stream_all(&mut client, &id).await;
    assert_eq!(streamed.stdout.len(), total);
    let mut expected = line.repeat(total / line.len() + 1).into_bytes();
    expected.truncate(total);
    assert_eq!(sha256_hex(&streamed.stdout), sha256_hex(&expected));
}

/// The digest a task printed first on its stderr (`sha256sum` output).
fn digest_in(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    text.split_whitespace().next().expect("sha256sum output").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_slower_than_its_task_gets_256_mib_byte_exact_from_the_spill() {
    let daemon = Daemon::start();
    let mut client = daemon.client("client1").await;
    let script = "f=$(mktemp) && head -c 268435456 /dev/urandom > \"$f\" && sha256sum \"$f\" >&2 \
                  && cat \"$f\"; rc=$?; rm -f \"$f\"; exit $rc";
    let id = start(&mut client, shell(script)).await;
    let mut events = open_stream(&mut client, &id).await;
    // A throttled reader: it pauses every 64 messages, so the task (which is not held up by
    // it) runs ahead and most of what this reader gets comes back from the spill file.
    let (mut stdout, mut stderr, mut messages) = (Vec::new(), Vec::new(), 0u64);
    let state = loop {
        let message = events.message().await.expect("message").expect("a final status");
        messages += 1;
        if messages % 64 == 0 {
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
        match message.event.expect("event") {
            Event::Output(output) if output.fd() == Fd::Stdout => stdout.extend(&output.data),
            Event::Output(output) => stderr.extend(&output.data),
            Event::Status(status) => break status.state(),
            other @ (Event::Started(_) | Event::ExecEnded(_)) => {
                panic!("a Stream sends output and a status only: {other:?}")
            }
        }
    };
    assert_eq!(state, TaskState::Completed);
    assert_eq!(stdout.len(), 256 * MIB);
    assert_eq!(sha256_hex(&stdout), digest_in(&stderr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_joining_a_running_task_mid_spill_gets_every_byte_from_the_first() {
    let daemon = Daemon::start();
    let mut client = daemon.client("client1").await;
    // 32 MiB (far past the 4 MiB window: spilled), a marker on stderr, then the task waits;
    // stopped (SIGTERM), it writes 8 MiB more and exits 0. The digest of all 40 MiB comes
    // first on stderr.
    let script = "a=$(mktemp); b=$(mktemp); head -c 33554432 /dev/urandom > \"$a\"; \
                  head -c 8388608 /dev/urandom > \"$b\"; cat \"$a\" \"$b\" | sha256sum >&2; \
                  trap 'cat \"$b\"; exit 0' TERM; cat \"$a\"; echo spilled >&2; \
                  while :; do sleep 60 & wait $!; done";
    let id = start(&mut client, shell(script)).await;
    let (stderr, _watcher) =
        read_fd_until(&mut client, &id, Fd::Stderr, |got| got.ends_with(b"spilled\n")).await;
    // Joins now: the task runs, its first 32 MiB have left memory for the spill file.
    let (mut joined, events) =
        read_fd_until(&mut client, &id, Fd::Stdout, |got| got.len() >= 32 * MIB).await;
    client
        .stop(StopRequest { task_id: id.clone(), grace_ms: Some(60_000), ..Default::default() })
        .await
        .expect("stop");
    // Ended by the stop (Killed, reason stopped, though its trap exits 0): what counts here
    // is that every byte arrived.
    drain(events, &mut joined).await;
    assert_eq!(joined.len(), 40 * MIB);
    assert_eq!(sha256_hex(&joined), digest_in(&stderr));
}
