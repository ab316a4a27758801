//! The cgroup v1 backend: one directory per task in each hierarchy rrocker uses (cpu,
//! cpuacct, memory, pids, blkio; co-mounted ones share a directory), the task's pid written
//! to each `cgroup.procs` while it waits to run. Where a (controller-less) unified hierarchy
//! is mounted too, as on hybrid hosts, the task is also cloned straight into a directory
//! there, which gives it `cgroup.kill`.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rrocker_uring::Placement;

use super::error::CgroupError;
use super::parent_lock::ParentLock;
use super::{Cgroups, Layout, TaskCgroup, files};
use crate::spec::{Limits, Usage};

/// The v1 controllers a task gets a cgroup in.
pub const CONTROLLERS: &[&str] = &["cpu", "cpuacct", "memory", "pids", "blkio"];

/// The v1 backend.
#[derive(Debug)]
pub struct CgroupV1 {
    /// Each controller rrocker uses that the host has, with the parent cgroup's directory in
    /// that controller's hierarchy.
    parents: Vec<(&'static str, PathBuf)>,
    /// The parent cgroup in the unified hierarchy, if one is mounted and writable.
    unified: Option<PathBuf>,
    /// The controllers rrocker may not use here, and why.
    unavailable: Vec<(String, String)>,
    /// This daemon's hold on the parent, taken when it is prepared.
    lock: ParentLock,
}

impl CgroupV1 {
    /// A backend over the writable hierarchies of `layout` (controllers, base) and its
    /// unified base, for its parent cgroup.
    pub fn new(layout: Layout) -> Self {
        let parents = CONTROLLERS
            .iter()
            .filter_map(|&controller| {
                let (_, base) =
                    layout.v1.iter().find(|(names, _)| names.iter().any(|n| n == controller))?;
                Some((controller, base.join(&layout.parent)))
            })
            .collect();
        Self {
            parents,
            unified: layout.unified.map(|base| base.join(&layout.parent)),
            unavailable: layout.unavailable,
            lock: ParentLock::default(),
        }
    }

    /// The parent's directory in each distinct hierarchy.
    fn hierarchies(&self) -> Vec<&Path> {
        let mut dirs: Vec<&Path> = Vec::new();
        for (_, dir) in &self.parents {
            if !dirs.contains(&dir.as_path()) {
                dirs.push(dir);
            }
        }
        dirs
    }

    fn has(&self, controller: &str) -> bool {
        self.parents.iter().any(|(name, _)| *name == controller)
    }
}

impl Cgroups for CgroupV1 {
    fn describe(&self) -> String {
        let controllers: Vec<&str> = self.parents.iter().map(|(name, _)| *name).collect();
        let unified = if self.unified.is_some() { " + unified for placement and kill" } else { "" };
        let writable = if controllers.is_empty() {
            "none writable".to_owned()
        } else {
            controllers.join(", ")
        };
        let mut said = format!("v1 ({writable}){unified}");
        if !self.unavailable.is_empty() {
            let names: Vec<&str> = self.unavailable.iter().map(|(c, _)| c.as_str()).collect();
            said += &format!("; not writable here: {}", names.join(", "));
        }
        said
    }

    fn prepare(&self) -> Result<(), CgroupError> {
        let parents: Vec<&Path> =
            self.hierarchies().into_iter().chain(self.unified.as_deref()).collect();
        for dir in &parents {
            files::make_all(dir)?;
        }
        // Before their subtrees are touched: another daemon's tasks are no leftovers.
        self.lock.take(&parents)?;
        // Leftovers of a run that did not end cleanly: kill their processes, then remove.
        let mut leftovers: Vec<PathBuf> =
            self.unified.iter().flat_map(|d| files::children(d)).collect();
        for dir in self.hierarchies() {
            leftovers.extend(files::children(dir));
        }
        files::remove_leftovers(&leftovers)
    }

