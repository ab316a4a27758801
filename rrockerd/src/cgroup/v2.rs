//! The cgroup v2 backend: one directory per task below the parent in the unified hierarchy,
//! the task cloned straight into it (CLONE_INTO_CGROUP), limits in cpu.max, memory.max (and
//! memory.swap.max = 0), pids.max and io.max, and the whole tree killed with cgroup.kill.
//! The parent enables in its subtree only the controllers its own parent grants it: rrocker
//! never writes above its parent.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rrocker_uring::Placement;

use super::error::CgroupError;
use super::parent_lock::ParentLock;
use super::{Cgroups, TaskCgroup, files};
use crate::spec::{Limits, Usage};

/// The controllers rrocker enables for its tasks when granted.
pub const CONTROLLERS: &[&str] = &["cpu", "memory", "pids", "io"];

/// The v2 backend.
#[derive(Debug)]
pub struct CgroupV2 {
    /// Where rrocker may write: the hierarchy's mount point, or its own delegated cgroup.
    base: PathBuf,
    /// The parent cgroup, relative to `base`.
    parent: PathBuf,
    /// Whether `base` is delegated to rrocker, so that it enables controllers there too
    /// (the daemon has moved out of it, into a leaf).
    delegated: bool,
    /// This daemon's hold on the parent, taken when it is prepared.
    lock: ParentLock,
}

impl CgroupV2 {
    /// A backend for the parent cgroup `parent` below `base` (a mount point, or the daemon's
    /// own `delegated` cgroup).
    pub fn new(base: PathBuf, parent: PathBuf, delegated: bool) -> Self {
        Self { base, parent, delegated, lock: ParentLock::default() }
    }

    fn parent_dir(&self) -> PathBuf {
        self.base.join(&self.parent)
    }

    /// The controllers task cgroups get (enabled in the parent's subtree).
    fn enabled(&self) -> Vec<String> {
        let path = self.parent_dir().join("cgroup.subtree_control");
        let text = files::read_string(&path).unwrap_or_default();
        text.split_whitespace().map(String::from).collect()
    }
}

impl Cgroups for CgroupV2 {
    fn describe(&self) -> String {
        format!("v2 ({})", self.enabled().join(", "))
    }

    fn prepare(&self) -> Result<(), CgroupError> {
        // A delegated base passes down what its manager granted; if a process other than
        // rrocker's still sits there, the kernel refuses, and tasks go without controllers.
        if let Some(Err(error)) = self.delegated.then(|| enable_granted(&self.base)) {
            tracing::warn!(%error, "cannot enable controllers in rrocker's delegated cgroup: tasks get none");
        }
        // Each level from the top of our parent down: create it, then pass down what it has.
        let mut level = self.base.clone();
        for part in self.parent.components() {
            level.push(part);
            files::make_all(&level)?;
            if level == self.parent_dir() {
                // Before its subtree is touched: another daemon's tasks are no leftovers.
                self.lock.take(&[&level])?;
            }
            enable_granted(&level)?;
        }
        files::remove_leftovers(&files::children(&self.parent_dir()))
    }

    fn create(&self, name: &str, limits: &Limits) -> Result<Box<dyn TaskCgroup>, CgroupError> {
        let enabled = self.enabled();
        super::require_controllers(limits, "io", |controller| {
            (!enabled.iter().any(|c| c == controller))
                .then(|| format!("not granted to {}", self.parent_dir().display()))
        })?;
        let dir = self.parent_dir().join(name);
        files::make(&dir)?;
        // Dropped (removing the directory) if a limit cannot be written.
        let task = V2Task { dir };
        task.apply(limits)?;
        Ok(Box::new(task))
    }

    fn offers(&self, name: &str) -> bool {
        self.enabled().iter().any(|controller| controller == name)
    }

    fn cap_parent(&self, caps: &Limits) -> Result<(), CgroupError> {
        let parent = self.parent_dir();
        // Only what the parent is granted: a missing controller's cap is left out, and said.
        let granted = files::read_string(&parent.join("cgroup.controllers")).unwrap_or_default();
        let has = |controller: &str| granted.split_whitespace().any(|c| c == controller);
        let capped = super::applicable_caps(caps, has);
        write_limits(&parent, &capped)
    }

