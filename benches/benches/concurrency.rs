//! Scale: ramps up to 1,000 running tasks (then 20 more), each a bash loop printing a timestamp every second
//! and each followed by its own streaming client on its own mTLS connection. Reports the
//! start latency (Start reply, p50/p99) with 0, 100, 500 and 1,000 tasks running (the ratio
//! is against 0 running, the baseline of the same run), the daemon's RSS and fds per running
//! task, and line latency (the task's timestamp to the client's receipt, p50/p99). It runs
//! twice: tasks cloned by the spawner (the default), then by the engine thread
//! (`--no-spawner`), for the spawner's gain in the same run.
//! Run: `cargo build --release --workspace --bins && cargo bench -p rrocker-benches --bench concurrency`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rrocker_benches::{DaemonCounts, Summary, quick, write_result};
use rrocker_proto::v1::StreamRequest;
use rrocker_proto::v1::stream_response::Event;
use rrocker_tests::{Client, Daemon};

/// Starts timed at each level.
const SAMPLES: usize = 50;
/// A task printing its clock every second without forking (`read -t` on a silent coproc).
const TICKER: &str = "coproc cat; while :; do echo $EPOCHREALTIME; read -t 1 -u ${COPROC[0]}; done";

/// What one daemon gave.
struct Measured {
    idle: DaemonCounts,
    rows: Vec<(usize, Summary)>,
    full: (usize, DaemonCounts),
    line_latency: Summary,
    line_samples: usize,
}

fn main() {
    let (levels, listen): (&[usize], Duration) = if quick() {
        (&[0, 20, 50], Duration::from_secs(2))
    } else {
        (&[0, 100, 500, 1000], Duration::from_secs(5))
    };
    let runtime = rrocker_benches::runtime();
    // The same run, twice: tasks cloned by the spawner (the default), then by the engine
    // thread itself, as before the spawner existed: the baseline of the spawner's gain.
    let spawner = measure(&runtime, &[], levels, listen);
    let engine = measure(&runtime, &["--no-spawner"], levels, listen);

    let ms = |d: Duration| format!("{:.3}", d.as_secs_f64() * 1e3);
    let (most, full) = spawner.full;
    println!("concurrency: up to {most} running tasks, each with its own streaming client");
    println!(
        "{:<30} {:>8} {:>8} {:>10} {:>22}",
        "Start reply (ms)", "p50", "p99", "p50 ratio", "--no-spawner p50/p99"
    );
    let baseline = spawner.rows[0].1.p50.as_secs_f64();
    for ((level, summary), (_, without)) in spawner.rows.iter().zip(&engine.rows) {
        println!(
            "{:<30} {:>8} {:>8} {:>9.2}x {:>22}",
            format!("with {level} running"),
            ms(summary.p50),
            ms(summary.p99),
            summary.p50.as_secs_f64() / baseline,
            format!("{} / {}", ms(without.p50), ms(without.p99)),
        );
    }
    let per_task = |grown: u64| grown as f64 / most as f64;
    let rss_per_task = per_task(full.rss_kib.saturating_sub(spawner.idle.rss_kib)) * 1024.0;
    let fds_per_task = per_task((full.fds.saturating_sub(spawner.idle.fds)) as u64);
    println!(
        "daemon at {most} running: RSS {} MiB ({:.0} bytes per task), {} fds ({:.1} per task incl. its client's connection), {} threads",
        full.rss_kib >> 10,
        rss_per_task,
        full.fds,
        fds_per_task,
        full.threads
    );
    println!(
        "line latency over {} lines: p50 {} ms, p99 {} ms",
        spawner.line_samples,
        ms(spawner.line_latency.p50),
        ms(spawner.line_latency.p99)
    );
    let start_reply = |measured: &Measured| {
        measured
            .rows
            .iter()
            .map(|(level, s)| serde_json::json!({"running": level, "summary": s.to_json()}))
            .collect::<Vec<_>>()
    };
    let result = serde_json::json!({
        "running": most,
        "start_reply": start_reply(&spawner),
        "start_reply_without_spawner": start_reply(&engine),
        "idle": spawner.idle.to_json(),
        "full": full.to_json(),
        "rss_bytes_per_task": rss_per_task,
        "fds_per_task": fds_per_task,
        "line_latency": spawner.line_latency.to_json(),
        "line_samples": spawner.line_samples,
    });
    match write_result("concurrency", &result) {
        Ok(path) => println!("result: {}", path.display()),
        Err(error) => eprintln!("cannot write the result file: {error}"),
    }
}

/// Ramps a daemon started with `args` through `levels` of running tasks and measures it.
fn measure(
    runtime: &tokio::runtime::Runtime,
    args: &[&str],
    levels: &[usize],
    listen: Duration,
) -> Measured {
    let daemon = Daemon::start_with(args);
    let latencies: Arc<Mutex<Option<Vec<Duration>>>> = Arc::new(Mutex::new(None));
    runtime.block_on(async {
        let mut control = daemon.client("client1").await;
        let idle = DaemonCounts::of(&daemon);
        let mut running = 0;
        let mut rows = Vec::new();
        let mut full = (0, idle);
        for &level in levels {
            // Ramp up to `level` running, then time starts with that many running.
            while running < level {
                start_followed(&daemon, &mut control, &latencies).await;
                running += 1;
            }
            let mut times = Vec::with_capacity(SAMPLES);
            for _ in 0..SAMPLES {
                times.push(start_followed(&daemon, &mut control, &latencies).await);
                running += 1;
            }
            full = (running, DaemonCounts::of(&daemon));
            rows.push((level, Summary::of(&mut times)));
        }
        // Line latency with every task running and followed.
        *latencies.lock().expect("lock") = Some(Vec::new());
        tokio::time::sleep(listen).await;
        let mut lines = latencies.lock().expect("lock").take().expect("samples");
        let line_samples = lines.len();
        Measured { idle, rows, full, line_latency: Summary::of(&mut lines), line_samples }
    })
}

/// Starts a ticker task and a client of its own following its output; returns the time to
/// the Start reply.
async fn start_followed(
    daemon: &Daemon,
    control: &mut Client,
    latencies: &Arc<Mutex<Option<Vec<Duration>>>>,
) -> Duration {
    let request = rrocker_tests::command(&["/bin/bash", "-c", TICKER]);
    let begin = Instant::now();
    let id = control.start(request).await.expect("start").into_inner().task_id;
    let elapsed = begin.elapsed();
    let mut client = daemon.client("client1").await;
    let latencies = Arc::clone(latencies);
    tokio::spawn(async move {
        let request = StreamRequest { task_id: id, ..Default::default() };
        let Ok(response) = client.stream(request).await else { return };
        let mut events = response.into_inner();
        while let Ok(Some(message)) = events.message().await {
            let Some(Event::Output(output)) = message.event else { continue };
            let received = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock");
            for line in String::from_utf8_lossy(&output.data).lines() {
                let Ok(stamp) = line.trim().parse::<f64>() else { continue };
                let sent = Duration::from_secs_f64(stamp);
                if let Some(samples) = latencies.lock().expect("lock").as_mut() {
                    samples.push(received.saturating_sub(sent));
                }
            }
        }
    });
    elapsed
}
