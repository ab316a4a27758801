//! The thin syscall layer of the engine: one short wrapper per call that rustix does not
//! offer safely (clone3 with a pidfd, pidfd_send_signal, the network namespace's loopback).
//! What a freshly cloned child does before `execve` is in `child/exec.rs`. Nothing here decides
//! anything.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::rc::Rc;

use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

/// What `clone3` returned in the calling process.
#[derive(Debug)]
pub(crate) enum Cloned {
    /// We are the child.
    Child,
    /// We are the parent of `pid`, reachable through `pidfd`.
    Parent { pid: u32, pidfd: OwnedFd },
}

/// clone3 flag: start the child in the cgroup v2 directory `clone_args.cgroup` refers to.
pub(crate) const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// `clone3(CLONE_PIDFD | extra_flags)`, into `cgroup` if given, with SIGCHLD as exit signal
/// (or, with CLONE_PARENT, the caller's): a fork that also returns a pidfd for the child.
///
/// # Safety
/// The caller is multi-threaded: in the child, only async-signal-safe functions may run
/// until `execve` or `_exit` (no allocation, no locks, no unwinding).
pub(crate) unsafe fn clone3_with_pidfd(
    extra_flags: u64,
    cgroup: Option<BorrowedFd<'_>>,
) -> io::Result<Cloned> {
    let mut pidfd: RawFd = -1;
    let into_cgroup = if cgroup.is_some() { CLONE_INTO_CGROUP } else { 0 };
    let mut args = libc::clone_args {
        flags: libc::CLONE_PIDFD as u64 | extra_flags | into_cgroup,
        pidfd: std::ptr::addr_of_mut!(pidfd) as u64,
        child_tid: 0,
        parent_tid: 0,
        // With CLONE_PARENT the kernel takes the caller's own exit signal (and refuses one).
        exit_signal: if extra_flags & libc::CLONE_PARENT as u64 == 0 {
            libc::SIGCHLD as u64
        } else {
            0
        },
        stack: 0,
        stack_size: 0,
        tls: 0,
        set_tid: 0,
        set_tid_size: 0,
        cgroup: cgroup
            .map_or(0, |fd| u64::try_from(fd.as_raw_fd()).expect("an fd is not negative")),
    };
    // SAFETY: `args` is a valid clone_args of the size passed; without CLONE_VM the child gets
    // its own copy of the address space, so `pidfd` stays valid in both processes.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            std::ptr::addr_of_mut!(args),
            std::mem::size_of::<libc::clone_args>(),
        )
    };
    match ret {
        -1 => Err(io::Error::last_os_error()),
        0 => Ok(Cloned::Child),
        pid => Ok(Cloned::Parent {
            pid: u32::try_from(pid).expect("clone3 returns a positive pid to the parent"),
            // SAFETY: the kernel just created this fd for us (CLONE_PIDFD, close-on-exec) and
            // nothing else owns it.
            pidfd: unsafe { OwnedFd::from_raw_fd(pidfd) },
        }),
    }
}

/// fork(2), only for a process that has a single thread (else it fails with EBUSY): the
/// child is then a plain copy that may allocate and lock. Returns the child's pid to the
/// parent and `None` to the child.
pub(crate) fn fork_single_threaded() -> io::Result<Option<u32>> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    if !status.lines().any(|line| line.split_whitespace().eq(["Threads:", "1"])) {
        return Err(io::Error::from_raw_os_error(libc::EBUSY));
    }
    // SAFETY: with one thread there is no lock another thread could hold in the child.
    match unsafe { libc::fork() } {
        -1 => Err(io::Error::last_os_error()),
        0 => Ok(None),
        pid => Ok(Some(u32::try_from(pid).expect("fork returns a positive pid"))),
    }
}

/// SCHED_IDLE for the calling thread: it runs only on a CPU that has nothing else to do.
pub(crate) fn idle_priority() -> io::Result<()> {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: sched_setscheduler reads `param`, which outlives the call; pid 0 is the calling
    // thread.
    let ret = unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &raw const param) };
    if ret == -1 { Err(io::Error::last_os_error()) } else { Ok(()) }
}

/// `unshare(CLONE_NEWNET)`: moves the calling thread (only) into a new network namespace.
pub(crate) fn unshare_network() -> io::Result<()> {
    // SAFETY: CLONE_NEWNET changes only this thread's network namespace; it does not touch
    // the fd table (the hazard `unshare_unsafe` warns of is UnshareFlags::FILES).
    unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWNET) }
        .map_err(io::Error::from)
}

