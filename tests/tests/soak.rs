//! A soak: random starts, stops (waiting or not), streams (whole, or a descriptor's last
//! lines so far), clients that disconnect mid-stream, refused starts and OOM kills across
//! three identities (seeded, so a failure replays), then the daemon's
//! fds, threads and RSS are back at their baseline and nothing of the tasks remains.
//!
//! Quick by default (80 rounds); `RROCKER_SOAK_SECS=3600` runs it for an hour, and
//! `RROCKER_SOAK_SEED=N` picks another sequence.

use std::time::{Duration, Instant};

use rrocker_proto::v1::{
    Fd, KillReason, Limits, RemoveRequest, StartRequest, StopRequest, StreamRequest, TaskState,
};
use rrocker_tests::{Client, Daemon, command, require_root, shell, start, status_kib, stream_all};
use tonic::Code;

const IDENTITIES: [&str; 3] = ["client1", "client2", "admin1"];

/// xorshift64: a small seeded sequence, so that a failing run can be replayed.
struct Random(u64);

impl Random {
    fn below(&mut self, bound: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % bound
    }
}

/// What the daemon holds: open fds (but its ready network namespaces), threads, RSS (KiB).
async fn holdings(daemon: &Daemon) -> (usize, usize, u64) {
    let pid = daemon.pid();
    let threads = std::fs::read_dir(format!("/proc/{pid}/task")).expect("proc").count();
    let rss = status_kib(pid, "VmRSS").expect("VmRSS");
    (daemon.open_fds_at_rest().await, threads, rss)
}

async fn remove(client: &mut Client, id: String) {
    client.remove(RemoveRequest { task_id: id }).await.expect("rm");
}

/// Kinds of rounds.
const KINDS: u64 = 7;

