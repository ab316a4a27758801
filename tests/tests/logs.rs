//! The daemon's logs: `--log-format json` gives one JSON object per line; every event of a
//! task's life is in a span carrying the task's id; no task output reaches the log.

use rrocker_proto::v1::RemoveRequest;
use rrocker_tests::{Daemon, shell, start, stream_all};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_follow_a_task_in_its_span_and_never_carry_its_output() {
    let daemon = Daemon::start_with(&["--log-format", "json"]);
    let mut client = daemon.client("client1").await;
    let id = start(&mut client, shell("echo output-secret-61d3")).await;
    assert_eq!(stream_all(&mut client, &id).await.stdout, b"output-secret-61d3\n");
    client.remove(RemoveRequest { task_id: id.clone() }).await.expect("rm");
    let log = daemon.log();
    assert!(!log.contains("output-secret-61d3"), "task output in the log:\n{log}");
    let events: Vec<serde_json::Value> = log
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}")))
        .collect();
    let of_task: Vec<&str> = events
        .iter()
        .filter(|event| event["span"]["id"] == id.as_str())
        .filter_map(|event| event["fields"]["message"].as_str())
        .collect();
    assert_eq!(of_task, ["task started", "task ended", "task released"], "{log}");
    let started = events
        .iter()
        .find(|event| event["fields"]["message"] == "task started")
        .expect("a start event");
    assert_eq!(started["fields"]["owner"], "client1");
    assert_eq!(started["span"]["name"], "task");
}
