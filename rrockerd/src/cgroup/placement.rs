//! Where the parent cgroup of rrocker's tasks goes. A manager that runs the daemon (systemd
//! with `Delegate=yes`, a container runtime with a private cgroup namespace) hands it one
//! sub-tree and forbids writing anywhere else: there tasks live in `<own>/rrocker`, and on the
//! unified hierarchy the daemon first moves itself into the leaf `<own>/daemon` (cgroup v2
//! lets no process sit in a cgroup that hands controllers to children). Started by hand on a
//! plain host, tasks live below a parent at each hierarchy's root (`rrocker`), as they always
//! did. `--cgroup-parent auto` (the default) chooses; a relative path forces the root.
//!
//! The choice is made once, at start-up, while the daemon is a single process (before the
//! spawner is forked), so that the move takes every process of the daemon with it.

use std::path::{Path, PathBuf};

use super::error::CgroupError;
use super::files;
use super::mounts::CgroupMounts;
use crate::io_context::IoContext;

/// The `--cgroup-version` choices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CgroupVersion {
    /// Probe the host.
    Auto,
    /// Controllers in separate v1 hierarchies.
    V1,
    /// The unified hierarchy.
    V2,
    /// No cgroups: tasks run without limits (requests with limits are refused).
    Off,
}

/// The `--cgroup-parent` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParentFlag {
    /// Inside the daemon's own cgroup where it is delegated, else `rrocker` at the root.
    Auto,
    /// This relative path below each hierarchy's root.
    AtRoot(PathBuf),
}

/// The parent of task cgroups: at the root when nothing is delegated, else inside the
/// delegated cgroup (not `tasks`, a file of every v1 cgroup).
pub const PARENT_NAME: &str = "rrocker";
/// The leaf the daemon moves into inside a delegated cgroup (unified hierarchy).
pub const DAEMON_LEAF: &str = "daemon";
/// The inode of the initial cgroup namespace (the kernel's PROC_CGROUP_INIT_INO).
const INITIAL_CGROUP_NS: u64 = 0xEFFF_FFFB;

/// Parses a `--cgroup-parent` value: `auto`, or a relative path of plain names.
pub fn parse_parent(text: &str) -> Result<ParentFlag, String> {
    if text == "auto" {
        return Ok(ParentFlag::Auto);
    }
    let path = Path::new(text);
    let plain = !text.is_empty()
        && path.components().all(|part| matches!(part, std::path::Component::Normal(_)));
    if plain {
        Ok(ParentFlag::AtRoot(path.to_owned()))
    } else {
        Err(format!(
            "invalid cgroup parent '{text}': expected auto, or a relative path like rrocker"
        ))
    }
}

/// The daemon's own cgroup in each hierarchy, from `/proc/self/cgroup` (paths relative to
/// the hierarchy's root as this cgroup namespace sees it; `None` where the daemon sits
/// outside its namespace's root, which it cannot name).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OwnCgroups {
    /// In the unified hierarchy (the `0::` line).
    pub unified: Option<PathBuf>,
    /// In each v1 hierarchy: its controllers (`name=` ones included) and the path.
    pub v1: Vec<(Vec<String>, PathBuf)>,
}

impl OwnCgroups {
    /// The calling process's cgroups.
    pub fn read() -> Result<Self, CgroupError> {
        let path = Path::new("/proc/self/cgroup");
        let text = std::fs::read_to_string(path).context("read", path)?;
        Ok(Self::parse(&text))
    }

    /// Parses `/proc/PID/cgroup` lines, `ID:CONTROLLERS:PATH`.
    pub fn parse(text: &str) -> Self {
        let mut own = Self::default();
        for line in text.lines() {
            let mut fields = line.splitn(3, ':');
            let (Some(id), Some(controllers), Some(path)) =
                (fields.next(), fields.next(), fields.next())
            else {
                continue;
            };
            // A path that climbs out of the namespace's root names nothing we can reach.
            let Some(relative) = path.strip_prefix('/').filter(|p| !p.starts_with("..")) else {
                continue;
            };
            let relative = PathBuf::from(relative);
            if id == "0" && controllers.is_empty() {
                own.unified = Some(relative);
            } else {
                own.v1.push((controllers.split(',').map(String::from).collect(), relative));
            }
        }
        own
    }

    /// The path in the v1 hierarchy with exactly `controllers` (in any order).
    pub fn in_v1(&self, controllers: &[String]) -> Option<&Path> {
        let same = |theirs: &[String]| {
            theirs.len() == controllers.len() && theirs.iter().all(|c| controllers.contains(c))
        };
        self.v1.iter().find(|(theirs, _)| same(theirs)).map(|(_, path)| path.as_path())
    }
}