    fn remove_parent(&self) {
        if self.lock.is_held() {
            let _ = std::fs::remove_dir(self.parent_dir());
        }
    }
}

/// Enables in the subtree of the cgroup `dir` the controllers rrocker uses that `dir` has.
fn enable_granted(dir: &Path) -> Result<(), CgroupError> {
    let granted = files::read_string(&dir.join("cgroup.controllers")).unwrap_or_default();
    let enable: Vec<String> = granted
        .split_whitespace()
        .filter(|c| CONTROLLERS.contains(c))
        .map(|c| format!("+{c}"))
        .collect();
    if enable.is_empty() {
        return Ok(());
    }
    files::write(&dir.join("cgroup.subtree_control"), &enable.join(" "))
}

/// A task's v2 cgroup.
#[derive(Debug)]
struct V2Task {
    dir: PathBuf,
}

/// Writes `limits` into the cgroup `dir` (a task's, or the parent's caps).
fn write_limits(dir: &Path, limits: &Limits) -> Result<(), CgroupError> {
    let write = |file: &str, value: &str| files::write(&dir.join(file), value);
    if let Some(cpu) = limits.cpu {
        write("cpu.max", &format!("{} {}", cpu.quota_us, cpu.period_us))?;
    }
    if let Some(memory) = limits.memory_max_bytes {
        write("memory.max", &memory.to_string())?;
        if dir.join("memory.swap.max").exists() {
            write("memory.swap.max", "0")?;
        }
    }
    if let Some(pids) = limits.pids_max {
        write("pids.max", &pids.to_string())?;
    }
    for rule in &limits.io {
        let settings: Vec<String> = ["rbps", "wbps", "riops", "wiops"]
            .iter()
            .zip(rule.rates())
            .filter_map(|(key, value)| Some(format!("{key}={}", value?)))
            .collect();
        write("io.max", &format!("{}:{} {}", rule.major, rule.minor, settings.join(" ")))?;
    }
    Ok(())
}

impl V2Task {
    fn apply(&self, limits: &Limits) -> Result<(), CgroupError> {
        write_limits(&self.dir, limits)
    }

    /// Bytes read and written, summed over devices from io.stat's `rbytes=` / `wbytes=`.
    fn io_bytes(&self) -> (u64, u64) {
        let text = files::read_string(&self.dir.join("io.stat")).unwrap_or_default();
        let sum = |key: &str| -> u64 {
            text.split_whitespace()
                .filter_map(|word| word.strip_prefix(key)?.strip_prefix('=')?.parse::<u64>().ok())
                .sum()
        };
        (sum("rbytes"), sum("wbytes"))
    }
}

impl TaskCgroup for V2Task {
    fn placement(&self) -> Result<Placement, CgroupError> {
        let fd = files::open_dir(&self.dir)?;
        Ok(Placement { clone_into: Some(Arc::new(fd)), procs_files: Vec::new() })
    }

    fn usage(&self) -> Usage {
        let keyed = |file: &str, key: &str| files::keyed(&self.dir.join(file), key).unwrap_or(0);
        let number = |file: &str| files::read_u64(&self.dir.join(file)).unwrap_or(0);
        let (io_read_bytes, io_write_bytes) = self.io_bytes();
        Usage {
            cpu_time_us: keyed("cpu.stat", "usage_usec"),
            cpu_throttled_periods: keyed("cpu.stat", "nr_throttled"),
            cpu_throttled_us: keyed("cpu.stat", "throttled_usec"),
            memory_peak_bytes: number("memory.peak"),
            pids_peak: number("pids.peak"),
            io_read_bytes,
            io_write_bytes,
            oom_kills: keyed("memory.events", "oom_kill"),
            memory_current_bytes: number("memory.current"),
            pids_current: number("pids.current"),
        }
    }

    fn kill(&self) -> bool {
        files::kill(&self.dir)
    }

