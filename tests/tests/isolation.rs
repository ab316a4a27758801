//! Isolation, against the real kernel: each task in its own user, PID, mount, network, UTS,
//! IPC and cgroup namespaces, as root of a user namespace mapped to an unprivileged range.
//! (Over 400 lines: one short test per namespace and per escape tried, kept side by side.)

use std::os::linux::net::SocketAddrExt;
use std::os::unix::fs::MetadataExt;

use rrocker_proto::v1::{QueryRequest, StopRequest};
use rrocker_tests::{
    Daemon, custom_image, require_root, run, shell, start, stream_all, wait_for_output, with_probe,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_task_sees_only_its_own_processes() {
    require_root!();
    let daemon = Daemon::start();
    let mut client = daemon.client("client1").await;
    let out = run(&mut client, "echo $$; ls /proc | grep -c '^[0-9]'").await;
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "2", "the command is PID 2 under init");
    let visible: u32 = lines[1].parse().expect("count");
    assert!(visible <= 4, "only init, sh, ls and grep are visible: {visible}");
    // The daemon's pid does not exist in there, and cannot be signalled.
    let daemon_pid = daemon.pid();
    let out = run(
        &mut client,
        &format!("kill -0 {daemon_pid} 2>/dev/null && echo reachable || echo unreachable"),
    )
    .await;
    assert_eq!(out, "unreachable\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn root_inside_is_an_unprivileged_uid_outside() {
    require_root!();
    let daemon = Daemon::start();
    let mut client = daemon.client("client1").await;
    assert_eq!(run(&mut client, "id -u; id -g").await, "0\n0\n");
    assert_eq!(
        run(&mut client, "cat /proc/self/uid_map").await.split_whitespace().collect::<Vec<_>>(),
        ["0", "100000", "65536"]
    );
    let id = start(&mut client, shell("exec sleep 600")).await;
    let pid =
        client.query(QueryRequest { task_id: id.clone() }).await.expect("query").into_inner().pid;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("init status");
    let uids = status.lines().find(|line| line.starts_with("Uid:")).expect("Uid line");
    assert_eq!(uids.split_whitespace().skip(1).collect::<Vec<_>>(), ["100000"; 4], "{uids}");
    // Root inside may write anywhere in its own root, and the file belongs to the mapped
    // uid on the host, in the task's upper layer only.
    let script = "echo hi > /etc/rrocker-probe && echo ready && exec sleep 600";
    let id = start(&mut client, shell(script)).await;
    let _ready = wait_for_output(&mut client, &id, "ready").await;
    let upper = daemon.state_dir().join("tasks").join(&id).join("upper/etc/rrocker-probe");
    let metadata = std::fs::metadata(&upper).expect("the file is in the task's upper dir");
    assert_eq!((metadata.uid(), metadata.gid()), (100_000, 100_000));
    assert!(!std::path::Path::new("/etc/rrocker-probe").exists(), "the host's /etc is untouched");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_host_filesystem_is_invisible_and_writes_stay_private() {
    require_root!();
    let daemon = Daemon::start();
    let mut client = daemon.client("client1").await;
    let pki = daemon.pki_dir();
    let script = format!(
        "for p in {} /home /root/.cargo /var/lib/rrocker /work; do test -e $p && echo visible $p; done; echo checked",
        pki.display()
    );
    assert_eq!(run(&mut client, &script).await, "checked\n");
    // A file one task writes is seen neither by the next task nor in the image.
    let first =
        start(&mut client, shell("echo secret > /etc/written && echo ready && exec sleep 600"))
            .await;
    let _ready = wait_for_output(&mut client, &first, "ready").await;
    assert_eq!(
        run(&mut client, "test -e /etc/written && echo leaked || echo private").await,
        "private\n"
    );
    let image = rrocker_tests::images_dir();
    let in_images = std::fs::read_dir(&image)
        .expect("images")
        .any(|entry| entry.expect("entry").path().join("etc/written").exists());
    assert!(!in_images, "the base image never changes");
    let task_dir = daemon.state_dir().join("tasks").join(&first);
    assert!(task_dir.join("upper/etc/written").exists());
    client
        .stop(StopRequest { task_id: first.clone(), grace_ms: Some(0), ..Default::default() })
        .await
        .expect("stop");
    // rm answers once the ended task has released everything.
    client.remove(rrocker_proto::v1::RemoveRequest { task_id: first }).await.expect("rm");
    assert!(!task_dir.exists(), "the task's directory is removed when it ends");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostname_is_the_task_id_prefix() {
    require_root!();
    let daemon = Daemon::start();
    let mut client = daemon.client("client1").await;
    let id = start(&mut client, shell("hostname")).await;
    let streamed = stream_all(&mut client, &id).await;
    assert_eq!(String::from_utf8_lossy(&streamed.stdout), format!("{}\n", &id[..12]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_loopback_is_there_and_it_is_up() {
    require_root!();
    let daemon = Daemon::start();
    let mut client = daemon.client("client1").await;
    let out = run(&mut client, "tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '").await;
    assert_eq!(out, "lo\n");
    // Made ahead by the daemon (owned by the host's user namespace), the namespace lets the
    // task's root bind low ports and ping, as a namespace of its own would.
    let out = run(&mut client, "cat /proc/sys/net/ipv4/ip_unprivileged_port_start").await;
    assert_eq!(out, "0\n");
    // Up: a connection to a closed port is refused (down would be "unreachable").
    let script = "exec 3<>/dev/tcp/127.0.0.1/9 2>/dev/null; echo $?";
    let id = start(&mut client, rrocker_tests::command(&["/bin/bash", "-c", script])).await;
    let refused = stream_all(&mut client, &id).await;
    assert_eq!(String::from_utf8_lossy(&refused.stdout), "1\n");
    // A listener on the host's loopback is not reachable from the task.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("listener");
    let port = listener.local_addr().expect("addr").port();
    let script = format!("exec 3<>/dev/tcp/127.0.0.1/{port} && echo connected || echo isolated");
    let id = start(&mut client, rrocker_tests::command(&["/bin/bash", "-c", &script])).await;
    let streamed = stream_all(&mut client, &id).await;
    assert_eq!(String::from_utf8_lossy(&streamed.stdout), "isolated\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_sysv_ipc_objects_are_invisible() {
    require_root!();
    // A shared memory segment on the host, removed again at the end of the test.
    // SAFETY: shmget and shmctl take plain arguments; IPC_PRIVATE makes a fresh segment.
    let segment = unsafe { libc::shmget(libc::IPC_PRIVATE, 4096, libc::IPC_CREAT | 0o600) };
    assert!(segment >= 0, "shmget");
    let host_view = std::fs::read_to_string("/proc/sysvipc/shm").expect("host view");
    assert!(
        host_view
            .lines()
            .skip(1)
            .any(|line| line.split_whitespace().nth(1) == Some(&segment.to_string()))
    );
    let daemon = Daemon::start();
    let mut client = daemon.client("client1").await;
    let out = run(&mut client, "tail -n +2 /proc/sysvipc/shm | wc -l").await;
    // SAFETY: removes the segment this test made.
    unsafe { libc::shmctl(segment, libc::IPC_RMID, std::ptr::null_mut()) };
    assert_eq!(out.trim(), "0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_stdio_reaches_the_command() {
    require_root!();
    let daemon = Daemon::start();
    let mut client = daemon.client("client1").await;
    // 0, 1, 2 and the directory fd of ls itself.
    let out = run(&mut client, "ls /proc/self/fd").await;
    assert_eq!(out, "0\n1\n2\n3\n");
    let out = run(&mut client, "grep NoNewPrivs /proc/self/status").await;
    assert_eq!(out.split_whitespace().collect::<Vec<_>>(), ["NoNewPrivs:", "1"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_cannot_see_or_signal_each_other() {
    require_root!();
    let daemon = Daemon::start();
    let mut client = daemon.client("client1").await;
    let other = start(&mut client, shell("exec sleep 600")).await;
    let other_pid =
        client.query(QueryRequest { task_id: other.clone() }).await.expect("q").into_inner().pid;
    let out = run(
        &mut client,
        &format!("kill -KILL {other_pid} 2>/dev/null && echo killed || echo refused"),
    )
    .await;
    assert_eq!(out, "refused\n");
    // Nothing to ptrace or open either: the other task's processes do not exist in here.
    let probe = format!("ls /proc/{other_pid} >/dev/null 2>&1 && echo visible || echo absent");
    assert_eq!(run(&mut client, &probe).await, "absent\n");
    let status = client.query(QueryRequest { task_id: other }).await.expect("q").into_inner();
    assert_eq!(status.state(), rrocker_proto::v1::TaskState::Running);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_runs_with_a_reduced_bounding_set() {
    require_root!();
    let daemon = Daemon::start();
    let mut client = daemon.client("client1").await;
    let out = run(&mut client, "grep CapBnd /proc/self/status").await;
    // chown, dac_override, fowner, fsetid, kill, setgid, setuid, setpcap, net_bind_service,
    // net_raw, sys_chroot, mknod, audit_write, setfcap.
    assert_eq!(out.split_whitespace().collect::<Vec<_>>(), ["CapBnd:", "00000000a80425fb"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_binary_and_the_host_root_stay_out_of_reach() {
    require_root!();
    let daemon = Daemon::start();
    let mut client = daemon.client("client1").await;
    let binary = std::fs::read(rrocker_tests::bin_path("rrockerd")).expect("daemon binary");
    let script = "echo x >> /proc/1/exe 2>/dev/null && echo wrote; cat /proc/1/exe > /dev/null 2>&1 && echo read; \
                  umount -l / 2>/dev/null; umount -l /proc 2>/dev/null; for p in /work /home /var/lib/rrocker; do test -e $p && echo visible $p; done; echo done";
    assert_eq!(run(&mut client, script).await, "done\n");
    assert_eq!(std::fs::read(rrocker_tests::bin_path("rrockerd")).expect("binary"), binary);
}

#[test]
fn a_custom_image_is_used_as_given() {
    require_root!();
    let dir = tempfile::tempdir().expect("tempdir");
    let (image, runtime) = custom_image(dir.path());
    std::fs::write(image.join("etc/marker"), "custom image\n").expect("marker");
    let daemon = Daemon::start_with(&["--image", image.to_str().expect("utf8 path")]);
    runtime.block_on(async {
        let mut client = daemon.client("client1").await;
        assert_eq!(run(&mut client, "cat /etc/marker").await, "custom image\n");
    });
}

#[test]
fn a_task_can_ptrace_neither_its_init_nor_another_task() {
    require_root!();
    let dir = tempfile::tempdir().expect("tempdir");
    let (daemon, runtime, probe) = with_probe(dir.path(), "rrocker-ptrace-probe", &[]);
    runtime.block_on(async {
        let mut client = daemon.client("client1").await;
        let other = start(&mut client, shell("exec sleep 600")).await;
        let other_pid = client
            .query(QueryRequest { task_id: other.clone() })
            .await
            .expect("query")
            .into_inner()
            .pid;
        let probe = probe.display();
        // The control shows ptrace works in there; init is not dumpable (EPERM); the other
        // task's process does not exist in this PID namespace (ESRCH).
        let script = format!("{probe} own-child; {probe} 1; {probe} {other_pid}");
        let expected = format!("attached\nrefused: {}\nrefused: {}\n", libc::EPERM, libc::ESRCH);
        assert_eq!(run(&mut client, &script).await, expected);
        client
            .stop(StopRequest { task_id: other, grace_ms: Some(0), ..Default::default() })
            .await
            .expect("stop");
    });
}

#[test]
fn escape_attempts_from_inside_a_task_fail_and_say_what_stopped_them() {
    require_root!();
    let dir = tempfile::tempdir().expect("tempdir");
    let (daemon, runtime, probe) = with_probe(dir.path(), "rrocker-escape-probe", &[]);
    runtime.block_on(async {
        let mut client = daemon.client("client1").await;
        let host_path = daemon.pki_dir().join("server.key");
        // An abstract unix socket listening in the host's network namespace.
        let socket = format!("rrocker-escape-{}", std::process::id());
        let address = std::os::unix::net::SocketAddr::from_abstract_name(&socket).expect("name");
        let _listener =
            std::os::unix::net::UnixListener::bind_addr(&address).expect("abstract socket");
        std::os::unix::net::UnixStream::connect_addr(&address).expect("reachable from the host");
        let port = daemon.addr().port();
        let script = format!("{} {} {port} {socket}", probe.display(), host_path.display());
        let report = run(&mut client, &script).await;
        let (eacces, eperm) = (libc::EACCES, libc::EPERM);
        // Kernels without magic SysRq (like this VM's) have no such file: the attempt fails
        // before any permission check.
        let host_has = |path: &str| std::path::Path::new(path).exists();
        let sysrq = if host_has("/proc/sysrq-trigger") { eacces } else { libc::ENOENT };
        let expected = [
            // /proc/sys and /proc/sysrq-trigger belong to the host's root, not the task's.
            format!("proc-sys: refused {eacces}"),
            format!("sysrq: refused {sysrq}"),
            // The seccomp filter refuses module loading (before the kernel could say it has
            // none); the bounding set has no CAP_SYS_ADMIN, CAP_SYS_BOOT or CAP_SYSLOG;
            // device nodes cannot be made in a user namespace at all.
            format!("module: refused {eperm}"),
            format!("mknod: refused {eperm}"),
            format!("mount-disk: refused {eperm}"),
            format!("mount-cgroupfs: refused {eperm}"),
            // sysfs may only be mounted by the owner of the network namespace: the daemon
            // made it outside the task's user namespace. No cgroupfs is mounted in a task, so
            // its limits cannot be raised from inside.
            format!("mount-sysfs: refused {eperm}"),
            format!("cgroup-limit: refused {}", libc::ENOENT),
            format!("bpf: refused {eperm}"),
            format!("syslog: refused {eperm}"),
            format!("reboot: refused {eperm}"),
            // The task's network namespace has only its own loopback.
            format!("daemon-port: refused {}", libc::ECONNREFUSED),
            // Abstract unix sockets belong to a network namespace: the host's are not there.
            format!("abstract-socket: refused {}", libc::ECONNREFUSED),
            // pivot_root detached the host's root: climbing out of a chroot ends at the task's.
            "chroot-escape: contained".to_owned(),
        ];
        assert_eq!(report.lines().collect::<Vec<_>>(), expected, "{report}");
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_tasks_leave_nothing_behind() {
    require_root!();
    let daemon = Daemon::start();
    // Three identities, so three uid slices with their image views come and go.
    let mut clients = Vec::new();
    for identity in ["client1", "client2", "admin1"] {
        clients.push(daemon.client(identity).await);
    }
    // Warm up: the first tasks may open lazily created daemon resources (each slice's template
    // user namespace among them); three at once hold three slices. (rm answers once the task
    // has released everything, so that nothing of it is counted below.)
    let mut warm = Vec::new();
    for client in &mut clients {
        warm.push(rrocker_tests::start_running(client).await);
    }
    for (client, id) in clients.iter_mut().zip(warm) {
        let stop = StopRequest { task_id: id.clone(), grace_ms: Some(0), ..Default::default() };
        client.stop(stop).await.expect("stop");
        client.remove(rrocker_proto::v1::RemoveRequest { task_id: id }).await.expect("rm");
    }
    // The host's mounts and the daemon's own (private) mount namespace.
    let mounts = || {
        let host = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
        host + &std::fs::read_to_string(format!("/proc/{}/mountinfo", daemon.pid()))
            .expect("daemon's")
    };
    let children = || -> Vec<String> {
        std::fs::read_dir(format!("/proc/{}/task", daemon.pid()))
            .expect("threads")
            .filter_map(|thread| std::fs::read_to_string(thread.ok()?.path().join("children")).ok())
            .flat_map(|list| list.split_whitespace().map(String::from).collect::<Vec<_>>())
            // The spawner, the daemon's helper for clones, lives as long as the daemon.
            .filter(|pid| {
                let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
                comm.trim_end() != "rrocker-spawn"
            })
            .collect()
    };
    let (tasks_dir, views_dir) =
        (daemon.state_dir().join("tasks"), daemon.state_dir().join("views"));
    let (fds_before, mounts_before) = (daemon.open_fds_at_rest().await, mounts());
    assert!(!mounts_before.contains("/views/"), "no view is left once its slice frees");
    for _ in 0..334 {
        // One task of each identity at once, then each to its end and removed.
        let mut round = Vec::new();
        for client in &mut clients {
            round.push(start(client, shell("true")).await);
        }
        for (client, id) in clients.iter_mut().zip(round) {
            stream_all(client, &id).await;
            client.remove(rrocker_proto::v1::RemoveRequest { task_id: id }).await.expect("rm");
        }
    }
    // Every task's namespace is gone, or the pool would never be back at its seven.
    assert_eq!(daemon.open_fds_at_rest().await, fds_before, "daemon fds");
    assert_eq!(mounts(), mounts_before, "host mounts, and no image view of a slice");
    assert_eq!(children(), Vec::<String>::new(), "no child (or zombie) of the daemon is left");
    assert_eq!(std::fs::read_dir(&tasks_dir).expect("tasks dir").count(), 0, "task directories");
    assert_eq!(std::fs::read_dir(&views_dir).expect("views dir").count(), 0, "slices' views");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_image_is_an_idmapped_mount_private_to_the_daemon() {
    require_root!();
    let daemon = Daemon::start();
    // The first identity's first task makes its slice's view of the image, which stays while
    // the task runs.
    let mut client = daemon.client("client1").await;
    rrocker_tests::start_running(&mut client).await;
    let image = daemon.state_dir().join("views/0/own");
    let daemon_mounts =
        std::fs::read_to_string(format!("/proc/{}/mountinfo", daemon.pid())).expect("mountinfo");
    let line = daemon_mounts
        .lines()
        .find(|line| line.split_whitespace().nth(4) == image.to_str())
        .expect("the image is mounted in the daemon's namespace");
    assert!(line.contains("ro,") && line.contains("idmapped"), "{line}");
    let host_mounts = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    assert!(!host_mounts.contains(image.to_str().expect("utf8")), "not in the host's namespace");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unprivileged_daemon_maps_its_own_uid_to_root() {
    require_root!();
    let daemon = Daemon::start_unprivileged();
    let mut client = daemon.client("client1").await;
    let out =
        run(&mut client, "id -u; cat /proc/self/uid_map; echo hi > /etc/x && cat /etc/x").await;
    let words: Vec<&str> = out.split_whitespace().collect();
    assert_eq!(words, ["0", "0", "65534", "1", "hi"], "{out}");
}

/// The children of `pid` (of all its threads).
fn children_of(pid: u32) -> Vec<u32> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .expect("threads")
        .filter_map(|thread| std::fs::read_to_string(thread.ok()?.path().join("children")).ok())
        .flat_map(|list| {
            list.split_whitespace().filter_map(|pid| pid.parse().ok()).collect::<Vec<_>>()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_spawner_clones_tasks_as_the_daemons_children_and_dies_with_it() {
    require_root!();
    let mut daemon = Daemon::start();
    let mut client = daemon.client("client1").await;
    let spawners = spawners_of(&daemon);
    assert_eq!(spawners.len(), 1, "one spawner");
    let id = rrocker_tests::start_running(&mut client).await;
    let init = client.query(QueryRequest { task_id: id }).await.expect("query").into_inner().pid;
    // The spawner cloned it (CLONE_PARENT): the daemon is its parent, so it can reap it.
    assert!(children_of(daemon.pid()).contains(&init), "init {init} is the daemon's child");
    assert!(children_of(spawners[0]).is_empty(), "the spawner keeps no child");
    daemon.terminate();
    assert_ne!(comm(spawners[0]), "rrocker-spawn", "the spawner ended with the daemon");
}

fn comm(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default().trim_end().to_owned()
}

/// The daemon's spawner processes.
fn spawners_of(daemon: &Daemon) -> Vec<u32> {
    children_of(daemon.pid()).into_iter().filter(|&pid| comm(pid) == "rrocker-spawn").collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_its_spawner_the_daemon_clones_tasks_itself() {
    require_root!();
    let daemon = Daemon::start();
    let mut client = daemon.client("client1").await;
    let spawner = spawners_of(&daemon).pop().expect("a spawner");
    rrocker_tests::signal(spawner, libc::SIGKILL);
    for _ in 0..2 {
        let id = start(&mut client, shell("echo up")).await;
        assert_eq!(stream_all(&mut client, &id).await.stdout, b"up\n");
    }
    assert!(daemon.log().contains("the spawner is gone"), "{}", daemon.log());
    assert_eq!(comm(spawner), "", "the dead spawner was reaped");
}
