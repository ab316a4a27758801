//! Churn: 10,000 short tasks (`/bin/true`, fully isolated, with cgroups), 4 in flight over
//! one mTLS connection, each started, streamed to its end and removed. Reports tasks/s
//! against fork+exec of `/bin/true` with 4 in flight in the same run, and the daemon's fds,
//! threads, RSS, mounts and cgroups before and after (fds, mounts and cgroups must be equal,
//! threads no more).
//! Run: `cargo build --release --workspace --bins && cargo bench -p rrocker-benches --bench churn`.

use std::time::Instant;

use rrocker_benches::{DaemonCounts, quick, write_result};
use rrocker_tests::{Daemon, command, stream_all};

const IN_FLIGHT: usize = 4;

fn main() {
    let tasks = if quick() { 200 } else { 10_000 };
    let runtime = rrocker_benches::runtime();

    // Baseline: the same number of fork+exec of /bin/true, 4 at a time.
    let begin = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..IN_FLIGHT {
            scope.spawn(|| {
                for _ in 0..tasks / IN_FLIGHT {
                    let status = std::process::Command::new("/bin/true").status().expect("fork");
                    assert!(status.success());
                }
            });
        }
    });
    let baseline_rate = tasks as f64 / begin.elapsed().as_secs_f64();

    let daemon = Daemon::start();
    let (rate, before, after) = runtime.block_on(async {
        let client = daemon.client("client1").await;
        // Warm up: the first task opens what the daemon keeps open afterwards.
        let mut warm = client.clone();
        let id = warm.start(command(&["/bin/true"])).await.expect("start").into_inner().task_id;
        stream_all(&mut warm, &id).await;
        warm.remove(rrocker_proto::v1::RemoveRequest { task_id: id }).await.expect("rm");
        let before = DaemonCounts::at_rest(&daemon).await;
        let begin = Instant::now();
        let workers = (0..IN_FLIGHT).map(|_| {
            let mut client = client.clone();
            tokio::spawn(async move {
                for _ in 0..tasks / IN_FLIGHT {
                    let id = client
                        .start(command(&["/bin/true"]))
                        .await
                        .expect("start")
                        .into_inner()
                        .task_id;
                    let status = stream_all(&mut client, &id).await.status.expect("status");
                    assert_eq!(status.exit_code, Some(0));
                    client
                        .remove(rrocker_proto::v1::RemoveRequest { task_id: id })
                        .await
                        .expect("rm");
                }
            })
        });
        for worker in futures_util::future::join_all(workers).await {
            worker.expect("worker");
        }
        let rate = tasks as f64 / begin.elapsed().as_secs_f64();
        // The runtimes' blocking-pool threads (task clean-up, cgroup placement) exit after
        // 10 s idle: wait for them (up to 20 s) to be no more than before.
        let settled = Instant::now();
        while DaemonCounts::of(&daemon).threads > before.threads
            && settled.elapsed() < std::time::Duration::from_secs(20)
        {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        println!("idle blocking threads exited after {:.1} s", settled.elapsed().as_secs_f64());
        (rate, before, DaemonCounts::at_rest(&daemon).await)
    });

    println!("churn: {tasks} tasks, {IN_FLIGHT} in flight");
    println!("{:<36} {:>12} {:>10}", "", "tasks/s", "ratio");
    println!("{:<36} {:>12.0} {:>9.2}x", "fork+exec /bin/true (baseline)", baseline_rate, 1.0);
    println!("{:<36} {:>12.0} {:>9.2}x", "rrocker start+stream+rm", rate, rate / baseline_rate);
    println!("{:<12} {:>10} {:>10}", "daemon", "before", "after");
    for ((name, was), (_, is)) in before.rows().iter().zip(after.rows()) {
        println!("{name:<12} {was:>10} {is:>10}");
    }
    let unchanged = after.nothing_leaked_since(before);
    println!("fds, mounts and cgroups unchanged, threads not more: {unchanged}");
    let result = serde_json::json!({
        "tasks": tasks,
        "in_flight": IN_FLIGHT,
        "baseline_fork_exec_per_s": baseline_rate,
        "rrocker_per_s": rate,
        "before": before.to_json(),
        "after": after.to_json(),
        "unchanged": unchanged,
    });
    match write_result("churn", &result) {
        Ok(path) => println!("result: {}", path.display()),
        Err(error) => eprintln!("cannot write the result file: {error}"),
    }
    assert!(unchanged, "the daemon leaked: {before:?} -> {after:?}");
}
