//! Resource control against the real kernel, as root: memory (OOM kill reported from the
//! kernel's counters), CPU quota, pids, disk IO, no cgroup left behind (also after the daemon
//! is SIGKILLed), bad limits refused with nothing created, and the v2 backend run for real on
//! the unified hierarchy. The tests of this file take turns (CPU figures need a quiet host),
//! which is why they are one file of over 400 lines rather than several that would run at once.

use std::path::PathBuf;

use rrocker_proto::v1::{
    IoLimit, KillReason, Limits, ListRequest, QueryRequest, StartRequest, StopRequest, TaskState,
    TaskStatus,
};
use rrocker_tests::{
    Client, Daemon, command, require_root, shell, start, stream_all, wait_for_output,
};
use tonic::Code;

/// One test at a time: a CPU quota is only measurable when nothing else competes for CPUs.
static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn limited(script: &str, limits: Limits) -> StartRequest {
    StartRequest { limits: Some(limits), ..shell(script) }
}

async fn final_status(client: &mut Client, id: &str) -> TaskStatus {
    stream_all(client, id).await.status.expect("final status")
}

/// A bash loop that keeps a CPU busy for `seconds` of wall-clock time.
fn busy_for(seconds: u32) -> String {
    format!(
        "end=$(( ${{EPOCHREALTIME/./}} + {seconds}000000 )); while (( ${{EPOCHREALTIME/./}} < end )); do :; done"
    )
}

