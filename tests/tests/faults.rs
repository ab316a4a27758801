//! Faults and exhaustion: caps on running tasks and request sizes, a client killed in the
//! middle of a stream, a task that leaves a hundred children behind, one that closes its
//! output but keeps running, a daemon shut down under a hundred tasks and fifty streams, and
//! one whose task engine dies.

use std::io::{BufRead, BufReader};
use std::process::Stdio;

use rrocker_proto::v1::{
    KillReason, ListRequest, QueryRequest, RemoveRequest, StopRequest, StreamRequest, TaskState,
    stream_response::Event,
};
use rrocker_tests::{
    Client, Daemon, command, final_status_of, require_root, shell, start, stream_all,
};
use tonic::Code;

async fn state_of(client: &mut Client, id: &str) -> TaskState {
    let query = QueryRequest { task_id: id.to_owned() };
    client.query(query).await.expect("query").into_inner().state()
}

/// The next stdout line numbers a counting task printed, read from an open stream.
async fn next_numbers(
    events: &mut tonic::Streaming<rrocker_proto::v1::StreamResponse>,
) -> Vec<u64> {
    loop {
        let message = events.message().await.expect("message").expect("the task still runs");
        if let Some(Event::Output(output)) = message.event {
            let numbers: Vec<u64> = String::from_utf8_lossy(&output.data)
                .lines()
                .filter_map(|line| line.parse().ok())
                .collect();
            if !numbers.is_empty() {
                return numbers;
            }
        }
    }
}