    fn remove(&self) -> Result<(), CgroupError> {
        files::remove(&self.dir)
    }
}

impl Drop for V2Task {
    fn drop(&mut self) {
        // Normally already removed (after the task ended); this covers a failed creation.
        let _ = self.remove();
    }
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;
    use crate::spec::{CpuLimit, DEFAULT_CPU_PERIOD, IoLimit, limit};

    /// A unified hierarchy whose root grants every controller, with the parent cgroup made
    /// the way the kernel would show it.
    fn fixture() -> (tempfile::TempDir, CgroupV2) {
        let root = tempfile::tempdir().expect("tempdir");
        fs::write(root.path().join("cgroup.controllers"), "cpuset cpu io memory pids\n")
            .expect("w");
        let parent = root.path().join("rrocker");
        fs::create_dir(&parent).expect("mkdir");
        fs::write(parent.join("cgroup.controllers"), "cpuset cpu io memory pids\n").expect("w");
        fs::write(parent.join("cgroup.subtree_control"), "").expect("w");
        let backend = CgroupV2::new(root.path().to_owned(), "rrocker".into(), false);
        (root, backend)
    }

    fn read(path: PathBuf) -> String {
        fs::read_to_string(path).expect("read")
    }

    #[test]
    fn the_parent_is_capped_where_it_has_the_controllers() {
        let (root, backend) = fixture();
        let caps =
            Limits { memory_max_bytes: limit(1 << 30), pids_max: limit(64), ..Limits::default() };
        backend.cap_parent(&caps).expect("capped");
        assert_eq!(read(root.path().join("rrocker/memory.max")), "1073741824");
        assert_eq!(read(root.path().join("rrocker/pids.max")), "64");
        // What the kernel shows once prepare has enabled them.
        fs::write(root.path().join("rrocker/cgroup.subtree_control"), "cpu io memory pids\n")
            .expect("w");
        assert!(backend.offers("memory") && backend.offers("pids") && !backend.offers("cpuset"));
        // A parent without the memory controller gets the pids cap only.
        fs::write(root.path().join("rrocker/cgroup.controllers"), "pids\n").expect("w");
        fs::remove_file(root.path().join("rrocker/memory.max")).expect("rm");
        backend.cap_parent(&caps).expect("capped");
        assert!(!root.path().join("rrocker/memory.max").exists());
    }

    #[test]
    fn prepare_enables_what_the_parent_is_granted_and_removes_leftovers() {
        let (root, backend) = fixture();
        let leftover = root.path().join("rrocker/0e6b1e8c-old");
        fs::create_dir(&leftover).expect("mkdir");
        backend.prepare().expect("prepare");
        let enabled = read(root.path().join("rrocker/cgroup.subtree_control"));
        assert_eq!(enabled, "+cpu +io +memory +pids", "cpuset is not rrocker's");
        assert!(!leftover.exists());
    }

    #[test]
    fn a_delegated_cgroup_passes_its_controllers_down_and_nothing_above_it_is_written() {
        let root = tempfile::tempdir().expect("tempdir");
        let own = root.path().join("system.slice/rrockerd.service");
        fs::create_dir_all(&own).expect("mkdir");
        fs::write(root.path().join("system.slice/cgroup.subtree_control"), "").expect("w");
        fs::write(own.join("cgroup.controllers"), "cpu io memory pids\n").expect("w");
        fs::write(own.join("cgroup.subtree_control"), "").expect("w");
        let leftover = own.join("rrocker/0e6b1e8c-old");
        fs::create_dir_all(&leftover).expect("mkdir");
        let backend = CgroupV2::new(own.clone(), "rrocker".into(), true);
        backend.prepare().expect("prepare");
        assert_eq!(read(own.join("cgroup.subtree_control")), "+cpu +io +memory +pids");
        assert_eq!(read(root.path().join("system.slice/cgroup.subtree_control")), "");
        assert!(own.join("rrocker").is_dir() && !leftover.exists());
        // Task cgroups are below the delegated parent, with the limits the kernel offers.
        fs::write(own.join("rrocker/cgroup.subtree_control"), "cpu io memory pids\n").expect("w");
        let limits = Limits { memory_max_bytes: limit(64 << 20), ..Limits::default() };
        let _task = backend.create("t1", &limits).expect("create");
        assert_eq!(read(own.join("rrocker/t1/memory.max")), "67108864");
    }

