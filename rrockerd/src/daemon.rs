//! The daemon's life: [`run`] checks what would stop it before it touches the host, then
//! [`build`]s what it serves with (directories, the engine, images, cgroups, the registry)
//! and [`serve`]s until SIGTERM, SIGINT or the engine's death. What it made on the host is
//! removed by a [`Made`] guard on every way out, a failure half-way through the set-up (a
//! port already taken, say) included.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rrocker_proto::v1::task_service_server::TaskServiceServer;
use rrocker_uring::{Engine, EngineConfig};
use tokio::net::TcpListener;
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::config::Config;
use crate::image::registry::Images;
use crate::io_context::IoContext;
use crate::open_caps::OpenCap;
use crate::startup_error::StartupError;
use crate::tasks::{self, TaskRegistry};
use crate::{
    Mounts, cgroup, dirs, image, isolator, listener, metrics, notify_systemd, policy, quota,
    service, spec, task_root, tls,
};

/// How long streams may take to drain once every task has ended at shutdown.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// HTTP/2 flow-control window per stream: large, so clients' requests never wait on it.
const STREAM_WINDOW: u32 = 1024 * 1024;
/// HTTP/2 flow-control window per connection.
const CONNECTION_WINDOW: u32 = 4 * 1024 * 1024;

/// What the daemon made on the host, removed when it is dropped: at the end of [`run`],
/// however it ends. By then every task is gone (or, if the engine died, dies with the
/// daemon, and what it left is for the next start's clean-up: only empty directories and
/// cgroups are removed here).
#[derive(Default)]
struct Made {
    /// The state directory, if this run created it.
    state_dir: Option<PathBuf>,
    spill_dir: Option<PathBuf>,
    tasks_dir: Option<PathBuf>,
    images: Option<Arc<Images>>,
    cgroups: Option<Arc<dyn cgroup::Cgroups>>,
    /// This daemon's hold on the state directory, let go last.
    state_lock: Option<std::os::fd::OwnedFd>,
}

