//! rrockerd, the rrocker daemon.
//!
//! Runtime shape: a tokio multi-thread runtime serves `rrocker.v1.TaskService` with tonic
//! over rustls (mutual TLS, [`tls`], [`listener`]); each request carries the caller that
//! [`authz`] derived from its verified certificate; [`service`] hands requests to the
//! [`tasks`] registry, which drives the io_uring task engine (`rrocker-uring`) on its own
//! thread through channels. [`worker`] turns a request into what the engine spawns.
//!
//! Lifecycle: [`run`] serves until SIGTERM or SIGINT, then refuses new tasks, stops every
//! running task (SIGTERM, SIGKILL after the grace period), lets streams deliver their final
//! status, and returns.

pub mod authz;
pub mod cgroup;
pub mod config;
pub mod config_file;
pub mod error;
pub mod listener;
pub mod metrics;
pub mod policy;
pub mod quota;
pub mod service;
pub mod spec;
pub mod state;
pub mod tasks;
pub mod tls;
pub mod validate;
pub mod worker;

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use rrocker_proto::v1::task_service_server::TaskServiceServer;
use rrocker_uring::{Engine, EngineConfig};
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};

use crate::config::Config;
use crate::error::DaemonError;
use crate::tasks::TaskRegistry;

/// How long streams may take to drain once every task has ended at shutdown.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// HTTP/2 flow-control window per stream: large, so clients' requests never wait on it.
const STREAM_WINDOW: u32 = 1024 * 1024;
/// HTTP/2 flow-control window per connection.
const CONNECTION_WINDOW: u32 = 4 * 1024 * 1024;

/// Sends logs to stderr, filtered by `RUST_LOG` (default `info`).
pub fn init_logging(format: config::LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        config::LogFormat::Text => logs.init(),
        config::LogFormat::Json => logs.json().with_current_span(true).init(),
    }
}

/// Tells systemd the daemon's state, if it runs under systemd with Type=notify.
fn notify_systemd(state: sd_notify::NotifyState<'_>) {
    if let Err(error) = sd_notify::notify(false, &[state]) {
        tracing::warn!(%error, "cannot notify systemd");
    }
}

/// Sets this process's OOM score adjustment (the spawner, forked after, inherits it), so
/// that the kernel's OOM killer picks tasks before the daemon. Needs root to lower it.
pub fn steer_oom_killer(score: i32) {
    if !rustix::process::geteuid().is_root() {
        return;
    }
    if let Err(error) = std::fs::write("/proc/self/oom_score_adj", score.to_string()) {
        tracing::warn!(
            %error,
            "cannot lower the daemon's OOM score (CAP_SYS_RESOURCE withheld?): it stays at 0, and tasks, raised above it, still go first"
        );
    }
}

/// Where the daemon's own mounts go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mounts {
    /// The daemon has a private mount namespace: it may attach mounts there.
    Private,
    /// The daemon shares the host's mount namespace: it attaches nothing.
    Host,
}

