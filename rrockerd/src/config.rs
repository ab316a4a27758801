//! The daemon's configuration: flags with environment equivalents and working defaults, so
//! that `rrockerd` with no flags serves on 127.0.0.1:50051 with a dev PKI.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use crate::isolator::uid_slices::{SLICE, UidSlices};
use crate::policy::{Cpu, Figures, Host, Memory, Pids, Policy};

/// rrockerd runs commands as isolated tasks and serves them over gRPC with mutual TLS.
#[derive(Debug, Clone, Parser)]
#[command(version, about)]
pub struct Config {
    /// A TOML file of settings, keyed by the flags' long names; flags and environment
    /// variables win over it.
    #[arg(long, env = "RROCKERD_CONFIG")]
    pub config: Option<PathBuf>,
    /// Print the effective configuration (flags, environment, file, defaults) as such a
    /// file, and exit.
    #[arg(long)]
    pub print_config: bool,
    /// Address to listen on (port 0 picks a free port; the bound address is printed).
    #[arg(long, env = "RROCKERD_LISTEN", default_value = "127.0.0.1:50051")]
    pub listen: SocketAddr,
    /// Address of an HTTP listener serving Prometheus metrics at /metrics (plain HTTP, no
    /// TLS: bind it to a host-local or monitoring-only address). None without it.
    #[arg(long, env = "RROCKERD_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// PKI directory (server.pem, server.key, client-ca.pem); a dev PKI is generated there
    /// if it holds none. Default: /etc/rrocker/pki as root, ~/.config/rrocker/pki otherwise.
    #[arg(long, env = "RROCKER_PKI_DIR")]
    pub pki_dir: Option<PathBuf>,
    /// Certificate revocation lists (PEM) of the client CA: a client whose certificate one
    /// revokes is refused at the handshake. Read at start-up and again on SIGHUP (with the
    /// PKI directory's certificates), so new revocations apply to new connections.
    #[arg(long, env = "RROCKERD_CRL")]
    pub crl: Option<PathBuf>,
    /// Directory for runtime state (task roots, spilled output).
    #[arg(long, env = "RROCKERD_STATE_DIR", default_value = "/run/rrocker")]
    pub state_dir: PathBuf,
    /// Root filesystem tree every task's root is a private writable view of (a debootstrap
    /// tree, an exported container filesystem...). Default: an image built on first run
    /// from the host's binaries, in the images directory.
    #[arg(long, env = "RROCKERD_IMAGE")]
    pub image: Option<PathBuf>,
    /// Directory of built images and their per-range copies.
    #[arg(long, env = "RROCKERD_IMAGES_DIR", default_value = "/var/lib/rrocker/images")]
    pub images_dir: PathBuf,
    /// Host uid/gid pool of tasks, as FIRST:COUNT: cut into slices of 65536 ids, one for each
    /// identity with tasks (root inside its tasks maps to the slice's first id), so that no
    /// two identities' tasks share a host uid. The default holds 100 slices. Ignored when
    /// rrockerd runs unprivileged: its own uid and gid then map to root, one id, for all.
    #[arg(long, default_value = "100000:6553600", value_parser = parse_id_range)]
    pub uid_range: (u32, u32),
    /// The seccomp filter of every task: rrocker's default profile (docker's default for a
    /// container without CAP_SYS_ADMIN; no namespaces, mounts, io_uring, keyrings, bpf...),
    /// unconfined (none), or a profile file in docker's JSON format. Compiled at start-up: a
    /// profile that does not parse, or names an unknown syscall, stops the daemon.
    #[arg(
        long,
        env = "RROCKERD_SECCOMP_PROFILE",
        default_value = "default",
        value_name = "default|unconfined|FILE"
    )]
    pub seccomp_profile: crate::isolator::seccomp::SeccompMode,
    /// Parent cgroup of every task's cgroup. auto: `rrocker` inside the daemon's own cgroup
    /// when its manager delegated it (systemd Delegate=yes, a container's cgroup namespace;
    /// the daemon moves itself into `daemon` beside it), else `rrocker` at each hierarchy's
    /// root. A relative path: that, at each hierarchy's root. rrocker creates, writes and
    /// removes cgroups only below it; one daemon per parent.
    #[arg(long, env = "RROCKERD_CGROUP_PARENT", default_value = "auto", value_name = "auto|PATH", value_parser = crate::cgroup::placement::parse_parent)]
    pub cgroup_parent: crate::cgroup::ParentFlag,
    /// Which cgroup backend to use: auto picks v2 where the unified hierarchy has
    /// controllers, else v1; off runs tasks without cgroups (and refuses limits).
    #[arg(long, value_enum, default_value_t = crate::cgroup::CgroupVersion::Auto)]
    pub cgroup_version: crate::cgroup::CgroupVersion,
    /// Bytes of output each task keeps in memory; older output moves to an unlinked file in
    /// `<state-dir>/spill` (so put the state directory on a disk for tasks that print a lot).
    #[arg(long, default_value_t = 4 << 20, value_parser = clap::value_parser!(u64).range(65_536..=1 << 40))]
    pub output_window_bytes: u64,
    /// Bytes of output all tasks together keep in memory; over it, the tasks that are
    /// writing keep only their newest 64 KiB there.
    #[arg(long, default_value_t = 256 << 20, value_parser = clap::value_parser!(u64).range(1 << 20..=1 << 44))]
    pub output_budget_bytes: u64,
    /// Bytes of output all tasks together keep for replay, in memory and spilled (unlimited
    /// if not given). At it, a start is refused (RESOURCE_EXHAUSTED) and tasks that write
    /// wait, losing nothing, until `rm` of finished tasks frees some.
    #[arg(long, env = "RROCKERD_MAX_OUTPUT_BYTES", value_parser = clap::value_parser!(u64).range(1 << 20..))]
    pub max_output_bytes: Option<u64>,
    /// How the daemon logs to stderr (the level comes from RUST_LOG, default info). Logs
    /// name tasks, owners and pids, never certificates, keys or task output.
    #[arg(long, env = "RROCKERD_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Clone tasks from the engine thread instead of the spawner, the small helper process
    /// forked at start-up (whose clones stay cheap however big the daemon grows). For
    /// comparison and debugging.
    #[arg(long)]
    pub no_spawner: bool,
    /// Most tasks running at once; a start beyond it is refused (RESOURCE_EXHAUSTED).
    #[arg(long, env = "RROCKERD_MAX_TASKS", default_value_t = 4096, value_parser = clap::value_parser!(u64).range(1..=1 << 20))]
    pub max_tasks: u64,
    /// Most tasks one identity (certificate CN) runs at once.
    #[arg(long, env = "RROCKERD_MAX_TASKS_PER_USER", default_value_t = 2048, value_parser = clap::value_parser!(u64).range(1..=1 << 20))]
    pub max_tasks_per_user: u64,
    /// Most output streams (stream, logs, run) one identity holds open at once, admins
    /// included; beyond it a stream is refused (RESOURCE_EXHAUSTED). 0: no cap.
    #[arg(long, env = "RROCKERD_MAX_STREAMS_PER_USER", default_value_t = 256, value_parser = clap::value_parser!(u64).range(0..=1 << 20))]
    pub max_streams_per_user: u64,
    /// Most connections one identity holds open at once, admins included; every request of
    /// a connection beyond it is refused (RESOURCE_EXHAUSTED). 0: no cap.
    #[arg(long, env = "RROCKERD_MAX_CONNECTIONS_PER_USER", default_value_t = 128, value_parser = clap::value_parser!(u64).range(0..=1 << 20))]
    pub max_connections_per_user: u64,
    /// Most concurrent requests (streams among them) on one connection: HTTP/2's
    /// MAX_CONCURRENT_STREAMS; a client waits for a free one.
    #[arg(long, env = "RROCKERD_MAX_STREAMS_PER_CONNECTION", default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_streams_per_connection: u32,
    /// Memory limit of a task whose start sets none: bytes with a unit (512M, 2G), a share
    /// of the host's memory (25%), or unlimited.
    #[arg(long, env = "RROCKERD_DEFAULT_MAX_MEM", default_value = "25%")]
    pub default_max_mem: Memory,
    /// Pids limit (processes and threads) of a task whose start sets none, or unlimited.
    #[arg(long, env = "RROCKERD_DEFAULT_MAX_PIDS", default_value = "1024")]
    pub default_max_pids: Pids,
    /// CPU limit of a task whose start sets none, in CPUs (1.5), or unlimited.
    #[arg(long, env = "RROCKERD_DEFAULT_MAX_CPU", default_value = "unlimited")]
    pub default_max_cpu: Cpu,
    /// Most memory a start may ask for (a start above it is refused), or unlimited.
    #[arg(long, env = "RROCKERD_LIMIT_MAX_MEM", default_value = "unlimited")]
    pub limit_max_mem: Memory,
    /// Most pids a start may ask for, or unlimited.
    #[arg(long, env = "RROCKERD_LIMIT_MAX_PIDS", default_value = "unlimited")]
    pub limit_max_pids: Pids,
    /// Most CPUs a start may ask for, or unlimited.
    #[arg(long, env = "RROCKERD_LIMIT_MAX_CPU", default_value = "unlimited")]
    pub limit_max_cpu: Cpu,
    /// Memory all tasks together may use: the memory limit of rrocker's parent cgroup (a
    /// share of the host's memory, bytes, or unlimited), leaving the rest to the host.
    #[arg(long, env = "RROCKERD_TOTAL_MAX_MEM", default_value = "80%")]
    pub total_max_mem: Memory,
    /// Processes and threads all tasks together may have: the pids limit of rrocker's parent
    /// cgroup (a share of the host's pid space, a count, or unlimited).
    #[arg(long, env = "RROCKERD_TOTAL_MAX_PIDS", default_value = "50%")]
    pub total_max_pids: Pids,
    /// Per identity: the most memory its running tasks' limits may add up to (a start past it
    /// is refused; a task without a memory limit would take it all), or unlimited.
    #[arg(long, env = "RROCKERD_QUOTA_MAX_MEM", default_value = "unlimited")]
    pub quota_max_mem: Memory,
    /// Per identity: the most pids its running tasks' limits may add up to, or unlimited.
    #[arg(long, env = "RROCKERD_QUOTA_MAX_PIDS", default_value = "unlimited")]
    pub quota_max_pids: Pids,
    /// Per identity: the most CPUs its running tasks' limits may add up to, or unlimited.
    #[arg(long, env = "RROCKERD_QUOTA_MAX_CPU", default_value = "unlimited")]
    pub quota_max_cpu: Cpu,
    /// Per identity: the most bytes of output its tasks (running or finished, until removed)
    /// may keep for replay; at it, its starts are refused until `rm` frees some. 0: no cap.
    #[arg(long, env = "RROCKERD_QUOTA_MAX_OUTPUT_BYTES", default_value_t = 0)]
    pub quota_max_output_bytes: u64,
    /// Hold admins to no per-identity quota (--quota-max-*) but --max-tasks-per-user.
    #[arg(long, env = "RROCKERD_QUOTA_EXEMPT_ADMINS")]
    pub quota_exempt_admins: bool,
    /// The OOM killer's score adjustment of the daemon and its spawner (-1000 to 0): they
    /// go after every task.
    #[arg(long, default_value_t = -500, value_parser = clap::value_parser!(i32).range(-1000..=0))]
    pub oom_score_adj: i32,
    /// The OOM killer's score adjustment of every task's processes (0 to 1000): tasks go
    /// first.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(i32).range(0..=1000))]
    pub task_oom_score_adj: i32,
    /// Grace period between SIGTERM and SIGKILL when a stop request gives none, in ms.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(0..=MAX_GRACE_MS))]
    pub stop_grace_ms: u64,
    /// The longest any task may run (30s, 2h, 1d): a task is stopped (SIGTERM, the grace
    /// period, SIGKILL; reason timed out) once it has, and a start asking a longer timeout
    /// is refused. None by default.
    #[arg(long, env = "RROCKERD_MAX_TASK_DURATION", value_parser = humantime::parse_duration)]
    pub max_task_duration: Option<Duration>,
    /// How long a finished task (its status and output) is kept before it is removed, as by
    /// `rm` (30m, 24h, 7d).
    #[arg(long, env = "RROCKERD_RETAIN_FINISHED", default_value = "24h", value_parser = humantime::parse_duration)]
    pub retain_finished: Duration,
    /// The most finished tasks kept: past it, the oldest are removed, each time from the
    /// identity that keeps the most.
    #[arg(long, env = "RROCKERD_MAX_FINISHED_TASKS", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(0..=1 << 24))]
    pub max_finished_tasks: u64,
    /// How many task events (created, started, ended, removed) the daemon keeps for
    /// watchers that replay them (`events --since`); a watcher that falls this far behind
    /// is ended.
    #[arg(long, env = "RROCKERD_EVENT_HISTORY", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=1 << 20))]
    pub event_history: u64,
    /// Something to do instead of running the daemon.
    #[command(subcommand)]
    pub command: Option<DaemonCommand>,
}