fn bash(script: &str, limits: Limits) -> StartRequest {
    StartRequest { limits: Some(limits), ..command(&["/bin/bash", "-c", script]) }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_over_its_memory_limit_is_oom_killed_and_reported_as_such() {
    require_root!();
    let _turn = TURN.lock().await;
    let daemon = Daemon::start();
    let mut client = daemon.client("client1").await;
    let hog = "a=$(head -c 200M /dev/zero | tr '\\0' x); echo ${#a}";
    let small = Limits { memory_max_bytes: 64 << 20, ..Limits::default() };
    let id = start(&mut client, bash(hog, small)).await;
    let status = final_status(&mut client, &id).await;
    assert_eq!(status.state(), TaskState::Killed, "{status:?}");
    assert_eq!(status.reason(), KillReason::OutOfMemory);
    assert_eq!(status.signal, Some(libc::SIGKILL));
    let usage = status.usage.expect("usage");
    assert!(usage.oom_kills >= 1, "{usage:?}");
    assert!(usage.memory_peak_bytes <= 64 << 20, "{usage:?}");

    let big = Limits { memory_max_bytes: 512 << 20, ..Limits::default() };
    let id = start(&mut client, bash(hog, big)).await;
    let streamed = stream_all(&mut client, &id).await;
    let status = streamed.status.expect("status");
    assert_eq!(status.state(), TaskState::Completed, "{status:?}");
    assert_eq!(String::from_utf8_lossy(&streamed.stdout), format!("{}\n", 200 << 20));
    assert_eq!(status.usage.expect("usage").oom_kills, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cpu_quota_holds_a_busy_loop_to_its_share() {
    require_root!();
    let _turn = TURN.lock().await;
    let daemon = Daemon::start();
    let mut client = daemon.client("client1").await;
    // 20% of one CPU for 3 s of wall-clock time: 0.6 s of CPU time.
    let limits = Limits { cpu_quota_us: 20_000, cpu_period_us: 100_000, ..Limits::default() };
    let id = start(&mut client, bash(&busy_for(3), limits)).await;
    let status = final_status(&mut client, &id).await;
    assert_eq!(status.state(), TaskState::Completed, "{status:?}");
    let usage = status.usage.expect("usage");
    let cpu_seconds = usage.cpu_time_us as f64 / 1e6;
    assert!((0.48..=0.72).contains(&cpu_seconds), "{cpu_seconds} s of CPU: {usage:?}");
    assert!(usage.cpu_throttled_periods > 10, "{usage:?}");
    assert!(usage.cpu_throttled_us > 1_000_000, "{usage:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fork_bomb_stays_within_its_pids_limit_and_can_be_stopped() {
    require_root!();
    let _turn = TURN.lock().await;
    let daemon = Daemon::start();
    let mut client = daemon.client("client1").await;
    let limits = Limits { pids_max: 32, ..Limits::default() };
    let id = start(&mut client, bash("echo bombing; f() { f | f & }; f; sleep 600", limits)).await;
    drop(wait_for_output(&mut client, &id, "bombing").await);
    // Wait for the bomb to reach the limit (the kernel's own peak counter says when).
    let mut peak = 0;
    for _ in 0..3000 {
        let status = client.query(QueryRequest { task_id: id.clone() }).await.expect("q");
        peak = status.into_inner().usage.expect("usage").pids_peak;
        if peak >= 32 {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert_eq!(peak, 32, "the bomb reaches the limit and no further");
    // The host still forks.
    assert!(std::process::Command::new("/bin/true").status().expect("fork").success());
    let request = StopRequest { task_id: id.clone(), grace_ms: Some(100), ..Default::default() };
    let stopped = client.stop(request).await.expect("stop").into_inner().status.expect("status");
    assert_eq!(stopped.state(), TaskState::Killed);
    assert_eq!(stopped.usage.expect("usage").pids_peak, 32);
    // rm answers once the ended task has released everything.
    client.remove(rrocker_proto::v1::RemoveRequest { task_id: id }).await.expect("rm");
    assert_eq!(daemon.task_cgroups(), Vec::<PathBuf>::new(), "its cgroups are gone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_writes_are_throttled_to_the_io_limit() {
    require_root!();
    let _turn = TURN.lock().await;
    let daemon = Daemon::start();
    let mut client = daemon.client("client1").await;
    // The disk under the state directory, where the task's writable layer lives.
    let (major, minor) = rrocker_cli::limits::resolve_device_of(&daemon.state_dir())
        .expect("the state directory is on a block device");
    let limits = Limits {
        io: vec![IoLimit { major, minor, write_bps: 10 << 20, ..IoLimit::default() }],
        ..Limits::default()
    };
    let script = "dd if=/dev/zero of=/root/data bs=1M count=30 oflag=direct 2>&1";
    let id = start(&mut client, limited(script, limits)).await;
    let streamed = stream_all(&mut client, &id).await;
    let report = String::from_utf8_lossy(&streamed.stdout).into_owned();
    let status = streamed.status.expect("status");
    assert_eq!(status.exit_code, Some(0), "{report}");
    // dd's last line: "31457280 bytes (31 MB, 30 MiB) copied, 2.9 s, 10.6 MB/s".
    let words: Vec<&str> = report.lines().last().expect("dd summary").split_whitespace().collect();
    assert_eq!(words[0], "31457280", "{report}");
    let seconds: f64 = words[words.len() - 4].parse().expect("seconds");
    let rate = 31_457_280.0 / seconds;
    assert!(rate <= 12e6, "{rate} bytes/s: {report}");
    let usage = status.usage.expect("usage");
    assert!(usage.io_write_bytes >= 30 << 20, "{usage:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_limited_tasks_leave_no_cgroup_behind() {
    require_root!();
    let _turn = TURN.lock().await;
    let daemon = Daemon::start();
    let mut client = daemon.client("client1").await;
    let limits = Limits {
        cpu_quota_us: 50_000,
        memory_max_bytes: 64 << 20,
        pids_max: 16,
        ..Limits::default()
    };
    for _ in 0..1000 {
        let id = start(&mut client, limited("true", limits.clone())).await;
        let status = final_status(&mut client, &id).await;
        assert_eq!(status.exit_code, Some(0));
        client.remove(rrocker_proto::v1::RemoveRequest { task_id: id }).await.expect("rm");
    }
    assert_eq!(daemon.task_cgroups(), Vec::<PathBuf>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_after_sigkill_kills_and_removes_the_leftovers() {
    require_root!();
    let _turn = TURN.lock().await;
    let mut daemon = Daemon::start();
    let mut client = daemon.client("client1").await;
    let mut pids = Vec::new();
    for _ in 0..3 {
        let id = rrocker_tests::start_running(&mut client).await;
        pids.push(client.query(QueryRequest { task_id: id }).await.expect("q").into_inner().pid);
    }
    drop(client);
    assert!(daemon.task_cgroups().len() >= 3, "each task has its cgroups");
    daemon.kill_and_restart();
    assert_eq!(daemon.task_cgroups(), Vec::<PathBuf>::new(), "leftover cgroups removed");
    let leftover_dirs = std::fs::read_dir(daemon.state_dir().join("tasks")).expect("tasks dir");
    assert_eq!(leftover_dirs.count(), 0, "leftover task directories removed");
    for pid in pids {
        // Killed (at most a zombie until the host's init reaps it).
        let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let running =
            state.rsplit(')').next().is_some_and(|rest| !rest.trim_start().starts_with('Z'));
        assert!(!running, "task process {pid} still runs: {state}");
    }
    let mut client = daemon.client("client1").await;
    let id = start(&mut client, shell("echo again")).await;
    assert_eq!(stream_all(&mut client, &id).await.stdout, b"again\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absurd_limits_are_refused_and_create_nothing() {
    require_root!();
    let _turn = TURN.lock().await;
    let daemon = Daemon::start();
    let mut client = daemon.client("client1").await;
    let io = |major, minor, write_bps| Limits {
        io: vec![IoLimit { major, minor, write_bps, ..IoLimit::default() }],
        ..Limits::default()
    };
    let cases = [
        Limits { cpu_quota_us: 10, ..Limits::default() },
        Limits { cpu_quota_us: u64::MAX, ..Limits::default() },
        Limits { cpu_period_us: 100_000, ..Limits::default() },
        Limits { memory_max_bytes: 1, ..Limits::default() },
        Limits { memory_max_bytes: u64::MAX, ..Limits::default() },
        Limits { pids_max: 1, ..Limits::default() },
        Limits { pids_max: u64::MAX, ..Limits::default() },
        io(0, 0, 1),
        io(254, 0, 0),
        io(4000, 4000, 1),
    ];
    for limits in cases {
        let refused = client.start(limited("true", limits.clone())).await.expect_err("refused");
        assert_eq!(refused.code(), Code::InvalidArgument, "{limits:?}: {refused:?}");
        assert!(!refused.message().contains('\n'), "{}", refused.message());
    }
    // A partition is named with its disk's numbers.
    if let Some(partition) = std::fs::read_dir("/sys/class/block")
        .expect("block devices")
        .filter_map(Result::ok)
        .find(|entry| entry.path().join("partition").exists())
    {
        let dev = std::fs::read_to_string(partition.path().join("dev")).expect("dev");
        let (major, minor) = dev.trim().split_once(':').expect("M:m");
        let limits = io(major.parse().expect("major"), minor.parse().expect("minor"), 1);
        let refused = client.start(limited("true", limits)).await.expect_err("partition");
        assert!(refused.message().contains("partition"), "{}", refused.message());
    }
    // The CLI refuses bad human forms before sending anything.
    for args in [
        ["--max-cpu", "0%"],
        ["--max-cpu", "lots"],
        ["--max-mem", "0"],
        ["--max-mem", "12Q"],
        ["--max-pids", "-3"],
        ["--io-write-bps", "10M"],
        ["--io-write-bps", "/dev/null=10M"],
        ["--io-read-iops", "254:0=x"],
    ] {
        let output =
            daemon.cli("client1").arg("start").args(args).arg("/bin/true").output().expect("cli");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{args:?}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.starts_with(args[0]), "{args:?}: {stderr}");
    }
    let tasks = client.list(ListRequest {}).await.expect("list").into_inner().tasks;
    assert!(tasks.is_empty(), "nothing was started: {tasks:?}");
    assert_eq!(daemon.task_cgroups(), Vec::<PathBuf>::new(), "nothing was created");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_v2_backend_places_kills_and_removes_for_real() {
    require_root!();
    let mounts = rrockerd::cgroup::mounts::CgroupMounts::read().expect("mounts");
    let Some(unified) = mounts.unified else {
        if std::env::var("CI").is_ok_and(|ci| ci == "true") {
            panic!("this host has no unified cgroup hierarchy, and CI=true forbids skipping");
        }
        eprintln!("SKIPPED: no unified cgroup hierarchy mounted");
        return;
    };
    let _turn = TURN.lock().await;
    let daemon = Daemon::start_with(&["--cgroup-version", "v2"]);
    let mut client = daemon.client("client1").await;
    let parent = unified.join(daemon.cgroup_parent());
    // A task that ignores SIGTERM is ended by cgroup.kill after the grace period.
    let id = start(&mut client, shell("trap '' TERM; echo up; while :; do sleep 1; done")).await;
    drop(wait_for_output(&mut client, &id, "up").await);
    let pid = client.query(QueryRequest { task_id: id.clone() }).await.expect("q").into_inner().pid;
    let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).expect("cgroup");
    let placed = format!("0::/{}/{id}", daemon.cgroup_parent());
    assert!(cgroup.lines().any(|line| line == placed), "{cgroup}");
    let request = StopRequest { task_id: id.clone(), grace_ms: Some(50), ..Default::default() };
    let stopped = client.stop(request).await.expect("stop").into_inner().status.expect("status");
    assert_eq!((stopped.state(), stopped.signal), (TaskState::Killed, Some(libc::SIGKILL)));
    client.remove(rrocker_proto::v1::RemoveRequest { task_id: id.clone() }).await.expect("rm");
    assert!(!parent.join(&id).exists(), "its cgroup is removed");
    let granted = std::fs::read_to_string(parent.join("cgroup.subtree_control")).expect("ctl");
    if !granted.contains("memory") {
        let limits = Limits { memory_max_bytes: 64 << 20, ..Limits::default() };
        let refused = client.start(limited("true", limits)).await.expect_err("no memory");
        assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
        assert!(refused.message().contains("memory"), "{}", refused.message());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_task_sees_its_own_cgroups_as_its_cgroup_namespace_root() {
    require_root!();
    let _turn = TURN.lock().await;
    let daemon = Daemon::start();
    let mut client = daemon.client("client1").await;
    let id = start(&mut client, shell("cat /proc/self/cgroup")).await;
    let streamed = stream_all(&mut client, &id).await;
    let inside = String::from_utf8(streamed.stdout).expect("utf8");
    // Every hierarchy, v1 and unified, shows the task's own cgroup as `/`.
    assert!(inside.lines().count() >= 1, "{inside}");
    for line in inside.lines() {
        assert_eq!(line.splitn(3, ':').nth(2), Some("/"), "{inside}");
    }
    assert!(inside.lines().any(|line| line == "0::/"), "{inside}");
}

/// A cgroup made by the test in every hierarchy of this host, as a manager would make one
/// for the daemon (marked delegated in the unified hierarchy as systemd marks it), removed
/// with everything below it when dropped.
struct ManagedCgroup {
    name: String,
    /// Each hierarchy's mount point, with its v1 controllers (none: unified).
    roots: Vec<(Vec<String>, PathBuf)>,
}

impl ManagedCgroup {
    fn new() -> Self {
        let mounts = rrockerd::cgroup::mounts::CgroupMounts::read().expect("mounts");
        let mut roots = mounts.v1.clone();
        roots.extend(mounts.unified.map(|unified| (Vec::new(), unified)));
        let made = Self { name: format!("rrocker-test-managed-{}", std::process::id()), roots };
        for (controllers, root) in &made.roots {
            let dir = root.join(&made.name);
            std::fs::create_dir(&dir).expect("make the managed cgroup");
            // A v1 cpuset starts with no CPUs and no memory nodes: give it its parent's.
            if controllers.iter().any(|c| c == "cpuset") {
                for file in ["cpuset.cpus", "cpuset.mems"] {
                    let value = std::fs::read_to_string(root.join(file)).expect("read cpuset");
                    std::fs::write(dir.join(file), value.trim()).expect("write cpuset");
                }
            }
            if controllers.is_empty() {
                rustix::fs::setxattr(
                    &dir,
                    "trusted.delegate",
                    b"1",
                    rustix::fs::XattrFlags::empty(),
                )
                .expect("mark the cgroup delegated");
            }
        }
        made
    }

    /// The `cgroup.procs` file of the cgroup in every hierarchy.
    fn procs(&self) -> Vec<PathBuf> {
        self.roots.iter().map(|(_, root)| root.join(&self.name).join("cgroup.procs")).collect()
    }

    /// The cgroup directories of every hierarchy's root, but this one.
    fn others(&self) -> Vec<PathBuf> {
        let mut others: Vec<PathBuf> = self
            .roots
            .iter()
            .flat_map(|(_, root)| std::fs::read_dir(root).expect("read a hierarchy"))
            .filter_map(|entry| Some(entry.ok()?.path()).filter(|path| path.is_dir()))
            .filter(|path| !path.ends_with(&self.name))
            // Other tests' daemons, in processes of their own, come and go meanwhile; what
            // this one could stray into is its parent's name, `rrocker`, at a root.
            .filter(|path| {
                !path.file_name().is_some_and(|n| n.to_string_lossy().starts_with("rrocker-test-"))
            })
            .collect();
        others.sort();
        others
    }
}

impl Drop for ManagedCgroup {
    fn drop(&mut self) {
        for (_, root) in &self.roots {
            rrocker_tests::remove_cgroup_tree(&root.join(&self.name));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_in_a_delegated_cgroup_keeps_its_tasks_and_limits_inside_it() {
    require_root!();
    let _turn = TURN.lock().await;
    let managed = ManagedCgroup::new();
    let before = managed.others();
    let mut daemon = Daemon::start_in_cgroups(managed.procs(), &["--total-max-pids", "300"]);
    let name = &managed.name;
    let log = daemon.log();
    assert!(log.contains(&format!("\"/{name}/rrocker\"")), "{log}");
    assert!(log.contains("delegated to it"), "{log}");
    // The daemon left the managed cgroup for a leaf of it (the unified hierarchy's rule).
    let own = std::fs::read_to_string(format!("/proc/{}/cgroup", daemon.pid())).expect("cgroup");
    assert!(own.lines().any(|line| line == format!("0::/{name}/daemon")), "{own}");
    let (_, unified) = managed.roots.iter().find(|(c, _)| c.is_empty()).expect("unified");
    let tasks = unified.join(name).join("rrocker");
    assert!(tasks.is_dir(), "task cgroups below the daemon's");
    if let Some(pids) =
        rrockerd::cgroup::mounts::CgroupMounts::read().expect("m").v1_hierarchy("pids")
    {
        let max =
            std::fs::read_to_string(pids.join(name).join("rrocker/pids.max")).expect("pids.max");
        assert_eq!(max.trim(), "300", "the cap on all tasks is on the delegated parent");
    }

    // A memory limit applies inside the sub-tree: the task is OOM-killed at it.
    let mut client = daemon.client("client1").await;
    let hog = "echo up; a=$(head -c 200M /dev/zero | tr '\\0' x); echo ${#a}";
    let small = Limits { memory_max_bytes: 64 << 20, ..Limits::default() };
    let id = start(&mut client, bash(hog, small)).await;
    let status = final_status(&mut client, &id).await;
    assert_eq!((status.state(), status.reason()), (TaskState::Killed, KillReason::OutOfMemory));

    // A running task's cgroups, seen from the host, are all below the managed cgroup: its
    // own in rrocker's hierarchies, the daemon's in the others.
    let id = start(&mut client, shell("echo up; exec sleep 600")).await;
    drop(wait_for_output(&mut client, &id, "up").await);
    let pid = client.query(QueryRequest { task_id: id.clone() }).await.expect("q").into_inner().pid;
    let placed = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).expect("cgroup");
    for line in placed.lines().filter(|line| !line.contains("name=")) {
        let (controllers, path) =
            line.split_once(':').and_then(|(_, rest)| rest.split_once(':')).expect("line");
        let ours = controllers.is_empty()
            || controllers.split(',').any(|c| rrockerd::cgroup::v1::CONTROLLERS.contains(&c));
        let expected = if ours { format!("/{name}/rrocker/{id}") } else { format!("/{name}") };
        assert_eq!(path, expected, "{placed}");
    }
    assert_eq!(managed.others(), before, "nothing made outside the managed cgroup");

    // After a SIGKILL, the daemon started again in the same cgroup kills and removes the
    // leftover, there and nowhere else.
    daemon.kill_and_restart();
    assert!(!tasks.join(&id).exists(), "the leftover is removed");
    // Killed (at most a zombie until the host's init reaps it).
    let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let running = state.rsplit(')').next().is_some_and(|rest| !rest.trim_start().starts_with('Z'));
    assert!(!running, "task process {pid} still runs: {state}");
    assert!(daemon.log().contains("removing cgroups left by an earlier run"));
    daemon.terminate();
    assert!(!tasks.exists(), "the task parent is removed at shutdown");
    assert_eq!(managed.others(), before, "nothing made outside the managed cgroup");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_that_cannot_listen_leaves_no_cgroup_and_no_state_behind() {
    require_root!();
    let _turn = TURN.lock().await;
    let taken = Daemon::start();
    let dir = tempfile::Builder::new().prefix("rrocker-test-").tempdir().expect("tempdir");
    let parent = format!("rrocker-test-unbound-{}", std::process::id());
    let state = dir.path().join("state");
    let output = std::process::Command::new(rrocker_tests::bin_path("rrockerd"))
        .arg("--listen")
        .arg(taken.addr().to_string())
        .args(["--cgroup-parent", &parent, "--pki-dir"])
        .arg(taken.pki_dir())
        .arg("--state-dir")
        .arg(&state)
        .arg("--images-dir")
        .arg(rrocker_tests::images_dir())
        .output()
        .expect("run rrockerd");
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{said}");
    assert!(said.contains("cannot listen on"), "{said}");
    // Its cgroups were prepared before the bind failed: they are gone with it.
    for root in rrocker_tests::cgroup_roots() {
        assert!(!root.join(&parent).exists(), "{} is left", root.join(&parent).display());
    }
    assert!(!state.exists(), "the state directory it made is left");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_daemon_given_a_parent_in_use_refuses_and_leaves_the_first_alone() {
    require_root!();
    let _turn = TURN.lock().await;
    let first = Daemon::start();
    let mut client = first.client("client1").await;
    let id = start(&mut client, command(&["/bin/sleep", "300"])).await;
    let cgroups = first.task_cgroups();
    assert!(!cgroups.is_empty(), "the task has cgroups");
    let dir = tempfile::Builder::new().prefix("rrocker-test-").tempdir().expect("tempdir");
    let state = dir.path().join("state");
    let last = rrocker_tests::refused_daemon(&first.pki_dir(), &state, &first.cgroup_parent());
    assert!(last.contains("is in use by another rrockerd"), "{last}");
    assert!(last.contains("--cgroup-parent"), "{last}");
    // The first daemon's task was not taken for a leftover, nor its parent removed.
    let status =
        client.query(QueryRequest { task_id: id.clone() }).await.expect("query").into_inner();
    assert_eq!(status.state(), TaskState::Running, "{status:?}");
    assert_eq!(first.task_cgroups(), cgroups);
    assert!(!state.exists(), "the state directory it made is left");
    // And the first still starts tasks below its parent.
    let again = start(&mut client, command(&["/bin/true"])).await;
    let ended = final_status(&mut client, &again).await;
    assert_eq!(ended.state(), TaskState::Completed, "{ended:?}");
    client.stop(StopRequest { task_id: id, ..StopRequest::default() }).await.expect("stop");
}
