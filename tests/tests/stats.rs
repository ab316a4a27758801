//! `rrocker-cli stats`: a busy-looping task shows about one CPU, a task holding 50 MiB shows
//! its cgroup's memory figure, and the live view in a real terminal (tmux) is redrawn with
//! the tasks that start after it.

use rrocker_tests::{Daemon, Screen, shell, start, wait_for_output};

/// A `stats` size figure (`50.3 MiB`) in bytes.
fn size(text: &str) -> f64 {
    let (number, unit) = text.trim().split_once(' ').unwrap_or((text, "B"));
    let scale = match unit {
        "KiB" => 1024.0,
        "MiB" => 1024.0 * 1024.0,
        "GiB" => 1024.0 * 1024.0 * 1024.0,
        _ => 1.0,
    };
    number.parse::<f64>().expect("a number") * scale
}

/// The columns of `stats`' line for the task `id`.
fn columns<'a>(table: &'a str, id: &str) -> Vec<&'a str> {
    let line = table.lines().find(|line| line.starts_with(&id[..12])).expect("the task's line");
    line.split("  ").map(str::trim).filter(|column| !column.is_empty()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_task_shows_about_one_cpu_and_a_holder_its_cgroups_memory() {
    let daemon = Daemon::start();
    let mut client = daemon.client("client1").await;
    let busy = start(&mut client, shell("while :; do :; done")).await;
    let script = "head -c 50M /dev/zero > /tmp/held; echo held; exec sleep 600";
    let holder = start(&mut client, shell(script)).await;
    drop(wait_for_output(&mut client, &holder, "held").await);

    let shown = daemon.cli("client1").args(["stats", "--no-stream"]).output().expect("stats");
    assert!(shown.status.success(), "{shown:?}");
    let table = String::from_utf8_lossy(&shown.stdout).into_owned();
    assert!(table.starts_with("ID"), "{table}");
    let cpu: f64 = columns(&table, &busy)[1].trim_end_matches('%').parse().expect("CPU %");
    eprintln!("{table}");
    assert!((50.0..=150.0).contains(&cpu), "a busy loop uses about one CPU: {cpu}%");

    let memory_shown = size(columns(&table, &holder)[2].split(" / ").next().expect("usage"));
    let cgroup = daemon
        .task_cgroups()
        .into_iter()
        .filter(|dir| dir.ends_with(&holder))
        .find_map(|dir| {
            ["memory.current", "memory.usage_in_bytes"]
                .iter()
                .find_map(|file| std::fs::read_to_string(dir.join(file)).ok())
        })
        .expect("the holder's memory cgroup");
    let memory_cgroup: f64 = cgroup.trim().parse().expect("bytes");
    let off = (memory_shown - memory_cgroup).abs() / memory_cgroup;
    assert!(off < 0.1, "stats {memory_shown} bytes, the cgroup {memory_cgroup}");
    assert!(memory_cgroup > 50.0 * 1024.0 * 1024.0, "the 50 MiB on /tmp count: {memory_cgroup}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_view_is_redrawn_with_tasks_started_after_it() {
    let daemon = Daemon::start();
    let mut client = daemon.client("client1").await;
    let first = start(&mut client, shell("exec sleep 600")).await;
    let screen = Screen::start(&daemon.cli_line("client1", &["stats"]), 160, 20);
    let shown = screen.wait_for(&first[..12]).await;
    assert!(shown.contains("MEM USAGE / LIMIT"), "{shown}");
    let second = start(&mut client, shell("exec sleep 600")).await;
    let shown = screen.wait_for(&second[..12]).await;
    assert_eq!(shown.matches("CPU %").count(), 1, "redrawn in place, not appended: {shown}");
}
