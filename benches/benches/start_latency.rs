//! Start latency of `/bin/true`: rrocker over a real mTLS connection, fully isolated (time to
//! the Start reply, and to the final status on the stream) against fork+exec of the same
//! binary, `unshare -Upmn --fork` of it, and `runc run` / `crun run` of an OCI bundle of
//! the same image (when installed: `benches/setup.sh`), in the same run. Run: `cargo build --release --workspace --bins && cargo bench -p rrocker-benches --bench start_latency`.

use std::time::{Duration, Instant};

use rrocker_benches::{Summary, oci, quick, write_result};
use rrocker_tests::{Daemon, command, stream_all};

fn main() {
    rrocker_benches::oci::serve_loop_if_asked();
    let iterations = if quick() { 20 } else { 500 };
    let runtime = rrocker_benches::runtime();

    let mut fork_exec = Vec::with_capacity(iterations);
    for _ in 0..iterations {
        let begin = Instant::now();
        let status = std::process::Command::new("/bin/true").status().expect("fork+exec");
        fork_exec.push(begin.elapsed());
        assert!(status.success());
    }

    // unshare(1) creating user, pid, mount and net namespaces: what isolation costs at least.
    let mut unshare = Vec::with_capacity(iterations);
    for _ in 0..iterations {
        let begin = Instant::now();
        let status = std::process::Command::new("unshare")
            .args(["-Upmn", "--fork", "/bin/true"])
            .status()
            .expect("unshare");
        unshare.push(begin.elapsed());
        assert!(status.success());
    }

    // The engine alone, un-isolated (the spawn path before isolation): clone3, exec, reap.
    let engine =
        rrocker_uring::Engine::start(rrocker_uring::EngineConfig::default()).expect("engine");
    let mut engine_plain = Vec::with_capacity(iterations);
    runtime.block_on(async {
        for _ in 0..iterations {
            let spec = rrocker_uring::SpawnSpec {
                program: rrocker_uring::Program::Path("/bin/true".into()),
                argv: vec![b"/bin/true".to_vec()],
                env: Vec::new(),
                workdir: "/".into(),
                isolation: None,
                placement: rrocker_uring::Placement::default(),
                init_fds: [None, None, None],
                stdin: false,
            };
            let begin = Instant::now();
            let task = engine.spawn(spec).await.expect("spawn");
            task.exit.await.expect("exit");
            engine_plain.push(begin.elapsed());
        }
    });
    engine.shutdown();

    // Isolation alone, then isolation plus the host's cgroups (per-task cgroups, placement).
    let bare = rrocker_starts(&runtime, iterations, &["--cgroup-version", "off"]);
    let (mut bare_reply, mut bare_end, mut round_trip) = bare;
    let (mut to_reply, mut to_end, _) = rrocker_starts(&runtime, iterations, &[]);
    // The seccomp filter's cost: the same starts without it.
    let unconfined = ["--cgroup-version", "off", "--seccomp-profile", "unconfined"];
    let (mut open_reply, mut open_end, _) = rrocker_starts(&runtime, iterations, &unconfined);

    // runc and crun running the same image with the same namespaces, to the container's exit.
    let scratch = tempfile::tempdir().expect("tempdir");
    // A copy: the images directory is closed to every host uid but root's, the containers'
    // mapped root among them.
    let image = scratch.path().join("rootfs");
    let default = rrocker_tests::images_dir().join("default-v2");
    let copied = std::process::Command::new("cp").arg("-a").arg(&default).arg(&image).status();
    assert!(copied.expect("cp").success(), "a copy of the default image");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(scratch.path(), std::fs::Permissions::from_mode(0o755))
        .expect("chmod");
    let bundle =
        oci::bundle(&scratch.path().join("bundle"), &image, &["/bin/true"]).expect("bundle");
    let mut oci_rows = Vec::new();
    let mut oci_samples = Vec::new();
    for name in ["runc", "crun"] {
        if oci::installed(name) {
            let mut times = oci::time_runs(name, &bundle, iterations);
            oci_rows.push((name, Some(Summary::of(&mut times))));
            oci_samples.push((name, times));
        } else {
            eprintln!("{name} is not installed (benches/setup.sh installs it): no {name} baseline");
            oci_rows.push((name, None));
        }
    }
    oci::remove_cgroup_parents();

    let rows = [
        ("fork+exec /bin/true (baseline)", Summary::of(&mut fork_exec)),
        ("unshare -Upmn --fork /bin/true", Summary::of(&mut unshare)),
        ("engine spawn, not isolated", Summary::of(&mut engine_plain)),
        ("rrocker Query round trip", Summary::of(&mut round_trip)),
        ("rrocker Start reply, no cgroups", Summary::of(&mut bare_reply)),
        ("rrocker Start to end, no cgroups", Summary::of(&mut bare_end)),
        ("rrocker Start reply", Summary::of(&mut to_reply)),
        ("rrocker Start to final status", Summary::of(&mut to_end)),
        ("rrocker Start reply, no cgroups, no seccomp", Summary::of(&mut open_reply)),
        ("rrocker Start to end, no cgroups, no seccomp", Summary::of(&mut open_end)),
    ];
    let ms = |duration: Duration| format!("{:.3}", duration.as_secs_f64() * 1e3);
    println!("start_latency, {iterations} iterations (ms)");
    println!("{:<44} {:>8} {:>8} {:>8} {:>8} {:>10}", "", "min", "p50", "p90", "p99", "p50 ratio");
    let baseline = rows[0].1.p50.as_secs_f64();
    for (name, summary) in &rows {
        println!(
            "{name:<44} {:>8} {:>8} {:>8} {:>8} {:>9.2}x",
            ms(summary.min),
            ms(summary.p50),
            ms(summary.p90),
            ms(summary.p99),
            summary.p50.as_secs_f64() / baseline
        );
    }
    for (name, summary) in &oci_rows {
        match summary {
            Some(summary) => println!(
                "{:<44} {:>8} {:>8} {:>8} {:>8} {:>9.2}x",
                format!("{name} run /bin/true (to exit)"),
                ms(summary.min),
                ms(summary.p50),
                ms(summary.p90),
                ms(summary.p99),
                summary.p50.as_secs_f64() / baseline
            ),
            None => println!("{name:<44} not installed"),
        }
    }
    let crun = oci_rows.iter().find(|(name, _)| *name == "crun").and_then(|(_, summary)| *summary);
    let versus_crun = crun.map(|crun| rows[7].1.p50.as_secs_f64() / crun.p50.as_secs_f64());
    if let Some(ratio) = versus_crun {
        println!("rrocker Start-to-final-status p50 / crun run p50: {ratio:.2}");
    }
    // What isolation adds to a start: the Start reply without cgroups less an RPC's round trip
    // and the un-isolated spawn, both of which an un-isolated Start would pay too.
    let p50_ms = |row: usize| rows[row].1.p50.as_secs_f64() * 1e3;
    let isolation_ms = p50_ms(4) - p50_ms(3) - p50_ms(2);
    println!(
        "isolation adds (Start reply, no cgroups - Query round trip - engine spawn): {isolation_ms:.2} ms p50"
    );
    let seccomp_ms = p50_ms(5) - p50_ms(9);
    println!(
        "the seccomp filter adds (Start to end, no cgroups, with and without it): {seccomp_ms:.2} ms p50"
    );
    let oci_json = |name: &str| {
        oci_rows.iter().find(|(n, _)| *n == name).and_then(|(_, s)| s.map(Summary::to_json))
    };
    let result = serde_json::json!({
        "iterations": iterations,
        "fork_exec": rows[0].1.to_json(),
        "unshare": rows[1].1.to_json(),
        "engine_not_isolated": rows[2].1.to_json(),
        "query_round_trip": rows[3].1.to_json(),
        "start_reply_no_cgroups": rows[4].1.to_json(),
        "start_to_final_status_no_cgroups": rows[5].1.to_json(),
        "start_reply": rows[6].1.to_json(),
        "start_to_final_status": rows[7].1.to_json(),
        "isolation_cost_p50_ms": isolation_ms,
        "start_reply_no_cgroups_no_seccomp": rows[8].1.to_json(),
        "start_to_final_status_no_cgroups_no_seccomp": rows[9].1.to_json(),
        "seccomp_cost_p50_ms": seccomp_ms,
        "runc": oci_json("runc"),
        "crun": oci_json("crun"),
        "rrocker_over_crun_p50": versus_crun,
        // Every sample in microseconds, sorted, for latency CDFs (benches/render.py).
        "samples_us": {
            "fork_exec": micros(&fork_exec),
            "start_to_final_status": micros(&to_end),
            "start_to_final_status_no_cgroups": micros(&bare_end),
            "runc": oci_samples.iter().find(|(n, _)| *n == "runc").map(|(_, t)| micros(t)),
            "crun": oci_samples.iter().find(|(n, _)| *n == "crun").map(|(_, t)| micros(t)),
        },
    });
    match write_result("start_latency", &result) {
        Ok(path) => println!("result: {}", path.display()),
        Err(error) => eprintln!("cannot write the result file: {error}"),
    }
}

