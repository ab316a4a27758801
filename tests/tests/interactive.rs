//! A task's stdin, through the real CLI and daemon: `run -i` passes the CLI's stdin on to the
//! task byte for byte and its end reaches the task; without `-i` the task reads /dev/null;
//! an Interact client that goes away closes the task's stdin; the first message must start
//! a task.

use std::process::Stdio;

use rrocker_proto::v1::stream_response::Event;
use rrocker_proto::v1::{
    InteractRequest, StartRequest, StreamResponse, TaskState, interact_request,
};
use rrocker_tests::{Daemon, command, stream_all};
use tonic::Code;

fn sha256_of(path: &std::path::Path) -> String {
    let output = std::process::Command::new("sha256sum").arg(path).output().expect("sha256sum");
    String::from_utf8_lossy(&output.stdout).split_whitespace().next().expect("digest").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_i_passes_100_mib_of_stdin_byte_for_byte() {
    let daemon = Daemon::start();
    let input = daemon.scratch().join("random");
    let made = std::process::Command::new("head")
        .args(["-c", "100M", "/dev/urandom"])
        .stdout(std::fs::File::create(&input).expect("create"))
        .status()
        .expect("head");
    assert!(made.success());
    let output = daemon
        .cli("client1")
        .args(["run", "-i", "/bin/sha256sum"])
        .stdin(std::fs::File::open(&input).expect("open"))
        .output()
        .expect("run -i");
    let printed = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "{printed}{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(printed, format!("{}  -\n", sha256_of(&input)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_end_of_input_reaches_the_task_and_without_i_it_reads_nothing() {
    let daemon = Daemon::start();
    let run = |args: &[&str], input: &[u8]| {
        let mut child = daemon
            .cli("client1")
            .arg("run")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run");
        let mut stdin = child.stdin.take().expect("stdin");
        std::io::Write::write_all(&mut stdin, input).expect("write");
        drop(stdin);
        child.wait_with_output().expect("wait")
    };
    let counted = run(&["-i", "/bin/wc", "-l"], b"a\nb\n");
    assert!(counted.status.success(), "{}", String::from_utf8_lossy(&counted.stderr));
    assert_eq!(String::from_utf8_lossy(&counted.stdout).trim(), "2");
    // An empty stdin: its end at once.
    let empty = run(&["-i", "/bin/wc", "-c"], b"");
    assert_eq!(String::from_utf8_lossy(&empty.stdout).trim(), "0");
    // The task's exit code is the CLI's, as without -i.
    let code = run(&["-i", "/bin/sh", "-c", "read line; exit $line"], b"7\n");
    assert_eq!(code.status.code(), Some(7), "{}", String::from_utf8_lossy(&code.stderr));
    // Without -i the task's stdin is /dev/null.
    let cat = run(&["/bin/cat"], b"data\n");
    assert!(cat.status.success());
    assert_eq!(cat.stdout, b"");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_goes_away_closes_the_tasks_stdin() {
    let daemon = Daemon::start();
    let mut client = daemon.client("client1").await;
    let (requests, queued) = tokio::sync::mpsc::channel(4);
    let start = StartRequest { stdin: true, ..command(&["/bin/cat"]) };
    requests
        .send(InteractRequest { event: Some(interact_request::Event::Start(start)) })
        .await
        .expect("queued");
    let mut queued = queued;
    let outgoing = futures_util::stream::poll_fn(move |cx| queued.poll_recv(cx));
    let mut events = client.interact(outgoing).await.expect("interact").into_inner();
    let id = match events.message().await.expect("message") {
        Some(StreamResponse { event: Some(Event::Started(started)) }) => started.task_id,
        other => panic!("not started first: {other:?}"),
    };
    let piece = interact_request::Event::Stdin(b"before the client left\n".to_vec().into());
    requests.send(InteractRequest { event: Some(piece) }).await.expect("queued");
    // The piece went through: cat printed it.
    match events.message().await.expect("message") {
        Some(StreamResponse { event: Some(Event::Output(output)) }) => {
            assert_eq!(output.data, &b"before the client left\n"[..]);
        }
        other => panic!("no output: {other:?}"),
    }
    // The client goes (its call and its connection), without an end of input.
    drop((events, requests, client));
    let mut other = daemon.client("client1").await;
    let streamed = stream_all(&mut other, &id).await;
    let status = streamed.status.expect("final status");
    assert_eq!(status.state(), TaskState::Completed, "cat saw the end of its input: {status:?}");
    assert_eq!(streamed.stdout, b"before the client left\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interact_call_must_start_with_a_start() {
    let daemon = Daemon::start();
    let mut client = daemon.client("client1").await;
    let first =
        InteractRequest { event: Some(interact_request::Event::Stdin(b"x".to_vec().into())) };
    let refused = client.interact(futures_util::stream::iter([first])).await.expect_err("refused");
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    assert_eq!(refused.message(), "the first message of an Interact call must be start");
    let listed = client.list(rrocker_proto::v1::ListRequest {}).await.expect("list");
    assert!(listed.into_inner().tasks.is_empty(), "nothing started");
}
