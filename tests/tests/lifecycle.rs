//! A task's life: exit codes, death by signal, stops with and without a grace period,
//! concurrent stops, removal, and requests for tasks that do not exist.

use rrocker_proto::v1::{
    KillReason, QueryRequest, RemoveRequest, StopRequest, StreamRequest, TaskState, TaskStatus,
};
use rrocker_tests::{Client, Daemon, command, shell, start, stream_all, wait_for_output};
use tonic::Code;

/// Stops a task with a grace period and returns the status the stop reports.
async fn stop(client: &mut Client, id: &str, grace_ms: u64) -> TaskStatus {
    let request =
        StopRequest { task_id: id.to_owned(), grace_ms: Some(grace_ms), ..Default::default() };
    client.stop(request).await.expect("stop").into_inner().status.expect("status")
}

async fn final_status(client: &mut Client, id: &str) -> TaskStatus {
    stream_all(client, id).await.status.expect("final status")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_codes_are_reported() {
    let daemon = Daemon::start();
    let mut client = daemon.client("client1").await;
    for code in [0, 1, 3, 255] {
        let id = start(&mut client, shell(&format!("exit {code}"))).await;
        let status = final_status(&mut client, &id).await;
        assert_eq!(status.state(), TaskState::Completed);
        assert_eq!(status.exit_code, Some(code));
        assert_eq!(status.signal, None);
        let queried = client.query(QueryRequest { task_id: id }).await.expect("query").into_inner();
        assert_eq!(queried, status);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn death_by_signal_is_killed_with_the_signal() {
    let daemon = Daemon::start();
    let mut client = daemon.client("client1").await;
    let id = start(&mut client, shell("kill -KILL $$")).await;
    let status = final_status(&mut client, &id).await;
    assert_eq!(status.state(), TaskState::Killed);
    assert_eq!(status.signal, Some(libc::SIGKILL));
    assert_eq!(status.reason(), KillReason::Signal);
    assert_eq!(status.exit_code, None);

    let output =
        daemon.cli("client1").args(["query", &id, "--output", "json"]).output().expect("cli");
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).expect("json");
    assert_eq!(json["state"], "killed");
    assert_eq!(json["signal"], "SIGKILL");
    assert_eq!(json["reason"], "signal");
    assert_eq!(json["owner"], "client1");
    assert_eq!(json["argv"], serde_json::json!(["/bin/sh", "-c", "kill -KILL $$"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_that_traps_sigterm_exits_cleanly_on_stop() {
    let daemon = Daemon::start();
    let mut client = daemon.client("client1").await;
    let script = "trap 'echo cleaning up; exit 0' TERM; echo ready; while :; do sleep 0.05; done";
    let id = start(&mut client, shell(script)).await;
    let _ready = wait_for_output(&mut client, &id, "ready").await;
    let stopped = stop(&mut client, &id, 60_000).await;
    assert_eq!(stopped.state(), TaskState::Killed);
    assert_eq!(stopped.reason(), KillReason::Stopped);
    assert_eq!(stopped.exit_code, Some(0), "it exited by itself within the grace period");
    assert_eq!(stopped.signal, None);
    let streamed = stream_all(&mut client, &id).await;
    assert_eq!(streamed.stdout, b"ready\ncleaning up\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_ignoring_sigterm_is_killed_after_the_grace_period() {
    let daemon = Daemon::start();
    let mut client = daemon.client("client1").await;
    let id =
        start(&mut client, shell("trap '' TERM; echo ready; while :; do sleep 0.05; done")).await;
    let _ready = wait_for_output(&mut client, &id, "ready").await;
    let stopped = stop(&mut client, &id, 300).await;
    assert_eq!(stopped.state(), TaskState::Killed);
    assert_eq!(stopped.signal, Some(libc::SIGKILL));
    assert_eq!(stopped.reason(), KillReason::Stopped);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_stops_one_kills_the_others_find_it_finished() {
    let daemon = Daemon::start();
    let mut client = daemon.client("client1").await;
    let id =
        start(&mut client, shell("trap '' TERM; echo ready; while :; do sleep 0.05; done")).await;
    let _ready = wait_for_output(&mut client, &id, "ready").await;
    let stops = (0..4).map(|_| {
        let mut client = client.clone();
        let task_id = id.clone();
        tokio::spawn(async move {
            client.stop(StopRequest { task_id, grace_ms: Some(200), ..Default::default() }).await
        })
    });
    let results = futures_util::future::join_all(stops).await;
    let (ok, refused): (Vec<_>, Vec<_>) =
        results.into_iter().map(|joined| joined.expect("join")).partition(Result::is_ok);
    assert_eq!(ok.len(), 1, "exactly one stop kills the task");
    for result in refused {
        let status = result.expect_err("refused");
        assert_eq!(status.code(), Code::FailedPrecondition);
        assert_eq!(status.message(), format!("Task '{id}' already finished"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_and_malformed_ids_are_not_found() {
    let daemon = Daemon::start();
    let mut client = daemon.client("client1").await;
    for id in ["0e6b1e8c-ab62-4d5e-8afe-3d8d0c36fb14", "abcdefgh-1234-5678-0987-abcdefgh", ""] {
        let expected = format!("Task '{id}' doesn't exist");
        let task_id = id.to_owned();
        let query =
            client.query(QueryRequest { task_id: task_id.clone() }).await.expect_err("query");
        let stop = client
            .stop(StopRequest { task_id: task_id.clone(), grace_ms: None, ..Default::default() })
            .await
            .expect_err("stop");
        let stream = client
            .stream(StreamRequest { task_id: task_id.clone(), ..Default::default() })
            .await
            .expect_err("stream");
        let remove = client.remove(RemoveRequest { task_id }).await.expect_err("rm");
        for status in [query, stop, stream, remove] {
            assert_eq!(status.code(), Code::NotFound);
            assert_eq!(status.message(), expected);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_start_requests_are_refused_and_create_nothing() {
    let daemon = Daemon::start();
    let mut client = daemon.client("client1").await;
    let cases = [
        (command(&[]), "argv must not be empty"),
        (
            command(&["/bin/a_binary_that_doesnt_exist", "some", "arg"]),
            "Binary '/bin/a_binary_that_doesnt_exist' not found in base image.",
        ),
        (command(&["/etc/passwd"]), "Binary '/etc/passwd' not found in base image."),
        (command(&["/bin/echo", "a\0b"]), "argv[1] contains a NUL byte"),
    ];
    for (request, message) in cases {
        let status = client.start(request).await.expect_err("refused");
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(status.message(), message);
    }
    for workdir in ["/nonexistent", "/proc/self/fd/0", "/proc/self/fd/3", "/etc/passwd"] {
        let mut request = command(&["/bin/true"]);
        request.workdir = workdir.as_bytes().to_vec();
        let status = client.start(request).await.expect_err("refused");
        assert_eq!(status.code(), Code::InvalidArgument, "{workdir}: {status:?}");
        assert!(status.message().starts_with("Cannot enter the working directory"), "{status:?}");
    }
    let listed = client.list(rrocker_proto::v1::ListRequest {}).await.expect("list").into_inner();
    assert!(listed.tasks.is_empty(), "nothing was created: {:?}", listed.tasks);
    let task_dirs = std::fs::read_dir(daemon.state_dir().join("tasks")).expect("tasks dir").count();
    assert_eq!(task_dirs, 0, "no task directory is left");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_finished_tasks_can_be_removed() {
    let daemon = Daemon::start();
    let mut client = daemon.client("client1").await;
    let id = start(&mut client, shell("exec sleep 600")).await;
    let refused = client.remove(RemoveRequest { task_id: id.clone() }).await.expect_err("running");
    assert_eq!(refused.code(), Code::FailedPrecondition);
    client
        .stop(StopRequest { task_id: id.clone(), grace_ms: Some(0), ..Default::default() })
        .await
        .expect("stop");
    client.remove(RemoveRequest { task_id: id.clone() }).await.expect("rm");
    let gone = client.query(QueryRequest { task_id: id }).await.expect_err("gone");
    assert_eq!(gone.code(), Code::NotFound);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemon_shutdown_stops_tasks_and_streams_get_the_final_status() {
    let mut daemon = Daemon::start_with(&["--stop-grace-ms", "300"]);
    let mut client = daemon.client("client1").await;
    let polite =
        start(&mut client, shell("trap 'exit 0' TERM; echo ready; while :; do sleep 0.05; done"))
            .await;
    let stubborn =
        start(&mut client, shell("trap '' TERM; echo ready; while :; do sleep 0.05; done")).await;
    let polite_pid =
        client.query(QueryRequest { task_id: polite.clone() }).await.expect("q").into_inner().pid;
    let mut streams = Vec::new();
    for id in [&polite, &stubborn] {
        streams.push(wait_for_output(&mut client, id, "ready").await);
    }
    let status = daemon.terminate();
    assert!(status.success(), "rrockerd exits cleanly: {status:?}\n{}", daemon.log());
    for events in streams {
        let status = rrocker_tests::final_status_of(events).await;
        assert_eq!((status.state(), status.reason()), (TaskState::Killed, KillReason::Shutdown));
    }
    let alive = std::path::Path::new(&format!("/proc/{polite_pid}")).exists();
    assert!(!alive, "the task's process is gone");
    assert!(!daemon.state_dir().exists(), "the state dir the daemon made is removed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_fields_are_refused_in_one_line_and_change_nothing() {
    let daemon = Daemon::start();
    let mut client = daemon.client("client1").await;
    let id = start(&mut client, shell("exec sleep 600")).await;
    // A 1 MiB task id: NOT_FOUND, echoed only in part.
    let huge = "7".repeat(1 << 20);
    let status = client.query(QueryRequest { task_id: huge }).await.expect_err("huge id");
    assert_eq!(status.code(), Code::NotFound);
    assert!(status.message().len() < 200 && !status.message().contains('\n'), "{status:?}");
    // Ids that are not UUIDs: NOT_FOUND, like any unknown id.
    for odd in ["", "not-a-uuid", "../../etc", "0e6b1e8c-ab62-4d5e-8afe-3d8d0c36fb1z"] {
        let status = client.query(QueryRequest { task_id: odd.into() }).await.expect_err("odd id");
        assert_eq!(status.code(), Code::NotFound, "{odd:?}: {status:?}");
        let request = StopRequest { task_id: odd.into(), grace_ms: Some(0), ..Default::default() };
        let status = client.stop(request).await.expect_err("odd id");
        assert_eq!(status.code(), Code::NotFound, "{odd:?}: {status:?}");
    }
    // An absurd grace period is refused and does not touch the task.
    let request =
        StopRequest { task_id: id.clone(), grace_ms: Some(u64::MAX), ..Default::default() };
    let status = client.stop(request).await.expect_err("grace");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(status.message(), "grace_ms must be at most 86400000 (one day)");
    let query = QueryRequest { task_id: id.clone() };
    assert_eq!(client.query(query).await.expect("q").into_inner().state(), TaskState::Running);
    // NUL bytes in the environment, an empty program name.
    let mut nul_env = command(&["/bin/true"]);
    nul_env.env = vec![b"A=b\0c".to_vec()];
    let mut empty_program = command(&["/bin/true"]);
    empty_program.argv[0].clear();
    for (request, message) in
        [(nul_env, "env[0] contains a NUL byte"), (empty_program, "argv[0] must not be empty")]
    {
        let status = client.start(request).await.expect_err("refused");
        assert_eq!((status.code(), status.message()), (Code::InvalidArgument, message));
    }
    let listed = client.list(rrocker_proto::v1::ListRequest {}).await.expect("list").into_inner();
    assert_eq!(listed.tasks.len(), 1, "only the running task exists");
    stop(&mut client, &id, 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_without_waiting_answers_at_sigterm_and_still_kills_after_the_grace() {
    let daemon = Daemon::start();
    let mut client = daemon.client("client1").await;
    let id = start(&mut client, shell("trap '' TERM; echo up; while :; do sleep 1; done")).await;
    drop(wait_for_output(&mut client, &id, "up").await);
    let request = StopRequest { task_id: id.clone(), grace_ms: Some(300), no_wait: true };
    let answer = client.stop(request).await.expect("stop").into_inner();
    let now = answer.status.expect("a status");
    assert_eq!(now.state(), TaskState::Running, "answered at SIGTERM, which the task ignores");
    let ended = stream_all(&mut client, &id).await.status.expect("final status");
    assert_eq!((ended.state(), ended.signal), (TaskState::Killed, Some(libc::SIGKILL)));
    assert_eq!(ended.reason(), KillReason::Stopped);
    let again = StopRequest { task_id: id.clone(), grace_ms: Some(0), no_wait: true };
    let finished = client.stop(again).await.expect_err("already finished");
    assert_eq!(finished.code(), Code::FailedPrecondition);
}