/// Where task cgroups go, and why, for every hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Site {
    /// `None`: at each hierarchy's root; else the daemon's own cgroups, delegated to it.
    pub delegated: Option<OwnCgroups>,
    /// The parent of task cgroups, relative to the base (the root, or the own cgroup).
    pub parent: PathBuf,
    /// Why, for the start-up log line.
    pub why: String,
}

impl Site {
    /// The directory at and below which the daemon may write in the unified hierarchy
    /// mounted at `mount` (`None` when delegated but its own cgroup there is unknown).
    pub fn unified_base(&self, mount: &Path) -> Option<PathBuf> {
        match &self.delegated {
            None => Some(mount.to_owned()),
            Some(own) => own.unified.as_ref().map(|path| mount.join(path)),
        }
    }

    /// The same for the v1 hierarchy with `controllers`, mounted at `mount`.
    pub fn v1_base(&self, controllers: &[String], mount: &Path) -> Option<PathBuf> {
        match &self.delegated {
            None => Some(mount.to_owned()),
            Some(own) => own.in_v1(controllers).map(|path| mount.join(path)),
        }
    }

    /// The parent as the log shows it (`rrocker`, `/system.slice/rrockerd.service/rrocker`).
    pub fn describe(&self) -> String {
        match self.delegated.as_ref().and_then(|own| own.unified.as_ref()) {
            Some(own) => format!("/{}", own.join(&self.parent).display()),
            None => self.parent.display().to_string(),
        }
    }
}

/// What `--cgroup-parent auto` sees of the daemon's situation.
#[derive(Debug, Clone, Default)]
pub struct Evidence {
    /// The daemon's own cgroups.
    pub own: OwnCgroups,
    /// Whether its own unified cgroup carries systemd's `trusted.delegate` (or
    /// `user.delegate`) mark.
    pub marked: bool,
    /// Whether it runs in a cgroup namespace other than the host's.
    pub namespaced: bool,
}

impl Evidence {
    /// Reads the evidence for the calling process, the unified hierarchy mounted at
    /// `unified` if any.
    pub fn read(unified: Option<&Path>) -> Result<Self, CgroupError> {
        let own = OwnCgroups::read()?;
        let marked = match (unified, &own.unified) {
            (Some(mount), Some(path)) => is_marked_delegated(&mount.join(path)),
            _ => false,
        };
        let namespaced = std::fs::metadata("/proc/self/ns/cgroup")
            .map(|meta| std::os::unix::fs::MetadataExt::ino(&meta) != INITIAL_CGROUP_NS)
            .unwrap_or(false);
        Ok(Self { own, marked, namespaced })
    }
}

/// Whether systemd marked the cgroup `dir` as delegated (it sets `trusted.delegate=1`, and
/// `user.delegate=1` where it can, on every cgroup of a unit with `Delegate=yes`).
fn is_marked_delegated(dir: &Path) -> bool {
    ["trusted.delegate", "user.delegate"].iter().any(|name| {
        let mut value = [0u8; 8];
        matches!(rustix::fs::getxattr(dir, *name, &mut value[..]), Ok(1) if value[0] == b'1')
    })
}

/// Chooses the site for `flag` from what the daemon sees of itself.
pub fn choose(flag: &ParentFlag, evidence: &Evidence) -> Site {
    let at_root =
        |parent: &Path, why: String| Site { delegated: None, parent: parent.to_owned(), why };
    let parent = match flag {
        ParentFlag::AtRoot(parent) => {
            return at_root(parent, "--cgroup-parent names a parent at the root".to_owned());
        }
        ParentFlag::Auto => Path::new(PARENT_NAME),
    };
    let own_unified = evidence.own.unified.as_ref().map(|p| format!("/{}", p.display()));
    let why = match own_unified {
        Some(own) if evidence.marked => {
            format!(
                "its own cgroup {own} is marked delegated to it (trusted.delegate, as systemd marks Delegate=yes)"
            )
        }
        _ if evidence.namespaced => {
            "it runs in a cgroup namespace of its own (a container's)".to_owned()
        }
        own => {
            let own = own.as_deref().unwrap_or("(unknown)");
            return at_root(
                parent,
                format!(
                    "its own cgroup {own} is not delegated to it (no Delegate=yes, no cgroup namespace)"
                ),
            );
        }
    };
    // Outside a cgroup namespace, a v1 hierarchy where the daemon sits at the root was not
    // delegated to it (its manager placed it only in the others): not rrocker's to write.
    let mut own = evidence.own.clone();
    if !evidence.namespaced {
        own.v1.retain(|(_, path)| !path.as_os_str().is_empty());
    }
    Site { delegated: Some(own), parent: PathBuf::from(PARENT_NAME), why }
}

