//! The few calls of init that nix does not wrap: the report fd it inherits as fd 3, the go
//! pipe as fd 4, and no_new_privs. (Bringing `lo` up is `rrocker_uring::loopback_up`.)

use std::os::fd::{FromRawFd, OwnedFd};

use nix::errno::Errno;

use super::InitStep;

/// The report pipe the engine handed over as fd 3.
pub fn report_fd() -> OwnedFd {
    // SAFETY: the engine dup'ed the report pipe to fd 3 for this process and nothing else in
    // init owns fd 3.
    unsafe { OwnedFd::from_raw_fd(3) }
}

/// Waits until the engine has placed this process in the task's cgroups, when it said it
/// would (by handing over a go pipe as fd 4): one byte means placed, end of file means the
/// placement failed. Without fd 4 there is nothing to wait for.
pub fn wait_for_placement() -> Result<(), Errno> {
    const GO_FD: i32 = 4;
    // SAFETY: F_GETFD only reads the flags of fd 4, whichever file it is.
    if unsafe { libc::fcntl(GO_FD, libc::F_GETFD) } == -1 {
        return Ok(());
    }
    // SAFETY: the engine dup'ed the go pipe to fd 4 for this process; nothing else owns it.
    let go = unsafe { OwnedFd::from_raw_fd(GO_FD) };
    let mut byte = [0u8; 1];
    match nix::unistd::read(&go, &mut byte) {
        Ok(1) => Ok(()),
        Ok(_) => Err(Errno::EIO),
        Err(errno) => Err(errno),
    }
}

/// Sends a report record to the engine.
pub fn send(report: &OwnedFd, tag: u8, value: i32) {
    let _ = nix::unistd::write(report, &rrocker_uring::report::encode(tag, value));
}

/// Reports a failed step and its errno, and exits 127.
pub fn fail(report: &OwnedFd, step: InitStep, errno: i32) -> ! {
    send(report, step as u8, errno);
    std::process::exit(127)
}

/// Marks every fd above stderr close-on-exec (the report pipe among them), so that only
/// 0, 1 and 2 reach the command and a successful exec closes the report pipe.
pub fn only_stdio_on_exec() -> Result<(), Errno> {
    // SAFETY: close_range takes plain integers; CLOSE_RANGE_CLOEXEC only sets flags.
    let ret =
        unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, libc::CLOSE_RANGE_CLOEXEC) };
    Errno::result(ret).map(drop)
}

/// PR_SET_NO_NEW_PRIVS: neither the command nor anything it runs gains privileges.
pub fn no_new_privs() -> Result<(), Errno> {
    // SAFETY: prctl with PR_SET_NO_NEW_PRIVS takes plain integer arguments.
    Errno::result(unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) }).map(drop)
}

/// Drops every capability but `kept` from the bounding set (up to the kernel's last one).
pub fn limit_bounding_set(kept: &[u32]) -> Result<(), Errno> {
    let last: u32 = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(63);
    for capability in (0..=last).filter(|cap| !kept.contains(cap)) {
        // SAFETY: PR_CAPBSET_DROP takes a capability number; no memory is passed.
        Errno::result(unsafe {
            libc::prctl(libc::PR_CAPBSET_DROP, libc::c_ulong::from(capability), 0, 0, 0)
        })?;
    }
    Ok(())
}

/// PR_SET_DUMPABLE 0: init's memory and /proc entries are out of the command's reach.
pub fn non_dumpable() -> Result<(), Errno> {
    // SAFETY: prctl with PR_SET_DUMPABLE takes plain integer arguments.
    Errno::result(unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) }).map(drop)
}
