//! What streams may cost the daemon: clients that stop reading hold a bounded amount of its
//! memory each, and go without a trace; one identity's streams and connections are capped
//! (`--max-streams-per-user`, `--max-connections-per-user`), refused beyond with the flag
//! named, and freed by closing.

use rrocker_proto::v1::StreamRequest;
use rrocker_tests::{Daemon, open_stream, shell, start, status_kib, until_idle};
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thousand_streams_that_stop_reading_cost_bounded_memory_and_leave_nothing() {
    rrocker_tests::require_root!();
    let daemon = Daemon::start_with(&["--max-streams-per-user", "2000"]);
    let mut control = daemon.client("client1").await;
    // 64 MiB of output, most of it spilled to disk: every stream replays it from byte 0.
    let id = start(&mut control, shell("head -c 64M /dev/zero")).await;
    assert_eq!(rrocker_tests::stream_all(&mut control, &id).await.stdout.len(), 64 << 20);
    let fds = daemon.open_fds_at_rest().await;
    until_idle(daemon.pid()).await;
    let idle_kib = status_kib(daemon.pid(), "VmRSS").expect("rss");

    let (connections, streams) = daemon.stalled_streams("client1", &id, 10, 100).await;
    until_idle(daemon.pid()).await;
    let held_kib = status_kib(daemon.pid(), "VmRSS").expect("rss");
    let per_stream = (held_kib.saturating_sub(idle_kib)) / 1000;
    eprintln!(
        "1,000 stalled streams: {idle_kib} KiB idle, {held_kib} KiB held, {per_stream} KiB each"
    );
    assert!(
        held_kib.saturating_sub(idle_kib) <= 150 * 1024,
        "1,000 stalled streams took the daemon from {idle_kib} to {held_kib} KiB"
    );
    // A fresh client is served in full meanwhile.
    let mut fresh = daemon.client("client2").await;
    let fresh_id = start(&mut fresh, shell("head -c 8M /dev/zero")).await;
    let streamed = rrocker_tests::stream_all(&mut fresh, &fresh_id).await;
    assert_eq!(streamed.stdout.len(), 8 << 20);

    drop(streams);
    drop(connections);
    rrocker_tests::eventually("the stalled streams' fds to be closed", || {
        daemon.open_fds().0 <= fds + 2
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_past_an_identitys_cap_is_refused_naming_the_flag_and_closing_one_frees_it() {
    let daemon = Daemon::start_with(&["--max-streams-per-user", "2"]);
    let mut client = daemon.client("client1").await;
    let id = start(&mut client, shell("head -c 16M /dev/zero; sleep 600")).await;
    let first = open_stream(&mut client, &id).await;
    let _second = open_stream(&mut client, &id).await;
    let request = StreamRequest { task_id: id.clone(), ..Default::default() };
    let refused = client.stream(request.clone()).await.expect_err("over the cap");
    assert_eq!(refused.code(), Code::ResourceExhausted);
    assert!(refused.message().contains("--max-streams-per-user"), "{}", refused.message());
    // Another identity has a cap of its own.
    let mut other = daemon.client("client2").await;
    let its = start(&mut other, shell("echo hi")).await;
    assert_eq!(rrocker_tests::stream_all(&mut other, &its).await.stdout, b"hi\n");
    // Closing a stream gives its place back (once the daemon has seen the reset).
    drop(first);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        match client.stream(request.clone()).await {
            Ok(_) => break,
            Err(status) if status.code() == Code::ResourceExhausted => {
                assert!(std::time::Instant::now() < deadline, "the closed stream was never freed");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
            Err(status) => panic!("stream: {status}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_past_an_identitys_cap_is_refused_naming_the_flag() {
    let daemon = Daemon::start_with(&["--max-connections-per-user", "2"]);
    let mut first = daemon.client("client1").await;
    let mut second = daemon.client("client1").await;
    start(&mut first, shell("true")).await;
    start(&mut second, shell("true")).await;
    let mut third = daemon.client("client1").await;
    let refused = third.list(rrocker_proto::v1::ListRequest {}).await.expect_err("over the cap");
    assert_eq!(refused.code(), Code::ResourceExhausted);
    assert!(refused.message().contains("--max-connections-per-user"), "{}", refused.message());
    let mut other = daemon.client("client2").await;
    other.list(rrocker_proto::v1::ListRequest {}).await.expect("client2 has its own cap");
    // A closed connection gives its place back.
    drop(first);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let mut again = daemon.client("client1").await;
        match again.list(rrocker_proto::v1::ListRequest {}).await {
            Ok(_) => break,
            Err(status) if status.code() == Code::ResourceExhausted => {
                assert!(
                    std::time::Instant::now() < deadline,
                    "the closed connection was never freed"
                );
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
            Err(status) => panic!("list: {status}"),
        }
    }
    drop(second);
}
