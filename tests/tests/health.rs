//! grpc.health.v1, for standard tools and load balancers: over the same mTLS listener, the
//! server and the task service are SERVING while the daemon runs; an unknown service is
//! NOT_FOUND.

use rrocker_tests::Daemon;
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_health_service_reports_the_task_service_serving() {
    let daemon = Daemon::start();
    let config = rrocker_cli::client_config(&daemon.options("client1")).expect("config");
    let channel =
        rrocker_cli::channel_with(&daemon.addr().to_string(), config).await.expect("connect");
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
    let config = rrocker_cli::client_config(&daemon.options("client1")).expect("config");
    let channel =
        rrocker_cli::channel_with(&daemon.addr().to_string(), config).await.expect("connect");
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
