//! Hardening, against the real kernel: the seccomp filter every task runs under (rrocker's
//! default, none, or a docker-format profile), and /proc masked as docker masks it.

use rrocker_proto::v1::QueryRequest;
use rrocker_tests::{Client, Daemon, require_root, run, shell, start, stream_all, with_probe};

/// What the seccomp probe prints under rrocker's default profile: every surface refused,
/// EPERM but for clone3's ENOSYS (so that C libraries fall back to clone).
fn refused_by_default() -> Vec<String> {
    let eperm = libc::EPERM;
    let mut expected: Vec<String> = [
        "io_uring_setup",
        "keyctl-join",
        "add_key",
        "request_key",
        "unshare-user",
        "unshare-net",
        "nested-tmpfs",
        "clone-newuser",
    ]
    .iter()
    .map(|name| format!("{name}: refused {eperm}"))
    .collect();
    expected.push(format!("clone3: refused {}", libc::ENOSYS));
    expected.extend(
        [
            "fsopen",
            "open_tree",
            "bpf",
            "perf_event_open",
            "userfaultfd",
            "socket-alg",
            "socket-vsock",
            "personality-read-implies-exec",
            // Another ABI's syscalls are refused whatever they are.
            "i386-int80",
            "x32-syscall",
        ]
        .iter()
        .map(|name| format!("{name}: refused {eperm}")),
    );
    expected
}

async fn seccomp_of(client: &mut Client, id: &str) -> String {
    let request = QueryRequest { task_id: id.to_owned() };
    client.query(request).await.expect("query").into_inner().seccomp
}

#[test]
fn the_default_filter_refuses_every_kernel_surface_docker_refuses() {
    require_root!();
    let dir = tempfile::tempdir().expect("tempdir");
    let (daemon, runtime, probe) = with_probe(dir.path(), "rrocker-seccomp-probe", &[]);
    runtime.block_on(async {
        let mut client = daemon.client("client1").await;
        let report = run(&mut client, &probe.display().to_string()).await;
        assert_eq!(report.lines().collect::<Vec<_>>(), refused_by_default(), "{report}");
        let id = start(&mut client, shell("true")).await;
        assert_eq!(seccomp_of(&mut client, &id).await, "default");
    });
}

#[test]
fn ordinary_programs_run_under_the_default_filter() {
    require_root!();
    let dir = tempfile::tempdir().expect("tempdir");
    let (daemon, runtime, probe) = with_probe(dir.path(), "rrocker-seccomp-probe", &[]);
    runtime.block_on(async {
        let mut client = daemon.client("client1").await;
        // bash and coreutils, ps, a pipe, a subshell that forks and execs, threads and a
        // child process of a Rust program (whose C library tries clone3 first).
        let script = format!(
            "grep -E '^Seccomp(_filters)?:' /proc/self/status | tr -s '\\t' ' '; \
             bash -c 'seq 1 5 | sort -r | head -1'; ps -e -o comm= | grep -c .; \
             (mkdir /tmp/d && cd /tmp/d && touch f && ls); {} ordinary",
            probe.display()
        );
        let out = run(&mut client, &script).await;
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[..3], ["Seccomp: 2", "Seccomp_filters: 1", "5"], "{out}");
        assert!(lines[3].parse::<u32>().expect("a count of processes") >= 3, "{out}");
        assert_eq!(lines[4..], ["f", "ordinary: ok"], "{out}");
    });
}

#[test]
fn unconfined_tasks_reach_io_uring_so_the_default_test_can_fail() {
    require_root!();
    let dir = tempfile::tempdir().expect("tempdir");
    let args = ["--seccomp-profile", "unconfined"];
    let (daemon, runtime, probe) = with_probe(dir.path(), "rrocker-seccomp-probe", &args);
    runtime.block_on(async {
        let mut client = daemon.client("client1").await;
        let script = format!("grep '^Seccomp:' /proc/self/status; {}", probe.display());
        let report = run(&mut client, &script).await;
        let lines: Vec<&str> = report.lines().collect();
        assert_eq!(lines[0].split_whitespace().collect::<Vec<_>>(), ["Seccomp:", "0"]);
        assert_eq!(lines[1], "io_uring_setup: ALLOWED", "{report}");
        assert!(lines.contains(&"unshare-user: ALLOWED"), "{report}");
        let id = start(&mut client, shell("true")).await;
        assert_eq!(seccomp_of(&mut client, &id).await, "unconfined");
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_docker_profile_that_refuses_mkdir_makes_mkdir_fail_with_eperm() {
    require_root!();
    let dir = tempfile::tempdir().expect("tempdir");
    let profile = dir.path().join("no-mkdir.json");
    let text = r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]}"#;
    std::fs::write(&profile, text).expect("profile");
    let daemon = Daemon::start_with(&["--seccomp-profile", profile.to_str().expect("utf8")]);
    let mut client = daemon.client("client1").await;
    let id = start(&mut client, shell("touch /tmp/file && mkdir /tmp/dir")).await;
    let streamed = stream_all(&mut client, &id).await;
    assert_eq!(streamed.status.expect("status").exit_code, Some(1));
    let stderr = String::from_utf8_lossy(&streamed.stderr);
    assert!(stderr.contains("Operation not permitted"), "{stderr}");
    assert_eq!(seccomp_of(&mut client, &id).await, profile.display().to_string());
}

#[test]
fn a_bad_profile_stops_the_daemon_at_start_up_in_one_line_naming_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cases = [
        (
            "typo.json",
            r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["mkdri"], "action": "SCMP_ACT_ALLOW"}]}"#,
            "unknown syscall 'mkdri'",
        ),
        ("broken.json", r#"{"defaultAction": "#, "malformed profile"),
    ];
    for (name, text, complaint) in cases {
        let profile = dir.path().join(name);
        std::fs::write(&profile, text).expect("profile");
        let state = dir.path().join("state");
        let flag = std::ffi::OsStr::new("--seccomp-profile");
        let pki = dir.path().join("pki");
        let last = rrocker_tests::refused_start(&pki, &state, &[flag, profile.as_os_str()]);
        assert!(last.contains(&format!("--seccomp-profile {}", profile.display())), "{last}");
        assert!(last.contains(complaint), "{last}");
        assert!(!state.exists(), "nothing was created");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proc_is_masked_and_its_kernel_settings_are_read_only() {
    require_root!();
    let daemon = Daemon::start();
    let mut client = daemon.client("client1").await;
    // Masked files read as empty (where the kernel has them); writes to the kernel's
    // settings fail whoever owns them.
    let script = "for f in /proc/kcore /proc/keys /proc/timer_list /proc/sched_debug; do \
                    test -e $f && echo $f $(head -c 64 $f | wc -c); done; \
                  echo x > /proc/sys/kernel/hostname 2>/dev/null || echo hostname refused; \
                  echo 1 > /proc/sys/kernel/shmmax 2>/dev/null || echo shmmax refused; \
                  echo h > /proc/sysrq-trigger 2>/dev/null || echo sysrq refused; \
                  grep -c ' /proc/sys proc ro,' /proc/self/mounts";
    let out = run(&mut client, script).await;
    let host_has = |path: &str| std::path::Path::new(path).exists();
    let mut expected: Vec<String> =
        ["/proc/kcore", "/proc/keys", "/proc/timer_list", "/proc/sched_debug"]
            .iter()
            .filter(|path| host_has(path))
            .map(|path| format!("{path} 0"))
            .collect();
    expected.extend(["hostname refused", "shmmax refused", "sysrq refused", "1"].map(String::from));
    assert_eq!(out.lines().collect::<Vec<_>>(), expected, "{out}");
}