    #[test]
    fn a_task_cgroup_gets_each_limit_in_the_kernels_format() {
        let (root, backend) = fixture();
        fs::write(root.path().join("rrocker/cgroup.subtree_control"), "cpu io memory pids\n")
            .expect("w");
        let limits = Limits {
            cpu: limit(50_000).map(|quota_us| CpuLimit { quota_us, period_us: DEFAULT_CPU_PERIOD }),
            memory_max_bytes: limit(64 << 20),
            pids_max: limit(32),
            io: vec![IoLimit {
                major: 254,
                minor: 0,
                read_bps: None,
                write_bps: limit(10 << 20),
                read_iops: limit(5),
                write_iops: None,
            }],
        };
        let task = backend.create("t1", &limits).expect("create");
        let dir = root.path().join("rrocker/t1");
        assert_eq!(read(dir.join("cpu.max")), "50000 100000");
        assert_eq!(read(dir.join("memory.max")), "67108864");
        assert_eq!(read(dir.join("pids.max")), "32");
        assert_eq!(read(dir.join("io.max")), "254:0 wbps=10485760 riops=5");
        let placement = task.placement().expect("placement");
        assert!(placement.clone_into.is_some() && placement.procs_files.is_empty());
        assert!(!task.kill(), "no cgroup.kill in the fixture");
        fs::write(dir.join("cgroup.kill"), "").expect("w");
        assert!(task.kill());
        assert_eq!(read(dir.join("cgroup.kill")), "1");
    }

    #[test]
    fn usage_and_oom_kills_are_read_from_the_counters() {
        let (root, backend) = fixture();
        let task = backend.create("t2", &Limits::default()).expect("create");
        let dir = root.path().join("rrocker/t2");
        fs::write(dir.join("cpu.stat"), "usage_usec 2500\nuser_usec 2000\nsystem_usec 500\nnr_periods 9\nnr_throttled 4\nthrottled_usec 800\n").expect("w");
        fs::write(dir.join("memory.peak"), "1048576\n").expect("w");
        fs::write(dir.join("pids.peak"), "7\n").expect("w");
        fs::write(dir.join("pids.current"), "2\n").expect("w");
        fs::write(dir.join("memory.current"), "524288\n").expect("w");
        fs::write(dir.join("io.stat"), "254:0 rbytes=100 wbytes=200 rios=1 wios=2 dbytes=0 dios=0\n8:0 rbytes=1 wbytes=2 rios=1 wios=1 dbytes=0 dios=0\n").expect("w");
        fs::write(
            dir.join("memory.events"),
            "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\noom_group_kill 0\n",
        )
        .expect("w");
        let usage = task.usage();
        assert_eq!(
            usage,
            Usage {
                cpu_time_us: 2500,
                cpu_throttled_periods: 4,
                cpu_throttled_us: 800,
                memory_peak_bytes: 1 << 20,
                pids_peak: 7,
                io_read_bytes: 101,
                io_write_bytes: 202,
                oom_kills: 1,
                memory_current_bytes: 1 << 19,
                pids_current: 2,
            }
        );
    }

    #[test]
    fn a_limit_whose_controller_is_not_granted_is_refused_and_nothing_is_made() {
        let (root, backend) = fixture();
        fs::write(root.path().join("rrocker/cgroup.subtree_control"), "cpu pids\n").expect("w");
        let limits = Limits { memory_max_bytes: limit(64 << 20), ..Limits::default() };
        let error = backend.create("t3", &limits).expect_err("no memory controller");
        assert!(matches!(error, CgroupError::Unavailable(_)), "{error}");
        assert!(!root.path().join("rrocker/t3").exists());
    }
}
