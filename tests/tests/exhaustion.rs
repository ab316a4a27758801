//! Running out of something a task needs: disk space in the state directory, processes in
//! rrocker's parent cgroup, or the limit on all kept output (`--max-output-bytes`). Each
//! gives a clear RESOURCE_EXHAUSTED at start with nothing created, running tasks are
//! untouched, and output is never lost: a task whose output cannot be spilled waits, with the
//! daemon's memory bounded, until there is room.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rrocker_proto::v1::{QueryRequest, RemoveRequest, StopRequest, StreamRequest, TaskState};
use rrocker_tests::{Client, Daemon, require_root, shell, start, stream_all};
use tonic::Code;

const MIB: u64 = 1 << 20;

/// Writes zeros to `path` until the filesystem is full; returns the file's length.
fn fill(path: &Path) -> u64 {
    let mut file = std::fs::File::create(path).expect("filler");
    let block = vec![0u8; 64 << 10];
    loop {
        match file.write(&block) {
            Ok(0) => break,
            Ok(_) => {}
            Err(error) if error.raw_os_error() == Some(libc::ENOSPC) => break,
            Err(error) => panic!("filling {}: {error}", path.display()),
        }
    }
    file.metadata().expect("filler size").len()
}

/// Fills the filesystem of `path`, then frees `room` bytes of it.
fn fill_leaving(path: &Path, room: u64) {
    let full = fill(path);
    std::fs::File::options()
        .write(true)
        .open(path)
        .and_then(|file| file.set_len(full - room))
        .expect("free some room");
}

/// Waits until the daemon has logged `needle` `count` times (it logs the event as it happens;
/// the log is a file, so this polls it), for at most a minute.
async fn wait_for_log(daemon: &Daemon, needle: &str, count: usize) {
    let what = format!("the daemon to log {needle:?} {count} times");
    rrocker_tests::eventually(&what, || daemon.log().matches(needle).count() >= count).await;
}

fn task_dirs(daemon: &Daemon) -> usize {
    std::fs::read_dir(daemon.state_dir().join("tasks")).expect("tasks dir").count()
}

async fn state_of(client: &mut Client, id: &str) -> TaskState {
    let query = QueryRequest { task_id: id.to_owned() };
    client.query(query).await.expect("query").into_inner().state()
}

