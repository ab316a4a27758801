//! The set-up steps init takes inside the task's namespaces, one per line, each with its own
//! step number for the report: mounts made private; the task's root assembled (an overlay
//! of the image with the task's writable layer, a fresh /proc for the new PID namespace, a
//! minimal /dev of bind-mounted device nodes, a tmpfs /tmp); pivot_root into it with the old
//! root detached; the hostname; loopback up; and no new privileges from here on.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags, mount, umount2};

use super::{InitPlan, sys};

/// Init's set-up steps, as reported to the daemon on failure (engine steps are below 16).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum InitStep {
    /// Init's own arguments were malformed.
    Arguments = rrocker_uring::report::FIRST_INIT_STEP,
    /// Making every mount private.
    PrivateMounts,
    /// Mounting the overlay root.
    Overlay,
    /// Mounting a fresh /proc.
    Proc,
    /// Populating /dev.
    Dev,
    /// Mounting /tmp.
    Tmp,
    /// Switching to the new root.
    PivotRoot,
    /// Setting the hostname.
    Hostname,
    /// Bringing loopback up.
    Loopback,
    /// Setting no_new_privs.
    NoNewPrivs,
    /// Dropping capabilities from the bounding set.
    Capabilities,
    /// Making init non-dumpable.
    NonDumpable,
    /// Blocking the forwarded signals.
    Signals,
    /// Waiting for the daemon to place the task in its cgroups.
    Placement,
    /// Rooting a cgroup namespace at the task's own cgroups.
    CgroupNamespace,
    /// Forking the command.
    Fork,
    /// Entering the working directory.
    Workdir,
    /// Executing the command.
    Exec,
}

impl InitStep {
    const ALL: [Self; 18] = [
        Self::Arguments,
        Self::PrivateMounts,
        Self::Overlay,
        Self::Proc,
        Self::Dev,
        Self::Tmp,
        Self::PivotRoot,
        Self::Hostname,
        Self::Loopback,
        Self::NoNewPrivs,
        Self::Capabilities,
        Self::NonDumpable,
        Self::Signals,
        Self::Placement,
        Self::CgroupNamespace,
        Self::Fork,
        Self::Workdir,
        Self::Exec,
    ];

    /// The step for a report byte, if it is one of init's.
    pub fn from_byte(byte: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|step| *step as u8 == byte)
    }

    /// What the step does, for error messages.
    pub fn describe(self) -> &'static str {
        match self {
            Self::Arguments => "parse init's arguments",
            Self::PrivateMounts => "make the task's mounts private",
            Self::Overlay => "mount the task's root filesystem",
            Self::Proc => "mount /proc",
            Self::Dev => "populate /dev",
            Self::Tmp => "mount /tmp",
            Self::PivotRoot => "switch to the task's root filesystem",
            Self::Hostname => "set the hostname",
            Self::Loopback => "bring up loopback",
            Self::NoNewPrivs => "set no_new_privs",
            Self::Capabilities => "drop capabilities",
            Self::NonDumpable => "make init non-dumpable",
            Self::Signals => "block the forwarded signals",
            Self::Placement => "wait for the task's cgroups",
            Self::CgroupNamespace => "root a cgroup namespace at the task's cgroups",
            Self::Fork => "fork the command",
            Self::Workdir => "enter the working directory",
            Self::Exec => "execute the command",
        }
    }
}

/// Device nodes a task gets, bind-mounted from the host's /dev.
const DEVICES: [&str; 6] = ["null", "zero", "full", "random", "urandom", "tty"];

/// Capabilities the command may hold (as root of its user namespace): what a process
/// manager's root usually needs, the same set container runtimes keep by default. Everything
/// else (modules, raw I/O, ptrace, admin, ...) leaves the bounding set.
const KEPT_CAPABILITIES: [u32; 14] = [
    0,  // CAP_CHOWN
    1,  // CAP_DAC_OVERRIDE
    3,  // CAP_FOWNER
    4,  // CAP_FSETID
    5,  // CAP_KILL
    6,  // CAP_SETGID
    7,  // CAP_SETUID
    8,  // CAP_SETPCAP
    10, // CAP_NET_BIND_SERVICE
    13, // CAP_NET_RAW
    18, // CAP_SYS_CHROOT
    27, // CAP_MKNOD
    29, // CAP_AUDIT_WRITE
    31, // CAP_SETFCAP
];

