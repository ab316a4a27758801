//! Events (Watch, `rrocker-cli events`): each task's creation, start, end and removal, in
//! order, to the watchers that may see the task (its owner, admins), live and, with `since`,
//! replayed; as text or one JSON object a line.

use rrocker_proto::v1::{
    RemoveRequest, TaskEvent, TaskEventKind, TaskState, WaitRequest, WatchRequest,
};
use rrocker_tests::{Client, Daemon, shell, start};

/// A watch from now on (`since_ms` absent) or since then.
async fn watch(client: &mut Client, since_ms: Option<u64>) -> tonic::Streaming<TaskEvent> {
    client.watch(WatchRequest { since_ms }).await.expect("watch").into_inner()
}

/// The next `count` events of a watch, as (task, kind) pairs, with their seqs.
async fn next(events: &mut tonic::Streaming<TaskEvent>, count: usize) -> Vec<TaskEvent> {
    let mut got = Vec::new();
    while got.len() < count {
        got.push(events.message().await.expect("event").expect("the watch goes on"));
    }
    got
}

fn kinds(events: &[TaskEvent], id: &str) -> Vec<TaskEventKind> {
    events.iter().filter(|event| event.task_id == id).map(TaskEvent::kind).collect()
}

/// Runs a shell script as a task of `client`'s to its end.
async fn run(client: &mut Client, script: &str) -> String {
    let id = start(client, shell(script)).await;
    client.wait(WaitRequest { task_id: id.clone() }).await.expect("wait");
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_watcher_sees_its_own_tasks_events_in_order_and_admins_see_all() {
    use TaskEventKind::{Created, Ended, Removed, Started};
    let daemon = Daemon::start();
    let (mut one, mut two) = (daemon.client("client1").await, daemon.client("client2").await);
    let mut admin = daemon.client("admin1").await;
    let mut watches =
        [watch(&mut one, None).await, watch(&mut two, None).await, watch(&mut admin, None).await];

    let first = run(&mut one, "true").await;
    one.remove(RemoveRequest { task_id: first.clone() }).await.expect("rm");
    let second = run(&mut two, "exit 3").await;

    let seen_by_one = next(&mut watches[0], 4).await;
    assert_eq!(kinds(&seen_by_one, &first), [Created, Started, Ended, Removed]);
    let seen_by_two = next(&mut watches[1], 3).await;
    assert_eq!(kinds(&seen_by_two, &second), [Created, Started, Ended]);
    let ended = seen_by_two[2].ended.clone().expect("how it ended");
    assert_eq!((ended.state(), ended.exit_code), (TaskState::Completed, Some(3)));
    let seen_by_admin = next(&mut watches[2], 7).await;
    assert_eq!(kinds(&seen_by_admin, &first), [Created, Started, Ended, Removed]);
    assert_eq!(kinds(&seen_by_admin, &second), [Created, Started, Ended]);
    assert!(seen_by_admin.windows(2).all(|pair| pair[0].seq < pair[1].seq), "in order");
    assert_eq!(seen_by_one[3].why, "rm");
    assert!(seen_by_one.iter().all(|event| event.owner == "client1"));

    // Nothing of client2's reaches client1: its next event is its own next task's.
    let third = start(&mut one, shell("true")).await;
    let next_for_one = next(&mut watches[0], 1).await;
    assert_eq!(
        (next_for_one[0].task_id.as_str(), next_for_one[0].kind()),
        (third.as_str(), Created)
    );

    // A watcher from the start of time replays what the daemon kept, in the same order.
    let replayed = next(&mut watch(&mut admin, Some(0)).await, 9).await;
    assert_eq!(replayed[..7], seen_by_admin[..]);
    let mine = next(&mut watch(&mut two, Some(0)).await, 3).await;
    assert_eq!(mine, seen_by_two);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_prints_events_as_lines_or_json_objects() {
    use std::io::BufRead;
    let daemon = Daemon::start();
    let mut client = daemon.client("client1").await;
    let id = run(&mut client, "exit 4").await;
    for (format, check) in [
        (
            "text",
            Box::new(|lines: &[String], id: &str| {
                assert!(
                    lines[0].ends_with(&format!("task {id} created owner=client1")),
                    "{lines:?}"
                );
                assert!(
                    lines[2].contains(&format!("task {id} ended completed exit code 4")),
                    "{lines:?}"
                );
            }) as Box<dyn Fn(&[String], &str)>,
        ),
        (
            "json",
            Box::new(|lines: &[String], id: &str| {
                let parsed: Vec<serde_json::Value> = lines
                    .iter()
                    .map(|line| serde_json::from_str(line).expect("one object a line"))
                    .collect();
                assert_eq!(parsed[0]["task_id"], id);
                assert_eq!(parsed[2]["event"], "ended");
                assert_eq!(parsed[2]["exit_code"], 4);
            }),
        ),
    ] {
        let mut events = daemon
            .cli("client1")
            .args(["events", "--since", "1h", "-o", format])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("events");
        let mut lines = Vec::new();
        let mut reader = std::io::BufReader::new(events.stdout.take().expect("stdout"));
        while lines.len() < 3 {
            let mut line = String::new();
            assert!(reader.read_line(&mut line).expect("read") > 0, "{lines:?}");
            lines.push(line.trim_end().to_owned());
        }
        check(&lines, &id);
        events.kill().expect("end the watch");
        events.wait().expect("reaped");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shutdown_ends_the_watches_after_the_tasks_ends() {
    let mut daemon = Daemon::start();
    let mut client = daemon.client("client1").await;
    let mut events = watch(&mut client, None).await;
    let id = start(&mut client, shell("exec sleep 600")).await;
    assert_eq!(
        kinds(&next(&mut events, 2).await, &id),
        [TaskEventKind::Created, TaskEventKind::Started]
    );
    // The daemon's shutdown waits for the streams to end (else it closes them after a while
    // and says so).
    let stopping = std::thread::spawn(move || {
        let status = daemon.terminate();
        (status, daemon.log())
    });
    let ended = next(&mut events, 1).await;
    assert_eq!(kinds(&ended, &id), [TaskEventKind::Ended]);
    assert_eq!(ended[0].ended.as_ref().expect("status").state(), TaskState::Killed);
    assert!(events.message().await.expect("a clean end").is_none(), "the watch ends");
    let (status, log) = stopping.join().expect("the daemon stopped");
    assert!(status.success(), "{log}");
    assert!(!log.contains("did not drain"), "{log}");
}

/// Runs 2,000 tasks of `client`'s, eight at a time: 8,000 events (created, started, ended,
/// and removed past the default --max-finished-tasks).
async fn run_2000(client: &Client) {
    let lanes = (0..8).map(|_| {
        let mut client = client.clone();
        async move {
            for _ in 0..250 {
                run(&mut client, "true").await;
            }
        }
    });
    futures_util::future::join_all(lanes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watchers_that_stop_reading_cost_the_daemon_a_bounded_amount() {
    let daemon = Daemon::start_with(&["--event-history", "100"]);
    let client = daemon.client("client1").await;
    // The same load twice: first to bring the daemon to its working size, then with 40
    // watchers on connections of their own that never read. Each is sent 8,000 events
    // (~0.8 MB): a daemon that kept them for the watchers would grow by 32 MB.
    run_2000(&client).await;
    let rss_before = rrocker_tests::status_kib(daemon.pid(), "VmRSS").expect("rss");
    let mut stalled = Vec::new();
    for _ in 0..40 {
        let mut watcher = daemon.client("client1").await;
        let events = watch(&mut watcher, None).await;
        stalled.push((watcher, events));
    }
    run_2000(&client).await;
    let rss_after = rrocker_tests::status_kib(daemon.pid(), "VmRSS").expect("rss");
    eprintln!("40 stalled watchers, 8,000 events: daemon RSS {rss_before} -> {rss_after} KiB");
    assert!(rss_after < rss_before + 8 * 1024, "RSS {rss_before} -> {rss_after} KiB");
    // What a stalled watcher gets when it reads again: every event in order (6,000 at least
    // are phase two's), or, past what the daemon holds for it, that it fell behind.
    let (_, events) = &mut stalled[0];
    let (mut first, mut last) = (None, 0);
    loop {
        match events.message().await {
            Ok(Some(event)) => {
                let first = *first.get_or_insert(event.seq);
                if event.seq != first {
                    assert_eq!(event.seq, last + 1, "in order, none missing");
                }
                last = event.seq;
                if last - first + 1 == 6_000 {
                    break;
                }
            }
            Ok(None) => panic!("the watch ended"),
            Err(status) => {
                assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
                break;
            }
        }
    }
}