    fn create(&self, name: &str, limits: &Limits) -> Result<Box<dyn TaskCgroup>, CgroupError> {
        super::require_controllers(limits, "blkio", |controller| {
            if self.has(controller) {
                return None;
            }
            let why = self.unavailable.iter().find(|(c, _)| c == controller);
            Some(
                why.map_or_else(
                    || "this host has no such hierarchy".to_owned(),
                    |(_, w)| w.clone(),
                ),
            )
        })?;
        let mut task = V1Task {
            dirs: self.parents.iter().map(|(c, dir)| (*c, dir.join(name))).collect(),
            hierarchies: Vec::new(),
            unified: None,
        };
        // Dropped (removing what was made) if anything below fails.
        for dir in self.hierarchies() {
            let dir = dir.join(name);
            files::make(&dir)?;
            task.hierarchies.push(dir);
        }
        if let Some(parent) = &self.unified {
            let dir = parent.join(name);
            files::make(&dir)?;
            task.unified = Some(dir);
        }
        task.apply(limits)?;
        Ok(Box::new(task))
    }

    fn offers(&self, name: &str) -> bool {
        self.has(name)
    }

    fn cap_parent(&self, caps: &Limits) -> Result<(), CgroupError> {
        // Only where rrocker has the controller: a missing one's cap is left out, and said.
        let capped = super::applicable_caps(caps, |controller| self.has(controller));
        write_limits(&self.parents, &capped)
    }

