//! The set-up steps init takes inside the task's namespaces, one per line, each reported as
//! its own step on failure: mounts made private; the task's root assembled (an overlay of
//! the image with the task's writable layer, a fresh /proc for the new PID namespace, a
//! minimal /dev of bind-mounted device nodes, a tmpfs /tmp); pivot_root into it with the old
//! root detached; the hostname; loopback up; no new privileges, a small capability bounding
//! set and a non-dumpable init from here on.

use std::ffi::{CString, OsStr, c_ulong};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use rrocker_init::plan::InitPlan;
use rrocker_init::step::InitStep;

use crate::sys::{self, MS_BIND, MS_NODEV, MS_NOEXEC, MS_NOSUID, MS_PRIVATE, MS_REC};

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

/// A failed step and why.
pub type StepError = (InitStep, io::Error);

/// Tags an error with its step.
pub fn step(step: InitStep) -> impl Fn(io::Error) -> StepError {
    move |error| (step, error)
}

/// Runs every step in order; the first failure names its step.
pub fn run(plan: &InitPlan) -> Result<(), StepError> {
    let task_dir = Path::new(OsStr::from_bytes(&plan.task_dir));
    let root = task_dir.join("root");
    mount(None, Path::new("/"), None, MS_REC | MS_PRIVATE, None)
        .map_err(step(InitStep::PrivateMounts))?;
    mount_overlay(plan, task_dir, &root).map_err(step(InitStep::Overlay))?;
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
    sys::set_hostname(&plan.hostname).map_err(step(InitStep::Hostname))?;
    // Already up in a namespace the daemon made ahead.
    sys::loopback_up().map_err(step(InitStep::Loopback))?;
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
fn mount_overlay(plan: &InitPlan, task_dir: &Path, root: &Path) -> io::Result<()> {
    let mut options = b"lowerdir=".to_vec();
    options.extend_from_slice(&plan.image);
    options.extend_from_slice(b",upperdir=");
    options.extend_from_slice(task_dir.join("upper").as_os_str().as_bytes());
    options.extend_from_slice(b",workdir=");
    options.extend_from_slice(task_dir.join("work").as_os_str().as_bytes());
    options.extend_from_slice(b",userxattr");
    mount(Some("overlay"), root, Some("overlay"), 0, Some(&options))
}

/// A tmpfs /dev holding bind mounts of a few harmless host device nodes.
fn populate_dev(dev: &Path) -> io::Result<()> {
    mount(Some("tmpfs"), dev, Some("tmpfs"), MS_NOSUID | MS_NOEXEC, Some(b"mode=755,size=64k"))?;
    for device in DEVICES {
        let target = dev.join(device);
        std::fs::File::create(&target)?;
        mount(Some(&format!("/dev/{device}")), &target, None, MS_BIND, None)?;
    }
    Ok(())
}

/// pivot_root into `root`, stacking the old root on top and detaching it: nothing of the
/// host's filesystem stays reachable.
fn pivot_into(root: &Path) -> io::Result<()> {
    std::env::set_current_dir(root)?;
    sys::pivot_root(c".", c".")?;
    sys::detach(c".")?;
    std::env::set_current_dir("/")
}

/// Drops every capability but the kept ones from the bounding set, up to the kernel's last.
fn limit_bounding_set() -> io::Result<()> {
    let last: u32 = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(63);
    for capability in (0..=last).filter(|cap| !KEPT_CAPABILITIES.contains(cap)) {
        sys::drop_capability(capability)?;
    }
    Ok(())
}
