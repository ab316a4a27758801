//! Where the host's cgroup hierarchies are mounted, from `/proc/self/mountinfo`, each mount
//! confirmed by its file system magic (statfs), so a look-alike path is never used.

use std::path::{Path, PathBuf};

use super::error::CgroupError;
use crate::io_context::IoContext;

/// statfs magic of cgroup v1 hierarchies.
const CGROUP_SUPER_MAGIC: i64 = 0x0027_e0eb;
/// statfs magic of the unified (v2) hierarchy.
const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;

/// The cgroup file systems the daemon sees.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CgroupMounts {
    /// The unified hierarchy's mount point, if mounted.
    pub unified: Option<PathBuf>,
    /// Each v1 hierarchy: its controllers and its mount point.
    pub v1: Vec<(Vec<String>, PathBuf)>,
}

impl CgroupMounts {
    /// Reads the daemon's own mount table and checks each mount's file system type.
    pub fn read() -> Result<Self, CgroupError> {
        let path = Path::new("/proc/self/mountinfo");
        let text = std::fs::read_to_string(path).context("read", path)?;
        let mut mounts = Self::parse(&text);
        // f_type is a C long: i64 on 64-bit targets, i32 elsewhere.
        #[allow(clippy::useless_conversion)]
        let magic = |path: &Path| rustix::fs::statfs(path).ok().map(|stat| i64::from(stat.f_type));
        mounts.unified = mounts.unified.filter(|path| magic(path) == Some(CGROUP2_SUPER_MAGIC));
        mounts.v1.retain(|(_, path)| magic(path) == Some(CGROUP_SUPER_MAGIC));
        Ok(mounts)
    }

    /// The cgroup mounts listed in a mountinfo text: the first mount of each hierarchy, at
    /// the root of that hierarchy (a bind mount of a sub-cgroup is not a hierarchy's root).
    pub fn parse(mountinfo: &str) -> Self {
        let mut mounts = Self::default();
        for line in mountinfo.lines() {
            // id parent major:minor root mount-point options [optional...] - type source super
            let Some((left, right)) = line.split_once(" - ") else { continue };
            let fields: Vec<&str> = left.split(' ').collect();
            let theirs: Vec<&str> = right.split(' ').collect();
            let (Some(root), Some(point), Some(kind)) =
                (fields.get(3), fields.get(4), theirs.first())
            else {
                continue;
            };
            if *root != "/" {
                continue;
            }
            let point = PathBuf::from(unescape(point));
            match *kind {
                "cgroup2" if mounts.unified.is_none() => mounts.unified = Some(point),
                "cgroup" => {
                    let options = theirs.get(2).copied().unwrap_or_default();
                    let controllers: Vec<String> = options
                        .split(',')
                        .filter(|option| v1_controller(option))
                        .map(String::from)
                        .collect();
                    let known = mounts.v1.iter().any(|(have, _)| *have == controllers);
                    if !controllers.is_empty() && !known {
                        mounts.v1.push((controllers, point));
                    }
                }
                _ => {}
            }
        }
        mounts
    }

    /// The mount point of the v1 hierarchy that has `controller`.
    pub fn v1_hierarchy(&self, controller: &str) -> Option<&Path> {
        self.v1
            .iter()
            .find(|(controllers, _)| controllers.iter().any(|c| c == controller))
            .map(|(_, path)| path.as_path())
    }
}

/// Whether a v1 mount option names a controller (not `rw`, `relatime`, `name=systemd`...).
fn v1_controller(option: &str) -> bool {
    matches!(
        option,
        "cpu"
            | "cpuacct"
            | "cpuset"
            | "memory"
            | "pids"
            | "blkio"
            | "devices"
            | "freezer"
            | "net_cls"
            | "net_prio"
            | "perf_event"
            | "hugetlb"
            | "rdma"
            | "misc"
    )
}

/// Mountinfo escapes space, tab, newline and backslash as octal `\NNN`.
fn unescape(field: &str) -> String {
    let mut out = Vec::with_capacity(field.len());
    let bytes = field.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).and_then(|digits| {
            let text = std::str::from_utf8(digits).ok()?;
            u8::from_str_radix(text, 8).ok()
        });
        match (bytes[i], octal) {
            (b'\\', Some(byte)) => {
                out.push(byte);
                i += 4;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// This development host's layout: v1 hierarchies plus an empty unified mount.
    const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
90 41 0:38 /some/sub /mnt/bind rw,relatime - cgroup2 cgroup2 rw
";

    #[test]
    fn a_hybrid_layout() {
        let mounts = CgroupMounts::parse(HYBRID);
        assert_eq!(mounts.unified.as_deref(), Some(Path::new("/sys/fs/cgroup/unified")));
        assert_eq!(mounts.v1.len(), 4, "{mounts:?}");
        assert_eq!(mounts.v1_hierarchy("memory"), Some(Path::new("/sys/fs/cgroup/memory")));
        assert_eq!(mounts.v1_hierarchy("blkio"), None);
    }

    #[test]
    fn a_unified_only_layout_with_co_mounted_v1_names() {
        let text = "\
25 1 0:22 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate
26 1 0:23 / /x/cpu\\040acct rw - cgroup cgroup rw,cpu,cpuacct
";
        let mounts = CgroupMounts::parse(text);
        assert_eq!(mounts.unified.as_deref(), Some(Path::new("/sys/fs/cgroup")));
        assert_eq!(mounts.v1_hierarchy("cpuacct"), Some(Path::new("/x/cpu acct")));
        assert_eq!(mounts.v1_hierarchy("cpu"), mounts.v1_hierarchy("cpuacct"));
    }
}
