//! The set-up steps init takes inside the task's namespaces, one per line, each reported as
//! its own step on failure: mounts made private; the task's root assembled (an overlay of
//! the image with the task's writable layer, a fresh /proc for the new PID namespace, a
//! minimal /dev of bind-mounted device nodes and a devpts of its own, a tmpfs /tmp);
//! pivot_root into it with the old root detached; /proc's host-revealing files masked and
//! its kernel settings read-only; the hostname; loopback up; no new privileges, a small
//! capability bounding set and a non-dumpable init from here on.

use std::ffi::{CString, c_ulong};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rrocker_init::capabilities::KEPT;
use rrocker_init::plan::{IMAGE_FD, InitPlan, TASK_DIR_FD, handed_path};
use rrocker_init::step::InitStep;

use crate::sys::{
    self, MS_BIND, MS_NODEV, MS_NOEXEC, MS_NOSUID, MS_PRIVATE, MS_RDONLY, MS_REC, MS_REMOUNT,
};

/// /proc files that tell of the host's kernel (memory, keys, timers, scheduler): each is
/// covered by /dev/null, where the kernel has it.
const MASKED_FILES: [&str; 6] = [
    "/proc/kcore",
    "/proc/keys",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/latency_stats",
];
/// /proc directories of host hardware: each is covered by an empty read-only tmpfs.
const MASKED_DIRS: [&str; 3] = ["/proc/acpi", "/proc/scsi", "/proc/asound"];
/// /proc paths that configure the host's kernel: each is bound read-only onto itself.
const READ_ONLY: [&str; 5] =
    ["/proc/sys", "/proc/sysrq-trigger", "/proc/irq", "/proc/bus", "/proc/fs"];

/// Device nodes a task gets, bind-mounted from the host's /dev.
const DEVICES: [&str; 6] = ["null", "zero", "full", "random", "urandom", "tty"];

/// A failed step and why.
pub type StepError = (InitStep, io::Error);

/// Tags an error with its step.
pub fn step(step: InitStep) -> impl Fn(io::Error) -> StepError {
    move |error| (step, error)
}

/// Runs every step in order; the first failure names its step.
pub fn run(plan: &InitPlan) -> Result<(), StepError> {
    let task_dir = PathBuf::from(handed_path(TASK_DIR_FD));
    let root = task_dir.join("root");
    mount(None, Path::new("/"), None, MS_REC | MS_PRIVATE, None)
        .map_err(step(InitStep::PrivateMounts))?;
    mount_overlay(&task_dir, &root).map_err(step(InitStep::Overlay))?;
    mount(Some("proc"), &root.join("proc"), Some("proc"), MS_NOSUID | MS_NODEV | MS_NOEXEC, None)
        .map_err(step(InitStep::Proc))?;
    populate_dev(&root.join("dev")).map_err(step(InitStep::Dev))?;
    mount(
        Some("tmpfs"),
        &root.join("tmp"),
        Some("tmpfs"),
        MS_NOSUID | MS_NODEV,
        Some(b"mode=1777"),
    )
    .map_err(step(InitStep::Tmp))?;
    pivot_into(&root).map_err(step(InitStep::PivotRoot))?;
    // The mounts hold what they need: nothing of the host stays open either.
    sys::close(TASK_DIR_FD);
    sys::close(IMAGE_FD);
    mask_proc().map_err(step(InitStep::MaskPaths))?;
    sys::set_hostname(&plan.hostname).map_err(step(InitStep::Hostname))?;
    // Already up in a namespace the daemon made ahead.
    sys::loopback_up().map_err(step(InitStep::Loopback))?;
    restrict()
}

/// What binds init and everything it starts, in a new task or joining a running one: no new
/// privileges, a small capability bounding set, and a non-dumpable init.
pub fn restrict() -> Result<(), StepError> {
    sys::no_new_privs().map_err(step(InitStep::NoNewPrivs))?;
    limit_bounding_set().map_err(step(InitStep::Capabilities))?;
    sys::non_dumpable().map_err(step(InitStep::NonDumpable))?;
    Ok(())
}

