//! A task's stdin: `head -c SIZE /dev/zero | rrocker-cli run -i --rm /usr/bin/wc -c` against
//! the same pipeline into `wc -c` on the host, interleaved, three rounds each: GB/s, the
//! ratio, and CPU-seconds per GiB of the daemon (/proc) and of the pipeline's processes
//! (children's rusage: head and the CLI, or head and wc). Then a task that reads 1 MiB a
//! second while the CLI offers it 1 GiB: the daemon's RSS above its idle RSS, sampled each
//! second, which flow control keeps small. Run:
//! `cargo build --release --workspace --bins && cargo bench -p rrocker-benches --bench stdin_throughput`.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rrocker_benches::{cpu_seconds, quick, rss_kib, write_result};
use rrocker_tests::{Daemon, children_cpu_seconds};

fn main() {
    let (size_mib, rounds, slow_seconds) = if quick() { (64u64, 1, 2) } else { (1024, 3, 10) };
    let daemon = Daemon::start();
    let cli = rrocker_tests::bin_path("rrocker-cli");
    let pipeline = |sink: &str| {
        let mut command = Command::new("/bin/sh");
        command
            .arg("-c")
            .arg(format!("head -c {size_mib}M /dev/zero | {sink}"))
            .stdout(Stdio::null());
        command
    };
    let mut through_rrocker = pipeline(&format!("'{}' run -i --rm /usr/bin/wc -c", cli.display()));
    through_rrocker
        .env("RROCKER_ADDR", daemon.addr().to_string())
        .env("RROCKER_IDENTITY", "client1")
        .env("RROCKER_PKI_DIR", daemon.pki_dir());
    let mut host = pipeline("wc -c");
    let timed = |command: &mut Command| {
        let (begin, children) = (Instant::now(), children_cpu_seconds());
        let status = command.status().expect("spawn");
        assert!(status.success(), "{command:?}: {status}");
        (begin.elapsed(), children_cpu_seconds() - children)
    };
    let bytes = size_mib << 20;
    let gib = bytes as f64 / f64::from(1u32 << 30);
    let gbps = |elapsed: Duration| bytes as f64 / elapsed.as_secs_f64() / 1e9;
    let (mut pipe_rates, mut rrocker_rates) = (Vec::new(), Vec::new());
    let (mut pipe_cpu, mut cli_cpu, mut daemon_cpu) = (0.0, 0.0, 0.0);
    for _ in 0..rounds {
        let (elapsed, cpu) = timed(&mut host);
        pipe_rates.push(gbps(elapsed));
        pipe_cpu += cpu;
        let daemon_before = cpu_seconds(Some(daemon.pid()));
        let (elapsed, cpu) = timed(&mut through_rrocker);
        daemon_cpu += cpu_seconds(Some(daemon.pid())) - daemon_before;
        rrocker_rates.push(gbps(elapsed));
        cli_cpu += cpu;
    }
    let median = |rates: &mut Vec<f64>| {
        rates.sort_by(f64::total_cmp);
        rates[rates.len() / 2]
    };
    let (pipe, rrocker) = (median(&mut pipe_rates), median(&mut rrocker_rates));
    let per_gib = |seconds: f64| seconds / gib / f64::from(rounds);
    println!("stdin_throughput, {size_mib} MiB, {rounds} rounds interleaved (medians)");
    println!("{:<44} {:>8} {:>14}", "", "GB/s", "CPU-s/GiB");
    println!("{:<44} {:>8.2} {:>14.2}", "head | wc -c (baseline)", pipe, per_gib(pipe_cpu));
    println!(
        "{:<44} {:>8.2} {:>14.2}",
        "head | rrocker-cli run -i wc -c",
        rrocker,
        per_gib(cli_cpu)
    );
    println!("{:<44} {:>8} {:>14.2}", "  the daemon", "", per_gib(daemon_cpu));
    println!("ratio against the pipe: {:.2}x", rrocker / pipe);

    // A reader of 1 MiB a second, offered 1 GiB: what the daemon holds meanwhile.
    let idle = rss_kib(daemon.pid());
    let reader =
        "echo up; while n=$(head -c 1048576 | wc -c); [ $n -gt 0 ]; do echo read; sleep 1; done";
    let mut feeder = Command::new("head")
        .args(["-c", "1G", "/dev/zero"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("head");
    // (The builder, which holds the pipe's read end too, is gone once the CLI runs.)
    let mut slow = daemon
        .cli("client1")
        .args(["run", "-i", "/bin/sh", "-c", reader])
        .stdin(feeder.stdout.take().expect("piped"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("run -i");
    let mut lines =
        std::io::BufRead::lines(std::io::BufReader::new(slow.stdout.take().expect("piped stdout")));
    let mut peak = 0;
    for _ in 0..slow_seconds {
        // One line a second: a read of the task's, the clock of this sampling.
        lines.next().expect("a line").expect("read");
        peak = peak.max(rss_kib(daemon.pid()));
    }
    // The CLI gone, the task's stdin is closed (it ends), and head's pipe is broken.
    let _ = slow.kill();
    let _ = (slow.wait(), feeder.wait());
    let above_mib = peak.saturating_sub(idle) as f64 / 1024.0;
    println!(
        "a task reading 1 MiB/s, offered 1 GiB: daemon RSS {:.1} MiB above idle ({:.1} MiB) over {slow_seconds} s",
        above_mib,
        idle as f64 / 1024.0
    );
    let written = write_result(
        "stdin_throughput",
        &serde_json::json!({
            "size_mib": size_mib,
            "rounds": rounds,
            "pipe_gbps": pipe,
            "rrocker_gbps": rrocker,
            "ratio": rrocker / pipe,
            "pipe_cpu_s_per_gib": per_gib(pipe_cpu),
            "cli_pipeline_cpu_s_per_gib": per_gib(cli_cpu),
            "daemon_cpu_s_per_gib": per_gib(daemon_cpu),
            "slow_reader_rss_above_idle_mib": above_mib,
        }),
    );
    match written {
        Ok(path) => println!("result: {}", path.display()),
        Err(error) => eprintln!("cannot write the result file: {error}"),
    }
}
