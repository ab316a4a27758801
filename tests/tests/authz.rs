//! Authorisation: a client sees only its own tasks, another client's task answers exactly
//! like a missing one, and an admin sees and stops everyone's.

use rrocker_proto::v1::{
    ListRequest, QueryRequest, RemoveRequest, StopRequest, StreamRequest, TaskState,
};
use rrocker_tests::{Client, Daemon, shell, start};
use tonic::{Code, Status};

const MISSING: &str = "0e6b1e8c-ab62-4d5e-8afe-3d8d0c36fb14";

/// The error every task RPC gives for `id`, in the order query, stream, stop, rm.
async fn errors_for(client: &mut Client, id: &str) -> Vec<(Code, String)> {
    let task_id = id.to_owned();
    let results: Vec<Result<(), Status>> = vec![
        client.query(QueryRequest { task_id: task_id.clone() }).await.map(drop),
        client.stream(StreamRequest { task_id: task_id.clone() }).await.map(drop),
        client.stop(StopRequest { task_id: task_id.clone(), grace_ms: Some(0) }).await.map(drop),
        client.remove(RemoveRequest { task_id }).await.map(drop),
    ];
    results
        .into_iter()
        .map(|result| {
            let status = result.expect_err("refused");
            (status.code(), status.message().replace(id, "<id>"))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_clients_task_looks_exactly_like_a_missing_one() {
    let daemon = Daemon::start();
    let mut owner = daemon.client("client1").await;
    let mut other = daemon.client("client2").await;
    let id = start(&mut owner, shell("exec sleep 600")).await;

    let foreign = errors_for(&mut other, &id).await;
    let missing = errors_for(&mut other, MISSING).await;
    assert_eq!(foreign, missing);
    assert!(
        foreign.iter().all(|(code, message)| {
            *code == Code::NotFound && message == "Task '<id>' doesn't exist"
        }),
        "{foreign:?}"
    );

    // The task is untouched by those attempts.
    let status =
        owner.query(QueryRequest { task_id: id.clone() }).await.expect("query").into_inner();
    assert_eq!(status.state(), TaskState::Running);
    owner.stop(StopRequest { task_id: id, grace_ms: Some(0) }).await.expect("owner stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_list_only_their_own_tasks_and_admins_list_all() {
    let daemon = Daemon::start();
    let mut one = daemon.client("client1").await;
    let mut two = daemon.client("client2").await;
    let mut admin = daemon.client("admin1").await;
    let first = start(&mut one, shell("true")).await;
    let second = start(&mut two, shell("true")).await;

    let ids = |tasks: Vec<rrocker_proto::v1::TaskStatus>| -> Vec<(String, String)> {
        tasks.into_iter().map(|task| (task.task_id, task.owner)).collect()
    };
    let listed = one.list(ListRequest {}).await.expect("list").into_inner().tasks;
    assert_eq!(ids(listed), [(first.clone(), "client1".to_owned())]);
    let listed = two.list(ListRequest {}).await.expect("list").into_inner().tasks;
    assert_eq!(ids(listed), [(second.clone(), "client2".to_owned())]);
    let listed = admin.list(ListRequest {}).await.expect("list").into_inner().tasks;
    assert_eq!(ids(listed), [(first, "client1".to_owned()), (second, "client2".to_owned())]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admins_query_stream_and_stop_everyones_tasks() {
    let daemon = Daemon::start();
    let mut owner = daemon.client("client1").await;
    let mut admin = daemon.client("admin1").await;
    let id = start(&mut owner, shell("echo hello; exec sleep 600")).await;

    let status =
        admin.query(QueryRequest { task_id: id.clone() }).await.expect("query").into_inner();
    assert_eq!(status.owner, "client1");
    let stopped = admin
        .stop(StopRequest { task_id: id.clone(), grace_ms: Some(0) })
        .await
        .expect("admin stops")
        .into_inner();
    assert_eq!(stopped.status.expect("status").state(), TaskState::Killed);
    let streamed = rrocker_tests::stream_all(&mut admin, &id).await;
    assert_eq!(streamed.stdout, b"hello\n");
    admin.remove(RemoveRequest { task_id: id.clone() }).await.expect("admin removes");
    let gone = owner.query(QueryRequest { task_id: id }).await.expect_err("removed");
    assert_eq!(gone.code(), Code::NotFound);
}