/// Why the task's output is held, as Query says ("" when it is not).
async fn held_of(client: &mut Client, id: &str) -> String {
    let query = QueryRequest { task_id: id.to_owned() };
    client.query(query).await.expect("query").into_inner().held
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_state_directory_refuses_starts_and_holds_output_until_it_has_room() {
    require_root!();
    let daemon = Daemon::start_with_state_on_tmpfs(64 * MIB, &["--output-window-bytes", "1048576"]);
    let mut client = daemon.client("client1").await;
    let running = rrocker_tests::start_running(&mut client).await;
    let filler = daemon.state_dir().join("filler");

    // Full: a start is refused, and creates nothing.
    fill(&filler);
    let refused = client.start(shell("true")).await.expect_err("no room");
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(refused.message().contains("no space is left in the state directory"), "{refused:?}");
    assert_eq!(task_dirs(&daemon), 1);
    assert_eq!(state_of(&mut client, &running).await, TaskState::Running);

    // Room for a start but not for the output: the task waits for room, nothing is dropped.
    fill_leaving(&filler, 2 * MIB);
    let total = 32 << 20;
    let id = start(&mut client, shell(&format!("head -c {total} /dev/zero; echo done"))).await;
    let events = client
        .stream(StreamRequest { task_id: id.clone(), ..Default::default() })
        .await
        .expect("stream");
    wait_for_log(&daemon, "cannot spill task output", 1).await;
    assert_eq!(state_of(&mut client, &id).await, TaskState::Running);
    let held = held_of(&mut client, &id).await;
    assert!(held.starts_with("its output cannot be kept (No space left on device"), "{held}");
    std::fs::remove_file(&filler).expect("free the disk");
    let expected = completes_with_zeros_then_done(events, total).await;
    assert_eq!(held_of(&mut client, &id).await, "", "nothing is held once it has ended");
    assert_eq!(stream_all(&mut client, &id).await.stdout, expected, "a late replay too");
    assert!(daemon.log().contains("task output spills to disk again"));
    let peak = rrocker_tests::status_kib(daemon.pid(), "VmHWM").expect("VmHWM");
    assert!(peak < 96 * 1024, "daemon peak RSS {peak} KiB");

    // A task waiting for room can be stopped and removed; nothing of it is left.
    fill_leaving(&filler, 2 * MIB);
    let waiting = start(&mut client, shell(&format!("head -c {total} /dev/zero"))).await;
    wait_for_log(&daemon, "cannot spill task output", 2).await;
    let stop = StopRequest { task_id: waiting.clone(), grace_ms: Some(0), ..Default::default() };
    let stopped = client.stop(stop).await.expect("stop").into_inner().status.expect("status");
    assert_eq!(stopped.state(), TaskState::Killed);
    client.remove(RemoveRequest { task_id: waiting }).await.expect("rm");
    client.remove(RemoveRequest { task_id: id }).await.expect("rm");
    assert_eq!(task_dirs(&daemon), 1, "only the first task's directory is left");
    assert_eq!(state_of(&mut client, &running).await, TaskState::Running);
}

/// Reads the stream of a task printing `zeros` zero bytes then `done` to its end (the task
/// must go on: two minutes at most), checks that it completed and that nothing was lost, and
/// returns what it printed.
async fn completes_with_zeros_then_done(
    events: tonic::Response<tonic::Streaming<rrocker_proto::v1::StreamResponse>>,
    zeros: usize,
) -> Vec<u8> {
    let mut stdout = Vec::new();
    let reading = read_to_end(events.into_inner(), &mut stdout);
    let status = tokio::time::timeout(Duration::from_secs(120), reading)
        .await
        .expect("the task goes on once there is room");
    assert_eq!((status.state(), status.exit_code), (TaskState::Completed, Some(0)));
    let mut expected = vec![0u8; zeros];
    expected.extend_from_slice(b"done\n");
    assert!(stdout == expected, "{} bytes, not the task's {}", stdout.len(), expected.len());
    stdout
}

/// Reads a stream to its end, appending stdout to `stdout`; returns the final status.
async fn read_to_end(
    mut events: tonic::Streaming<rrocker_proto::v1::StreamResponse>,
    stdout: &mut Vec<u8>,
) -> rrocker_proto::v1::TaskStatus {
    use rrocker_proto::v1::stream_response::Event;
    while let Some(message) = events.message().await.expect("message") {
        match message.event.expect("event") {
            Event::Output(output) => stdout.extend_from_slice(&output.data),
            Event::Status(status) => return status,
            other => panic!("a Stream sends output and a status only: {other:?}"),
        }
    }
    panic!("the stream ended without a final status");
}

/// The `pids.max` of the daemon's parent cgroup, in whichever hierarchy has the pids
/// controller.
fn parent_pids_max(daemon: &Daemon) -> PathBuf {
    let mounts = rrockerd::cgroup::mounts::CgroupMounts::read().expect("cgroup mounts");
    let v1 = mounts.v1.into_iter().find(|(controllers, _)| controllers.iter().any(|c| c == "pids"));
    let root = match v1 {
        Some((_, root)) => root,
        None => mounts.unified.expect("a cgroup hierarchy with the pids controller"),
    };
    root.join(daemon.cgroup_parent()).join("pids.max")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_past_the_parent_cgroups_pids_limit_is_refused_and_creates_nothing() {
    require_root!();
    let daemon = Daemon::start();
    let mut client = daemon.client("client1").await;
    let running = rrocker_tests::start_running(&mut client).await;
    let cgroups = daemon.task_cgroups().len();

    // The running task's init and sleep are all the parent cgroup may hold.
    let pids_max = parent_pids_max(&daemon);
    std::fs::write(&pids_max, "2").expect("limit the parent cgroup");
    let refused = client.start(shell("true")).await.expect_err("no process left");
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(refused.message().contains("no more processes may be created"), "{refused:?}");
    assert_eq!(daemon.task_cgroups().len(), cgroups, "no cgroup is left of the refused start");
    assert_eq!(task_dirs(&daemon), 1, "no directory is left of the refused start");
    assert_eq!(state_of(&mut client, &running).await, TaskState::Running);

    std::fs::write(&pids_max, "max").expect("lift the limit");
    let id = start(&mut client, shell("echo again")).await;
    assert_eq!(stream_all(&mut client, &id).await.stdout, b"again\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kept_output_at_its_limit_refuses_starts_and_holds_writers_until_rm_frees_some() {
    let limits = ["--max-output-bytes", "4194304", "--output-window-bytes", "1048576"];
    let daemon = Daemon::start_with(&limits);
    let mut client = daemon.client("client1").await;
    let three_mib = 3 << 20;
    let first = start(&mut client, shell(&format!("head -c {three_mib} /dev/zero"))).await;
    assert_eq!(stream_all(&mut client, &first).await.stdout.len(), three_mib);

    // The second task's output reaches the limit: it waits, and starts are refused.
    let script = format!("head -c {three_mib} /dev/zero; echo done");
    let second = start(&mut client, shell(&script)).await;
    let events = client
        .stream(StreamRequest { task_id: second.clone(), ..Default::default() })
        .await
        .expect("stream");
    wait_for_log(&daemon, "cannot spill task output", 1).await;
    assert_eq!(state_of(&mut client, &second).await, TaskState::Running);
    let held = held_of(&mut client, &second).await;
    assert!(held.contains("the limit of what rrocker keeps"), "Query says why it waits: {held}");
    let refused = client.start(shell("true")).await.expect_err("output limit");
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(refused.message().contains("--max-output-bytes"), "{refused:?}");

    // Removing the first task frees its output: the second goes on and loses nothing.
    client.remove(RemoveRequest { task_id: first }).await.expect("rm");
    completes_with_zeros_then_done(events, three_mib).await;
    let id = start(&mut client, shell("echo again")).await;
    assert_eq!(stream_all(&mut client, &id).await.stdout, b"again\n");
}
