//! Output throughput: a task writing 4 GiB to stdout in 64 KiB writes (`dd`), streamed over
//! mTLS to a client that discards it, against the same writer into a plain pipe read by a
//! plain reader (default pipe size, and enlarged to 1 MiB) in the same run. Then ten clients
//! streaming one task at once, and a late client replaying a finished task's whole output.
//! Reports GB/s, the CPU-seconds per GiB the daemon and the clients (this process) spend
//! (from /proc, since the two cores are saturated and shared), and the daemon's peak RSS
//! during each. Run:
//! `cargo build --release --workspace --bins && cargo bench -p rrocker-benches --bench stream_throughput`.

use std::io::Read;
use std::os::fd::AsFd;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rrocker_benches::{CpuMeter, cpu_seconds, drain, quick, rss_kib, write_result};
use rrocker_proto::v1::RemoveRequest;
use rrocker_tests::{Daemon, command};

const WRITE_SIZE: u64 = 64 * 1024;
const CLIENTS: usize = 10;

fn main() {
    let total: u64 = if quick() { 64 << 20 } else { 4 << 30 };
    let count = (total / WRITE_SIZE).to_string();
    let dd = ["dd", "if=/dev/zero", "bs=64K", &format!("count={count}"), "status=none"];
    let gb = |bytes: u64, time: Duration| bytes as f64 / time.as_secs_f64() / 1e9;

    let reader_cpu = cpu_seconds(None);
    let plain = plain_pipe(&dd, None);
    let plain_cpu = (cpu_seconds(None) - reader_cpu) / (total as f64 / f64::from(1u32 << 30));
    let enlarged = plain_pipe(&dd, Some(1 << 20));

    let runtime = rrocker_benches::runtime();
    let daemon = Daemon::start();
    let argv: Vec<&str> = std::iter::once("/bin/dd").chain(dd[1..].iter().copied()).collect();
    let results = runtime.block_on(async {
        let mut control = daemon.client("client1").await;

        // One client, from the start of the task.
        let one = daemon.channel("client1").await;
        let peak = RssSampler::start(daemon.pid());
        let cpu = CpuMeter::start(daemon.pid());
        let begin = Instant::now();
        let id = control.start(command(&argv)).await.expect("start").into_inner().task_id;
        assert_eq!(drain(&one, &id).await, total);
        let single = (begin.elapsed(), peak.stop(), cpu.per_gib(total));

        // A late client: the task has ended; its whole output is replayed.
        let peak = RssSampler::start(daemon.pid());
        let cpu = CpuMeter::start(daemon.pid());
        let begin = Instant::now();
        assert_eq!(drain(&one, &id).await, total);
        let late = (begin.elapsed(), peak.stop(), cpu.per_gib(total));
        control.remove(RemoveRequest { task_id: id }).await.expect("rm");

        // Ten clients on their own connections, all following one task.
        let mut clients = Vec::new();
        for _ in 0..CLIENTS {
            clients.push(daemon.channel("client1").await);
        }
        let peak = RssSampler::start(daemon.pid());
        let cpu = CpuMeter::start(daemon.pid());
        let begin = Instant::now();
        let id = control.start(command(&argv)).await.expect("start").into_inner().task_id;
        let streams = clients.into_iter().map(|client| {
            let id = id.clone();
            tokio::spawn(async move {
                let begin = Instant::now();
                let bytes = drain(&client, &id).await;
                (bytes, begin.elapsed())
            })
        });
        let each: Vec<(u64, Duration)> = futures_util::future::join_all(streams)
            .await
            .into_iter()
            .map(|joined| joined.expect("client"))
            .collect();
        let all = begin.elapsed();
        let many = (all, peak.stop(), each, cpu.per_gib(total * CLIENTS as u64));
        control.remove(RemoveRequest { task_id: id }).await.expect("rm");
        (single, late, many)
    });
    let (
        (single, single_rss, single_cpu),
        (late, late_rss, late_cpu),
        (all, many_rss, each, many_cpu),
    ) = results;
    assert!(each.iter().all(|(bytes, _)| *bytes == total));
    let slowest = each.iter().map(|(_, time)| *time).max().expect("clients");

    let base = gb(total, plain);
    println!("stream_throughput: {} MiB in 64 KiB writes", total >> 20);
    println!(
        "{:<44} {:>8} {:>10} {:>16} {:>16} {:>16}",
        "", "GB/s", "vs pipe", "daemon CPU-s/GiB", "client CPU-s/GiB", "daemon peak RSS"
    );
    let row = |name: &str, rate: f64, cpu: (Option<f64>, Option<f64>), rss: Option<u64>| {
        let rss = rss.map_or_else(|| "-".to_owned(), |kib| format!("{} MiB", kib >> 10));
        let shown =
            |seconds: Option<f64>| seconds.map_or_else(|| "-".to_owned(), |s| format!("{s:.2}"));
        println!(
            "{name:<44} {rate:>8.3} {:>9.2}x {:>16} {:>16} {rss:>16}",
            rate / base,
            shown(cpu.0),
            shown(cpu.1)
        );
    };
    let both = |(daemon, client): (f64, f64)| (Some(daemon), Some(client));
    row("plain pipe (baseline)", base, (None, Some(plain_cpu)), None);
    row("plain pipe, 1 MiB", gb(total, enlarged), (None, None), None);
    row("rrocker, one client", gb(total, single), both(single_cpu), Some(single_rss));
    row(
        &format!("rrocker, {CLIENTS} clients (aggregate)"),
        gb(total * CLIENTS as u64, all),
        both(many_cpu),
        Some(many_rss),
    );
    row(
        &format!("rrocker, {CLIENTS} clients (slowest client)"),
        gb(total, slowest),
        (None, None),
        None,
    );
    row("rrocker, late client replaying", gb(total, late), both(late_cpu), Some(late_rss));
    let result = serde_json::json!({
        "bytes": total,
        "plain_pipe_gbps": base,
        "plain_pipe_1mib_gbps": gb(total, enlarged),
        "one_client_gbps": gb(total, single),
        "one_client_peak_rss_kib": single_rss,
        "one_client_daemon_cpu_s_per_gib": single_cpu.0,
        "one_client_client_cpu_s_per_gib": single_cpu.1,
        "plain_pipe_reader_cpu_s_per_gib": plain_cpu,
        "clients_daemon_cpu_s_per_gib": many_cpu.0,
        "clients_client_cpu_s_per_gib": many_cpu.1,
        "late_replay_daemon_cpu_s_per_gib": late_cpu.0,
        "late_replay_client_cpu_s_per_gib": late_cpu.1,
        "clients": CLIENTS,
        "clients_aggregate_gbps": gb(total * CLIENTS as u64, all),
        "clients_slowest_gbps": gb(total, slowest),
        "clients_peak_rss_kib": many_rss,
        "late_replay_gbps": gb(total, late),
        "late_replay_peak_rss_kib": late_rss,
    });
    match write_result("stream_throughput", &result) {
        Ok(path) => println!("result: {}", path.display()),
        Err(error) => eprintln!("cannot write the result file: {error}"),
    }
}

