//! Prometheus metrics on their own plain-HTTP listener (`--metrics-listen`), scraped for real
//! while tasks start, stream, stop, get OOM-killed and are removed.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

use rrocker_proto::v1::{Limits, RemoveRequest, StartRequest, StopRequest};
use rrocker_tests::{Daemon, command, eventually, require_root, shell, start, stream_all};

/// The answer to `GET path` over HTTP/1.1: (status line, body).
fn get(addr: SocketAddr, path: &str) -> (String, String) {
    let mut connection = TcpStream::connect(addr).expect("connect to the metrics listener");
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    connection.write_all(request.as_bytes()).expect("send");
    let mut answer = String::new();
    connection.read_to_string(&mut answer).expect("read");
    let (head, body) = answer.split_once("\r\n\r\n").expect("a head and a body");
    (head.lines().next().unwrap_or_default().to_owned(), body.to_owned())
}

/// The value of the sample `name` (with its labels) in a scrape.
fn sample(scrape: &str, name: &str) -> f64 {
    let line = scrape
        .lines()
        .find(|line| line.split_once(' ').is_some_and(|(key, _)| key == name))
        .unwrap_or_else(|| panic!("no {name} in:\n{scrape}"));
    line.rsplit(' ').next().and_then(|value| value.parse().ok()).expect("a number")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scrape_counts_tasks_by_state_starts_stops_oom_kills_streams_and_submissions() {
    require_root!();
    let mut daemon = Daemon::start_with(&["--metrics-listen", "127.0.0.1:0"]);
    let line = daemon.next_line();
    let url = line.strip_prefix("rrockerd metrics on http://").expect("the metrics line");
    let addr: SocketAddr =
        url.strip_suffix("/metrics").expect("at /metrics").parse().expect("addr");
    let scrape = || {
        let (status, body) = get(addr, "/metrics");
        assert_eq!(status, "HTTP/1.1 200 OK");
        body
    };
    let before = scrape();
    assert_eq!(sample(&before, "rrocker_tasks{state=\"running\"}"), 0.0);
    assert_eq!(sample(&before, "rrocker_task_starts_total"), 0.0);

    let mut client = daemon.client("client1").await;
    let secret = "argv-and-output-never-in-metrics";
    let printed =
        start(&mut client, shell(&format!("echo {secret}; head -c 100000 /dev/zero"))).await;
    let streamed = stream_all(&mut client, &printed).await;
    assert_eq!(streamed.stdout.len(), secret.len() + 1 + 100_000);
    let running = start(&mut client, shell("exec sleep 600")).await;
    let hog = "a=$(head -c 200M /dev/zero | tr '\\0' x); echo ${#a}";
    let small = Limits { memory_max_bytes: 64 << 20, ..Limits::default() };
    let oom = start(
        &mut client,
        StartRequest { limits: Some(small), ..command(&["/bin/bash", "-c", hog]) },
    )
    .await;
    assert!(stream_all(&mut client, &oom).await.status.is_some());
    let refused = client.start(command(&["/bin/a_binary_that_doesnt_exist"])).await;
    assert!(refused.is_err());

    // Streams count as open while they last: one follows the running task now.
    let mut follower = client
        .stream(rrocker_proto::v1::StreamRequest { task_id: running.clone(), ..Default::default() })
        .await
        .expect("stream")
        .into_inner();
    // The follower counts from before the daemon answered its headers; the streams that
    // ended above stop counting once the daemon has sent their trailers.
    eventually("one open stream, the follower's", || {
        sample(&scrape(), "rrocker_streams_active") == 1.0
    })
    .await;
    let now = scrape();
    assert_eq!(sample(&now, "rrocker_tasks{state=\"running\"}"), 1.0, "{now}");
    assert_eq!(sample(&now, "rrocker_tasks{state=\"completed\"}"), 1.0);
    assert_eq!(sample(&now, "rrocker_tasks{state=\"killed\"}"), 1.0);
    assert_eq!(sample(&now, "rrocker_task_starts_total"), 3.0);
    assert_eq!(sample(&now, "rrocker_task_start_failures_total"), 1.0);
    assert_eq!(sample(&now, "rrocker_task_oom_kills_total"), 1.0);
    assert_eq!(sample(&now, "rrocker_task_start_seconds_count"), 3.0);
    assert!(sample(&now, "rrocker_task_start_seconds_sum") > 0.0);
    assert!(sample(&now, "rrocker_streamed_bytes_total") >= 100_000.0);
    assert!(sample(&now, "rrocker_uring_submissions_total") > 3.0, "pipe reads at least");
    // Its running task counts against client1's quotas; client1 shows only as that label.
    assert_eq!(sample(&now, "rrocker_identity_tasks{identity=\"client1\"}"), 1.0);
    assert_eq!(sample(&now, "rrocker_identity_pids_limit{identity=\"client1\"}"), 1024.0);
    let unlabelled = now.replace("identity=\"client1\"", "");
    assert!(!now.contains(secret) && !now.contains(&running) && !unlabelled.contains("client1"));
    assert!(now.ends_with("# EOF\n"), "OpenMetrics text ends with # EOF");

    let stop = StopRequest { task_id: running.clone(), grace_ms: Some(0), ..Default::default() };
    client.stop(stop).await.expect("stop");
    while follower.message().await.expect("message").is_some() {}
    drop(follower);
    client.remove(RemoveRequest { task_id: printed }).await.expect("rm");
    eventually("the follower's stream to close", || {
        sample(&scrape(), "rrocker_streams_active") == 0.0
    })
    .await;
    let after = scrape();
    assert_eq!(sample(&after, "rrocker_task_stops_total"), 1.0);
    assert_eq!(sample(&after, "rrocker_tasks{state=\"running\"}"), 0.0);
    assert_eq!(sample(&after, "rrocker_tasks{state=\"killed\"}"), 2.0);
    assert_eq!(sample(&after, "rrocker_tasks{state=\"completed\"}"), 0.0, "removed");

    assert_eq!(get(addr, "/").0, "HTTP/1.1 404 Not Found");
    assert!(daemon.log().contains("serving metrics at /metrics"));
}
