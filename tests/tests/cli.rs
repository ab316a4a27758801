//! The seed transcript through the real `rrocker-cli` binary, and its one-line errors.

use std::io::{BufRead, BufReader};
use std::process::{Output, Stdio};

use rrocker_tests::Daemon;

fn run(daemon: &Daemon, args: &[&str]) -> Output {
    daemon.cli("client1").args(args).output().expect("run rrocker-cli")
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).expect("utf8")
}

fn stderr(output: &Output) -> String {
    String::from_utf8(output.stderr.clone()).expect("utf8")
}

fn start(daemon: &Daemon, args: &[&str]) -> String {
    let mut full = vec!["start"];
    full.extend_from_slice(args);
    let output = run(daemon, &full);
    assert!(output.status.success(), "{}", stderr(&output));
    let id = stdout(&output);
    assert_eq!(id.len(), 37, "a uuid and a newline: {id:?}");
    id.trim().to_owned()
}

#[test]
fn the_seed_transcript() {
    let daemon = Daemon::start();

    // start + stream of an endless loop: read two lines, then ^C the CLI.
    let id = start(&daemon, &["/bin/bash", "-c", "while true; do echo $RANDOM; sleep 1; done"]);
    let mut streaming =
        daemon.cli("client1").args(["stream", &id]).stdout(Stdio::piped()).spawn().expect("stream");
    let mut lines = BufReader::new(streaming.stdout.take().expect("stdout")).lines();
    for _ in 0..2 {
        let line = lines.next().expect("a line").expect("read");
        assert!(line.parse::<u16>().is_ok(), "a $RANDOM number: {line:?}");
    }
    rrocker_tests::signal(streaming.id(), libc::SIGINT);
    assert!(!streaming.wait().expect("wait").success());

    let stop = run(&daemon, &["stop", &id]);
    assert_eq!(stdout(&stop), format!("Killed task {id}\n"));
    assert_eq!(stdout(&run(&daemon, &["query", &id])), "Task state: Killed\n");

    let missing = run(&daemon, &["stop", "abcdefgh-1234-5678-0987-abcdefgh"]);
    assert!(!missing.status.success());
    assert_eq!(stderr(&missing), "Task 'abcdefgh-1234-5678-0987-abcdefgh' doesn't exist\n");

    let again = run(&daemon, &["stop", &id]);
    assert!(!again.status.success());
    assert_eq!(stderr(&again), format!("Task '{id}' already finished\n"));

    let sleeper = start(&daemon, &["/bin/sleep", "1"]);
    assert_eq!(stdout(&run(&daemon, &["query", &sleeper])), "Task state: Running\n");
    let streamed = run(&daemon, &["stream", &sleeper]);
    assert_eq!(stderr(&streamed), "Task state: Completed\nExit code: 0\n");
    assert_eq!(
        stdout(&run(&daemon, &["query", &sleeper])),
        "Task state: Completed\nExit code: 0\n"
    );

    let true_task = start(&daemon, &["/bin/true"]);
    let streamed = run(&daemon, &["stream", &true_task]);
    assert!(streamed.status.success());
    assert_eq!(stdout(&streamed), "");
    assert_eq!(stderr(&streamed), "Task state: Completed\nExit code: 0\n");

    let missing_binary = run(&daemon, &["start", "/bin/a_binary_that_doesnt_exist", "some", "arg"]);
    assert!(!missing_binary.status.success());
    assert_eq!(
        stderr(&missing_binary),
        "Binary '/bin/a_binary_that_doesnt_exist' not found in base image.\n"
    );
}

#[test]
fn stream_to_a_file_is_byte_exact_and_status_goes_to_stderr() {
    let daemon = Daemon::start();
    let id =
        start(&daemon, &["/bin/sh", "-c", "printf 'a\\0b\\377\\n'; echo err >&2; printf tail"]);
    let streamed = run(&daemon, &["stream", &id]);
    assert!(streamed.status.success());
    assert_eq!(streamed.stdout, b"a\0b\xff\ntail");
    assert_eq!(stderr(&streamed), "err\nTask state: Completed\nExit code: 0\n");
}

#[test]
fn a_spilled_stream_of_both_descriptors_reaches_the_cli_byte_exact() {
    let daemon = Daemon::start();
    // 24 MiB on stdout in the pipe's large reads (the daemon's header-and-bytes frames, most
    // of it spilled), and a line at a time on stderr meanwhile (small messages, gathered).
    let script = "seq 1 20000 >&2 & head -c 24M /dev/zero | tr '\\0' x; wait";
    let ran = run(&daemon, &["run", "/bin/sh", "-c", script]);
    assert!(ran.status.success(), "{}", stderr(&ran));
    assert_eq!(ran.stdout.len(), 24 << 20);
    assert!(ran.stdout.iter().all(|byte| *byte == b'x'));
    let lines: Vec<String> = (1..=20_000).map(|n| format!("{n}\n")).collect();
    assert_eq!(stderr(&ran), lines.concat());
}

