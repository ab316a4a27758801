//! Exec: a further command run inside a running task, through the real daemon and CLI. It
//! sees the task's processes (same PID namespace) and files (same root), runs in the task's
//! cgroups and dies with the task; its exit code is the CLI's and it is listed with its task;
//! another client's task, a missing binary and a finished task are refused in one line.

use rrocker_proto::v1::stream_response::Event;
use rrocker_proto::v1::{
    ExecRequest, InteractRequest, QueryRequest, RemoveRequest, StopRequest, StreamResponse,
    TaskState, interact_request,
};
use rrocker_tests::{Client, Daemon, shell, start, stream_all, wait_for_output};
use tonic::Code;

/// Starts a task that writes a file, says so and sleeps.
async fn sleeper(client: &mut Client) -> String {
    let id = start(client, shell("echo written > /tmp/by-task; echo ready; exec sleep 600")).await;
    drop(wait_for_output(client, &id, "ready").await);
    id
}

/// An Interact call running a command in a task: its responses after the first, the
/// sender of its further messages (its side stays open while this lives), and its first
/// response (the TaskStarted).
#[derive(Debug)]
struct ExecCall {
    events: tonic::Streaming<StreamResponse>,
    requests: tokio::sync::mpsc::Sender<InteractRequest>,
    started: rrocker_proto::v1::TaskStarted,
}

/// Opens an Interact call that runs `argv` in task `id`, or gets the call's error.
async fn exec(client: &mut Client, id: &str, argv: &[&str]) -> Result<ExecCall, tonic::Status> {
    let request = ExecRequest {
        task_id: id.to_owned(),
        argv: argv.iter().map(|arg| arg.as_bytes().to_vec()).collect(),
        ..Default::default()
    };
    let (mut events, requests) =
        rrocker_tests::interact(client, interact_request::Event::Exec(request)).await?;
    match events.message().await?.and_then(|message| message.event) {
        Some(Event::Started(started)) => Ok(ExecCall { events, requests, started }),
        other => panic!("an exec starts with TaskStarted: {other:?}"),
    }
}

impl ExecCall {
    /// Reads output until `marker` has come.
    async fn wait_for(&mut self, marker: &str) {
        let mut seen = Vec::new();
        while !String::from_utf8_lossy(&seen).contains(marker) {
            match self.events.message().await.expect("message").and_then(|m| m.event) {
                Some(Event::Output(output)) => seen.extend_from_slice(&output.data),
                other => panic!("{marker:?} never came: {other:?}"),
            }
        }
    }

    /// Sends a message.
    async fn send(&self, event: interact_request::Event) {
        self.requests.send(InteractRequest { event: Some(event) }).await.expect("queued");
    }