/// Sequential starts of `/bin/true` over mTLS on a daemon started with `args`: the time to
/// each Start reply, to each final status, and of a Query of the ended task (an RPC's round
/// trip on the same connection).
fn rrocker_starts(
    runtime: &tokio::runtime::Runtime,
    iterations: usize,
    args: &[&str],
) -> (Vec<Duration>, Vec<Duration>, Vec<Duration>) {
    let daemon = Daemon::start_with(args);
    let (mut to_reply, mut to_end, mut round_trip) = (Vec::new(), Vec::new(), Vec::new());
    runtime.block_on(async {
        let mut client = daemon.client("client1").await;
        for _ in 0..iterations {
            let begin = Instant::now();
            let id =
                client.start(command(&["/bin/true"])).await.expect("start").into_inner().task_id;
            to_reply.push(begin.elapsed());
            stream_all(&mut client, &id).await;
            to_end.push(begin.elapsed());
            let begin = Instant::now();
            let query = rrocker_proto::v1::QueryRequest { task_id: id.clone() };
            client.query(query).await.expect("query");
            round_trip.push(begin.elapsed());
            client.remove(rrocker_proto::v1::RemoveRequest { task_id: id }).await.expect("rm");
        }
    });
    (to_reply, to_end, round_trip)
}

/// Durations in whole microseconds.
fn micros(samples: &[Duration]) -> Vec<u64> {
    samples.iter().map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX)).collect()
}
