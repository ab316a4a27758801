//! Streams that stop reading: 1,000 of them, on 10 connections and on 1,000, each replaying a
//! finished task's 64 MiB (most of it spilled to disk) and never reading. Reports the daemon's
//! RSS above its idle RSS while it holds them, per stream, and the rate of a fresh client
//! meanwhile against its rate with none held, measured in the same run. Run:
//! `cargo build --release --workspace --bins && cargo bench -p rrocker-benches --bench stalled_streams`.

use std::time::Instant;

use rrocker_benches::{drain, quick, rss_kib, write_result};
use rrocker_tests::{Daemon, shell, start, until_idle};

fn main() {
    // (connections, streams on each)
    let shapes: [(usize, usize); 2] =
        if quick() { [(2, 50), (100, 1)] } else { [(10, 100), (1000, 1)] };
    let fresh_bytes: u64 = if quick() { 32 << 20 } else { 1 << 30 };
    let runtime = rrocker_benches::runtime();
    let daemon =
        Daemon::start_with(&["--max-streams-per-user", "0", "--max-connections-per-user", "0"]);
    let rows = runtime.block_on(async {
        let mut control = daemon.client("client1").await;
        let stalled = start(&mut control, shell("head -c 64M /dev/zero")).await;
        assert_eq!(drain(&daemon.channel("client1").await, &stalled).await, 64 << 20);
        // A fresh client of another identity: a task of its own, streamed from its start.
        let fresh_rate = || async {
            let channel = daemon.channel("client2").await;
            let mut fresh = rrocker_cli::task_client(channel.clone());
            let script = format!("head -c {fresh_bytes} /dev/zero");
            let begin = Instant::now();
            let id = start(&mut fresh, shell(&script)).await;
            assert_eq!(drain(&channel, &id).await, fresh_bytes);
            fresh_bytes as f64 / begin.elapsed().as_secs_f64() / 1e9
        };
        let unloaded = fresh_rate().await;
        let mut rows = Vec::new();
        for (connections, per_connection) in shapes {
            until_idle(daemon.pid()).await;
            let idle = rss_kib(daemon.pid());
            let (clients, streams) =
                daemon.stalled_streams("client1", &stalled, connections, per_connection).await;
            until_idle(daemon.pid()).await;
            let held = rss_kib(daemon.pid());
            let loaded = fresh_rate().await;
            drop(streams);
            drop(clients);
            rows.push((connections, per_connection, idle, held, loaded));
        }
        (unloaded, rows)
    });
    let (unloaded, rows) = rows;
    println!("stalled_streams: streams replaying 64 MiB that never read; a fresh client meanwhile");
    println!(
        "{:<34} {:>14} {:>12} {:>16} {:>10}",
        "", "RSS above idle", "per stream", "fresh client GB/s", "vs none"
    );
    println!(
        "{:<34} {:>14} {:>12} {unloaded:>16.3} {:>9.2}x",
        "none held (baseline)", "-", "-", 1.0
    );
    let mut results = Vec::new();
    for (connections, per_connection, idle, held, loaded) in rows {
        let streams = connections * per_connection;
        let above = held.saturating_sub(idle);
        let name = format!("{streams} streams on {connections} connections");
        println!(
            "{name:<34} {:>10} MiB {:>8} KiB {loaded:>16.3} {:>9.2}x",
            above >> 10,
            above / streams as u64,
            loaded / unloaded
        );
        results.push(serde_json::json!({
            "connections": connections, "streams": streams, "idle_rss_kib": idle,
            "held_rss_kib": held, "fresh_client_gbps": loaded,
        }));
    }
    let result = serde_json::json!({ "unloaded_fresh_client_gbps": unloaded, "shapes": results });
    match write_result("stalled_streams", &result) {
        Ok(path) => println!("result: {}", path.display()),
        Err(error) => eprintln!("cannot write the result file: {error}"),
    }
}
