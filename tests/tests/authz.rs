//! Authorisation: a client sees only its own tasks, another client's task answers exactly
//! like a missing one, and an admin sees and stops everyone's.

use rrocker_proto::v1::{
    ExecRequest, InteractRequest, ListRequest, QueryRequest, RemoveRequest, SignalRequest,
    StopRequest, StreamRequest, TaskState, WaitRequest, interact_request,
};
use rrocker_tests::{Client, Daemon, shell, start, wait_for_output};
use tonic::{Code, Status};

const MISSING: &str = "0e6b1e8c-ab62-4d5e-8afe-3d8d0c36fb14";

/// The error every task RPC gives for `id`, in the order query, stream, stop, rm, signal,
/// attach.
async fn errors_for(client: &mut Client, id: &str) -> Vec<(Code, String)> {
    let task_id = id.to_owned();
    let results: Vec<Result<(), Status>> = vec![
        client.query(QueryRequest { task_id: task_id.clone() }).await.map(drop),
        client
            .stream(StreamRequest { task_id: task_id.clone(), ..Default::default() })
            .await
            .map(drop),
        client
            .stop(StopRequest { task_id: task_id.clone(), grace_ms: Some(0), ..Default::default() })
            .await
            .map(drop),
        client.remove(RemoveRequest { task_id: task_id.clone() }).await.map(drop),
        client
            .signal(SignalRequest { task_id: task_id.clone(), signal: "TERM".into() })
            .await
            .map(drop),
        {
            let attach = rrocker_proto::v1::AttachRequest { task_id, ..Default::default() };
            let first = InteractRequest { event: Some(interact_request::Event::Attach(attach)) };
            client.interact(futures_util::stream::iter([first])).await.map(drop)
        },
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
    owner
        .stop(StopRequest { task_id: id, grace_ms: Some(0), ..Default::default() })
        .await
        .expect("owner stops");
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
    // Stopped only once it has printed, or the stop may come before the echo.
    drop(rrocker_tests::wait_for_output(&mut admin, &id, "hello").await);

    let status =
        admin.query(QueryRequest { task_id: id.clone() }).await.expect("query").into_inner();
    assert_eq!(status.owner, "client1");
    let stopped = admin
        .stop(StopRequest { task_id: id.clone(), grace_ms: Some(0), ..Default::default() })
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

/// Who calls, in the order of [`MATRIX`]'s columns.
#[derive(Debug, Clone, Copy)]
enum Caller {
    /// client1, who started the task.
    Owner,
    /// client2, another team.
    OtherClient,
    /// admin1.
    Admin,
    /// A certificate from the client CA whose O is neither `client` nor `admin`.
    UnknownOrganization,
    /// A TLS 1.3 client that offers no certificate.
    NoCertificate,
}

const CALLERS: [Caller; 5] = [
    Caller::Owner,
    Caller::OtherClient,
    Caller::Admin,
    Caller::UnknownOrganization,
    Caller::NoCertificate,
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rpc {
    Start,
    List,
    Query,
    Stream,
    Stop,
    Remove,
    Signal,
    Interact,
    /// Interact with a first `exec` message: a command run in the task.
    Exec,
    /// Of an ended task, so that it answers at once.
    Wait,
}

/// What a call got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// An answer.
    Answered,
    /// A gRPC error with this code.
    Denied(Code),
    /// No answer at all: the TLS handshake or the connection was refused.
    Refused,
}

use Outcome::{Answered, Denied, Refused};

/// Every RPC × every caller, on a task of client1's. Another client's task id answers
/// NOT_FOUND, exactly like a missing one; an unknown organisation is PERMISSION_DENIED on
/// every call; no certificate never reaches the service.
const MATRIX: [(Rpc, [Outcome; 5]); 10] = [
    // Columns: Owner, OtherClient, Admin, UnknownOrganization, NoCertificate.
    (Rpc::Start, [Answered, Answered, Answered, DENIED, Refused]),
    (Rpc::List, [Answered, Answered, Answered, DENIED, Refused]),
    (Rpc::Query, [Answered, NOT_FOUND, Answered, DENIED, Refused]),
    (Rpc::Stream, [Answered, NOT_FOUND, Answered, DENIED, Refused]),
    (Rpc::Stop, [Answered, NOT_FOUND, Answered, DENIED, Refused]),
    (Rpc::Remove, [Answered, NOT_FOUND, Answered, DENIED, Refused]),
    (Rpc::Signal, [Answered, NOT_FOUND, Answered, DENIED, Refused]),
    // It starts a task of the caller's own, as Start does.
    (Rpc::Interact, [Answered, Answered, Answered, DENIED, Refused]),
    (Rpc::Exec, [Answered, NOT_FOUND, Answered, DENIED, Refused]),
    (Rpc::Wait, [Answered, NOT_FOUND, Answered, DENIED, Refused]),
];
const NOT_FOUND: Outcome = Denied(Code::NotFound);
const DENIED: Outcome = Denied(Code::PermissionDenied);

/// The owner's secrets: in the task's argv and in its output.
const SECRET_ARGUMENT: &str = "argv-secret-4f1c";
const SECRET_OUTPUT: &str = "output-secret-9b2e";

async fn connect(daemon: &Daemon, caller: Caller) -> Option<Client> {
    let identity = match caller {
        Caller::Owner => "client1",
        Caller::OtherClient => "client2",
        Caller::Admin => "admin1",
        Caller::UnknownOrganization => "guest",
        Caller::NoCertificate => {
            return daemon.client_with(daemon.config_without_certificate()).await.ok();
        }
    };
    Some(daemon.client(identity).await)
}

/// Calls `rpc` on task `id` and returns the outcome with everything the caller got to see.
async fn call(client: &mut Client, rpc: Rpc, id: &str) -> (Outcome, String) {
    let task_id = id.to_owned();
    let seen: Result<String, Status> = match rpc {
        Rpc::Start => client.start(shell("true")).await.map(|reply| format!("{reply:?}")),
        Rpc::List => client.list(ListRequest {}).await.map(|reply| format!("{reply:?}")),
        Rpc::Query => {
            client.query(QueryRequest { task_id }).await.map(|reply| format!("{reply:?}"))
        }
        Rpc::Stream => match client.stream(StreamRequest { task_id, ..Default::default() }).await {
            Ok(reply) => {
                let first = reply.into_inner().message().await;
                Ok(format!("{first:?}"))
            }
            Err(status) => Err(status),
        },
        Rpc::Stop => client
            .stop(StopRequest { task_id, grace_ms: Some(0), ..Default::default() })
            .await
            .map(|reply| format!("{reply:?}")),
        Rpc::Remove => {
            client.remove(RemoveRequest { task_id }).await.map(|reply| format!("{reply:?}"))
        }
        Rpc::Interact | Rpc::Exec => {
            let first = match rpc {
                Rpc::Exec => interact_request::Event::Exec(ExecRequest {
                    task_id,
                    argv: vec![b"/bin/true".to_vec()],
                    ..Default::default()
                }),
                _ => interact_request::Event::Start(shell("true")),
            };
            let first = InteractRequest { event: Some(first) };
            match client.interact(futures_util::stream::iter([first])).await {
                Ok(reply) => {
                    let first = reply.into_inner().message().await;
                    Ok(format!("{first:?}"))
                }
                Err(status) => Err(status),
            }
        }
        Rpc::Wait => client.wait(WaitRequest { task_id }).await.map(|reply| format!("{reply:?}")),
        // SIGCONT: the task runs on, to be stopped after.
        Rpc::Signal => client
            .signal(SignalRequest { task_id, signal: "CONT".into() })
            .await
            .map(|reply| format!("{reply:?}")),
    };
    match seen {
        Ok(seen) => (Answered, seen),
        Err(status)
            if matches!(status.code(), Code::Unavailable | Code::Unknown | Code::Cancelled) =>
        {
            (Refused, status.message().to_owned())
        }
        Err(status) => (Denied(status.code()), status.message().to_owned()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rpc_by_every_caller_gets_exactly_its_code_and_nothing_of_others() {
    let daemon = Daemon::start();
    daemon.issue("guest", &rrocker_certs::LeafSpec::client("guests", "guest1"));
    let mut owner = daemon.client("client1").await;
    let script = format!("echo {SECRET_OUTPUT}; exec sleep 600 # {SECRET_ARGUMENT}");

    for (rpc, expected) in MATRIX {
        for (caller, expected) in CALLERS.into_iter().zip(expected) {
            // A fresh task per cell: Stop and Remove change it. Remove needs an ended task, and
            // Wait answers at once for one.
            let id = start(&mut owner, shell(&script)).await;
            wait_for_output(&mut owner, &id, SECRET_OUTPUT).await;
            let ended_first = [Rpc::Remove, Rpc::Wait].contains(&rpc);
            if ended_first {
                owner
                    .stop(StopRequest {
                        task_id: id.clone(),
                        grace_ms: Some(0),
                        ..Default::default()
                    })
                    .await
                    .expect("stop");
            }
            let (outcome, seen) = match connect(&daemon, caller).await {
                Some(mut client) => call(&mut client, rpc, &id).await,
                None => (Refused, String::new()),
            };
            assert_eq!(outcome, expected, "{rpc:?} by {caller:?}: {seen}");

            let mut client_sees_own_task = matches!(caller, Caller::Owner | Caller::Admin);
            client_sees_own_task &= outcome == Answered;
            if !client_sees_own_task {
                for secret in [SECRET_ARGUMENT, SECRET_OUTPUT, id.as_str()] {
                    let shown = if matches!(outcome, Denied(Code::NotFound)) {
                        // The caller named the id; the answer may repeat it, nothing more.
                        seen.replace(&format!("'{id}'"), "")
                    } else {
                        seen.clone()
                    };
                    assert!(
                        !shown.contains(secret),
                        "{rpc:?} by {caller:?} shows {secret}: {seen}"
                    );
                }
            }
            if matches!(caller, Caller::OtherClient)
                && ![Rpc::Start, Rpc::List, Rpc::Interact].contains(&rpc)
            {
                let mut other = connect(&daemon, caller).await.expect("client2");
                let (_, missing) = call(&mut other, rpc, MISSING).await;
                assert_eq!(seen.replace(&id, "<id>"), missing.replace(MISSING, "<id>"));
            }
            let stopped = rpc == Rpc::Stop && outcome == Answered;
            if !(ended_first || stopped) {
                owner
                    .stop(StopRequest { task_id: id, grace_ms: Some(0), ..Default::default() })
                    .await
                    .expect("stop");
            }
        }
    }
}