/// mount(2): a source (device, path or file system name), a target, a file system type,
/// flags and file-system-specific data.
fn mount(
    source: Option<&str>,
    target: &Path,
    fstype: Option<&str>,
    flags: c_ulong,
    data: Option<&[u8]>,
) -> io::Result<()> {
    let source = source.map(|text| c_string(text.as_bytes())).transpose()?;
    let fstype = fstype.map(|name| c_string(name.as_bytes())).transpose()?;
    let data = data.map(c_string).transpose()?;
    sys::mount_fs(
        source.as_deref(),
        &c_string(target.as_os_str().as_bytes())?,
        fstype.as_deref(),
        flags,
        data.as_deref(),
    )
}

/// A C string; a NUL inside is EINVAL.
pub fn c_string(bytes: &[u8]) -> io::Result<CString> {
    CString::new(bytes).map_err(|_| einval())
}

/// EINVAL, for arguments init cannot pass on.
pub const EINVAL: i32 = 22;

/// An EINVAL error.
pub fn einval() -> io::Error {
    io::Error::from_raw_os_error(EINVAL)
}

/// Mounts `root` as an overlay: the image below, the task's `upper/` above (`userxattr`:
/// mounted inside a user namespace).
fn mount_overlay(task_dir: &Path, root: &Path) -> io::Result<()> {
    let mut options = b"lowerdir=".to_vec();
    options.extend_from_slice(handed_path(IMAGE_FD).as_bytes());
    options.extend_from_slice(b",upperdir=");
    options.extend_from_slice(task_dir.join("upper").as_os_str().as_bytes());
    options.extend_from_slice(b",workdir=");
    options.extend_from_slice(task_dir.join("work").as_os_str().as_bytes());
    options.extend_from_slice(b",userxattr");
    mount(Some("overlay"), root, Some("overlay"), 0, Some(&options))
}

/// A tmpfs /dev holding bind mounts of a few harmless host device nodes, and the task's own
/// devpts instance (its pseudo-terminals, none of the host's) at /dev/pts with /dev/ptmx.
fn populate_dev(dev: &Path) -> io::Result<()> {
    mount(Some("tmpfs"), dev, Some("tmpfs"), MS_NOSUID | MS_NOEXEC, Some(b"mode=755,size=64k"))?;
    for device in DEVICES {
        let target = dev.join(device);
        std::fs::File::create(&target)?;
        mount(Some(&format!("/dev/{device}")), &target, None, MS_BIND, None)?;
    }
    let pts = dev.join("pts");
    std::fs::create_dir(&pts)?;
    let options = b"newinstance,ptmxmode=0666,mode=0620";
    mount(Some("devpts"), &pts, Some("devpts"), MS_NOSUID | MS_NOEXEC, Some(options))?;
    std::os::unix::fs::symlink("pts/ptmx", dev.join("ptmx"))
}

/// pivot_root into `root`, stacking the old root on top and detaching it: nothing of the
/// host's filesystem stays reachable.
fn pivot_into(root: &Path) -> io::Result<()> {
    std::env::set_current_dir(root)?;
    sys::pivot_root(c".", c".")?;
    sys::detach(c".")?;
    std::env::set_current_dir("/")
}

/// Masks and write-protects /proc as docker does by default (a task has no /sys to mask).
/// The task's root could undo these mounts but for its seccomp filter, which refuses every
/// mount call.
fn mask_proc() -> io::Result<()> {
    let present = |path: &&&str| Path::new(path).exists();
    for file in MASKED_FILES.iter().filter(present) {
        mount(Some("/dev/null"), Path::new(file), None, MS_BIND, None)?;
    }
    let locked = MS_NOSUID | MS_NODEV | MS_NOEXEC;
    for dir in MASKED_DIRS.iter().filter(present) {
        mount(Some("tmpfs"), Path::new(dir), Some("tmpfs"), locked | MS_RDONLY, Some(b"size=0"))?;
    }
    for path in READ_ONLY.iter().filter(present) {
        mount(Some(path), Path::new(path), None, MS_BIND | MS_REC, None)?;
        // A remount inside a user namespace must keep the flags /proc was mounted with.
        mount(None, Path::new(path), None, MS_BIND | MS_REMOUNT | MS_RDONLY | locked, None)?;
    }
    Ok(())
}

/// Drops every capability but the kept ones from the bounding set, up to the kernel's last.
fn limit_bounding_set() -> io::Result<()> {
    let last: u32 = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(63);
    let kept = |capability: &u32| KEPT.iter().any(|(number, _)| number == capability);
    for capability in (0..=last).filter(|capability| !kept(capability)) {
        sys::drop_capability(capability)?;
    }
    Ok(())
}