/// What `rrockerd` does instead of serving, when given a command.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum DaemonCommand {
    /// Manage the images of the images directory, which `start --image NAME` gives tasks.
    #[command(subcommand)]
    Image(ImageCommand),
}

/// `rrockerd image ...`.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum ImageCommand {
    /// Import a container filesystem export (docker export, podman export, or any tar of a
    /// root tree; gzip or not) as a named image; a running daemon finds it on first use.
    #[command(
        after_help = "Examples:\n  docker export $(docker create alpine) > alpine.tar\n  rrockerd image import alpine.tar\n  rrocker-cli run --image alpine /bin/cat /etc/alpine-release"
    )]
    Import {
        /// The archive.
        file: PathBuf,
        /// The image's name [default: the file's name without .tar, .tar.gz or .tgz].
        #[arg(long)]
        name: Option<String>,
        /// Refuse the archive, importing nothing, if it holds an entry that cannot be kept as
        /// it is (a device node, a fifo, a hard link out of the tree), instead of skipping
        /// such entries and naming them.
        #[arg(long)]
        strict: bool,
    },
    /// List the images of the images directory.
    #[command(visible_alias = "ls")]
    List,
}

/// The `--log-format` choices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One human-readable line per event.
    Text,
    /// One JSON object per line, with the event's fields and its span (a task's `id`).
    Json,
}

