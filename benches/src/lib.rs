//! Shared pieces of rrocker's benchmarks: timing summaries and result files. Every benchmark
//! measures a baseline in the same run and reports rrocker as a ratio against it, because the
//! machines these run on are shared and noisy.

pub mod oci;

use std::path::PathBuf;
use std::time::Duration;

/// The client runtime every benchmark drives rrocker from: two worker threads, like the
/// machine's two cores.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// Whether the quick mode (`RROCKER_BENCH_QUICK=1`) is on: few iterations, for CI.
pub fn quick() -> bool {
    std::env::var_os("RROCKER_BENCH_QUICK").is_some_and(|value| value != "0")
}

/// Order statistics of a set of durations.
#[derive(Debug, Clone, Copy)]
pub struct Summary {
    /// Fastest.
    pub min: Duration,
    /// Median.
    pub p50: Duration,
    /// 90th percentile.
    pub p90: Duration,
    /// 99th percentile.
    pub p99: Duration,
}

impl Summary {
    /// Summarises `samples` (at least one).
    pub fn of(samples: &mut [Duration]) -> Self {
        assert!(!samples.is_empty(), "no samples");
        samples.sort_unstable();
        let at = |quantile: f64| {
            // The index is within 0..len by construction.
            #[allow(
                clippy::cast_possible_truncation,
                clippy::cast_sign_loss,
                clippy::cast_precision_loss
            )]
            let index = ((samples.len() - 1) as f64 * quantile).round() as usize;
            samples[index]
        };
        Self { min: samples[0], p50: at(0.5), p90: at(0.9), p99: at(0.99) }
    }

    /// The summary as JSON, in microseconds.
    pub fn to_json(self) -> serde_json::Value {
        let us = |duration: Duration| duration.as_secs_f64() * 1e6;
        serde_json::json!({
            "min_us": us(self.min), "p50_us": us(self.p50), "p90_us": us(self.p90), "p99_us": us(self.p99)
        })
    }
}

/// Writes a benchmark's JSON result to `<target>/rrocker-bench/<name>.json` (`.quick.json`
/// in quick mode) and returns the path.
pub fn write_result(name: &str, result: &serde_json::Value) -> std::io::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let target =
        exe.ancestors().nth(3).map(PathBuf::from).unwrap_or_else(|| PathBuf::from("target"));
    let dir = target.join("rrocker-bench");
    std::fs::create_dir_all(&dir)?;
    // Quick runs (CI) never overwrite a full run's result.
    let path =
        dir.join(if quick() { format!("{name}.quick.json") } else { format!("{name}.json") });
    std::fs::write(&path, serde_json::to_vec_pretty(result)?)?;
    Ok(path)
}

/// What a running daemon holds: the counts that must not grow with the tasks it has run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DaemonCounts {
    /// Open fds, but the network namespaces the daemon's pool keeps ready (up to seven).
    pub fds: usize,
    /// Threads.
    pub threads: usize,
    /// Resident memory in KiB.
    pub rss_kib: u64,
    /// Mounts in the daemon's mount namespace plus the host's.
    pub mounts: usize,
    /// Task cgroups below the daemon's parent, in every hierarchy.
    pub cgroups: usize,
}

impl DaemonCounts {
    /// Reads the counts of `daemon` from /proc and the cgroup file systems.
    pub fn of(daemon: &rrocker_tests::Daemon) -> Self {
        Self::with_fds(daemon, daemon.open_fds().0)
    }

    /// [`Self::of`] once the daemon's network namespace pool is full and its maker idle (it
    /// opens files and sockets while it makes one): for counts compared for leaks.
    pub async fn at_rest(daemon: &rrocker_tests::Daemon) -> Self {
        let fds = daemon.open_fds_at_rest().await;
        Self::with_fds(daemon, fds)
    }

    fn with_fds(daemon: &rrocker_tests::Daemon, fds: usize) -> Self {
        let pid = daemon.pid();
        let count = |path: String| std::fs::read_dir(path).map_or(0, Iterator::count);
        let lines = |path: String| std::fs::read_to_string(path).map_or(0, |t| t.lines().count());
        Self {
            fds,
            threads: count(format!("/proc/{pid}/task")),
            rss_kib: rss_kib(pid),
            mounts: lines(format!("/proc/{pid}/mountinfo")) + lines("/proc/self/mountinfo".into()),
            cgroups: daemon.task_cgroups().len(),
        }
    }

    /// Whether nothing grew from `before` to `self`: fds, mounts and cgroups are equal, the
    /// threads no more (the runtimes' blocking pools shrink when idle); RSS is not compared
    /// (the allocator may keep memory).
    pub fn nothing_leaked_since(self, before: Self) -> bool {
        (self.fds, self.mounts, self.cgroups) == (before.fds, before.mounts, before.cgroups)
            && self.threads <= before.threads
    }

    /// Name and value of each count, for tables.
    pub fn rows(self) -> [(&'static str, u64); 5] {
        [
            ("fds", self.fds as u64),
            ("threads", self.threads as u64),
            ("rss KiB", self.rss_kib),
            ("mounts", self.mounts as u64),
            ("cgroups", self.cgroups as u64),
        ]
    }

    /// The counts as JSON.
    pub fn to_json(self) -> serde_json::Value {
        serde_json::json!({
            "fds": self.fds, "threads": self.threads, "rss_kib": self.rss_kib,
            "mounts": self.mounts, "cgroups": self.cgroups,
        })
    }
}

/// Resident memory of process `pid` in KiB (VmRSS), 0 if unknown.
pub fn rss_kib(pid: u32) -> u64 {
    rrocker_tests::status_kib(pid, "VmRSS").unwrap_or(0)
}

pub use rrocker_tests::cpu_seconds;

/// CPU-seconds the daemon and this process (the clients) spend between [`CpuMeter::start`]
/// and [`CpuMeter::per_gib`].
#[derive(Debug, Clone, Copy)]
pub struct CpuMeter {
    daemon_pid: u32,
    daemon: f64,
    client: f64,
}

impl CpuMeter {
    /// Starts counting the daemon `daemon_pid`'s CPU time and this process's.
    pub fn start(daemon_pid: u32) -> Self {
        Self { daemon_pid, daemon: cpu_seconds(Some(daemon_pid)), client: cpu_seconds(None) }
    }

    /// CPU-seconds per GiB of `bytes` delivered since the start: (daemon, clients).
    pub fn per_gib(self, bytes: u64) -> (f64, f64) {
        let gib = bytes as f64 / f64::from(1u32 << 30);
        let daemon = cpu_seconds(Some(self.daemon_pid)) - self.daemon;
        let client = cpu_seconds(None) - self.client;
        (daemon / gib, client / gib)
    }
}

/// Streams a task to its end on `channel`, discarding the output, as the CLI reads a stream
/// (`rrocker_cli::stream_body`); returns the output bytes received.
pub async fn drain(channel: &tonic::transport::Channel, id: &str) -> u64 {
    let request = rrocker_proto::v1::StreamRequest { task_id: id.into(), ..Default::default() };
    let mut events = rrocker_cli::stream_body::OutputStream::open(channel.clone(), request)
        .await
        .expect("open the stream");
    let mut bytes = 0;
    while let Some(message) = events.message().await.expect("message") {
        if let Some(rrocker_proto::v1::stream_response::Event::Output(output)) = message.event {
            bytes += output.data.len() as u64;
        }
    }
    bytes
}
