//! A task's stdin, through the real CLI and daemon: `run -i` passes the CLI's stdin on to the
//! task byte for byte and its end reaches the task; without `-i` the task reads /dev/null;
//! an Interact client that goes away closes the task's stdin; the first message must start
//! a task or attach to one. `attach` writes the stdin of a task started with `start -i`; a
//! detach leaves it open; read-only attaches follow the output beside others; the stdin
//! another client writes is refused.

use std::process::Stdio;

use rrocker_proto::v1::stream_response::Event;
use rrocker_proto::v1::{
    AttachRequest, InteractRequest, QueryRequest, StartRequest, StreamResponse, TaskState,
    interact_request,
};
use rrocker_tests::{Client, Daemon, command, shell, start, stream_all, wait_for_output};
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
    let run =
        |args: &[&str], input: &[u8]| cli_with_input(&daemon, &[&["run"], args].concat(), input);
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
    assert_eq!(
        refused.message(),
        "the first message of an Interact call must be start, attach or exec"
    );
    let listed = client.list(rrocker_proto::v1::ListRequest {}).await.expect("list");
    assert!(listed.into_inner().tasks.is_empty(), "nothing started");
}

/// Runs `rrocker-cli ARGS` with `input` as its stdin (then its end); its output.
fn cli_with_input(daemon: &Daemon, args: &[&str], input: &[u8]) -> std::process::Output {
    let mut child = daemon
        .cli("client1")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run rrocker-cli");
    let mut stdin = child.stdin.take().expect("stdin");
    std::io::Write::write_all(&mut stdin, input).expect("write");
    drop(stdin);
    child.wait_with_output().expect("wait")
}

/// An Interact call attached to `id` (writing its stdin if `stdin`), once the daemon says
/// so: its output stream, the sender of further messages, and whether it writes stdin.
async fn attached(
    client: &mut Client,
    id: &str,
    stdin: bool,
) -> (tonic::Streaming<StreamResponse>, tokio::sync::mpsc::Sender<InteractRequest>, bool) {
    let attach = AttachRequest { task_id: id.to_owned(), stdin, ..AttachRequest::default() };
    let first = interact_request::Event::Attach(attach);
    let (mut events, requests) = rrocker_tests::interact(client, first).await.expect("attach");
    match events.message().await.expect("message") {
        Some(StreamResponse { event: Some(Event::Started(started)) }) => {
            assert_eq!(started.task_id, id);
            (events, requests, started.stdin)
        }
        other => panic!("not attached first: {other:?}"),
    }
}