/// The longest grace period a stop may ask for (one day).
pub const MAX_GRACE_MS: u64 = 24 * 60 * 60 * 1000;

/// Parses FIRST:COUNT; refuses ranges that include host root or overflow.
fn parse_id_range(text: &str) -> Result<(u32, u32), String> {
    let invalid = || format!("invalid id range '{text}': expected FIRST:COUNT, e.g. 100000:65536");
    let (first, count) = text.split_once(':').ok_or_else(invalid)?;
    let first: u32 = first.parse().map_err(|_| invalid())?;
    let count: u32 = count.parse().map_err(|_| invalid())?;
    if first == 0 || first.checked_add(count).is_none() {
        return Err(format!(
            "{}: the range must not include uid 0 and must fit in 32 bits",
            invalid()
        ));
    }
    if count < SLICE {
        return Err(format!(
            "{}: the range must hold at least one slice of {SLICE} ids (one per identity with tasks)",
            invalid()
        ));
    }
    Ok((first, count))
}

impl Config {
    /// The host id slices of tasks: the configured pool as root, or the daemon's own ids
    /// (shared by every identity) if it is not root.
    pub fn uid_slices(&self) -> UidSlices {
        let (uid, gid) = (rustix::process::geteuid(), rustix::process::getegid());
        if uid.is_root() {
            let (first, count) = self.uid_range;
            UidSlices::new(first, count)
        } else {
            let own =
                rrocker_uring::IdMap { first_uid: uid.as_raw(), first_gid: gid.as_raw(), count: 1 };
            UidSlices::shared(own)
        }
    }

