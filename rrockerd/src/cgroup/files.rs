//! Reading and writing cgroupfs files, and making and removing cgroup directories. (cgroupfs
//! refuses to create files, so writing a control file the kernel lacks fails rather than
//! leaving a stray file; callers check optional files exist first.)

use std::fs;
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::error::CgroupError;

/// How long a cgroup may stay busy after its last process is gone before we give up.
const REMOVE_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause between attempts to remove a busy cgroup.
const REMOVE_RETRY: Duration = Duration::from_millis(5);

fn error(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> CgroupError {
    let path = path.to_owned();
    move |source| CgroupError::File { action, path, source }
}

/// Writes `value` to the control file `path` in one write(2), as the kernel expects.
pub fn write(path: &Path, value: &str) -> Result<(), CgroupError> {
    fs::write(path, value).map_err(error("write", path))
}

/// The contents of `path`.
pub fn read_string(path: &Path) -> io::Result<String> {
    fs::read_to_string(path)
}

/// A file holding one number (`max` reads as `None`, like a missing file).
pub fn read_u64(path: &Path) -> Option<u64> {
    read_string(path).ok()?.trim().parse().ok()
}

/// The value of `key` in a file of `key value` lines (cpu.stat, memory.events...).
pub fn keyed(path: &Path, key: &str) -> Option<u64> {
    let text = read_string(path).ok()?;
    text.lines().find_map(|line| {
        let (name, value) = line.split_once(' ')?;
        (name == key).then(|| value.trim().parse().ok()).flatten()
    })
}

/// Opens the cgroup directory `dir` (close-on-exec), for CLONE_INTO_CGROUP.
pub fn open_dir(dir: &Path) -> Result<OwnedFd, CgroupError> {
    use rustix::fs::{Mode, OFlags};
    rustix::fs::open(dir, OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())
        .map_err(|source| error("open", dir)(source.into()))
}

/// Creates the cgroup `path`; it must not exist yet.
pub fn make(path: &Path) -> Result<(), CgroupError> {
    fs::create_dir(path).map_err(error("create", path))
}

/// Creates `path` and any missing parents (for the daemon's parent cgroup).
pub fn make_all(path: &Path) -> Result<(), CgroupError> {
    fs::create_dir_all(path).map_err(error("create", path))
}

/// Removes the cgroup `path`, retrying while it is busy (the kernel lets go of a cgroup a
/// moment after its last process is reaped). A cgroup already gone is fine.
pub fn remove(path: &Path) -> Result<(), CgroupError> {
    let deadline = Instant::now() + REMOVE_TIMEOUT;
    loop {
        match fs::remove_dir(path) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline => {
                std::thread::sleep(REMOVE_RETRY);
            }
            Err(e) => return Err(error("remove", path)(e)),
        }
    }
}

/// Whether the file system at `path` is mounted read-only here (as a container's v1
/// hierarchies are), or `path` cannot be reached.
pub fn is_read_only(path: &Path) -> bool {
    rustix::fs::statvfs(path)
        .map(|stat| stat.f_flag.contains(rustix::fs::StatVfsMountFlags::RDONLY))
        .unwrap_or(true)
}

/// The pids in a cgroup's `cgroup.procs`.
pub fn procs(dir: &Path) -> Vec<i32> {
    read_string(&dir.join("cgroup.procs"))
        .map(|text| text.lines().filter_map(|line| line.trim().parse().ok()).collect())
        .unwrap_or_default()
}

/// The child cgroups of `dir`.
pub fn children(dir: &Path) -> Vec<PathBuf> {
    fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|entry| entry.file_type().is_ok_and(|kind| kind.is_dir()))
                .map(|entry| entry.path())
                .collect()
        })
        .unwrap_or_default()
}

/// Kills the processes of the task cgroups an earlier run left (`dirs`, in every hierarchy),
/// then removes the cgroups.
pub fn remove_leftovers(dirs: &[PathBuf]) -> Result<(), CgroupError> {
    if !dirs.is_empty() {
        tracing::warn!(count = dirs.len(), "removing cgroups left by an earlier run");
    }
    for dir in dirs {
        kill_all(dir);
    }
    dirs.iter().try_for_each(|dir| remove(dir))
}

/// Kills every process of the cgroup `dir` at once by writing its `cgroup.kill`; false where
/// it has none (v1, or a kernel before 5.14).
pub fn kill(dir: &Path) -> bool {
    let file = dir.join("cgroup.kill");
    file.exists() && write(&file, "1").is_ok()
}

/// Kills every process of the task cgroup `dir` (a leftover of an earlier run: only rrocker
/// puts processes there), with `cgroup.kill` when it has one, and waits until it is empty.
pub fn kill_all(dir: &Path) {
    let deadline = Instant::now() + REMOVE_TIMEOUT;
    loop {
        let pids = procs(dir);
        if pids.is_empty() || Instant::now() >= deadline {
            return;
        }
        if !kill(dir) {
            for pid in pids {
                if let Some(pid) = rustix::process::Pid::from_raw(pid) {
                    let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
                }
            }
        }
        std::thread::sleep(REMOVE_RETRY);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyed_files_and_numbers() {
        let dir = tempfile::tempdir().expect("tempdir");
        let stat = dir.path().join("cpu.stat");
        fs::write(&stat, "usage_usec 1500\nnr_throttled 3\nthrottled_usec 70\n").expect("w");
        assert_eq!(keyed(&stat, "usage_usec"), Some(1500));
        assert_eq!(keyed(&stat, "throttled_usec"), Some(70));
        assert_eq!(keyed(&stat, "missing"), None);
        let max = dir.path().join("pids.max");
        fs::write(&max, "max\n").expect("w");
        assert_eq!(read_u64(&max), None);
        fs::write(&max, "32\n").expect("w");
        assert_eq!(read_u64(&max), Some(32));
    }

    #[test]
    fn removal_of_a_missing_cgroup_is_fine() {
        let dir = tempfile::tempdir().expect("tempdir");
        remove(&dir.path().join("gone")).expect("nothing to remove");
        let child = dir.path().join("child");
        make(&child).expect("mkdir");
        assert!(make(&child).is_err(), "a task cgroup must be new");
        remove(&child).expect("rmdir");
        assert!(!child.exists());
    }
}