/// One operation of `kind` by `clients[who]` (`grace` picks a stop's grace period).
async fn round(daemon: &Daemon, clients: &mut [Client], who: usize, kind: u64, grace: u64) {
    let client = &mut clients[who];
    match kind {
        // A short task, streamed to its end.
        0 => {
            let id = start(client, shell("echo hello; echo oops >&2")).await;
            let streamed = stream_all(client, &id).await;
            assert_eq!(
                (streamed.stdout, streamed.stderr),
                (b"hello\n".to_vec(), b"oops\n".to_vec())
            );
            remove(client, id).await;
        }
        // A long task, stopped with or without a grace period.
        1 => {
            let id = start(client, shell("exec sleep 600")).await;
            let grace_ms = Some(grace * 200);
            client
                .stop(StopRequest { task_id: id.clone(), grace_ms, ..Default::default() })
                .await
                .expect("stop");
            remove(client, id).await;
        }
        // A client that goes away in the middle of a stream.
        2 => {
            let id = start(client, shell("head -c 4M /dev/zero | tr '\\0' x")).await;
            let mut leaving = daemon.client(IDENTITIES[who]).await;
            let request = StreamRequest { task_id: id.clone(), ..Default::default() };
            let mut events = leaving.stream(request).await.expect("stream").into_inner();
            events.message().await.expect("message").expect("some output");
            drop((events, leaving));
            assert_eq!(stream_all(client, &id).await.stdout.len(), 4 << 20);
            remove(client, id).await;
        }
        // A task killed by the OOM killer.
        3 => {
            let limits = Limits { memory_max_bytes: 16 << 20, ..Limits::default() };
            let script = "a=$(head -c 64M /dev/zero | tr '\\0' x); echo survived";
            let request = StartRequest { limits: Some(limits), ..shell(script) };
            let id = start(client, request).await;
            let status = stream_all(client, &id).await.status.expect("status");
            assert_eq!(
                (status.state(), status.reason()),
                (TaskState::Killed, KillReason::OutOfMemory)
            );
            remove(client, id).await;
        }
        // An admin stops someone else's task.
        4 => {
            let id = start(&mut clients[0], shell("exec sleep 600")).await;
            let stop = StopRequest { task_id: id.clone(), grace_ms: Some(0), ..Default::default() };
            clients[2].stop(stop).await.expect("the admin stops it");
            remove(&mut clients[0], id).await;
        }
        // Views of a running task's output (a descriptor's last lines, what exists so far),
        // then a stop that does not wait.
        5 => {
            let script = "for i in $(seq 1 200); do echo out$i; echo err$i >&2; done; echo ready; exec sleep 600";
            let id = start(client, shell(script)).await;
            drop(rrocker_tests::wait_for_output(client, &id, "ready").await);
            let view = |fd: Fd, lines| StreamRequest {
                task_id: id.clone(),
                fd: fd.into(),
                tail_lines: Some(lines),
                no_follow: true,
                ..StreamRequest::default()
            };
            let errors = rrocker_tests::stream_view(client, view(Fd::Stderr, 2)).await;
            assert_eq!((errors.stdout, errors.stderr), (Vec::new(), b"err199\nerr200\n".to_vec()));
            assert_eq!(errors.status.expect("status").state(), TaskState::Running);
            let last = rrocker_tests::stream_view(client, view(Fd::Stdout, 1)).await;
            assert_eq!(last.stdout, b"ready\n");
            let stop =
                StopRequest { task_id: id.clone(), grace_ms: Some(grace * 200), no_wait: true };
            client.stop(stop).await.expect("stop");
            let ended = stream_all(client, &id).await.status.expect("final status");
            assert_eq!(ended.state(), TaskState::Killed);
            remove(client, id).await;
        }
        // A start that is refused.
        _ => {
            let status = client.start(command(&["/bin/nope"])).await.expect_err("missing");
            assert_eq!(status.code(), Code::InvalidArgument);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_soak_leaves_the_daemon_as_it_found_it() {
    require_root!();
    let daemon = Daemon::start();
    let mut clients = Vec::new();
    for identity in IDENTITIES {
        clients.push(daemon.client(identity).await);
    }
    let seed = std::env::var("RROCKER_SOAK_SEED").ok().and_then(|seed| seed.parse().ok());
    let mut random = Random(seed.unwrap_or(0x5eed_5a4b).max(1));
    // Warm up: every kind of round once, so lazily made resources are in the baseline.
    for kind in 0..KINDS {
        round(&daemon, &mut clients, 0, kind, 0).await;
    }
    let before = holdings(&daemon).await;
    let mounts_before = std::fs::read_to_string(format!("/proc/{}/mountinfo", daemon.pid()));
    let secs = std::env::var("RROCKER_SOAK_SECS").ok().and_then(|secs| secs.parse().ok());
    let deadline = secs.map(|secs| Instant::now() + Duration::from_secs(secs));
    let mut rounds = 0u64;
    while deadline.map_or(rounds < 80, |deadline| Instant::now() < deadline) {
        let who = usize::try_from(random.below(3)).expect("small");
        let (kind, grace) = (random.below(KINDS), random.below(2));
        round(&daemon, &mut clients, who, kind, grace).await;
        rounds += 1;
    }
    let after = holdings(&daemon).await;
    eprintln!("soak: {rounds} rounds; fds, threads, RSS KiB before {before:?}, after {after:?}");
    assert_eq!(after.0, before.0, "daemon fds");
    // Idle blocking-pool threads linger for 10 s; the engine and runtime threads are fixed.
    assert!(after.1 <= before.1 + 4, "daemon threads: {before:?} -> {after:?}");
    assert!(after.2 <= before.2 + 16 * 1024, "daemon RSS: {before:?} -> {after:?}");
    let mounts_after = std::fs::read_to_string(format!("/proc/{}/mountinfo", daemon.pid()));
    assert_eq!(mounts_after.ok(), mounts_before.ok(), "daemon mounts");
    assert!(daemon.task_cgroups().is_empty(), "task cgroups");
    let task_dirs = std::fs::read_dir(daemon.state_dir().join("tasks")).expect("tasks").count();
    assert_eq!(task_dirs, 0, "task directories");
}