    /// The limits policy, resolved for this host.
    pub fn policy(&self) -> Policy {
        let host = Host::this();
        Policy {
            defaults: Figures::of(
                self.default_max_mem,
                self.default_max_pids,
                self.default_max_cpu,
                host,
            ),
            maxima: Figures::of(self.limit_max_mem, self.limit_max_pids, self.limit_max_cpu, host),
            totals: Figures::of(
                self.total_max_mem,
                self.total_max_pids,
                Cpu(crate::policy::Amount::Unlimited),
                host,
            ),
        }
    }

    /// The caps per identity.
    pub fn quota_caps(&self) -> crate::quota::Caps {
        let limits =
            Figures::of(self.quota_max_mem, self.quota_max_pids, self.quota_max_cpu, Host::this());
        crate::quota::Caps {
            tasks: usize::try_from(self.max_tasks_per_user).unwrap_or(usize::MAX),
            limits,
            output_bytes: self.quota_max_output_bytes,
            exempt_admins: self.quota_exempt_admins,
        }
    }

    /// The PKI directory in use.
    pub fn pki_dir(&self) -> PathBuf {
        self.pki_dir.clone().unwrap_or_else(rrocker_certs::default_pki_dir)
    }

    /// The default stop grace period.
    pub fn stop_grace(&self) -> Duration {
        Duration::from_millis(self.stop_grace_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_ranges() {
        assert_eq!(parse_id_range("100000:65536"), Ok((100_000, 65_536)));
        assert!(parse_id_range("100000:65535").is_err(), "less than a slice");
        assert!(parse_id_range("0:65536").is_err());
        assert!(parse_id_range("100000:0").is_err());
        assert!(parse_id_range("4294967295:2").is_err());
        assert!(parse_id_range("100000").is_err());
        assert!(parse_id_range("a:b").is_err());
    }
}