/// `ifconfig lo up` in the calling thread's network namespace (SIOCSIFFLAGS); nothing to do
/// if it is up already.
pub(crate) fn loopback_up() -> io::Result<()> {
    let socket = rustix::net::socket_with(
        rustix::net::AddressFamily::INET,
        rustix::net::SocketType::DGRAM,
        rustix::net::SocketFlags::CLOEXEC,
        None,
    )?;
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
    for (slot, byte) in request.ifr_name.iter_mut().zip(b"lo\0") {
        *slot = libc::c_char::from_ne_bytes([*byte]);
    }
    // SAFETY: the socket is open and `request` is a valid ifreq naming "lo".
    if unsafe { libc::ioctl(socket.as_raw_fd(), libc::SIOCGIFFLAGS, &mut request) } == -1 {
        return Err(io::Error::last_os_error());
    }
    let up = libc::c_short::try_from(libc::IFF_UP).expect("IFF_UP fits the flags field");
    // SAFETY: SIOCGIFFLAGS filled the flags member of the union.
    let flags = unsafe { request.ifr_ifru.ifru_flags };
    if flags & up != 0 {
        return Ok(());
    }
    request.ifr_ifru.ifru_flags = flags | up;
    // SAFETY: as above, with the flags to set.
    if unsafe { libc::ioctl(socket.as_raw_fd(), libc::SIOCSIFFLAGS, &request) } == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `pidfd_send_signal(pidfd, signal)`: signals exactly the process the pidfd refers to, with
/// no pid-reuse race.
pub(crate) fn pidfd_send_signal(pidfd: &OwnedFd, signal: i32) -> io::Result<()> {
    // SAFETY: the fd is a live pidfd owned by the caller; a null siginfo and zero flags are
    // the documented defaults.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            signal,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if ret == -1 { Err(io::Error::last_os_error()) } else { Ok(()) }
}

/// `pidfd_send_signal(pidfd, signal, info)` with a siginfo of code `SI_QUEUE` carrying
/// `value`, as sigqueue(3) sends (queued: a real-time signal sent twice arrives twice).
pub(crate) fn pidfd_queue_signal(pidfd: &OwnedFd, signal: i32, value: i32) -> io::Result<()> {
    /// The leading fields of the kernel's siginfo for SI_QUEUE (padded to its 128 bytes):
    /// signo, errno, code, a hole, then pid, uid and the value.
    #[repr(C)]
    struct QueuedInfo {
        signo: i32,
        errno: i32,
        code: i32,
        hole: i32,
        pid: i32,
        uid: u32,
        value: u64,
        rest: [u64; 12],
    }
    let info = QueuedInfo {
        signo: signal,
        errno: 0,
        code: libc::SI_QUEUE,
        hole: 0,
        // The kernel sets the pid the receiver sees (0 from an ancestor PID namespace).
        pid: 0,
        uid: 0,
        value: u64::from(value.cast_unsigned()),
        rest: [0; 12],
    };
    // SAFETY: the fd is a live pidfd owned by the caller; the kernel copies the 128-byte
    // siginfo from `info`, which has its layout and outlives the call.
    let ret = unsafe {
        libc::syscall(libc::SYS_pidfd_send_signal, pidfd.as_raw_fd(), signal, &raw const info, 0)
    };
    if ret == -1 { Err(io::Error::last_os_error()) } else { Ok(()) }
}

/// Registers a pidfd with the current tokio reactor, to await its readability (exit).
pub(crate) fn watch_pidfd(pidfd: Rc<OwnedFd>) -> io::Result<AsyncFd<Rc<OwnedFd>>> {
    // SAFETY: the Rc keeps the pidfd open, and nothing replaces it, for the AsyncFd's life.
    unsafe { AsyncFd::register_with_interest(pidfd, Interest::READABLE) }.map_err(io::Error::from)
}

/// How many bytes wait unread in a pipe (FIONREAD; 0 if the kernel will not say).
pub(crate) fn bytes_waiting(pipe: &impl AsRawFd) -> u64 {
    // SAFETY: the fd belongs to `pipe`, which the caller keeps open for this call.
    let fd = unsafe { BorrowedFd::borrow_raw(pipe.as_raw_fd()) };
    rustix::io::ioctl_fionread(fd).unwrap_or(0)
}

/// `kill(-pgid, SIGKILL)`: kills a process group. Only safe while the group's leader is
/// unreaped (a zombie still holds the number, so it cannot name anyone else's group).
pub(crate) fn kill_process_group(pgid: u32) -> io::Result<()> {
    let pgid =
        libc::pid_t::try_from(pgid).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: kill has no memory-safety preconditions; a negative pid names a process group.
    if unsafe { libc::kill(-pgid, libc::SIGKILL) } == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Blocks until the child behind `pidfd` has exited and reaps it. Only for a child that was
/// just killed, so the wait is short.
pub(crate) fn wait_exited(pidfd: &OwnedFd) -> io::Result<()> {
    use rustix::process::{WaitId, WaitIdOptions, waitid};
    waitid(WaitId::PidFd(pidfd.as_fd()), WaitIdOptions::EXITED)?;
    Ok(())
}
