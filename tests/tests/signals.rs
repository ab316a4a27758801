//! Signals a user sends to a task (the Signal call, `rrocker-cli kill`), through the real CLI
//! and daemon: a trapped signal reaches the command, which runs on; SIGKILL (kill's default)
//! ends every process of the task, reported as Killed by that signal, reason signalled; a
//! signal the command does not handle ends it the same way; bad names, finished tasks and
//! signals init keeps for itself get one line of error and change nothing.

use std::process::Output;

use rrocker_proto::v1::{KillReason, QueryRequest, SignalRequest, TaskState, TaskStatus};
use rrocker_tests::{Client, Daemon, shell, start, stream_all, wait_for_output};
use tonic::Code;

fn kill(daemon: &Daemon, args: &[&str]) -> Output {
    daemon.cli("client1").arg("kill").args(args).output().expect("run rrocker-cli kill")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

async fn query(client: &mut Client, id: &str) -> TaskStatus {
    client.query(QueryRequest { task_id: id.to_owned() }).await.expect("query").into_inner()
}

/// A shell that prints `up`, then a line for each SIGUSR1 and SIGUSR2, until it is killed.
const TRAPPING: &str = "trap 'echo got USR1' USR1; trap 'echo got USR2' USR2; echo up; \
                        while :; do sleep 1 & wait $!; done";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trapped_signal_reaches_the_command_and_kill_ends_the_task_with_sigkill() {
    let daemon = Daemon::start();
    let mut client = daemon.client("client1").await;
    let id = start(&mut client, shell(TRAPPING)).await;
    drop(wait_for_output(&mut client, &id, "up").await);

    let sent = kill(&daemon, &["-s", "USR1", &id]);
    assert!(sent.status.success(), "{}", stderr(&sent));
    assert_eq!(String::from_utf8_lossy(&sent.stdout), format!("{id}\n"));
    drop(wait_for_output(&mut client, &id, "got USR1").await);
    // By number, and by its full name in lower case.
    for signal in ["12", "sigusr2"] {
        let sent = kill(&daemon, &["--signal", signal, &id]);
        assert!(sent.status.success(), "{signal}: {}", stderr(&sent));
    }
    let status = query(&mut client, &id).await;
    assert_eq!(status.state(), TaskState::Running, "the command handled them: {status:?}");

    let killed = kill(&daemon, &[&id]);
    assert!(killed.status.success(), "{}", stderr(&killed));
    let streamed = stream_all(&mut client, &id).await;
    let lines = String::from_utf8_lossy(&streamed.stdout).into_owned();
    assert_eq!(lines.matches("got USR2").count(), 2, "{lines}");
    let status = streamed.status.expect("final status");
    assert_eq!(status.state(), TaskState::Killed, "{status:?}");
    assert_eq!(status.signal, Some(libc::SIGKILL));
    assert_eq!(status.reason(), KillReason::Signalled);
    let shown = daemon.cli("client1").args(["query", "-v", &id]).output().expect("query -v");
    let shown = String::from_utf8_lossy(&shown.stdout).into_owned();
    assert!(
        shown.contains("Reason: signalled\n") && shown.contains("Signal: SIGKILL\n"),
        "{shown}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signal_the_command_does_not_handle_ends_it_as_signalled() {
    let daemon = Daemon::start();
    let mut client = daemon.client("client1").await;
    for (signal, number) in [("TERM", libc::SIGTERM), ("2", libc::SIGINT), ("RTMIN+3", 37)] {
        let id = start(&mut client, shell("echo up; exec sleep 600")).await;
        drop(wait_for_output(&mut client, &id, "up").await);
        let sent = kill(&daemon, &["-s", signal, &id]);
        assert!(sent.status.success(), "{signal}: {}", stderr(&sent));
        let status = stream_all(&mut client, &id).await.status.expect("final status");
        assert_eq!(status.state(), TaskState::Killed, "{signal}: {status:?}");
        assert_eq!((status.signal, status.reason()), (Some(number), KillReason::Signalled));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_signals_and_finished_tasks_get_one_line_and_change_nothing() {
    let daemon = Daemon::start();
    let mut client = daemon.client("client1").await;
    let id = start(&mut client, shell("echo up; exec sleep 600")).await;
    drop(wait_for_output(&mut client, &id, "up").await);
    for (signal, said) in [
        (
            "FOO",
            "unknown signal 'FOO': give a name (TERM, USR1, RTMIN+1...) or a number from 1 to 64",
        ),
        ("0", "unknown signal '0'"),
        ("STOP", "SIGSTOP cannot be sent to a task: its init would take it for its own"),
    ] {
        let refused = kill(&daemon, &["-s", signal, &id]);
        assert!(!refused.status.success(), "{signal}");
        let text = stderr(&refused);
        assert_eq!(text.lines().count(), 1, "{signal}: {text}");
        assert!(text.contains(said), "{signal}: {text}");
    }
    assert_eq!(query(&mut client, &id).await.state(), TaskState::Running);
    // A gRPC client gets INVALID_ARGUMENT.
    let request = SignalRequest { task_id: id.clone(), signal: "NOPE".into() };
    let refused = client.signal(request).await.expect_err("refused");
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");

    let killed = kill(&daemon, &[&id]);
    assert!(killed.status.success(), "{}", stderr(&killed));
    drop(stream_all(&mut client, &id).await);
    let again = kill(&daemon, &["-s", "TERM", &id]);
    assert!(!again.status.success());
    let text = stderr(&again);
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(text.contains("finished"), "{text}");
    let request = SignalRequest { task_id: id.clone(), signal: "TERM".into() };
    let refused = client.signal(request).await.expect_err("refused");
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    // The final status is the first kill's.
    let status = query(&mut client, &id).await;
    assert_eq!((status.signal, status.reason()), (Some(libc::SIGKILL), KillReason::Signalled));
}
