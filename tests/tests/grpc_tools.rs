//! What standard gRPC tools use, over the same mTLS listener: grpc.health.v1 (the server and
//! the task service are SERVING while the daemon runs, NOT_SERVING once it shuts down; an
//! unknown service is NOT_FOUND) and server reflection (the services and their descriptors,
//! so that no .proto file is needed).

use rrocker_tests::Daemon;
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_health_service_reports_the_task_service_serving() {
    let daemon = Daemon::start();
    let channel = daemon.channel("client1").await;
    let mut health = HealthClient::new(channel);
    for service in ["", "rrocker.v1.TaskService"] {
        let request = HealthCheckRequest { service: service.into() };
        let answer = health.check(request).await.expect("check").into_inner();
        assert_eq!(answer.status(), ServingStatus::Serving, "{service:?}");
    }
    let request = HealthCheckRequest { service: "no.such.Service".into() };
    let unknown = health.check(request).await.expect_err("unknown service");
    assert_eq!(unknown.code(), Code::NotFound);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_shutting_down_reports_not_serving() {
    rrocker_tests::require_root!();
    // A task that ignores SIGTERM holds the shutdown for its grace period.
    let mut daemon = Daemon::start_with(&["--stop-grace-ms", "5000"]);
    let mut client = daemon.client("client1").await;
    let script = "trap '' TERM; echo up; while :; do sleep 1; done";
    let id = rrocker_tests::start(&mut client, rrocker_tests::shell(script)).await;
    drop(rrocker_tests::wait_for_output(&mut client, &id, "up").await);
    let channel = daemon.channel("client1").await;
    let mut health = HealthClient::new(channel);
    rrocker_tests::signal(daemon.pid(), libc::SIGTERM);
    // The daemon flips the status as it handles the signal: ask until it has.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(4);
    loop {
        let request = HealthCheckRequest { service: "rrocker.v1.TaskService".into() };
        let answer = health.check(request).await.expect("check").into_inner();
        if answer.status() == ServingStatus::NotServing {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "still SERVING while shutting down");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(daemon.terminate().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflection_lists_the_services_and_describes_the_task_service() {
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

    let daemon = Daemon::start();
    let channel = daemon.channel("client1").await;
    let mut reflection = ServerReflectionClient::new(channel);
    let requests = [
        MessageRequest::ListServices(String::new()),
        MessageRequest::FileContainingSymbol("rrocker.v1.TaskService".into()),
    ]
    .map(|request| ServerReflectionRequest { host: String::new(), message_request: Some(request) });
    let mut answers = reflection
        .server_reflection_info(tokio_stream::iter(requests))
        .await
        .expect("reflection")
        .into_inner();
    let Some(MessageResponse::ListServicesResponse(list)) =
        answers.message().await.expect("answer").and_then(|answer| answer.message_response)
    else {
        panic!("no service list");
    };
    let mut names: Vec<_> = list.service.into_iter().map(|service| service.name).collect();
    names.sort();
    assert_eq!(
        names,
        ["grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection", "rrocker.v1.TaskService"]
    );
    let Some(MessageResponse::FileDescriptorResponse(files)) =
        answers.message().await.expect("answer").and_then(|answer| answer.message_response)
    else {
        panic!("no descriptor for rrocker.v1.TaskService");
    };
    let file: prost_types::FileDescriptorProto =
        prost::Message::decode(files.file_descriptor_proto[0].as_slice()).expect("a descriptor");
    assert_eq!(file.package(), "rrocker.v1");
    let methods: Vec<_> = file.service[0].method.iter().map(|method| method.name()).collect();
    assert_eq!(
        methods,
        [
            "Start", "Stop", "Query", "Stream", "List", "Remove", "Signal", "Wait", "Watch",
            "Interact"
        ]
    );
}

/// Whether Python with grpcio and grpcio-tools can run the foreign client.
fn python_grpc() -> bool {
    std::process::Command::new("python3")
        .args(["-c", "import grpc, grpc_tools"])
        .output()
        .is_ok_and(|output| output.status.success())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_client_starts_and_streams_a_task_over_mtls() {
    if !python_grpc() {
        if std::env::var("CI").is_ok_and(|ci| ci == "true") {
            panic!("python3 with grpcio and grpcio-tools is needed, and CI=true forbids skipping");
        }
        eprintln!(
            "SKIPPED: python3 with grpcio and grpcio-tools is not installed (pip install grpcio grpcio-tools)"
        );
        return;
    }
    let daemon = Daemon::start();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let output = std::process::Command::new("python3")
        .arg(root.join("tests/python/foreign_client.py"))
        .arg(daemon.addr().to_string())
        .arg(daemon.pki_dir())
        .arg("client1")
        .arg(root.join("rrocker-proto/proto"))
        .arg("echo hello from python; echo oops >&2; exit 3")
        .output()
        .expect("run python3");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "the foreign client failed: {stderr}");
    let answer: serde_json::Value = serde_json::from_slice(&output.stdout).expect("one JSON line");
    assert_eq!(answer["stdout"], "hello from python\n");
    assert_eq!(answer["stderr"], "oops\n");
    assert_eq!(answer["state"], "TASK_STATE_COMPLETED");
    assert_eq!(answer["exit_code"], 3);
    // The same task, seen by rrocker's own client.
    let mut client = daemon.client("client1").await;
    let id = answer["task_id"].as_str().expect("an id").to_owned();
    let status = client
        .query(rrocker_proto::v1::QueryRequest { task_id: id })
        .await
        .expect("query")
        .into_inner();
    assert_eq!((status.owner.as_str(), status.exit_code), ("client1", Some(3)));
}
