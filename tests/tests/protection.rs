//! The host protected by default, against the real kernel and cgroups, as root: default
//! limits for a start that sets none, maxima a start may not pass, caps on all tasks
//! together in rrocker's parent cgroup, and an OOM killer that picks tasks first.

use rrocker_proto::v1::{KillReason, QueryRequest, TaskState};
use rrocker_tests::{
    Client, Daemon, require_root, run, shell, start, start_running, stop_now, stream_all,
    wait_for_output, with_probe,
};

async fn query(client: &mut Client, id: &str) -> rrocker_proto::v1::TaskStatus {
    client.query(QueryRequest { task_id: id.to_owned() }).await.expect("query").into_inner()
}

/// How many children a task of `probe` forked before its fork failed (it holds them).
async fn forked(client: &mut Client, id: &str) -> usize {
    // One line, one write: once "forked" is there, so is the count.
    drop(wait_for_output(client, id, "forked").await);
    let view = rrocker_proto::v1::StreamRequest {
        task_id: id.to_owned(),
        no_follow: true,
        ..Default::default()
    };
    let out = rrocker_tests::stream_view(client, view).await.stdout;
    let text = String::from_utf8(out).expect("utf8");
    let count = text.lines().find_map(|line| line.strip_prefix("forked "));
    count.and_then(|count| count.parse().ok()).expect("a count")
}