impl Drop for Made {
    fn drop(&mut self) {
        if let Some(cgroups) = &self.cgroups {
            cgroups.remove_parent();
        }
        for dir in [&self.tasks_dir, &self.spill_dir].into_iter().flatten() {
            let _ = std::fs::remove_dir(dir);
        }
        if let Some(images) = &self.images {
            images.release();
        }
        if let Some(dir) = &self.state_dir {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

/// Runs the daemon until SIGTERM or SIGINT. Prints `rrockerd listening on ADDR` on stdout
/// once it accepts connections, and one line for each SIGHUP (see
/// [`tls::reloaded_on_sighup`]).
pub async fn run(
    config: Config,
    mounts: Mounts,
    spawner: Option<rrocker_uring::Spawner>,
    site: cgroup::Site,
) -> Result<(), StartupError> {
    let pki_dir = config.pki_dir();
    if !rrocker_certs::has_server_pki(&pki_dir) {
        rrocker_certs::Pki::write_dev(&pki_dir)?;
        tracing::warn!(dir = %pki_dir.display(), "no PKI found: generated a dev PKI (not for production)");
    }
    // Bad TLS files stop the daemon before it creates anything.
    let acceptors = tls::reloaded_on_sighup(pki_dir.clone(), config.crl.clone())?;
    // So does a seccomp profile that does not compile, or a directory tasks cannot be set up
    // from.
    let filters = isolator::seccomp::load(&config.seccomp_profile)?;
    task_root::check_searchable("--state-dir", &config.state_dir)?;
    task_root::check_searchable("--images-dir", &config.images_dir)?;
    // An unprivileged daemon's tasks use its own image as it is, from where it lies.
    if let Some(image) = config.image.as_deref().filter(|_| !rustix::process::geteuid().is_root()) {
        task_root::check_searchable("--image", image)?;
    }
    tracing::info!(profile = %filters.mode, "seccomp");
    let signals =
        (handler(SignalKind::terminate(), "SIGTERM")?, handler(SignalKind::interrupt(), "SIGINT")?);
    let mut made = Made::default();
    let registry = build(&config, mounts, spawner, &site, filters, &mut made).await?;
    let served = serve(&config, &registry, acceptors, signals).await;
    drop(registry);
    drop(made);
    served
}

/// A handler of the signal `kind` (named `name`), installed now.
fn handler(kind: SignalKind, name: &str) -> Result<Signal, StartupError> {
    Ok(signal(kind).context("handle", std::path::Path::new(&format!("{name} in rrockerd")))?)
}

/// Makes what the daemon serves with, recording in `made` what it creates on the host.
async fn build(
    config: &Config,
    mounts: Mounts,
    spawner: Option<rrocker_uring::Spawner>,
    site: &cgroup::Site,
    filters: isolator::seccomp::SeccompFilters,
    made: &mut Made,
) -> Result<Arc<TaskRegistry>, StartupError> {
    if !config.state_dir.exists() {
        made.state_dir = Some(config.state_dir.clone());
    }
    dirs::private_dir(&config.state_dir).context("create", &config.state_dir)?;
    // Before anything in it is cleaned up: another daemon's tasks are no leftovers.
    let lock = dirs::lock(&config.state_dir).context("lock", &config.state_dir)?;
    made.state_lock =
        Some(lock.ok_or_else(|| StartupError::StateDirInUse(config.state_dir.clone()))?);
    let spill_dir = config.state_dir.join("spill");
    dirs::private_dir(&spill_dir).context("create", &spill_dir)?;
    made.spill_dir = Some(spill_dir.clone());
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
    let images = Arc::new(image::registry::Images::new(
        config.image.as_deref(),
        &config.images_dir,
        &config.state_dir,
        mounts,
    )?);
    made.images = Some(Arc::clone(&images));
    let privileged = rustix::process::geteuid().is_root();
    let isolator = isolator::Isolator::new(
        Arc::clone(&images),
        Arc::new(config.uid_slices()),
        filters,
        privileged.then_some(config.task_oom_score_adj),
    )?;
    // Leftover tasks of an earlier run are killed (with their cgroups) before their
    // directories are cleaned up.
    let cgroups: Option<Arc<dyn cgroup::Cgroups>> =
        cgroup::probe(config.cgroup_version, site)?.map(Arc::from);
    made.cgroups = cgroups.clone();
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
    let tasks_dir = task_root::prepare_tasks_dir(&config.state_dir)?;
    made.tasks_dir = Some(tasks_dir.clone());
    let quota = quota::Quota::new(
        usize::try_from(config.max_tasks).unwrap_or(usize::MAX),
        config.quota_caps(),
    );
    let metrics = Arc::new(metrics::Metrics::new().with_quota(Arc::clone(&quota)));
    Ok(Arc::new(TaskRegistry::new(
        engine,
        isolator,
        cgroups,
        quota,
        tasks::Settings {
            tasks_dir,
            default_grace: config.stop_grace(),
            max_duration: config.max_task_duration,
            retention: crate::retention::Retention {
                keep_for: config.retain_finished,
                most: usize::try_from(config.max_finished_tasks).unwrap_or(usize::MAX),
            },
            event_history: usize::try_from(config.event_history).unwrap_or(usize::MAX),
            policy,
        },
        metrics,
    )))
}

/// Serves until SIGTERM, SIGINT or the engine's death, then stops every task and lets
/// streams deliver their final status.
async fn serve(
    config: &Config,
    registry: &Arc<TaskRegistry>,
    acceptors: watch::Receiver<TlsAcceptor>,
    signals: (Signal, Signal),
) -> Result<(), StartupError> {
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
        .map_err(|source| StartupError::Listen { addr: config.listen, source })?;
    let addr = listener
        .local_addr()
        .map_err(|source| StartupError::Listen { addr: config.listen, source })?;
    // Metrics, when asked for, on a listener of their own until the daemon stops.
    let metrics_listener = match config.metrics_listen {
        Some(at) => Some(metrics::listen(at, Arc::clone(registry.metrics())).await?),
        None => None,
    };
    tracing::info!(%addr, pki = %config.pki_dir().display(), "serving");
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
        let (mut terminate, mut interrupt) = signals;
        let registry = Arc::clone(registry);
        let grace = config.stop_grace();
        let (drained, engine_death) = (&drained, &engine_death);
        async move {
            tokio::select! {
                _ = terminate.recv() => tracing::info!("SIGTERM: shutting down"),
                _ = interrupt.recv() => tracing::info!("SIGINT: shutting down"),
                why = registry.engine_died() => {
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
    let connections =
        OpenCap::new(usize::try_from(config.max_connections_per_user).unwrap_or(usize::MAX));
    let server = tonic::transport::Server::builder()
        .max_concurrent_streams(Some(config.max_streams_per_connection))
        .initial_stream_window_size(Some(STREAM_WINDOW))
        .initial_connection_window_size(Some(CONNECTION_WINDOW))
        .add_service(health_service)
        .add_service(reflection)
        .add_service(reflection_alpha)
        .add_service(service::FramedStream::new(service::Service::new(
            Arc::clone(registry),
            usize::try_from(config.max_streams_per_user).unwrap_or(usize::MAX),
        )))
        .serve_with_incoming_shutdown(
            listener::accept_tls(listener, acceptors, connections),
            shutdown,
        );
    tokio::select! {
        served = server => served?,
        () = async { drained.notified().await; tokio::time::sleep(DRAIN_TIMEOUT).await } => {
            tracing::warn!("streams did not drain in time; closing them");
        }
    }
    drop(metrics_listener);
    if let Some(why) = engine_death.into_inner() {
        return Err(StartupError::EngineDied(why));
    }
    tracing::info!("stopped");
    Ok(())
}
