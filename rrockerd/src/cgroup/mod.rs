//! Resource control: one cgroup per task below the daemon's parent cgroup, with the task's
//! CPU, memory, pids and IO limits, its usage counters and its OOM kills. Two backends sit
//! behind the [`Cgroups`] trait, chosen once at start-up by [`probe`]: [`v2`] when the
//! unified hierarchy has the controllers, else [`v1`] (which also uses a controller-less
//! unified hierarchy, when mounted, for atomic placement and `cgroup.kill`).
//!
//! This module never creates, writes or removes anything outside the parent cgroup, except
//! creating the parent itself; it only signals processes found inside the parent, which
//! rrocker started. Every function takes its cgroupfs roots as parameters, so the backends
//! are unit-tested against tempdir fixtures.

pub mod files;
pub mod mounts;
pub mod v1;
pub mod v2;

use std::fmt::Debug;
use std::path::{Path, PathBuf};

use rrocker_proto::v1::{Limits, Usage};
use rrocker_uring::Placement;

use crate::config::CgroupVersion;
use crate::error::DaemonError;

/// A cgroup backend: makes and configures the parent once, then one cgroup per task.
pub trait Cgroups: Send + Sync + Debug {
    /// What the backend is, for the log (`v2`, `v1 + unified`...).
    fn describe(&self) -> String;

    /// Creates the parent cgroup, enables what it needs there, and kills and removes the
    /// task cgroups an earlier run left behind.
    fn prepare(&self) -> Result<(), DaemonError>;

    /// Creates the cgroup of task `name` with `limits` applied. Nothing is left behind if
    /// this fails.
    fn create(&self, name: &str, limits: &Limits) -> Result<Box<dyn TaskCgroup>, DaemonError>;

    /// Whether task cgroups get the controller `name` (`cpu`, `memory`, `pids`...), once the
    /// parent is prepared.
    fn offers(&self, name: &str) -> bool;

    /// Caps all tasks together: writes the memory and pids limits of `caps` (0: none) on
    /// the parent cgroup, where its controllers are.
    fn cap_parent(&self, caps: &Limits) -> Result<(), DaemonError>;

    /// Removes the parent cgroup if it is empty (at shutdown).
    fn remove_parent(&self);
}

/// One task's cgroup(s).
pub trait TaskCgroup: Send + Sync + Debug {
    /// How the engine puts the task's first process in here before it runs.
    fn placement(&self) -> Result<Placement, DaemonError>;

    /// What the task has used so far.
    fn usage(&self) -> Usage;

    /// Kills every process in the cgroup at once (`cgroup.kill`); false where the kernel or
    /// the layout has no such file.
    fn kill(&self) -> bool;

    /// Removes the cgroup(s), retrying while the kernel still holds them busy.
    fn remove(&self) -> Result<(), DaemonError>;
}

/// The host's cgroup backend (`version`, or probed) for a parent cgroup named `parent` (a
/// relative path), or `None` when there is none this daemon may use (not root, or no such
/// cgroup file system).
pub fn probe(
    version: CgroupVersion,
    parent: &Path,
) -> Result<Option<Box<dyn Cgroups>>, DaemonError> {
    if version == CgroupVersion::Off || !rustix::process::geteuid().is_root() {
        return Ok(None);
    }
    let mounts = mounts::CgroupMounts::read()?;
    Ok(match version {
        CgroupVersion::Auto => select(&mounts, parent),
        CgroupVersion::V2 => mounts
            .unified
            .map(|root| Box::new(v2::CgroupV2::new(root, parent.to_owned())) as Box<dyn Cgroups>),
        CgroupVersion::V1 => (!mounts.v1.is_empty()).then(|| {
            Box::new(v1::CgroupV1::new(&mounts.v1, mounts.unified.clone(), parent.to_owned()))
                as Box<dyn Cgroups>
        }),
        CgroupVersion::Off => None,
    })
}

/// The backend for `mounts`: v2 where the unified hierarchy has controllers, else v1.
pub fn select(mounts: &mounts::CgroupMounts, parent: &Path) -> Option<Box<dyn Cgroups>> {
    if let Some(unified) = &mounts.unified {
        let controllers =
            files::read_string(&unified.join("cgroup.controllers")).unwrap_or_default();
        if controllers.split_whitespace().any(|c| v2::CONTROLLERS.contains(&c)) {
            return Some(Box::new(v2::CgroupV2::new(unified.clone(), parent.to_owned())));
        }
    }
    if mounts.v1.is_empty() {
        return mounts
            .unified
            .as_ref()
            .map(|unified| Box::new(v2::CgroupV2::new(unified.clone(), parent.to_owned())) as _);
    }
    Some(Box::new(v1::CgroupV1::new(&mounts.v1, mounts.unified.clone(), parent.to_owned())))
}

pub use crate::policy::{DEFAULT_CPU_PERIOD_US, cpu_period};

/// Refuses `limits` if one needs a controller `has` says rrocker lacks; `io` names the IO
/// controller (`io` on v2, `blkio` on v1).
fn require_controllers(
    limits: &Limits,
    io: &str,
    has: impl Fn(&str) -> bool,
) -> Result<(), DaemonError> {
    let wanted = [
        ("cpu", limits.cpu_quota_us != 0),
        ("memory", limits.memory_max_bytes != 0),
        ("pids", limits.pids_max != 0),
        (io, !limits.io.is_empty()),
    ];
    match wanted.iter().find(|(controller, asked)| *asked && !has(controller)) {
        Some((controller, _)) => Err(DaemonError::LimitUnavailable(format!(
            "the {controller} cgroup controller is not available to rrocker on this host: the limit cannot be applied"
        ))),
        None => Ok(()),
    }
}

/// Checks a `--cgroup-parent` value: a relative path of plain names.
pub fn parse_parent(text: &str) -> Result<PathBuf, String> {
    let path = Path::new(text);
    let plain = !text.is_empty()
        && path.components().all(|part| matches!(part, std::path::Component::Normal(_)));
    if plain {
        Ok(path.to_owned())
    } else {
        Err(format!("invalid cgroup parent '{text}': expected a relative path like rrocker"))
    }
}

/// Checks that `major:minor` is a whole-disk block device of this host (what io.max and
/// blkio.throttle accept): `/sys/dev/block/M:m` exists and is not a partition.
pub fn check_io_device(sys_dev_block: &Path, major: u32, minor: u32) -> Result<(), DaemonError> {
    let device = sys_dev_block.join(format!("{major}:{minor}"));
    if !device.exists() {
        return Err(DaemonError::InvalidArgument(format!(
            "io limit: {major}:{minor} is not a block device of this host"
        )));
    }
    if device.join("partition").exists() {
        let disk = files::read_string(&device.join("../dev")).unwrap_or_default();
        return Err(DaemonError::InvalidArgument(format!(
            "io limit: {major}:{minor} is a partition; limit its whole disk ({})",
            disk.trim()
        )));
    }
    Ok(())
}
