//! Output keeps the time it was read: `logs -t` prints it before each line, and `--since` /
//! `--until` select by it, done by the daemon (which seeks through its index of the spill
//! file; the seek itself is unit-tested in the engine). A task printing a line a second for
//! 30 s, once kept in memory and once spilled to disk, through the real CLI.

use std::io::{BufRead, BufReader};
use std::process::{Output, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rrocker_tests::Daemon;

fn cli(daemon: &Daemon, args: &[&str]) -> Output {
    daemon.cli("client1").args(args).output().expect("run rrocker-cli")
}

/// The stdout of a CLI call that must succeed.
fn cli_ok(daemon: &Daemon, args: &[&str]) -> String {
    let output = cli(daemon, args);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "rrocker-cli {args:?}: {stderr}");
    String::from_utf8(output.stdout).expect("utf8")
}

fn ns(at: SystemTime) -> u64 {
    u64::try_from(at.duration_since(UNIX_EPOCH).expect("after 1970").as_nanos()).expect("u64")
}

fn rfc3339(at_ns: u64) -> String {
    humantime::format_rfc3339_nanos(UNIX_EPOCH + Duration::from_nanos(at_ns)).to_string()
}

/// `logs -t` lines as (time, first word after it).
fn stamped(text: &str) -> Vec<(u64, String)> {
    text.lines()
        .map(|line| {
            let (time, rest) = line.split_once(' ').unwrap_or_else(|| panic!("no time: {line}"));
            let at =
                humantime::parse_rfc3339(time).unwrap_or_else(|_| panic!("not RFC 3339: {line}"));
            (ns(at), rest.split(' ').next().unwrap_or_default().to_owned())
        })
        .collect()
}

/// The `lineN` words of plain `logs` output.
fn words(text: &str) -> Vec<String> {
    text.lines().map(|line| line.split(' ').next().unwrap_or_default().to_owned()).collect()
}

fn lines(numbers: std::ops::RangeInclusive<u32>) -> Vec<String> {
    numbers.map(|number| format!("line{number}")).collect()
}

/// Starts a task printing `lineN` (then `pad` bytes of padding) once a second, 30 times.
fn start_a_line_a_second(daemon: &Daemon, pad: usize) -> String {
    let script = format!(
        "pad=$(head -c {pad} /dev/zero | tr '\\0' x); for i in $(seq 1 30); do echo \"line$i $pad\"; sleep 1; done"
    );
    cli_ok(daemon, &["start", "/bin/sh", "-c", &script]).trim().to_owned()
}

/// Follows the task's output until a line starts with `word`.
fn wait_for_line(daemon: &Daemon, id: &str, word: &str) {
    let mut logs = daemon
        .cli("client1")
        .args(["logs", "-f", id])
        .stdout(Stdio::piped())
        .spawn()
        .expect("logs");
    let reader = BufReader::new(logs.stdout.take().expect("stdout"));
    for line in reader.lines() {
        if line.expect("a line").starts_with(&format!("{word} ")) {
            break;
        }
    }
    logs.kill().expect("end our logs -f");
    logs.wait().expect("reap our logs -f");
}

