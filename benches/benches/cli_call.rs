//! The cost of one CLI call as a whole process: `rrocker-cli query ID` (process start-up,
//! PEM files, TLS handshake, HTTP/2 preface, the RPC, exit) against fork+exec of /bin/true,
//! measured the same way in the same run, the two interleaved so that the machine's noise
//! falls on both. Reports p50s and the difference (the target: at most 1.5 ms above), and the
//! CPU the CLI and the daemon spend per call (from /proc). Run:
//! `cargo build --release --workspace --bins && cargo bench -p rrocker-benches --bench cli_call`.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rrocker_benches::{Summary, cpu_seconds, quick, write_result};
use rrocker_tests::children_cpu_seconds;
use rrocker_tests::{Daemon, command};

fn main() {
    let iterations = if quick() { 20 } else { 300 };
    let runtime = rrocker_benches::runtime();
    let daemon = Daemon::start();
    let id = runtime.block_on(async {
        let mut client = daemon.client("client1").await;
        client.start(command(&["/bin/true"])).await.expect("start").into_inner().task_id
    });
    let mut query = daemon.cli("client1");
    query.args(["query", &id]).stdout(Stdio::null()).stderr(Stdio::null());
    let mut truth = Command::new("/bin/true");
    let run = |command: &mut Command| {
        let begin = Instant::now();
        let status = command.status().expect("spawn");
        assert!(status.success(), "{command:?}: {status}");
        begin.elapsed()
    };
    // One of each first: page cache and connection set-up in the daemon warmed.
    run(&mut truth);
    run(&mut query);

    let (mut true_times, mut query_times) = (Vec::new(), Vec::new());
    let (mut cli_cpu, daemon_before) = (0.0, cpu_seconds(Some(daemon.pid())));
    for _ in 0..iterations {
        true_times.push(run(&mut truth));
        let children_before = children_cpu_seconds();
        query_times.push(run(&mut query));
        cli_cpu += children_cpu_seconds() - children_before;
    }
    let daemon_cpu = cpu_seconds(Some(daemon.pid())) - daemon_before;
    let (fork_exec, cli) = (Summary::of(&mut true_times), Summary::of(&mut query_times));
    let ms = |duration: Duration| duration.as_secs_f64() * 1e3;
    let per_call = |seconds: f64| seconds * 1e3 / f64::from(iterations);
    println!("cli_call, {iterations} calls of each, interleaved (ms)");
    println!("{:<34} {:>8} {:>8} {:>8}", "", "min", "p50", "p90");
    for (name, summary) in
        [("fork+exec /bin/true (baseline)", fork_exec), ("rrocker-cli query", cli)]
    {
        println!(
            "{name:<34} {:>8.3} {:>8.3} {:>8.3}",
            ms(summary.min),
            ms(summary.p50),
            ms(summary.p90)
        );
    }
    let above = ms(cli.p50) - ms(fork_exec.p50);
    println!("query p50 above fork+exec: {above:.3} ms (target: at most 1.5)");
    println!(
        "CPU per call: the CLI {:.3} ms, the daemon {:.3} ms",
        per_call(cli_cpu),
        per_call(daemon_cpu)
    );
    let written = write_result(
        "cli_call",
        &serde_json::json!({
            "iterations": iterations,
            "fork_exec": fork_exec.to_json(),
            "cli_query": cli.to_json(),
            "p50_above_fork_exec_ms": above,
            "cli_cpu_ms_per_call": per_call(cli_cpu),
            "daemon_cpu_ms_per_call": per_call(daemon_cpu),
        }),
    );
    match written {
        Ok(path) => println!("result: {}", path.display()),
        Err(error) => eprintln!("cannot write the result file: {error}"),
    }
}