/// Chooses where tasks go and, when delegated, moves the daemon into `<own>/daemon` on the
/// unified hierarchy (not without cgroups: `version` off, or not root). Call while the
/// daemon is one single-threaded process.
pub fn settle(flag: &ParentFlag, version: CgroupVersion) -> Result<Site, CgroupError> {
    if version == CgroupVersion::Off || !rustix::process::geteuid().is_root() {
        return Ok(choose(flag, &Evidence::default()));
    }
    let mounts = CgroupMounts::read()?;
    let evidence = Evidence::read(mounts.unified.as_deref())?;
    let site = choose(flag, &evidence);
    let base = mounts.unified.as_deref().and_then(|mount| site.unified_base(mount));
    if let Some(base) = base.filter(|base| site.delegated.is_some() && !files::is_read_only(base)) {
        enter_leaf(&base)?;
    }
    Ok(site)
}

/// Moves the calling process into the leaf `<base>/daemon`.
fn enter_leaf(base: &Path) -> Result<(), CgroupError> {
    let leaf = base.join(DAEMON_LEAF);
    if !leaf.is_dir() {
        files::make(&leaf)?;
    }
    files::write(&leaf.join("cgroup.procs"), &std::process::id().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SYSTEMD_HYBRID: &str = "\
9:name=systemd:/system.slice/rrockerd.service
8:pids:/system.slice/rrockerd.service
4:memory:/system.slice/rrockerd.service
1:cpu,cpuacct:/system.slice/rrockerd.service
0::/system.slice/rrockerd.service
";

    #[test]
    fn own_cgroups_are_read_per_hierarchy() {
        let own = OwnCgroups::parse(SYSTEMD_HYBRID);
        assert_eq!(own.unified.as_deref(), Some(Path::new("system.slice/rrockerd.service")));
        let cpu = ["cpuacct".to_owned(), "cpu".to_owned()];
        assert_eq!(own.in_v1(&cpu), Some(Path::new("system.slice/rrockerd.service")));
        assert_eq!(own.in_v1(&["cpu".to_owned()]), None, "cpu is co-mounted with cpuacct");
        // Outside the namespace's root: nothing we can name.
        let outside = OwnCgroups::parse("0::/../../user.slice\n4:memory:/\n");
        assert_eq!(outside.unified, None);
        assert_eq!(outside.in_v1(&["memory".to_owned()]), Some(Path::new("")));
    }

    #[test]
    fn auto_goes_inside_a_delegated_cgroup_and_to_the_root_otherwise() {
        let own = OwnCgroups::parse(&format!("{SYSTEMD_HYBRID}7:blkio:/\n"));
        let marked = Evidence { own: own.clone(), marked: true, namespaced: false };
        let site = choose(&ParentFlag::Auto, &marked);
        assert_eq!(site.describe(), "/system.slice/rrockerd.service/rrocker");
        let mount = Path::new("/sys/fs/cgroup/unified");
        assert_eq!(
            site.unified_base(mount).as_deref(),
            Some(Path::new("/sys/fs/cgroup/unified/system.slice/rrockerd.service"))
        );
        assert!(site.why.contains("Delegate=yes"), "{}", site.why);
        let blkio = ["blkio".to_owned()];
        assert_eq!(site.v1_base(&blkio, Path::new("/b")), None, "blkio was not delegated");

        let container =
            Evidence { own: OwnCgroups::parse("0::/\n"), marked: false, namespaced: true };
        let site = choose(&ParentFlag::Auto, &container);
        assert_eq!(site.unified_base(mount).as_deref(), Some(mount));
        assert_eq!(site.describe(), "/rrocker");

        let by_hand = Evidence { own, marked: false, namespaced: false };
        let site = choose(&ParentFlag::Auto, &by_hand);
        assert_eq!((site.delegated.clone(), site.describe()), (None, "rrocker".to_owned()));
        assert!(site.why.contains("not delegated"), "{}", site.why);

        let explicit = choose(&ParentFlag::AtRoot("elsewhere".into()), &marked);
        assert_eq!(
            (explicit.delegated.clone(), explicit.describe()),
            (None, "elsewhere".to_owned())
        );
    }

    #[test]
    fn the_flag_takes_auto_or_a_plain_relative_path() {
        assert_eq!(parse_parent("auto"), Ok(ParentFlag::Auto));
        assert_eq!(parse_parent("a/b"), Ok(ParentFlag::AtRoot("a/b".into())));
        for bad in ["", "/abs", "../up", "a/../b"] {
            assert!(parse_parent(bad).is_err(), "{bad}");
        }
    }
}
