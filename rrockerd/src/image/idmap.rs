//! The image as tasks see it: one idmapped, read-only mount of the image per daemon, whose
//! owners appear shifted into the tasks' id range, so that root inside a task's user
//! namespace owns it and can overlay it (README, Security model). The mapping comes from a short-lived
//! template user namespace; the mount is attached in the daemon's private mount namespace
//! ([`enter_private_mount_namespace`]), so it never shows in the host's and vanishes with
//! the daemon however it ends. Tasks inherit a copy of that namespace and find the image at
//! its path.

use std::io::{self, Read};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

use rrocker_uring::IdMap;
use rustix::mount::{MoveMountFlags, OpenTreeFlags, move_mount, open_tree};

/// `argv[0]` of the helper process that holds the template user namespace.
pub const HOLDER_ARGV0: &str = "rrocker-userns";

/// Gives the daemon its own mount namespace, a slave of the host's: host mounts still
/// appear in it, its own mounts never leave it. Must run while the process is
/// single-threaded (unshare of a mount namespace refuses threads).
pub fn enter_private_mount_namespace() -> io::Result<()> {
    // SAFETY: a new mount namespace (which implies an unshared fs struct) does not affect
    // file descriptors; the caller runs this before starting any thread.
    unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWNS) }?;
    let flags = rustix::mount::MountPropagationFlags::DOWNSTREAM
        | rustix::mount::MountPropagationFlags::REC;
    rustix::mount::mount_change("/", flags)?;
    Ok(())
}

/// The body of the holder process: waits until its stdin closes.
pub fn hold() -> ! {
    let mut sink = Vec::new();
    let _ = io::stdin().read_to_end(&mut sink);
    std::process::exit(0)
}

/// Mounts `image` read-only at `target` (an existing directory), idmapped by the mapping of
/// `userns` (see [`template_userns`]).
pub fn attach_idmapped_image(image: &Path, userns: &OwnedFd, target: &Path) -> io::Result<()> {
    let tree = open_tree(
        rustix::fs::CWD,
        image,
        OpenTreeFlags::OPEN_TREE_CLONE
            | OpenTreeFlags::OPEN_TREE_CLOEXEC
            | OpenTreeFlags::AT_RECURSIVE,
    )?;
    set_idmap_readonly(&tree, userns)?;
    move_mount(&tree, "", rustix::fs::CWD, target, MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH)?;
    Ok(())
}

/// A user namespace with `map` and no process left in it: a helper is started in a new user
/// namespace, given the map, its namespace kept as an fd, and let go.
pub fn template_userns(map: IdMap) -> io::Result<OwnedFd> {
    let mut command = Command::new("/proc/self/exe");
    command.arg0(HOLDER_ARGV0).stdin(Stdio::piped()).stdout(Stdio::null()).stderr(Stdio::null());
    // SAFETY: the closure only makes one raw syscall (async-signal-safe) in the forked
    // child, which runs no other thread and is about to exec; a new user namespace leaves
    // its fd table alone.
    unsafe {
        command.pre_exec(|| {
            rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWUSER)
                .map_err(io::Error::from)
        });
    }
    let mut holder = command.spawn()?;
    let pid = holder.id();
    let result = (|| {
        std::fs::write(
            format!("/proc/{pid}/uid_map"),
            format!("0 {} {}\n", map.first_uid, map.count),
        )?;
        std::fs::write(
            format!("/proc/{pid}/gid_map"),
            format!("0 {} {}\n", map.first_gid, map.count),
        )?;
        Ok(OwnedFd::from(std::fs::File::open(format!("/proc/{pid}/ns/user"))?))
    })();
    drop(holder.stdin.take());
    holder.wait()?;
    result
}

/// `mount_setattr(tree, "", AT_EMPTY_PATH | AT_RECURSIVE, {IDMAP | RDONLY, userns})`.
fn set_idmap_readonly(tree: &OwnedFd, userns: &OwnedFd) -> io::Result<()> {
    let attr = libc::mount_attr {
        attr_set: libc::MOUNT_ATTR_IDMAP | libc::MOUNT_ATTR_RDONLY,
        attr_clr: 0,
        propagation: 0,
        userns_fd: u64::try_from(userns.as_raw_fd())
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?,
    };
    // SAFETY: `tree` is a detached mount fd, the path is an empty C string used with
    // AT_EMPTY_PATH, and `attr` is a valid mount_attr of the size passed.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            tree.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH | libc::AT_RECURSIVE,
            std::ptr::addr_of!(attr),
            std::mem::size_of::<libc::mount_attr>(),
        )
    };
    if ret == -1 { Err(io::Error::last_os_error()) } else { Ok(()) }
}