#[test]
fn list_and_rm() {
    let daemon = Daemon::start();
    let id = start(&daemon, &["/bin/true"]);
    let _ = run(&daemon, &["stream", &id]);
    let listed = stdout(&run(&daemon, &["list", "-a", "--no-trunc"]));
    assert!(listed.starts_with("ID "), "{listed}");
    assert!(listed.contains(&id) && listed.contains("Completed (0)"), "{listed}");
    let json: serde_json::Value =
        serde_json::from_slice(&run(&daemon, &["list", "-a", "--output", "json"]).stdout)
            .expect("json");
    assert_eq!(json[0]["id"], id.as_str());
    assert_eq!(json[0]["exit_code"], 0);
    assert_eq!(stdout(&run(&daemon, &["rm", &id])), format!("Removed task {id}\n"));
    assert_eq!(stderr(&run(&daemon, &["query", &id])), format!("Task '{id}' doesn't exist\n"));
}

#[test]
fn an_unreachable_daemon_is_one_plain_sentence() {
    let daemon = Daemon::start();
    let output = std::process::Command::new(rrocker_tests::bin_path("rrocker-cli"))
        .args(["--addr", "127.0.0.1:1", "--pki-dir"])
        .arg(daemon.pki_dir())
        .arg("list")
        .output()
        .expect("cli");
    assert!(!output.status.success());
    assert_eq!(
        stderr(&output),
        "Cannot talk to rrockerd at 127.0.0.1:1: connection refused (is rrockerd running there?)\n"
    );
}

#[test]
fn the_seed_limits_work_verbatim_and_query_shows_them_with_usage() {
    rrocker_tests::require_root!();
    let daemon = Daemon::start();
    let id = start(&daemon, &["--max-cpu", "50%", "--max-mem", "1G", "/bin/sleep", "10"]);
    let verbose = stdout(&run(&daemon, &["query", "-v", &id]));
    let lines: Vec<&str> = verbose.lines().collect();
    // The pids limit the start left unset is the daemon's default.
    let limits = "Limits: cpu 0.50 CPUs, memory 1.0 GiB, pids 1024 (default)";
    assert_eq!(lines[..2], ["Task state: Running", limits]);
    assert!(lines[2].starts_with("Usage: cpu "), "{verbose}");
    let json: serde_json::Value =
        serde_json::from_slice(&run(&daemon, &["query", "-o", "json", &id]).stdout).expect("json");
    assert_eq!(json["limits"]["cpu_quota_us"], 50_000);
    assert_eq!(json["limits"]["memory_max_bytes"], 1u64 << 30);
    assert!(json["usage"]["pids_peak"].as_u64().is_some_and(|peak| peak >= 2), "{json}");
    assert!(run(&daemon, &["stop", "--grace", "0", &id]).status.success());
}

#[test]
fn help_examples_completions_and_the_manual_page_come_without_a_daemon() {
    let cli = |args: &[&str]| {
        let output = std::process::Command::new(rrocker_tests::bin_path("rrocker-cli"))
            .args(args)
            .env("RROCKER_ADDR", "127.0.0.1:1")
            .output()
            .expect("run rrocker-cli");
        assert!(output.status.success(), "{args:?}: {}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8(output.stdout).expect("UTF-8")
    };
    let bash = cli(&["completions", "bash"]);
    for word in
        ["start", "run", "stop", "query", "stream", "ps", "list", "rm", "--max-mem", "--tail"]
    {
        assert!(bash.contains(word), "{word} missing from the bash completions");
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let script = dir.path().join("rrocker-cli.bash");
    std::fs::write(&script, &bash).expect("write");
    let checked = std::process::Command::new("bash").arg("-n").arg(&script).status().expect("bash");
    assert!(checked.success(), "bash finds the completion script malformed");
    assert!(cli(&["completions", "zsh"]).starts_with("#compdef rrocker-cli"));
    let commands = [
        "start",
        "run",
        "stop",
        "query",
        "stream",
        "logs",
        "ps",
        "list",
        "rm",
        "completions",
        "man",
    ];
    for command in commands {
        let help = cli(&[command, "--help"]);
        assert!(help.contains("\nExamples:\n  rrocker-cli "), "{command} --help has no example");
    }
    let man = cli(&["man"]);
    assert!(man.contains(".TH rrocker-cli 1"), "{man}");
    assert!(man.contains(".SH SUBCOMMANDS") && man.contains("rrocker\\-cli\\-start"), "{man}");
}
