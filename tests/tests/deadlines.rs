//! Deadlines and waiting: a task given a timeout (or capped by --max-task-duration) is
//! stopped as Stop does once it passes and ends Killed, reason timed out; a task that
//! handles SIGTERM then exits cleanly; a longer timeout than the cap is refused. `wait`
//! returns each task's code once it has ended, at once for an ended one, and another
//! client's task is NOT_FOUND as everywhere.

use rrocker_proto::v1::{KillReason, QueryRequest, StartRequest, TaskState, WaitRequest};
use rrocker_tests::{Daemon, shell, start, stream_all, wait_for_output};
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_timeout_stops_the_task_as_timed_out_within_its_grace() {
    let daemon = Daemon::start();
    let ran = daemon.cli("client1").args(["run", "--timeout", "1s", "/bin/sleep", "10"]).output();
    let ran = ran.expect("run");
    // SIGTERM ended sleep: the deadline's stop, not its grace's SIGKILL.
    assert_eq!(ran.status.code(), Some(128 + libc::SIGTERM), "{ran:?}");
    let stderr = String::from_utf8_lossy(&ran.stderr);
    assert!(stderr.contains("Task state: Killed"), "{stderr}");

    let mut client = daemon.client("client1").await;
    let request = StartRequest {
        timeout_ms: Some(500),
        ..shell("trap 'echo bye; exit 0' TERM; echo up; sleep 600 & wait")
    };
    let id = start(&mut client, request).await;
    let streamed = stream_all(&mut client, &id).await;
    let status = streamed.status.expect("status");
    assert_eq!(status.timeout_ms, Some(500));
    assert_eq!(String::from_utf8_lossy(&streamed.stdout), "up\nbye\n");
    assert_eq!(
        (status.state(), status.reason(), status.exit_code, status.signal),
        (TaskState::Killed, KillReason::TimedOut, Some(0), None),
        "it exited cleanly on the deadline's SIGTERM"
    );
    let zero = client.start(StartRequest { timeout_ms: Some(0), ..shell("true") }).await;
    assert_eq!(zero.expect_err("a zero timeout").code(), Code::InvalidArgument);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemons_longest_duration_caps_a_task_given_none_and_refuses_more() {
    let daemon = Daemon::start_with(&["--max-task-duration", "2s"]);
    let mut client = daemon.client("client1").await;
    let id = start(&mut client, shell("exec sleep 600")).await;
    // The cap is the task's deadline, and query shows it.
    let verbose = daemon.cli("client1").args(["query", "-v", &id]).output().expect("query");
    let verbose = String::from_utf8_lossy(&verbose.stdout).into_owned();
    assert!(verbose.contains("\nTimeout: 2.000s (stops at 20"), "{verbose}");
    let ended = client.wait(WaitRequest { task_id: id }).await.expect("wait").into_inner();
    assert_eq!(
        (ended.state(), ended.reason(), ended.signal),
        (TaskState::Killed, KillReason::TimedOut, Some(libc::SIGTERM))
    );
    assert_eq!(ended.timeout_ms, Some(2000));
    let longer = StartRequest { timeout_ms: Some(3_600_000), ..shell("true") };
    let refused = client.start(longer).await.expect_err("over the cap");
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert_eq!(refused.message(), "Timeout 1h exceeds this daemon's --max-task-duration 2s");
    let via_cli = daemon.cli("client1").args(["run", "--timeout", "1h", "/bin/true"]).output();
    let via_cli = via_cli.expect("run");
    let stderr = String::from_utf8_lossy(&via_cli.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("--max-task-duration 2s"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_prints_each_code_in_order_and_exits_with_the_firsts() {
    let daemon = Daemon::start();
    let mut client = daemon.client("client1").await;
    // The first two end only once signalled (after wait has begun); the third at once.
    let ids = [
        start(&mut client, shell("trap 'exit 3' HUP; echo up; sleep 600 & wait")).await,
        start(&mut client, shell("echo up; exec sleep 600")).await,
        start(&mut client, shell("kill -KILL $$")).await,
    ];
    for id in &ids[..2] {
        drop(wait_for_output(&mut client, id, "up").await);
    }
    let mut waiting = daemon
        .cli("client1")
        .arg("wait")
        .args(&ids)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("wait");
    for id in &ids[..2] {
        let hang_up =
            rrocker_proto::v1::SignalRequest { task_id: id.clone(), signal: "HUP".into() };
        client.signal(hang_up).await.expect("end it");
    }
    let waited = waiting.wait().expect("wait");
    let mut printed = String::new();
    std::io::Read::read_to_string(&mut waiting.stdout.take().expect("stdout"), &mut printed)
        .expect("read");
    assert_eq!(printed, "3\n129\n137\n", "a signal's code is 128 + its number");
    assert_eq!(waited.code(), Some(3), "the first task's code");

    // An ended task answers at once; another client's is NOT_FOUND.
    let again = client.wait(WaitRequest { task_id: ids[0].clone() }).await.expect("wait");
    assert_eq!(again.into_inner().exit_code, Some(3));
    let mut other = daemon.client("client2").await;
    let foreign = other.wait(WaitRequest { task_id: ids[0].clone() }).await.expect_err("foreign");
    assert_eq!(foreign.code(), Code::NotFound);
    let status = client.query(QueryRequest { task_id: ids[1].clone() }).await.expect("query");
    assert_eq!(status.into_inner().signal, Some(libc::SIGHUP));
}