/// The stdout an attached call gets until the task's final status.
async fn attached_stdout(events: &mut tonic::Streaming<StreamResponse>) -> (Vec<u8>, TaskState) {
    let mut stdout = Vec::new();
    while let Some(message) = events.message().await.expect("message") {
        match message.event.expect("event") {
            Event::Output(output) => stdout.extend_from_slice(&output.data),
            Event::Status(status) => return (stdout, status.state()),
            other => panic!("an attach sends output and a status after its start: {other:?}"),
        }
    }
    panic!("no final status");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attach_writes_a_started_tasks_stdin_and_a_detach_leaves_it_open() {
    let daemon = Daemon::start();
    let script = "echo up; read a; echo \"got $a\"; read b; echo \"got $b\"; exit 3";
    let started = daemon.cli("client1").args(["start", "-i", "/bin/sh", "-c", script]).output();
    let started = started.expect("start -i");
    assert!(started.status.success(), "{}", String::from_utf8_lossy(&started.stderr));
    let id = String::from_utf8_lossy(&started.stdout).trim().to_owned();
    let mut client = daemon.client("client1").await;
    drop(wait_for_output(&mut client, &id, "up").await);

    // A line, then a detach (what the CLI sends at Ctrl-P Ctrl-Q on a terminal): the call
    // ends without a status, the task goes on.
    let (mut events, requests, writes) = attached(&mut client, &id, true).await;
    assert!(writes);
    for event in [
        interact_request::Event::Stdin(b"one\n".to_vec().into()),
        interact_request::Event::Detach(rrocker_proto::v1::Detach {}),
    ] {
        requests.send(InteractRequest { event: Some(event) }).await.expect("queued");
    }
    let mut seen = Vec::new();
    while let Some(message) = events.message().await.expect("message") {
        match message.event.expect("event") {
            Event::Output(output) => seen.extend_from_slice(&output.data),
            other => panic!("a detached call ends without a status: {other:?}"),
        }
    }
    drop((events, requests));
    drop(wait_for_output(&mut client, &id, "got one").await);
    let status = client.query(QueryRequest { task_id: id.clone() }).await.expect("query");
    assert_eq!(status.into_inner().state(), TaskState::Running, "detached, it goes on");

    // Its stdin was left open: the CLI's attach writes it, and its end closes it.
    let second = cli_with_input(&daemon, &["attach", &id[..8]], b"three\n");
    assert_eq!(second.status.code(), Some(3), "{}", String::from_utf8_lossy(&second.stderr));
    assert_eq!(String::from_utf8_lossy(&second.stdout), "got three\n");
    let streamed = stream_all(&mut client, &id).await;
    assert_eq!(String::from_utf8_lossy(&streamed.stdout), "up\ngot one\ngot three\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_attaches_see_the_same_bytes_and_the_stdin_has_one_writer() {
    let daemon = Daemon::start();
    let mut client = daemon.client("client1").await;
    let id =
        start(&mut client, StartRequest { stdin: true, ..shell("read go; seq 1 20000") }).await;
    let (mut one, _keep_one, writes) = attached(&mut client, &id, false).await;
    assert!(!writes);
    let (mut two, _keep_two, _) = attached(&mut client, &id, false).await;
    // A writer holds the stdin: a second one is refused, in one line naming the way out.
    let (mut writer, requests, writes) = attached(&mut client, &id, true).await;
    assert!(writes);
    let refused = cli_with_input(&daemon, &["attach", &id], b"");
    let said = String::from_utf8_lossy(&refused.stderr).into_owned();
    assert!(!refused.status.success(), "{said}");
    assert_eq!(said.lines().count(), 1, "{said}");
    assert!(said.contains("has its stdin written by another client"), "{said}");
    assert!(said.contains("--no-stdin"), "{said}");

    let go = interact_request::Event::Stdin(b"go\n".to_vec().into());
    requests.send(InteractRequest { event: Some(go) }).await.expect("queued");
    let expected: String = (1..=20000).map(|n| format!("{n}\n")).collect();
    for events in [&mut one, &mut two, &mut writer] {
        let (stdout, state) = attached_stdout(events).await;
        assert_eq!(state, TaskState::Completed);
        assert!(stdout == expected.as_bytes(), "{} bytes, not the task's", stdout.len());
    }
    // A finished task is attached to no more.
    let late = cli_with_input(&daemon, &["attach", "--no-stdin", &id], b"");
    let said = String::from_utf8_lossy(&late.stderr).into_owned();
    assert!(!late.status.success() && said.contains("already finished"), "{said}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_terminal_ctrl_p_ctrl_q_detaches_and_the_task_goes_on() {
    use std::io::{BufRead, Write};
    let daemon = Daemon::start();
    let script = "read a; echo \"got $a\"; read b; echo \"got $b\"; exit 3";
    let mut client = daemon.client("client1").await;
    let id = start(&mut client, StartRequest { stdin: true, ..shell(script) }).await;
    // The CLI on a pseudo-terminal (script(1)); flow control off, so that Ctrl-Q is a byte.
    let line = format!("stty -ixon -echo; exec {}", daemon.cli_line("client1", &["attach", &id]));
    let mut terminal = std::process::Command::new("script")
        .args(["-qec", &line, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("script");
    let mut keyboard = terminal.stdin.take().expect("stdin");
    let mut screen = std::io::BufReader::new(terminal.stdout.take().expect("stdout"));
    keyboard.write_all(b"one\n").expect("type");
    // Once the task has answered, the CLI is attached and the terminal set.
    let mut shown = String::new();
    while !shown.contains("got one") {
        assert!(screen.read_line(&mut shown).expect("read") > 0, "{shown}");
    }
    keyboard.write_all(b"\x10\x11\n").expect("type the detach keys");
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut screen, &mut rest).expect("read");
    let status = terminal.wait().expect("script");
    assert!(status.success(), "{shown}{rest}");
    assert!(rest.contains(&format!("Detached from task {id}")), "{shown}{rest}");
    let state = client.query(QueryRequest { task_id: id.clone() }).await.expect("query");
    assert_eq!(state.into_inner().state(), TaskState::Running, "detached, it goes on");
    let second = cli_with_input(&daemon, &["attach", &id], b"two\n");
    assert_eq!(second.status.code(), Some(3), "{}", String::from_utf8_lossy(&second.stderr));
    assert_eq!(String::from_utf8_lossy(&second.stdout), "got two\n");
}
