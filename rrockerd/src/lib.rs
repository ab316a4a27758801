//! rrockerd, the rrocker daemon.
//!
//! Runtime shape: a tokio multi-thread runtime serves `rrocker.v1.TaskService` with tonic
//! over rustls (mutual TLS, [`tls`], [`listener`]); each request carries the caller that
//! [`authz`] derived from its verified certificate; [`service`] hands requests to the
//! [`tasks`] registry, which drives the io_uring task engine (`rrocker-uring`) on its own
//! thread through channels. [`isolator`] turns a request into what the engine spawns, with [`image`] and
//! [`task_root`].
//!
//! Lifecycle: [`run`] serves until SIGTERM or SIGINT, then refuses new tasks, stops every
//! running task (SIGTERM, SIGKILL after the grace period), lets streams deliver their final
//! status, and returns.

pub mod authz;
pub mod cgroup;
pub mod config;
pub mod config_file;
mod daemon;
pub mod dirs;
pub mod events;
pub mod exec;
pub mod image;
pub mod io_context;
pub mod isolator;
pub mod listener;
pub mod metrics;
pub mod open_caps;
pub mod policy;
pub mod quota;
pub mod request_error;
pub mod retention;
pub mod service;
pub mod spec;
pub mod startup_error;
pub mod state;
pub mod task;
pub mod task_root;
pub mod tasks;
pub mod tls;
pub mod validate;

pub use daemon::run;

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