/// The bounding set the command runs with, as /proc/PID/status shows it (CapBnd).
pub fn kept_capability_mask() -> u64 {
    KEPT_CAPABILITIES.iter().fold(0, |mask, cap| mask | 1 << cap)
}

/// Runs every step in order; the first failure names its step.
pub fn run(plan: &InitPlan) -> Result<(), (InitStep, Errno)> {
    let step = |step: InitStep| move |errno: Errno| (step, errno);
    let task_dir = Path::new(OsStr::from_bytes(&plan.task_dir));
    let root = task_dir.join("root");
    let none = None::<&str>;
    mount(none, "/", none, MsFlags::MS_REC | MsFlags::MS_PRIVATE, none)
        .map_err(step(InitStep::PrivateMounts))?;
    mount_overlay(plan, task_dir, &root).map_err(step(InitStep::Overlay))?;
    let (nosuid, nodev, noexec) = (MsFlags::MS_NOSUID, MsFlags::MS_NODEV, MsFlags::MS_NOEXEC);
    mount(Some("proc"), &root.join("proc"), Some("proc"), nosuid | nodev | noexec, none)
        .map_err(step(InitStep::Proc))?;
    populate_dev(&root.join("dev")).map_err(step(InitStep::Dev))?;
    mount(Some("tmpfs"), &root.join("tmp"), Some("tmpfs"), nosuid | nodev, Some("mode=1777"))
        .map_err(step(InitStep::Tmp))?;
    pivot_into(&root).map_err(step(InitStep::PivotRoot))?;
    nix::unistd::sethostname(OsStr::from_bytes(&plan.hostname))
        .map_err(step(InitStep::Hostname))?;
    // Already up in a namespace the daemon made ahead.
    rrocker_uring::loopback_up()
        .map_err(|error| Errno::from_raw(error.raw_os_error().unwrap_or(libc::EIO)))
        .map_err(step(InitStep::Loopback))?;
    sys::no_new_privs().map_err(step(InitStep::NoNewPrivs))?;
    sys::limit_bounding_set(&KEPT_CAPABILITIES).map_err(step(InitStep::Capabilities))?;
    sys::non_dumpable().map_err(step(InitStep::NonDumpable))?;
    Ok(())
}

/// Mounts `root` as an overlay: the image below, the task's `upper/` above (`userxattr`:
/// mounted inside a user namespace).
fn mount_overlay(plan: &InitPlan, task_dir: &Path, root: &Path) -> Result<(), Errno> {
    let mut options = b"lowerdir=".to_vec();
    options.extend_from_slice(&plan.image);
    options.extend_from_slice(b",upperdir=");
    options.extend_from_slice(task_dir.join("upper").as_os_str().as_bytes());
    options.extend_from_slice(b",workdir=");
    options.extend_from_slice(task_dir.join("work").as_os_str().as_bytes());
    options.extend_from_slice(b",userxattr");
    mount(
        Some("overlay"),
        root,
        Some("overlay"),
        MsFlags::empty(),
        Some(OsStr::from_bytes(&options)),
    )
}

/// A tmpfs /dev holding bind mounts of a few harmless host device nodes.
fn populate_dev(dev: &Path) -> Result<(), Errno> {
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC;
    mount(Some("tmpfs"), dev, Some("tmpfs"), flags, Some("mode=755,size=64k"))?;
    for device in DEVICES {
        let target: PathBuf = dev.join(device);
        std::fs::File::create(&target)
            .map_err(|error| Errno::from_raw(error.raw_os_error().unwrap_or(libc::EIO)))?;
        let source = Path::new("/dev").join(device);
        mount(Some(&source), &target, None::<&str>, MsFlags::MS_BIND, None::<&str>)?;
    }
    Ok(())
}

/// pivot_root into `root`, stacking the old root on top and detaching it: nothing of the
/// host's filesystem stays reachable.
fn pivot_into(root: &Path) -> Result<(), Errno> {
    nix::unistd::chdir(root)?;
    nix::unistd::pivot_root(".", ".")?;
    umount2(".", MntFlags::MNT_DETACH)?;
    nix::unistd::chdir("/")
}