#[test]
fn a_fork_bomb_started_with_no_flags_stops_at_the_default_pids_limit() {
    require_root!();
    let dir = tempfile::tempdir().expect("tempdir");
    let (daemon, runtime, probe) = with_probe(dir.path(), "rrocker-limits-probe", &[]);
    runtime.block_on(async {
        let (mut alice, mut bob) = (daemon.client("client1").await, daemon.client("client2").await);
        let bystander = start_running(&mut bob).await;
        let bomb =
            start(&mut alice, shell(&format!("exec {} forks 100000", probe.display()))).await;
        // The default pids limit, 1024, holds the probe and its children (its init apart:
        // init is placed before the command, so it counts too).
        assert_eq!(forked(&mut alice, &bomb).await, 1024 - 2);
        let status = query(&mut alice, &bomb).await;
        assert_eq!(status.limits.expect("limits").pids_max, 1024);
        assert_eq!(status.defaulted_limits, ["memory", "pids"]);
        // The host still forks, other tasks still run and start.
        assert!(std::process::Command::new("/bin/true").status().expect("fork").success());
        assert_eq!(run(&mut bob, "echo fine").await, "fine\n");
        assert_eq!(query(&mut bob, &bystander).await.state(), TaskState::Running);
        // And a stop ends it.
        stop_now(&mut alice, &bomb).await;
        assert_eq!(
            stream_all(&mut alice, &bomb).await.status.expect("status").state(),
            TaskState::Killed
        );
        stop_now(&mut bob, &bystander).await;
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_memory_hog_started_with_no_flags_is_oom_killed_at_the_default_limit() {
    require_root!();
    let daemon = Daemon::start_with(&["--default-max-mem", "64M"]);
    let (mut alice, mut bob) = (daemon.client("client1").await, daemon.client("client2").await);
    let bystander = start_running(&mut bob).await;
    let hog =
        start(&mut alice, shell("a=$(head -c 200M /dev/zero | tr '\\0' x); echo ${#a}")).await;
    let status = stream_all(&mut alice, &hog).await.status.expect("status");
    assert_eq!((status.state(), status.reason()), (TaskState::Killed, KillReason::OutOfMemory));
    assert_eq!(status.limits.expect("limits").memory_max_bytes, 64 << 20);
    // The other identity's task and the daemon are untouched.
    assert_eq!(query(&mut bob, &bystander).await.state(), TaskState::Running);
    assert_eq!(run(&mut bob, "echo alive").await, "alive\n");
    let verbose = daemon.cli("client1").args(["query", "-v", &hog]).output().expect("cli");
    let verbose = String::from_utf8_lossy(&verbose.stdout).into_owned();
    assert!(verbose.contains("memory 64.0 MiB (default)"), "{verbose}");
    stop_now(&mut bob, &bystander).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_above_a_maximum_is_refused_in_one_line_naming_the_flag() {
    require_root!();
    let daemon = Daemon::start_with(&["--limit-max-mem", "1G"]);
    let refused = daemon
        .cli("client1")
        .args(["start", "--max-mem", "2G", "/bin/true"])
        .output()
        .expect("cli");
    assert!(!refused.status.success());
    assert_eq!(
        String::from_utf8_lossy(&refused.stderr),
        "Cannot start the task: its memory limit 2147483648 bytes is above this daemon's maximum 1073741824 bytes (--limit-max-mem)\n"
    );
    let mut client = daemon.client("client1").await;
    assert_eq!(run(&mut client, "echo within").await, "within\n", "the default is within it");
}

#[test]
fn the_parent_cgroup_caps_all_tasks_together_and_goes_at_shutdown() {
    require_root!();
    let dir = tempfile::tempdir().expect("tempdir");
    let args = ["--total-max-pids", "64", "--total-max-mem", "1G"];
    let (mut daemon, runtime, probe) = with_probe(dir.path(), "rrocker-limits-probe", &args);
    let mounts = rrockerd::cgroup::mounts::CgroupMounts::read().expect("cgroup mounts");
    let parent = daemon.cgroup_parent();
    // Where the pids and memory caps are on this host: v1 hierarchies, or the unified one.
    let file = |controller: &str, v1: &str, v2: &str| match mounts
        .v1
        .iter()
        .find(|(names, _)| names.iter().any(|name| name == controller))
    {
        Some((_, root)) => root.join(&parent).join(v1),
        None => mounts.unified.clone().expect("a cgroup hierarchy").join(&parent).join(v2),
    };
    let pids_max = file("pids", "pids.max", "pids.max");
    let memory_max = file("memory", "memory.limit_in_bytes", "memory.max");
    let read =
        |path: &std::path::Path| std::fs::read_to_string(path).expect("cap").trim().to_owned();
    assert_eq!(read(&pids_max), "64");
    assert_eq!(read(&memory_max), (1u64 << 30).to_string());
    runtime.block_on(async {
        let mut client = daemon.client("client1").await;
        let mut tasks = Vec::new();
        let mut refused = 0;
        for _ in 0..10 {
            match client.start(shell(&format!("exec {} forks 20", probe.display()))).await {
                Ok(started) => tasks.push(started.into_inner().task_id),
                // The cap may leave no room for a task's init at all.
                Err(status) if status.code() == tonic::Code::ResourceExhausted => refused += 1,
                Err(status) => panic!("start: {status:?}"),
            }
        }
        let mut processes = 0;
        for id in &tasks {
            // Each task: its init, the probe, and what it forked.
            processes += 2 + forked(&mut client, id).await;
        }
        assert!(processes <= 64, "{processes} processes in all ({refused} starts refused)");
        assert!(processes >= 60, "the cap, not something else, stopped them: {processes}");
        for id in &tasks {
            stop_now(&mut client, id).await;
        }
    });
    assert!(daemon.terminate().success());
    assert!(!pids_max.exists() && !memory_max.exists(), "the parent and its caps are gone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_oom_killer_picks_tasks_before_the_daemon_and_its_spawner() {
    require_root!();
    let daemon = Daemon::start();
    let score = |pid: u32| -> i32 {
        let text = std::fs::read_to_string(format!("/proc/{pid}/oom_score_adj")).expect("score");
        text.trim().parse().expect("a number")
    };
    // Lowering a score needs CAP_SYS_RESOURCE (some sandboxes withhold it from root): then the
    // daemon stays at 0, says so, and the tasks still go first.
    let status = std::fs::read_to_string("/proc/self/status").expect("status");
    let effective = status.lines().find_map(|line| line.strip_prefix("CapEff:")).expect("CapEff");
    let effective = u64::from_str_radix(effective.trim(), 16).expect("hex");
    let own = if effective & (1 << 24) != 0 { -500 } else { 0 };
    assert_eq!(score(daemon.pid()), own);
    if own == 0 {
        assert!(daemon.log().contains("cannot lower the daemon's OOM score"), "{}", daemon.log());
    }
    let spawner = std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", daemon.pid()))
        .expect("children")
        .split_whitespace()
        .filter_map(|pid| pid.parse::<u32>().ok())
        .find(|pid| {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            comm.trim_end() == "rrocker-spawn"
        })
        .expect("the spawner");
    assert_eq!(score(spawner), own);
    let mut client = daemon.client("client1").await;
    let id = start_running(&mut client).await;
    assert_eq!(score(query(&mut client, &id).await.pid), 500, "the task's init");
    assert_eq!(run(&mut client, "cat /proc/self/oom_score_adj").await, "500\n", "its command");
    stop_now(&mut client, &id).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_identitys_memory_quota_refuses_the_start_past_it_until_a_task_ends() {
    require_root!();
    let daemon = Daemon::start_with(&["--quota-max-mem", "256M", "--default-max-mem", "100M"]);
    let (mut alice, mut bob) = (daemon.client("client1").await, daemon.client("client2").await);
    let first = start_running(&mut alice).await;
    let second = start_running(&mut alice).await;
    let refused = alice.start(shell("true")).await.expect_err("past the quota");
    assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
    assert_eq!(
        refused.message(),
        format!(
            "Cannot start the task: client1's running tasks hold {} of its memory quota of {} (--quota-max-mem), and this one asks {} more; wait for one to end or stop one",
            200u64 << 20,
            256u64 << 20,
            100u64 << 20
        )
    );
    // Another identity has a quota of its own, untouched throughout.
    let bobs = [start_running(&mut bob).await, start_running(&mut bob).await];
    stop_now(&mut alice, &first).await;
    let again = start_running(&mut alice).await;
    for id in [second, again] {
        stop_now(&mut alice, &id).await;
    }
    for id in bobs {
        stop_now(&mut bob, &id).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_identitys_output_quota_refuses_its_starts_until_rm_frees_some() {
    require_root!();
    let daemon = Daemon::start_with(&["--quota-max-output-bytes", "1048576"]);
    let (mut alice, mut bob) = (daemon.client("client1").await, daemon.client("client2").await);
    let chatty = start(&mut alice, shell("head -c 2000000 /dev/zero")).await;
    assert_eq!(stream_all(&mut alice, &chatty).await.stdout.len(), 2_000_000);
    let refused = alice.start(shell("true")).await.expect_err("past the output quota");
    assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
    assert!(refused.message().contains("(--quota-max-output-bytes)"), "{}", refused.message());
    assert_eq!(run(&mut bob, "echo unaffected").await, "unaffected\n");
    let remove = rrocker_proto::v1::RemoveRequest { task_id: chatty };
    alice.remove(remove).await.expect("rm");
    assert_eq!(run(&mut alice, "echo again").await, "again\n");
}

#[test]
fn an_unprivileged_daemon_says_which_protections_it_cannot_give() {
    require_root!();
    let daemon = Daemon::start_unprivileged();
    let log = daemon.log();
    assert!(
        log.contains("default limits (--default-max-*) and the caps on all tasks (--total-max-*) cannot be given"),
        "{log}"
    );
    assert!(log.contains("unprivileged: the OOM killer is not steered"), "{log}");
}
