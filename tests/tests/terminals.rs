//! Tasks on a pseudo-terminal of their own (`-t`), driven through a real terminal (tmux):
//! the command's terminal is the task's /dev/pts/0 with the local terminal's size, and
//! follows its resizes; `run -it` gives an interactive shell whose Ctrl-C interrupts what
//! runs in it, not the task, and whose exit code is the CLI's; the local terminal's
//! settings are the same afterwards. Through the API: a terminal's output is one stream, a
//! bad size is refused and starts nothing.

use rrocker_proto::v1::{ListRequest, QueryRequest, StartRequest, TerminalSize};
use rrocker_tests::{Daemon, Screen, shell, start, stream_all};
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_t_gives_the_command_dev_pts_0_at_the_terminals_size() {
    let daemon = Daemon::start();
    let task = "tty; stty size";
    let line = daemon.cli_line("client1", &["run", "-t", "/bin/sh", "-c", task]);
    let screen = Screen::start(&line, 100, 30);
    let shown = screen.wait_for("[ended").await;
    assert!(shown.contains("/dev/pts/0\n30 100\n[ended 0]"), "{shown}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_it_bash_is_an_interactive_shell_that_follows_resizes_and_keeps_ctrl_c() {
    let daemon = Daemon::start();
    let screen_dir = tempfile::tempdir().expect("dir");
    let (before, after) = (screen_dir.path().join("before"), screen_dir.path().join("after"));
    let cli = daemon.cli_line("client1", &["run", "-it", "/bin/bash", "--norc"]);
    let line = format!(
        "stty -g > '{}'; {cli}; code=$?; stty -g > '{}'; (exit $code)",
        before.display(),
        after.display()
    );
    let screen = Screen::start(&line, 100, 30);
    // Arithmetic, so that what is waited for is the shell's answer, not the typed echo.
    screen.type_line("echo $((6 * 7))");
    screen.wait_for("\n42\n").await;
    screen.type_line("stty size");
    screen.wait_for("\n30 100\n").await;
    screen.resize(120, 40);
    screen.type_line("stty size");
    screen.wait_for("\n40 120\n").await;
    // Ctrl-C reaches the shell's terminal as a character: it interrupts the sleep (status
    // 130), and the shell, the task, goes on.
    screen.type_line("sleep 600");
    screen.wait_for("sleep 600\n").await;
    screen.press(&["C-c"]);
    screen.type_line("echo status $?");
    screen.wait_for("status 130").await;
    screen.type_line("exit 3");
    let shown = screen.wait_for("[ended").await;
    assert!(shown.contains("[ended 3]"), "exit 3 is the CLI's exit code: {shown}");
    let read = |path: &std::path::Path| std::fs::read_to_string(path).expect("stty -g");
    assert_eq!(read(&before), read(&after), "the local terminal's settings are restored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminals_output_is_one_stream_and_a_bad_size_starts_nothing() {
    let daemon = Daemon::start();
    let mut client = daemon.client("client1").await;
    let request = StartRequest { tty: true, ..shell("echo out; echo err >&2") };
    let id = start(&mut client, request).await;
    let streamed = stream_all(&mut client, &id).await;
    assert_eq!(streamed.stdout, b"out\r\nerr\r\n", "both through the terminal, as it shows them");
    assert!(streamed.stderr.is_empty());
    let status = client.query(QueryRequest { task_id: id }).await.expect("query").into_inner();
    assert!(status.tty);

    for (rows, cols) in [(0, 80), (24, 0), (70_000, 80)] {
        let tty_size = Some(TerminalSize { rows, cols });
        let request = StartRequest { tty: true, tty_size, ..shell("true") };
        let refused = client.start(request).await.expect_err("a bad size");
        assert_eq!(refused.code(), Code::InvalidArgument);
        assert_eq!(
            refused.message(),
            format!("Invalid terminal size {rows}x{cols}: rows and cols must be 1 to 65535")
        );
    }
    let listed = client.list(ListRequest {}).await.expect("list").into_inner().tasks;
    assert_eq!(listed.len(), 1, "the refused starts made no task");

    // -it needs a terminal to read keys from, as docker's.
    let piped = daemon.cli("client1").args(["run", "-it", "/bin/cat"]).output().expect("cli");
    assert_eq!(piped.status.code(), Some(125), "{piped:?}");
    let stderr = String::from_utf8_lossy(&piped.stderr);
    assert!(stderr.starts_with("The input device is not a TTY") && stderr.lines().count() == 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_that_lets_go_of_its_terminal_leaves_init_idle() {
    let daemon = Daemon::start();
    let mut client = daemon.client("client1").await;
    // The pty's slave has no holder for a second: init must wait, not spin on the hang-up.
    let script = "exec </dev/null >/dev/null 2>&1; sleep 1";
    let id = start(&mut client, StartRequest { tty: true, ..shell(script) }).await;
    let status = stream_all(&mut client, &id).await.status.expect("status");
    assert_eq!(status.exit_code, Some(0));
    let cpu_us = status.usage.expect("usage").cpu_time_us;
    assert!(cpu_us < 300_000, "the task used {cpu_us} us of CPU in a second of sleep");
}
