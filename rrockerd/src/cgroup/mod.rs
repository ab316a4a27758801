//! Resource control: one cgroup per task below the daemon's parent cgroup, with the task's
//! CPU, memory, pids and IO limits, its usage counters and its OOM kills. Two backends sit
//! behind the [`Cgroups`] trait, chosen once at start-up by [`probe`]: [`v2`] when the
//! unified hierarchy has the controllers, else [`v1`] (which also uses a controller-less
//! unified hierarchy, when mounted, for atomic placement and `cgroup.kill`).
//!
//! Where the parent is ([`placement`]): inside the daemon's own cgroup when a manager
//! delegated it, else at each hierarchy's root. This module never creates, writes or removes
//! anything outside the parent cgroup, except creating the parent itself (and, in a delegated
//! cgroup, the daemon's own leaf and the controllers it enables there); it only signals
//! processes found inside the parent, which rrocker started. Every function takes its
//! cgroupfs roots as parameters, so the backends are unit-tested against tempdir fixtures.

pub mod error;
pub mod files;
pub mod mounts;
pub mod parent_lock;
pub mod placement;
pub mod v1;
pub mod v2;

use std::fmt::Debug;
use std::path::{Path, PathBuf};

use rrocker_uring::Placement;

pub use self::error::CgroupError;
pub use self::placement::{CgroupVersion, ParentFlag, Site};
use crate::spec::{Limits, Usage};

/// A cgroup backend: makes and configures the parent once, then one cgroup per task.
pub trait Cgroups: Send + Sync + Debug {
    /// What the backend is, for the log (`v2`, `v1 + unified`...).
    fn describe(&self) -> String;

    /// Creates the parent cgroup, locks it for this daemon (refused while another process
    /// holds it), enables what it needs there, and kills and removes the task cgroups an
    /// earlier run left behind.
    fn prepare(&self) -> Result<(), CgroupError>;

    /// Creates the cgroup of task `name` with `limits` applied. Nothing is left behind if
    /// this fails.
    fn create(&self, name: &str, limits: &Limits) -> Result<Box<dyn TaskCgroup>, CgroupError>;

    /// Whether task cgroups get the controller `name` (`cpu`, `memory`, `pids`...), once the
    /// parent is prepared.
    fn offers(&self, name: &str) -> bool;

    /// Caps all tasks together: writes the memory and pids limits of `caps` on the parent
    /// cgroup, where its controllers are.
    fn cap_parent(&self, caps: &Limits) -> Result<(), CgroupError>;

    /// Removes the parent cgroup if it is empty and this daemon holds it (at shutdown).
    fn remove_parent(&self);
}

/// One task's cgroup(s).
pub trait TaskCgroup: Send + Sync + Debug {
    /// How the engine puts the task's first process in here before it runs.
    fn placement(&self) -> Result<Placement, CgroupError>;

    /// What the task has used so far.
    fn usage(&self) -> Usage;

    /// Kills every process in the cgroup at once (`cgroup.kill`); false where the kernel or
    /// the layout has no such file.
    fn kill(&self) -> bool;

    /// Removes the cgroup(s), retrying while the kernel still holds them busy.
    fn remove(&self) -> Result<(), CgroupError>;
}

/// The cgroup hierarchies rrocker may write, with the directory in each at and below which
/// it may (the hierarchy's root, or its own delegated cgroup), and those it may not.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Layout {
    /// The base in the unified hierarchy, if mounted and writable.
    pub unified: Option<PathBuf>,
    /// Each writable v1 hierarchy: its controllers and its base.
    pub v1: Vec<(Vec<String>, PathBuf)>,
    /// The controllers rrocker uses that sit in a hierarchy it may not write, and why.
    pub unavailable: Vec<(String, String)>,
    /// The parent of task cgroups, relative to each base.
    pub parent: PathBuf,
    /// Whether the bases are the daemon's own delegated cgroups (not the roots).
    pub delegated: bool,
}

impl Layout {
    /// Where `site` puts tasks in the hierarchies `mounts`, leaving out those mounted
    /// read-only here or where the daemon's own cgroup is unknown.
    pub fn new(mounts: &mounts::CgroupMounts, site: &Site) -> Self {
        let mut layout = Self {
            parent: site.parent.clone(),
            delegated: site.delegated.is_some(),
            ..Self::default()
        };
        let usable = |mount: &Path, base: Option<PathBuf>| match base {
            None => Err(format!("{} is not delegated to the daemon", mount.display())),
            Some(_) if files::is_read_only(mount) => {
                Err(format!("{} is mounted read-only here", mount.display()))
            }
            Some(base) => Ok(base),
        };
        if let Some(mount) = &mounts.unified {
            match usable(mount, site.unified_base(mount)) {
                Ok(base) => layout.unified = Some(base),
                Err(why) => tracing::warn!("unified cgroup hierarchy not used: {why}"),
            }
        }
        for (controllers, mount) in &mounts.v1 {
            match usable(mount, site.v1_base(controllers, mount)) {
                Ok(base) => layout.v1.push((controllers.clone(), base)),
                Err(why) => layout.unavailable.extend(
                    controllers
                        .iter()
                        .filter(|c| v1::CONTROLLERS.contains(&c.as_str()))
                        .map(|c| (c.clone(), why.clone())),
                ),
            }
        }
        layout
    }
}