/// Runs `writer` into a pipe (of `size` bytes if given) read to its end in 64 KiB reads;
/// returns the time from spawn to the reader's end of file.
fn plain_pipe(writer: &[&str], size: Option<usize>) -> Duration {
    let (read_end, write_end) = rustix::pipe::pipe().expect("pipe");
    if let Some(size) = size {
        rustix::pipe::fcntl_setpipe_size(read_end.as_fd(), size).expect("F_SETPIPE_SZ");
    }
    let begin = Instant::now();
    let mut child = Command::new(writer[0])
        .args(&writer[1..])
        .stdout(Stdio::from(write_end))
        .spawn()
        .expect("writer");
    let mut reader = std::fs::File::from(read_end);
    let mut buffer = vec![0u8; 64 * 1024];
    while reader.read(&mut buffer).expect("read") != 0 {}
    let elapsed = begin.elapsed();
    assert!(child.wait().expect("wait").success());
    elapsed
}

/// Samples a process's RSS every 20 ms on a thread and keeps the peak.
struct RssSampler {
    done: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
    thread: std::thread::JoinHandle<()>,
}

impl RssSampler {
    fn start(pid: u32) -> Self {
        let done = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(AtomicU64::new(rss_kib(pid)));
        let thread = {
            let (done, peak) = (Arc::clone(&done), Arc::clone(&peak));
            std::thread::spawn(move || {
                while !done.load(Ordering::Relaxed) {
                    peak.fetch_max(rss_kib(pid), Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(20));
                }
            })
        };
        Self { done, peak, thread }
    }

    /// Stops sampling; the peak RSS in KiB.
    fn stop(self) -> u64 {
        self.done.store(true, Ordering::Relaxed);
        let _ = self.thread.join();
        self.peak.load(Ordering::Relaxed)
    }
}