    fn remove_parent(&self) {
        if !self.lock.is_held() {
            return;
        }
        for dir in self.hierarchies().into_iter().chain(self.unified.as_deref()) {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

/// A task's v1 cgroups.
#[derive(Debug)]
struct V1Task {
    /// The task's directory for each controller.
    dirs: Vec<(&'static str, PathBuf)>,
    /// Its distinct directories, one per hierarchy (what was created).
    hierarchies: Vec<PathBuf>,
    /// Its directory in the unified hierarchy.
    unified: Option<PathBuf>,
}

/// Writes `limits` into the cgroups `dirs` (each controller's directory: a task's, or the
/// parent's caps).
fn write_limits(dirs: &[(&'static str, PathBuf)], limits: &Limits) -> Result<(), CgroupError> {
    let file = |controller: &str, name: &str| {
        dirs.iter().find(|(c, _)| *c == controller).map(|(_, dir)| dir.join(name))
    };
    let write = |controller: &str, name: &str, value: String| match file(controller, name) {
        Some(path) => files::write(&path, &value),
        None => Ok(()),
    };
    if let Some(cpu) = limits.cpu {
        write("cpu", "cpu.cfs_period_us", cpu.period_us.to_string())?;
        write("cpu", "cpu.cfs_quota_us", cpu.quota_us.to_string())?;
    }
    if let Some(memory) = limits.memory_max_bytes {
        let max = memory.to_string();
        write("memory", "memory.limit_in_bytes", max.clone())?;
        // With swap accounting, memory + swap = memory: no swap.
        if file("memory", "memory.memsw.limit_in_bytes").is_some_and(|f| f.exists()) {
            write("memory", "memory.memsw.limit_in_bytes", max)?;
        }
    }
    if let Some(pids) = limits.pids_max {
        write("pids", "pids.max", pids.to_string())?;
    }
    for rule in &limits.io {
        let device = format!("{}:{}", rule.major, rule.minor);
        let files = [
            "blkio.throttle.read_bps_device",
            "blkio.throttle.write_bps_device",
            "blkio.throttle.read_iops_device",
            "blkio.throttle.write_iops_device",
        ];
        for (file, value) in files.iter().zip(rule.rates()) {
            if let Some(value) = value {
                write("blkio", file, format!("{device} {value}"))?;
            }
        }
    }
    Ok(())
}

impl V1Task {
    fn dir(&self, controller: &str) -> Option<&Path> {
        self.dirs.iter().find(|(name, _)| *name == controller).map(|(_, dir)| dir.as_path())
    }

    fn file(&self, controller: &str, file: &str) -> Option<PathBuf> {
        self.dir(controller).map(|dir| dir.join(file))
    }

    fn apply(&self, limits: &Limits) -> Result<(), CgroupError> {
        write_limits(&self.dirs, limits)
    }

    /// Bytes read and written, from blkio's `M:m Read N` / `M:m Write N` lines.
    fn io_bytes(&self) -> (u64, u64) {
        let Some(path) = self.file("blkio", "blkio.throttle.io_service_bytes_recursive") else {
            return (0, 0);
        };
        let text = files::read_string(&path).unwrap_or_default();
        text.lines().fold((0, 0), |(read, written), line| {
            let mut words = line.split_whitespace().skip(1);
            let (Some(op), Some(value)) = (words.next(), words.next()) else {
                return (read, written);
            };
            let value: u64 = value.parse().unwrap_or(0);
            match op {
                "Read" => (read + value, written),
                "Write" => (read, written + value),
                _ => (read, written),
            }
        })
    }
}

impl TaskCgroup for V1Task {
    fn placement(&self) -> Result<Placement, CgroupError> {
        let clone_into = self.unified.as_deref().map(files::open_dir).transpose()?;
        let procs_files = self.hierarchies.iter().map(|dir| dir.join("cgroup.procs")).collect();
        Ok(Placement { clone_into: clone_into.map(Arc::<OwnedFd>::from), procs_files })
    }

    fn usage(&self) -> Usage {
        let number =
            |controller, file| self.file(controller, file).and_then(|p| files::read_u64(&p));
        let keyed =
            |controller, file, key| self.file(controller, file).and_then(|p| files::keyed(&p, key));
        let (io_read_bytes, io_write_bytes) = self.io_bytes();
        Usage {
            cpu_time_us: number("cpuacct", "cpuacct.usage").unwrap_or(0) / 1000,
            cpu_throttled_periods: keyed("cpu", "cpu.stat", "nr_throttled").unwrap_or(0),
            cpu_throttled_us: keyed("cpu", "cpu.stat", "throttled_time").unwrap_or(0) / 1000,
            memory_peak_bytes: number("memory", "memory.max_usage_in_bytes").unwrap_or(0),
            pids_peak: number("pids", "pids.peak").unwrap_or(0),
            io_read_bytes,
            io_write_bytes,
            oom_kills: keyed("memory", "memory.oom_control", "oom_kill").unwrap_or(0),
            memory_current_bytes: number("memory", "memory.usage_in_bytes").unwrap_or(0),
            pids_current: number("pids", "pids.current").unwrap_or(0),
        }
    }

    fn kill(&self) -> bool {
        self.unified.as_deref().is_some_and(files::kill)
    }

    fn remove(&self) -> Result<(), CgroupError> {
        let mut result = Ok(());
        for dir in self.unified.iter().chain(&self.hierarchies) {
            if let Err(error) = files::remove(dir) {
                result = Err(error);
            }
        }
        result
    }
}

impl Drop for V1Task {
    fn drop(&mut self) {
        // Normally already removed (after the task ended); this covers a failed creation.
        let _ = self.remove();
    }
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;
    use crate::spec::{CpuLimit, IoLimit, limit};

    /// A rule throttling reads (`read_bps`) or writes of device 254:0.
    fn disk(read_bps: u64, write_bps: u64) -> IoLimit {
        let (read_bps, write_bps) = (limit(read_bps), limit(write_bps));
        IoLimit { major: 254, minor: 0, read_bps, write_bps, read_iops: None, write_iops: None }
    }

    /// v1 hierarchies with cpu and cpuacct co-mounted, plus a unified mount; no blkio.
    fn fixture(blkio: bool) -> (tempfile::TempDir, CgroupV1) {
        let root = tempfile::tempdir().expect("tempdir");
        let mut hierarchies = vec![
            (vec!["cpu".to_owned(), "cpuacct".to_owned()], root.path().join("cpu,cpuacct")),
            (vec!["memory".to_owned()], root.path().join("memory")),
            (vec!["pids".to_owned()], root.path().join("pids")),
        ];
        if blkio {
            hierarchies.push((vec!["blkio".to_owned()], root.path().join("blkio")));
        }
        let layout = Layout {
            unified: Some(root.path().join("unified")),
            v1: hierarchies,
            parent: "rrocker".into(),
            ..Layout::default()
        };
        let backend = CgroupV1::new(layout);
        backend.prepare().expect("prepare");
        (root, backend)
    }

    fn read(path: PathBuf) -> String {
        fs::read_to_string(path).expect("read")
    }

    #[test]
    fn a_task_gets_one_directory_per_hierarchy_and_one_in_the_unified_one() {
        let (root, backend) = fixture(true);
        let cpu =
            CpuLimit { quota_us: limit(20_000).expect("q"), period_us: limit(50_000).expect("p") };
        let limits = Limits {
            cpu: Some(cpu),
            memory_max_bytes: limit(64 << 20),
            pids_max: limit(32),
            io: vec![disk(0, 10 << 20)],
        };
        let task = backend.create("t1", &limits).expect("create");
        let at =
            |hierarchy: &str, file: &str| root.path().join(hierarchy).join("rrocker/t1").join(file);
        assert_eq!(read(at("cpu,cpuacct", "cpu.cfs_period_us")), "50000");
        assert_eq!(read(at("cpu,cpuacct", "cpu.cfs_quota_us")), "20000");
        assert_eq!(read(at("memory", "memory.limit_in_bytes")), "67108864");
        assert!(!at("memory", "memory.memsw.limit_in_bytes").exists(), "no swap accounting here");
        assert_eq!(read(at("pids", "pids.max")), "32");
        assert_eq!(read(at("blkio", "blkio.throttle.write_bps_device")), "254:0 10485760");
        assert!(!at("blkio", "blkio.throttle.read_bps_device").exists());
        let placement = task.placement().expect("placement");
        assert_eq!(placement.procs_files.len(), 4, "cpu and cpuacct share one directory");
        assert!(placement.clone_into.is_some(), "cloned into the unified directory");
        assert!(root.path().join("unified/rrocker/t1").is_dir());
    }

    #[test]
    fn usage_and_oom_kills_are_read_from_the_v1_counters() {
        let (root, backend) = fixture(true);
        let task = backend.create("t2", &Limits::default()).expect("create");
        let dir = |hierarchy: &str| root.path().join(hierarchy).join("rrocker/t2");
        fs::write(dir("cpu,cpuacct").join("cpuacct.usage"), "3000000\n").expect("w");
        fs::write(
            dir("cpu,cpuacct").join("cpu.stat"),
            "nr_periods 10\nnr_throttled 6\nthrottled_time 4000000\n",
        )
        .expect("w");
        fs::write(dir("memory").join("memory.max_usage_in_bytes"), "2097152\n").expect("w");
        fs::write(
            dir("memory").join("memory.oom_control"),
            "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
        )
        .expect("w");
        fs::write(dir("pids").join("pids.peak"), "9\n").expect("w");
        fs::write(dir("pids").join("pids.current"), "3\n").expect("w");
        fs::write(dir("memory").join("memory.usage_in_bytes"), "1048576\n").expect("w");
        fs::write(dir("blkio").join("blkio.throttle.io_service_bytes_recursive"), "254:0 Read 4096\n254:0 Write 8192\n254:0 Sync 0\n254:0 Async 0\n254:0 Discard 0\n254:0 Total 12288\nTotal 12288\n").expect("w");
        assert_eq!(
            task.usage(),
            Usage {
                cpu_time_us: 3000,
                cpu_throttled_periods: 6,
                cpu_throttled_us: 4000,
                memory_peak_bytes: 2 << 20,
                pids_peak: 9,
                io_read_bytes: 4096,
                io_write_bytes: 8192,
                oom_kills: 2,
                memory_current_bytes: 1 << 20,
                pids_current: 3,
            }
        );
    }

    #[test]
    fn a_missing_controller_refuses_its_limit_and_leaves_nothing() {
        let (root, backend) = fixture(false);
        let limits = Limits { io: vec![disk(1, 0)], ..Limits::default() };
        let error = backend.create("t3", &limits).expect_err("no blkio");
        assert!(matches!(error, CgroupError::Unavailable(_)), "{error}");
        assert!(!root.path().join("memory/rrocker/t3").exists());
        assert!(!root.path().join("unified/rrocker/t3").exists());
    }

    #[test]
    fn leftovers_of_an_earlier_run_are_removed() {
        let (root, backend) = fixture(false);
        for hierarchy in ["memory", "pids", "unified"] {
            fs::create_dir(root.path().join(hierarchy).join("rrocker/old")).expect("mkdir");
        }
        backend.prepare().expect("prepare");
        for hierarchy in ["memory", "pids", "unified"] {
            assert!(!root.path().join(hierarchy).join("rrocker/old").exists());
        }
    }
}