/// The host's cgroup backend (`version`, or probed) with task cgroups where `site` says, or
/// `None` when there is none this daemon may use (not root, or no such cgroup file system
/// it may write).
pub fn probe(version: CgroupVersion, site: &Site) -> Result<Option<Box<dyn Cgroups>>, CgroupError> {
    if version == CgroupVersion::Off || !rustix::process::geteuid().is_root() {
        return Ok(None);
    }
    let layout = Layout::new(&mounts::CgroupMounts::read()?, site);
    Ok(match version {
        CgroupVersion::Auto => select(layout),
        CgroupVersion::V2 => layout.unified.is_some().then(|| v2(layout)),
        CgroupVersion::V1 => (!layout.v1.is_empty()).then(|| v1(layout)),
        CgroupVersion::Off => None,
    })
}

/// The backend for `layout`: v2 where the unified hierarchy has controllers, else v1.
pub fn select(layout: Layout) -> Option<Box<dyn Cgroups>> {
    if let Some(unified) = &layout.unified {
        let controllers =
            files::read_string(&unified.join("cgroup.controllers")).unwrap_or_default();
        if controllers.split_whitespace().any(|c| v2::CONTROLLERS.contains(&c)) {
            return Some(v2(layout));
        }
    }
    match (layout.v1.is_empty(), layout.unified.is_some()) {
        (true, false) => None,
        // Only a unified hierarchy, without controllers: placement and kill.
        (true, true) if layout.unavailable.is_empty() => Some(v2(layout)),
        // v1 (perhaps none writable, with a unified hierarchy for placement and kill).
        _ => Some(v1(layout)),
    }
}

fn v2(layout: Layout) -> Box<dyn Cgroups> {
    let base = layout.unified.clone().unwrap_or_default();
    Box::new(v2::CgroupV2::new(base, layout.parent, layout.delegated))
}

fn v1(layout: Layout) -> Box<dyn Cgroups> {
    Box::new(v1::CgroupV1::new(layout))
}

/// The caps on all tasks together (`caps`: memory and pids) that the parent can apply: one
/// whose controller `has` says the parent lacks is left out, and said.
fn applicable_caps(caps: &Limits, has: impl Fn(&str) -> bool) -> Limits {
    let mut capped = caps.clone();
    for (controller, cap) in
        [("memory", &mut capped.memory_max_bytes), ("pids", &mut capped.pids_max)]
    {
        if !has(controller) && cap.take().is_some() {
            tracing::warn!(
                controller,
                "rrocker's parent cgroup has no such controller: all tasks together are not capped by it"
            );
        }
    }
    capped
}

/// Refuses `limits` if one needs a controller that `missing` says rrocker lacks, and why;
/// `io` names the IO controller (`io` on v2, `blkio` on v1).
fn require_controllers(
    limits: &Limits,
    io: &str,
    missing: impl Fn(&str) -> Option<String>,
) -> Result<(), CgroupError> {
    let wanted = [
        ("cpu", limits.cpu.is_some()),
        ("memory", limits.memory_max_bytes.is_some()),
        ("pids", limits.pids_max.is_some()),
        (io, !limits.io.is_empty()),
    ];
    let lacking = wanted
        .iter()
        .filter(|(_, asked)| *asked)
        .find_map(|(controller, _)| Some((controller, missing(controller)?)));
    match lacking {
        Some((controller, why)) => Err(CgroupError::Unavailable(format!(
            "the {controller} cgroup controller is not available to rrocker ({why}): the limit cannot be applied"
        ))),
        None => Ok(()),
    }
}

/// Checks that `major:minor` is a whole-disk block device of this host (what io.max and
/// blkio.throttle accept): `/sys/dev/block/M:m` exists and is not a partition.
pub fn check_io_device(sys_dev_block: &Path, major: u32, minor: u32) -> Result<(), CgroupError> {
    let device = sys_dev_block.join(format!("{major}:{minor}"));
    if !device.exists() {
        return Err(CgroupError::BadDevice(format!(
            "io limit: {major}:{minor} is not a block device of this host"
        )));
    }
    if device.join("partition").exists() {
        let disk = files::read_string(&device.join("../dev")).unwrap_or_default();
        return Err(CgroupError::BadDevice(format!(
            "io limit: {major}:{minor} is a partition; limit its whole disk ({})",
            disk.trim()
        )));
    }
    Ok(())
}