/// Waits for the task's end; checks `logs -t` against its run, then `--since`/`--until`
/// by the times it printed.
fn check_times_of(daemon: &Daemon, id: &str) {
    assert_eq!(cli_ok(daemon, &["wait", id]), "0\n");
    let status: serde_json::Value =
        serde_json::from_str(&cli_ok(daemon, &["query", "-o", "json", id])).expect("json");
    let created_ns = status["created_at_ms"].as_u64().expect("created") * 1_000_000;
    let finished_ns = (status["finished_at_ms"].as_u64().expect("finished") + 1) * 1_000_000;

    let all = stamped(&cli_ok(daemon, &["logs", "-t", id]));
    let numbers: Vec<String> = all.iter().map(|(_, word)| word.clone()).collect();
    assert_eq!(numbers, lines(1..=30));
    for pair in all.windows(2) {
        assert!(pair[0].0 <= pair[1].0, "times go back: {pair:?}");
    }
    for (at, word) in &all {
        assert!((created_ns..=finished_ns).contains(at), "{word} at {at}, outside the run");
    }
    let time = |line: usize| all[line - 1].0;
    // Between two lines (a second apart): half-way.
    let between = |line: usize| rfc3339((time(line) + time(line + 1)) / 2);
    assert!(time(21) > time(20) + 1, "lines read apart (a second between them): {all:?}");

    let logs = |args: &[&str]| {
        let mut full = vec!["logs"];
        full.extend_from_slice(args);
        full.push(id);
        words(&cli_ok(daemon, &full))
    };
    assert_eq!(logs(&["--since", &between(20)]), lines(21..=30));
    assert_eq!(logs(&["--until", &between(20)]), lines(1..=20));
    let unix_seconds = format!("{:.3}", (time(10) + time(11)) as f64 / 2e9);
    assert_eq!(logs(&["--since", &unix_seconds, "--until", &between(14)]), lines(11..=14));
    assert_eq!(logs(&["--tail", "3", "--since", &between(10)]), lines(28..=30));
    assert_eq!(logs(&["--tail", "30", "--since", &between(27)]), lines(28..=30));
    assert_eq!(logs(&["--since", &rfc3339(time(30) + 1)]), Vec::<String>::new());
    assert_eq!(logs(&["--since", &rfc3339(time(1))]), lines(1..=30));
    // stream takes them too, and -t there as well.
    let streamed = cli(daemon, &["stream", "-t", "--since", &between(28), id]);
    let streamed_lines = stamped(&String::from_utf8(streamed.stdout).expect("utf8"));
    assert_eq!(streamed_lines, all[28..]);

    let refused = cli(daemon, &["logs", "--since", "5m", "--until", "10m", id]);
    assert!(!refused.status.success());
    assert_eq!(
        String::from_utf8_lossy(&refused.stderr),
        "--since is after --until: no output is printed in between\n"
    );
    let bad = cli(daemon, &["logs", "--since", "yesterday", id]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("invalid time 'yesterday'"));
}

#[test]
fn a_line_a_second_kept_in_memory_is_selected_by_its_times() {
    let daemon = Daemon::start();
    let id = start_a_line_a_second(&daemon, 0);
    wait_for_line(&daemon, &id, "line3");
    // Following until a time: the stream ends once it passes, the task running on.
    let until = ns(SystemTime::now()) + 2_000_000_000;
    let followed = cli_ok(&daemon, &["logs", "-f", "-t", "--until", &rfc3339(until), &id]);
    let followed = stamped(&followed);
    assert!(followed.len() >= 3, "{followed:?}");
    assert_eq!(
        followed[..3].iter().map(|(_, word)| word.clone()).collect::<Vec<_>>(),
        lines(1..=3)
    );
    assert!(followed.iter().all(|(at, _)| *at <= until), "{followed:?} after {until}");
    assert_eq!(cli_ok(&daemon, &["query", &id]), "Task state: Running\n");
    check_times_of(&daemon, &id);
    assert_eq!(daemon.spill_files(), 0, "30 short lines stay in memory");
}

#[tokio::test]
async fn a_line_a_second_spilled_to_disk_is_selected_by_its_times() {
    // A 64 KiB window and 40 KB lines: all but the newest line or so go to the spill file
    // (1.2 MB of it, past the index's first checkpoint at 1 MiB).
    let daemon = Daemon::start_with(&["--output-window-bytes", "65536"]);
    let id = start_a_line_a_second(&daemon, 40_000);
    check_times_of(&daemon, &id);
    assert!(daemon.spill_files() >= 1, "the task's output was spilled");
    // Its writer's fd is closed once the engine is done with the task; its log's stays.
    rrocker_tests::eventually("one spill file fd", || daemon.spill_files() == 1).await;
}
