//! Tenants apart on the host, against the real kernel: each identity's tasks run as a host
//! uid slice of their own (so no per-uid kernel quota is shared), the pool of slices is
//! bounded, and the state directory works below directories closed to everyone but root.

use std::os::unix::fs::PermissionsExt;

use rrocker_proto::v1::{QueryRequest, RemoveRequest, StopRequest, StreamRequest};
use rrocker_tests::{
    Client, Daemon, require_root, run, shell, start, start_running, stream_all, stream_view,
    wait_for_output, with_probe,
};

/// The host uid of the task `id`'s init (root inside it).
async fn host_uid(client: &mut Client, id: &str) -> u32 {
    let pid = client.query(QueryRequest { task_id: id.to_owned() }).await.expect("query");
    let status = std::fs::read_to_string(format!("/proc/{}/status", pid.into_inner().pid))
        .expect("the task's status");
    let uids = status.lines().find_map(|line| line.strip_prefix("Uid:")).expect("a Uid line");
    uids.split_whitespace().next().and_then(|uid| uid.parse().ok()).expect("a uid")
}

async fn stop_and_remove(client: &mut Client, id: &str) {
    rrocker_tests::stop_now(client, id).await;
    client.remove(RemoveRequest { task_id: id.to_owned() }).await.expect("rm");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_identities_run_as_different_host_uids_each_within_its_slice() {
    require_root!();
    let daemon = Daemon::start();
    let (mut alice, mut bob) = (daemon.client("client1").await, daemon.client("client2").await);
    let (first, second) = (start_running(&mut alice).await, start_running(&mut bob).await);
    let again = start_running(&mut alice).await;
    assert_eq!(host_uid(&mut alice, &first).await, 100_000, "client1: slice 0");
    assert_eq!(host_uid(&mut alice, &again).await, 100_000, "one slice per identity");
    assert_eq!(host_uid(&mut bob, &second).await, 165_536, "client2: slice 1");
    // Root inside maps to the slice's first id, and the slice is all the task has.
    let map = run(&mut bob, "cat /proc/self/uid_map").await;
    assert_eq!(map.split_whitespace().collect::<Vec<_>>(), ["0", "165536", "65536"]);
    for id in [&first, &again] {
        stop_and_remove(&mut alice, id).await;
    }
    stop_and_remove(&mut bob, &second).await;
}

#[test]
fn a_tenant_that_fills_its_pipe_quota_leaves_another_tenants_pipes_their_size() {
    require_root!();
    let soft: u64 = std::fs::read_to_string("/proc/sys/fs/pipe-user-pages-soft")
        .expect("pipe-user-pages-soft")
        .trim()
        .parse()
        .expect("a number");
    assert!(soft > 0, "this test needs the kernel's per-user pipe limit (fs.pipe-user-pages-soft)");
    let dir = tempfile::tempdir().expect("tempdir");
    let (daemon, runtime, probe) = with_probe(dir.path(), "rrocker-limits-probe", &[]);
    runtime.block_on(async {
        let (mut alice, mut bob) = (daemon.client("client1").await, daemon.client("client2").await);
        // 1 MiB pipes are 256 pages each: enough of them to pass the soft limit.
        let count = soft / 256 + 8;
        let filler = start(&mut alice, shell(&format!("{} fill {count}", probe.display()))).await;
        drop(wait_for_output(&mut alice, &filler, "filled").await);
        let view = StreamRequest { task_id: filler.clone(), no_follow: true, ..Default::default() };
        let filled = String::from_utf8(stream_view(&mut alice, view).await.stdout).expect("utf8");
        let squeezed: usize = filled.lines().next().and_then(|n| n.parse().ok()).expect("a size");
        assert!(
            squeezed < 65_536,
            "client1 is over its quota: its new pipes are small ({squeezed})"
        );
        // client2's uid has its own quota, untouched.
        let size = run(&mut bob, &format!("{} size", probe.display())).await;
        assert_eq!(size, "65536\n");
        stop_and_remove(&mut alice, &filler).await;
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_uid_pool_refuses_a_start_naming_the_flag_until_a_slice_frees() {
    require_root!();
    let daemon = Daemon::start_with(&["--uid-range", "100000:131072"]);
    let (mut alice, mut bob) = (daemon.client("client1").await, daemon.client("client2").await);
    let mut admin = daemon.client("admin1").await;
    let (first, second) = (start_running(&mut alice).await, start_running(&mut bob).await);
    let refused = admin.start(shell("true")).await.expect_err("no slice left");
    assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
    assert!(refused.message().contains("--uid-range 100000:131072"), "{}", refused.message());
    // client1's own slice still takes its further tasks.
    let more = start(&mut alice, shell("true")).await;
    stream_all(&mut alice, &more).await;
    // Once client1's last task has released everything, its slice is free for admin1.
    for id in [&first, &more] {
        alice
            .stop(StopRequest { task_id: id.clone(), grace_ms: Some(0), ..Default::default() })
            .await
            .ok();
        alice.remove(RemoveRequest { task_id: id.clone() }).await.expect("rm");
    }
    let admins = start_running(&mut admin).await;
    assert_eq!(host_uid(&mut admin, &admins).await, 100_000);
    stop_and_remove(&mut admin, &admins).await;
    stop_and_remove(&mut bob, &second).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_dir_below_a_directory_closed_to_all_but_root_works_and_stays_closed() {
    require_root!();
    let daemon = Daemon::start_below_a_private_dir();
    let state = daemon.state_dir();
    let mode = |path: &std::path::Path| {
        std::fs::metadata(path).expect("metadata").permissions().mode() & 0o7777
    };
    assert_eq!(mode(state.parent().expect("a parent")), 0o700);
    let mut client = daemon.client("client1").await;
    assert_eq!(run(&mut client, "echo hi > /tmp/x && cat /tmp/x").await, "hi\n");
    assert_eq!((mode(&state), mode(&state.join("tasks"))), (0o700, 0o700));
}

#[test]
fn a_state_dir_tasks_cannot_be_set_up_from_is_refused_at_start_up_in_one_line() {
    require_root!();
    let dir = tempfile::tempdir().expect("tempdir");
    // A directory only another user may search (root without capabilities may not).
    let closed = dir.path().join("closed");
    std::fs::create_dir(&closed).expect("mkdir");
    std::os::unix::fs::chown(&closed, Some(65_534), Some(65_534)).expect("chown");
    std::fs::set_permissions(&closed, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    let state = closed.join("state");
    let last = rrocker_tests::refused_start(&dir.path().join("pki"), &state, &[]);
    let expected = format!(
        "rrockerd: --state-dir {}: {} (mode 0700, owner uid 65534) cannot be searched by uid 0",
        state.display(),
        closed.display()
    );
    assert!(last.starts_with(&expected), "{last}");
    assert!(!state.exists(), "nothing was created");
}