    /// Reads the rest of the call: its output, and how the exec ended.
    async fn end(mut self) -> (Vec<u8>, rrocker_proto::v1::ExecStatus) {
        let mut output = Vec::new();
        while let Some(message) = self.events.message().await.expect("message") {
            match message.event {
                Some(Event::Output(piece)) => output.extend_from_slice(&piece.data),
                Some(Event::ExecEnded(ended)) => return (output, ended),
                other => panic!("an exec's call sends output, then its end: {other:?}"),
            }
        }
        panic!("the exec's call ended without its end");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_sees_the_tasks_processes_and_files_and_exits_with_its_code() {
    let daemon = Daemon::start();
    let mut client = daemon.client("client1").await;
    let id = sleeper(&mut client).await;
    let cli = |args: &[&str]| daemon.cli("client1").args(args).output().expect("cli");

    let listed = cli(&["exec", &id[..8], "/bin/ps", "-e", "-o", "pid=,comm="]);
    assert!(listed.status.success(), "{listed:?}");
    let listed = String::from_utf8_lossy(&listed.stdout).into_owned();
    let processes: Vec<(&str, &str)> =
        listed.lines().filter_map(|line| line.trim().split_once(' ')).collect();
    // The task's init as 1, its sleep, and ps itself: nothing of the host.
    assert_eq!(processes.len(), 3, "{listed}");
    assert_eq!(processes[0].0, "1", "{listed}");
    assert!(processes.iter().any(|(_, name)| *name == "sleep"), "{listed}");
    assert!(processes.iter().any(|(_, name)| *name == "ps"), "{listed}");

    let read = cli(&["exec", &id, "/bin/cat", "/tmp/by-task"]);
    assert_eq!(String::from_utf8_lossy(&read.stdout), "written\n", "{read:?}");
    let ended = cli(&["exec", &id, "/bin/sh", "-c", "echo out; echo err >&2; exit 7"]);
    assert_eq!(ended.status.code(), Some(7), "{ended:?}");
    assert_eq!((&ended.stdout[..], &ended.stderr[..]), (&b"out\n"[..], &b"err\n"[..]));
    let piped = daemon
        .cli("client1")
        .args(["exec", "-i", &id, "/bin/wc", "-l"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("exec -i");
    let mut piped = piped;
    std::io::Write::write_all(&mut piped.stdin.take().expect("stdin"), b"a\nb\nc\n")
        .expect("write");
    let piped = piped.wait_with_output().expect("exec -i");
    assert_eq!(String::from_utf8_lossy(&piped.stdout), "3\n", "end of input reaches the exec");
    // Without -i the command reads nothing, whatever the CLI's stdin holds open.
    let mut unread = daemon
        .cli("client1")
        .args(["exec", &id, "/bin/cat"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("exec");
    let held_open = unread.stdin.take();
    let unread = unread.wait_with_output().expect("exec");
    drop(held_open);
    assert!(unread.status.success() && unread.stdout.is_empty(), "{unread:?}");

    let status = client.query(QueryRequest { task_id: id.clone() }).await.expect("query");
    let execs = status.into_inner().execs;
    let codes: Vec<_> = execs.iter().map(|exec| (exec.exec_id, exec.exit_code)).collect();
    assert_eq!(codes, [(1, Some(0)), (2, Some(0)), (3, Some(7)), (4, Some(0)), (5, Some(0))]);
    assert!(execs.iter().all(|exec| exec.state() == TaskState::Completed && exec.pid == 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exec_runs_in_the_tasks_cgroup_and_dies_when_the_task_is_stopped() {
    let daemon = Daemon::start();
    let mut client = daemon.client("client1").await;
    let id = sleeper(&mut client).await;
    let call = exec(&mut client, &id, &["/bin/sleep", "600"]).await.expect("exec");
    assert_eq!((call.started.task_id.as_str(), call.started.exec_id), (id.as_str(), 1));
    let status = client.query(QueryRequest { task_id: id.clone() }).await.expect("query");
    let pid = status.into_inner().execs[0].pid;
    assert_ne!(pid, 0);
    // Its process (the exec's init, outside the task's PID namespace) is in the task's cgroups.
    let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).expect("its cgroups");
    assert!(cgroups.contains(&format!("/{id}\n")), "{cgroups}");

    let stop = StopRequest { task_id: id.clone(), grace_ms: Some(0), ..Default::default() };
    client.stop(stop).await.expect("stop");
    let (_, ended) = call.end().await;
    assert_eq!((ended.state(), ended.signal), (TaskState::Killed, Some(9)));
    // Its task's output is its own: nothing of the exec's.
    let streamed = stream_all(&mut client, &id).await;
    assert_eq!(streamed.stdout, b"ready\n");
    // rm answers once the task has released everything, its execs' processes too.
    client.remove(RemoveRequest { task_id: id }).await.expect("rm");
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists(), "the exec is gone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_refuses_anothers_task_a_missing_binary_and_a_finished_task_in_one_line() {
    let daemon = Daemon::start();
    let mut owner = daemon.client("client1").await;
    let mut other = daemon.client("client2").await;
    let id = sleeper(&mut owner).await;

    let foreign = exec(&mut other, &id, &["/bin/true"]).await.expect_err("another's task");
    let missing_id = "6d0e3d9e-5f0a-4b8e-9a57-0b9f3b4c2a11";
    let missing = exec(&mut other, missing_id, &["/bin/true"]).await.expect_err("a missing id");
    assert_eq!(foreign.code(), Code::NotFound);
    assert_eq!(
        foreign.message().replace(&id, "<id>"),
        missing.message().replace(missing_id, "<id>")
    );

    let cli = daemon.cli("client1").args(["exec", &id, "/bin/a_binary_that_doesnt_exist"]).output();
    let cli = cli.expect("cli");
    assert_eq!(
        String::from_utf8_lossy(&cli.stderr).trim_end(),
        "Binary '/bin/a_binary_that_doesnt_exist' not found in base image."
    );
    assert_ne!(cli.status.code(), Some(0));

    let stop = StopRequest { task_id: id.clone(), grace_ms: Some(0), ..Default::default() };
    owner.stop(stop).await.expect("stop");
    let finished = exec(&mut owner, &id, &["/bin/true"]).await.expect_err("a finished task");
    assert_eq!(finished.code(), Code::FailedPrecondition, "{}", finished.message());
    let status = owner.query(QueryRequest { task_id: id }).await.expect("query").into_inner();
    assert!(status.execs.is_empty(), "no refused exec is listed: {:?}", status.execs);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signals_on_the_call_reach_the_exec_and_kill_ends_it_and_its_command() {
    let daemon = Daemon::start();
    let mut client = daemon.client("client1").await;
    let id = sleeper(&mut client).await;
    let trap = "trap 'echo got INT; exit 5' INT; echo armed; while :; do sleep 1; done";
    let mut call = exec(&mut client, &id, &["/bin/sh", "-c", trap]).await.expect("exec");
    call.wait_for("armed").await;
    call.send(interact_request::Event::Signal("INT".into())).await;
    let (output, ended) = call.end().await;
    assert_eq!(String::from_utf8_lossy(&output), "got INT\n");
    assert_eq!(ended.exit_code, Some(5), "{ended:?}");

    // SIGKILL reaches the command itself (its init passes it on), not only the exec's init.
    let mut call = exec(&mut client, &id, &["/bin/sh", "-c", "echo armed; exec sleep 600"])
        .await
        .expect("exec");
    call.wait_for("armed").await;
    call.send(interact_request::Event::Signal("KILL".into())).await;
    let (_, ended) = call.end().await;
    assert_eq!((ended.state(), ended.signal), (TaskState::Killed, Some(9)), "{ended:?}");
    let ps = ["exec", &id, "/bin/ps", "-e", "-o", "args="];
    let listed = daemon.cli("client1").args(ps).output().expect("ps");
    let listed = String::from_utf8_lossy(&listed.stdout).into_owned();
    let sleeps = listed.lines().filter(|line| line.trim() == "sleep 600").count();
    assert_eq!(sleeps, 1, "only the task's own sleep is left: {listed}");
    let status = client.query(QueryRequest { task_id: id }).await.expect("query").into_inner();
    assert_eq!(status.state(), TaskState::Running, "the task goes on: {status:?}");
}