const COUNTER: &str = "i=0; while :; do i=$((i+1)); echo $i; sleep 0.01; done";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caps_refuse_with_resource_exhausted_and_harm_nothing_running() {
    require_root!();
    let daemon = Daemon::start_with(&["--max-tasks", "3", "--max-tasks-per-user", "2"]);
    let mut one = daemon.client("client1").await;
    let mut two = daemon.client("client2").await;
    let sleeper = || shell("exec sleep 600");
    let a = start(&mut one, sleeper()).await;
    let b = start(&mut one, sleeper()).await;
    let refused = one.start(sleeper()).await.expect_err("client1's cap");
    assert_eq!(refused.code(), Code::ResourceExhausted);
    assert_eq!(
        refused.message(),
        "client1 already runs 2 tasks, the limit per identity (--max-tasks-per-user): wait for one to end or stop one"
    );
    let c = start(&mut two, sleeper()).await;
    let refused = two.start(sleeper()).await.expect_err("the daemon's cap");
    assert_eq!(refused.code(), Code::ResourceExhausted);
    assert!(refused.message().contains("(--max-tasks)"), "{refused:?}");
    // Nothing running was harmed and nothing was created for the refused starts.
    for id in [&a, &b] {
        assert_eq!(state_of(&mut one, id).await, TaskState::Running);
    }
    assert_eq!(state_of(&mut two, &c).await, TaskState::Running);
    assert_eq!(one.list(ListRequest {}).await.expect("list").into_inner().tasks.len(), 2);
    let task_dirs = std::fs::read_dir(daemon.state_dir().join("tasks")).expect("tasks").count();
    assert_eq!(task_dirs, 3);
    // A request over the size cap is refused the same way.
    let huge = "x".repeat(1 << 20);
    let refused = two.start(command(&["/bin/echo", &huge])).await.expect_err("too large");
    assert_eq!(refused.code(), Code::ResourceExhausted);
    // A slot comes back when its task ends.
    one.stop(StopRequest { task_id: a, grace_ms: Some(0), ..Default::default() })
        .await
        .expect("stop");
    start(&mut one, sleeper()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_killed_mid_stream_harms_neither_the_task_nor_other_clients() {
    require_root!();
    let daemon = Daemon::start();
    let mut client = daemon.client("client1").await;
    let id = start(&mut client, shell(COUNTER)).await;
    let mut other = client
        .stream(StreamRequest { task_id: id.clone(), ..Default::default() })
        .await
        .expect("stream")
        .into_inner();
    let mut cli = daemon
        .cli("client1")
        .args(["stream", &id])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("rrocker-cli stream");
    let mut first = String::new();
    BufReader::new(cli.stdout.take().expect("stdout")).read_line(&mut first).expect("a line");
    assert_eq!(first, "1\n");
    rrocker_tests::signal(cli.id(), libc::SIGKILL);
    cli.wait().expect("reap the CLI");
    // The task runs on, the other client keeps following it, and a new one replays it all.
    let seen = next_numbers(&mut other).await;
    let later = loop {
        let numbers = next_numbers(&mut other).await;
        if numbers.last() > seen.last() {
            break numbers;
        }
    };
    assert!(later.windows(2).all(|pair| pair[1] == pair[0] + 1), "{later:?}");
    assert_eq!(state_of(&mut client, &id).await, TaskState::Running);
    let mut replay = client
        .stream(StreamRequest { task_id: id.clone(), ..Default::default() })
        .await
        .expect("s");
    let replayed = next_numbers(replay.get_mut()).await;
    assert_eq!(replayed.first(), Some(&1), "a new client starts at the first byte");
    client
        .stop(StopRequest { task_id: id, grace_ms: Some(0), ..Default::default() })
        .await
        .expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_that_leaves_a_hundred_children_behind_leaves_nothing() {
    require_root!();
    let daemon = Daemon::start();
    let mut client = daemon.client("client1").await;
    let script = "readlink /proc/self/ns/pid; for i in $(seq 100); do sleep 600 & done; exit 0";
    let id = start(&mut client, shell(script)).await;
    let streamed = stream_all(&mut client, &id).await;
    let status = streamed.status.expect("status");
    assert_eq!((status.state(), status.exit_code), (TaskState::Completed, Some(0)));
    let namespace = String::from_utf8(streamed.stdout).expect("utf8").trim().to_owned();
    assert!(namespace.starts_with("pid:["), "{namespace}");
    client.remove(RemoveRequest { task_id: id }).await.expect("rm");
    let left: Vec<_> = std::fs::read_dir("/proc")
        .expect("proc")
        .filter_map(|entry| std::fs::read_link(entry.ok()?.path().join("ns/pid")).ok())
        .filter(|link| link.to_string_lossy() == namespace)
        .collect();
    assert!(left.is_empty(), "{} processes of the task's PID namespace are left", left.len());
    assert!(daemon.task_cgroups().is_empty(), "its cgroups are gone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_that_closes_its_output_keeps_running_until_stopped() {
    require_root!();
    let daemon = Daemon::start();
    let mut client = daemon.client("client1").await;
    let id = start(&mut client, shell("echo ready; exec >&- 2>&-; exec sleep 600")).await;
    let events = rrocker_tests::wait_for_output(&mut client, &id, "ready").await;
    assert_eq!(state_of(&mut client, &id).await, TaskState::Running);
    let stopped = client
        .stop(StopRequest { task_id: id.clone(), grace_ms: Some(10_000), ..Default::default() })
        .await
        .expect("stop")
        .into_inner()
        .status
        .expect("status");
    assert_eq!((stopped.state(), stopped.signal), (TaskState::Killed, Some(libc::SIGTERM)));
    assert_eq!(final_status_of(events).await.state(), TaskState::Killed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_a_hundred_tasks_and_fifty_streams_leaves_nothing() {
    require_root!();
    let mut daemon = Daemon::start_with(&["--stop-grace-ms", "500"]);
    let mut client = daemon.client("client1").await;
    let mut pids = Vec::new();
    let mut streams = Vec::new();
    for index in 0..100 {
        // Every other task ignores SIGTERM and is killed after the grace period.
        let script = if index % 2 == 0 {
            "exec sleep 600"
        } else {
            "trap '' TERM; echo up; while :; do sleep 1; done"
        };
        let id = start(&mut client, shell(script)).await;
        pids.push(
            client.query(QueryRequest { task_id: id.clone() }).await.expect("q").into_inner().pid,
        );
        if index % 2 == 1 {
            // Each stream on a connection of its own.
            let mut follower = daemon.client("client1").await;
            streams.push(rrocker_tests::wait_for_output(&mut follower, &id, "up").await);
        }
    }
    // Starts keep coming, on a connection of their own, while the daemon shuts down.
    let mut starter = daemon.client("client1").await;
    let (first_started, started) = tokio::sync::oneshot::channel();
    let starts = tokio::spawn(async move {
        let mut first_started = Some(first_started);
        let mut count = 0;
        while starter.start(shell("exec sleep 600")).await.is_ok() {
            count += 1;
            first_started.take().map(|sender| sender.send(()));
        }
        count
    });
    started.await.expect("the starter runs");
    let parent = daemon.cgroup_parent();
    let status = daemon.terminate();
    assert!(status.success(), "rrockerd exits cleanly: {status:?}\n{}", daemon.log());
    assert!(starts.await.expect("starter") >= 1);
    for events in streams {
        let status = final_status_of(events).await;
        assert_eq!((status.state(), status.reason()), (TaskState::Killed, KillReason::Shutdown));
    }
    for pid in pids {
        assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists(), "task init {pid} is gone");
    }
    assert!(
        rrocker_tests::cgroup_roots().iter().all(|root| !root.join(&parent).exists()),
        "the parent cgroup {parent} is removed"
    );
    assert!(!daemon.state_dir().exists(), "the state dir the daemon made is removed");
}

/// A dead engine is loud: health turns NOT_SERVING, the log says why and the daemon exits
/// non-zero (so that its manager starts it again), rather than serve while every start fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_engine_turns_health_not_serving_and_stops_the_daemon_non_zero() {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    if !cfg!(debug_assertions) {
        assert!(std::env::var("CI").is_err(), "CI builds the daemon with debug assertions");
        eprintln!("SKIPPED: the engine fault is compiled into debug builds only");
        return;
    }
    let mut daemon = Daemon::start_with_env(&[("RROCKERD_TEST_FAULT", "engine-panic")], &[]);
    let mut health = HealthClient::new(daemon.channel("client1").await);
    let request = HealthCheckRequest { service: "rrocker.v1.TaskService".into() };
    let mut watch = health.watch(request).await.expect("watch").into_inner();
    let first = watch.message().await.expect("status").expect("a first status");
    assert_eq!(first.status(), ServingStatus::Serving);

    // The fault: the engine thread panics at the first spawn.
    let mut client = daemon.client("client1").await;
    let refused = client.start(shell("true")).await.expect_err("no engine to start it");
    assert_eq!(refused.code(), Code::Internal, "{refused:?}");
    let next = watch.message().await.expect("status").expect("a status before the end");
    assert_eq!(next.status(), ServingStatus::NotServing);
    drop((watch, health, client));
    let exit = daemon.wait();
    assert_eq!(exit.code(), Some(1), "{exit:?}");
    let log = daemon.log();
    assert!(log.contains("the task engine died"), "{log}");
    assert!(log.contains("panicked: the test fault panic_at_spawn"), "{log}");
}

/// A second daemon given a state directory in use (with a parent cgroup of its own) refuses
/// to start and cleans nothing up there: the first one's task keeps its directory and its
/// spilled output.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_daemon_given_a_state_dir_in_use_refuses_and_touches_nothing() {
    require_root!();
    let first = Daemon::start_with(&["--output-window-bytes", "65536"]);
    let mut client = first.client("client1").await;
    // Past the window, so that some of it is in a spill file.
    let id = start(&mut client, shell("head -c 1M /dev/zero; echo up; exec sleep 300")).await;
    drop(rrocker_tests::wait_for_output(&mut client, &id, "up").await);
    let tasks: Vec<_> = std::fs::read_dir(first.state_dir().join("tasks"))
        .expect("tasks dir")
        .map(|entry| entry.expect("entry").file_name())
        .collect();
    assert_eq!(tasks.len(), 1, "{tasks:?}");
    let parent = format!("rrocker-test-second-{}", std::process::id());
    let last = rrocker_tests::refused_daemon(&first.pki_dir(), &first.state_dir(), &parent);
    assert!(last.contains("is in use by another rrockerd"), "{last}");
    assert!(last.contains("--state-dir"), "{last}");
    for root in rrocker_tests::cgroup_roots() {
        assert!(!root.join(&parent).exists(), "{} is left", root.join(&parent).display());
    }
    assert!(first.state_dir().join("tasks").join(&tasks[0]).is_dir(), "the task's directory");
    assert_eq!(state_of(&mut client, &id).await, TaskState::Running);
    client.stop(StopRequest { task_id: id.clone(), ..StopRequest::default() }).await.expect("stop");
    let streamed = stream_all(&mut client, &id).await;
    assert_eq!(streamed.stdout.len(), (1 << 20) + 3, "the whole output, from the spill");
}