/// Runs the daemon until SIGTERM or SIGINT. Prints `rrockerd listening on ADDR` on stdout
/// once it accepts connections, and one line for each SIGHUP (see
/// [`tls::reloaded_on_sighup`]).
pub async fn run(
    config: Config,
    mounts: Mounts,
    spawner: Option<rrocker_uring::Spawner>,
    site: cgroup::Site,
) -> Result<(), DaemonError> {
    let pki_dir = config.pki_dir();
    if !rrocker_certs::has_server_pki(&pki_dir) {
        rrocker_certs::Pki::write_dev(&pki_dir)?;
        tracing::warn!(dir = %pki_dir.display(), "no PKI found: generated a dev PKI (not for production)");
    }
    // Bad TLS files stop the daemon before it creates anything.
    let acceptors = tls::reloaded_on_sighup(pki_dir.clone(), config.crl.clone())?;
    // So does a seccomp profile that does not compile, or a directory tasks cannot be set up
    // from.
    let filters = worker::seccomp::load(&config.seccomp_profile)?;
    worker::rootfs::check_searchable("--state-dir", &config.state_dir)?;
    worker::rootfs::check_searchable("--images-dir", &config.images_dir)?;
    // An unprivileged daemon's tasks use its own image as it is, from where it lies.
    if let Some(image) = config.image.as_deref().filter(|_| !rustix::process::geteuid().is_root()) {
        worker::rootfs::check_searchable("--image", image)?;
    }
    tracing::info!(profile = %filters.mode, "seccomp");
    let created_state_dir = !config.state_dir.exists();
    worker::dirs::private_dir(&config.state_dir).map_err(|source| DaemonError::Io {
        action: "create",
        path: config.state_dir.clone(),
        source,
    })?;
    let mut terminate = signal(SignalKind::terminate()).map_err(|source| DaemonError::Io {
        action: "handle SIGTERM for",
        path: "rrockerd".into(),
        source,
    })?;
    let mut interrupt = signal(SignalKind::interrupt()).map_err(|source| DaemonError::Io {
        action: "handle SIGINT for",
        path: "rrockerd".into(),
        source,
    })?;

    let spill_dir = config.state_dir.join("spill");
    worker::dirs::private_dir(&spill_dir).map_err(|source| DaemonError::Io {
        action: "create",
        path: spill_dir.clone(),
        source,
    })?;
    let engine = Engine::start(EngineConfig {
        spill_dir: Some(spill_dir.clone()),
        window_bytes: usize::try_from(config.output_window_bytes).unwrap_or(usize::MAX),
        budget_bytes: usize::try_from(config.output_budget_bytes).unwrap_or(usize::MAX),
        kept_bytes: config.max_output_bytes.unwrap_or(u64::MAX),
        // Making network namespaces ahead needs CAP_SYS_ADMIN in the host's user namespace.
        netns_pool: rustix::process::geteuid().is_root(),
        spawner: spawner.map(Arc::new),
        // The tests' fault (debug builds only): the engine thread panics at its first spawn.
        #[cfg(debug_assertions)]
        panic_at_spawn: std::env::var_os("RROCKERD_TEST_FAULT")
            .is_some_and(|f| f == "engine-panic"),
        ..EngineConfig::default()
    })?;
    let engine_died = engine.died();
    let images = Arc::new(worker::images::Images::new(
        config.image.as_deref(),
        &config.images_dir,
        &config.state_dir,
        mounts,
    )?);
    let privileged = rustix::process::geteuid().is_root();
    let isolator = worker::Isolator::new(
        Arc::clone(&images),
        Arc::new(config.uid_slices()),
        filters,
        privileged.then_some(config.task_oom_score_adj),
    )?;
    // Leftover tasks of an earlier run are killed (with their cgroups) before their
    // directories are cleaned up.
    let cgroups = cgroup::probe(config.cgroup_version, &site)?;
    let mut policy = config.policy();
    match &cgroups {
        Some(cgroups) => {
            cgroups.prepare()?;
            // A default (or a maximum, which a start that sets nothing gets) needs its
            // controller: without it, it would refuse every start; a start asking that limit
            // is refused anyway.
            let (defaults, maxima) = (&mut policy.defaults, &mut policy.maxima);
            for (controller, default, maximum) in [
                ("memory", &mut defaults.memory, &mut maxima.memory),
                ("pids", &mut defaults.pids, &mut maxima.pids),
                ("cpu", &mut defaults.cpu_millis, &mut maxima.cpu_millis),
            ] {
                if (*default != 0 || *maximum != 0) && !cgroups.offers(controller) {
                    let said = "no such cgroup controller for tasks: no default or maximum of it";
                    tracing::warn!(controller, "{said}");
                    (*default, *maximum) = (0, 0);
                }
            }
            let totals = policy.totals;
            cgroups.cap_parent(&spec::Limits {
                memory_max_bytes: spec::limit(totals.memory),
                pids_max: spec::limit(totals.pids),
                ..spec::Limits::default()
            })?;
            tracing::info!(
                backend = cgroups.describe(),
                parent = site.describe(),
                why = site.why,
                total_memory_bytes = totals.memory,
                total_pids = totals.pids,
                "cgroups"
            );
        }
        None => {
            // Limits cannot be applied (a start asking one is refused), so no policy.
            policy = policy::Policy::default();
            tracing::warn!(
                "no cgroups (off, or an unprivileged daemon): tasks run without limits, default limits (--default-max-*) and the caps on all tasks (--total-max-*) cannot be given"
            )
        }
    }
    if !privileged {
        tracing::warn!(
            "unprivileged: the OOM killer is not steered (--oom-score-adj, --task-oom-score-adj need root), and every identity's tasks share this user's uid"
        );
    }
    let tasks_dir = worker::rootfs::prepare_tasks_dir(&config.state_dir)?;
    let quota = quota::Quota::new(
        usize::try_from(config.max_tasks).unwrap_or(usize::MAX),
        config.quota_caps(),
    );
    let metrics = Arc::new(metrics::Metrics::new().with_quota(Arc::clone(&quota)));
    let registry = Arc::new(TaskRegistry::new(
        engine,
        isolator,
        cgroups,
        quota,
        tasks::Settings { tasks_dir, default_grace: config.stop_grace(), policy },
        metrics,
    ));
    // grpc.health.v1 for standard tools and load balancers: SERVING until a shutdown begins.
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<TaskServiceServer<service::Service>>().await;
    // Server reflection (v1, and v1alpha that many tools still ask), so that grpcurl and the
    // like need no .proto file.
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(rrocker_proto::v1::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET)
    };
    let (reflection, reflection_alpha) = (reflection().build_v1()?, reflection().build_v1alpha()?);
    // Ready (the line on stdout, systemd's READY=1) only once every service is built.
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| DaemonError::Listen { addr: config.listen, source })?;
    let addr = listener
        .local_addr()
        .map_err(|source| DaemonError::Listen { addr: config.listen, source })?;
    // Metrics, when asked for, on a listener of their own until the daemon stops.
    let metrics_listener = match config.metrics_listen {
        Some(at) => Some(metrics::listen(at, Arc::clone(registry.metrics())).await?),
        None => None,
    };
    tracing::info!(%addr, pki = %pki_dir.display(), "serving");
    println!("rrockerd listening on {addr}");
    if let Some((bound, _)) = &metrics_listener {
        tracing::info!(addr = %bound, "serving metrics at /metrics");
        println!("rrockerd metrics on http://{bound}/metrics");
    }
    let _ = std::io::stdout().flush();
    // systemd's Type=notify readiness (nothing without $NOTIFY_SOCKET).
    notify_systemd(sd_notify::NotifyState::Ready);

    let drained = tokio::sync::Notify::new();
    // Why the engine died, if it did: then no task can be driven, so the daemon says so
    // (health NOT_SERVING, the log) and exits non-zero rather than serve as if it could.
    let engine_death = std::sync::OnceLock::new();
    let shutdown = {
        let registry = Arc::clone(&registry);
        let grace = config.stop_grace();
        let (drained, engine_death) = (&drained, &engine_death);
        async move {
            tokio::select! {
                _ = terminate.recv() => tracing::info!("SIGTERM: shutting down"),
                _ = interrupt.recv() => tracing::info!("SIGINT: shutting down"),
                why = engine_died => {
                    tracing::error!(%why, "the task engine died: stopping");
                    let _ = engine_death.set(why);
                }
            }
            notify_systemd(sd_notify::NotifyState::Stopping);
            health.set_not_serving::<TaskServiceServer<service::Service>>().await;
            health.set_service_status("", tonic_health::ServingStatus::NotServing).await;
            // Tasks are stopped through the engine; without it they die with the daemon.
            if engine_death.get().is_none() {
                registry.shutdown(grace).await;
            }
            drained.notify_one();
        }
    };
    let server = tonic::transport::Server::builder()
        .initial_stream_window_size(Some(STREAM_WINDOW))
        .initial_connection_window_size(Some(CONNECTION_WINDOW))
        .add_service(health_service)
        .add_service(reflection)
        .add_service(reflection_alpha)
        .add_service(TaskServiceServer::new(service::Service::new(Arc::clone(&registry))))
        .serve_with_incoming_shutdown(listener::accept_tls(listener, acceptors), shutdown);
    tokio::select! {
        served = server => served?,
        () = async { drained.notified().await; tokio::time::sleep(DRAIN_TIMEOUT).await } => {
            tracing::warn!("streams did not drain in time; closing them");
        }
    }
    drop(metrics_listener);
    // Every task is gone, and its directory and cgroup with it: leave nothing behind.
    registry.remove_cgroup_parent();
    let _ = std::fs::remove_dir(config.state_dir.join("tasks"));
    let _ = std::fs::remove_dir(&spill_dir);
    images.release();
    if created_state_dir {
        let _ = std::fs::remove_dir(&config.state_dir);
    }
    if let Some(why) = engine_death.into_inner() {
        return Err(DaemonError::EngineDied(why));
    }
    tracing::info!("stopped");
    Ok(())
}
