//! The thin syscall layer of the engine: one short wrapper per call that rustix does not
//! offer safely (clone3 with a pidfd, pidfd_send_signal) and the async-signal-safe steps a
//! freshly cloned child takes before `execve`. Nothing here decides anything.

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::rc::Rc;

use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

/// What `clone3` returned in the calling process.
#[derive(Debug)]
enum Cloned {
    /// We are the child.
    Child,
    /// We are the parent of `pid`, reachable through `pidfd`.
    Parent { pid: u32, pidfd: OwnedFd },
}

/// clone3 flag: start the child in the cgroup v2 directory `clone_args.cgroup` refers to.
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// `clone3(CLONE_PIDFD | extra_flags)`, into `cgroup` if given, with SIGCHLD as exit signal
/// (or, with CLONE_PARENT, the caller's): a fork that also returns a pidfd for the child.
///
/// # Safety
/// The caller is multi-threaded: in the child, only async-signal-safe functions may run
/// until `execve` or `_exit` (no allocation, no locks, no unwinding).
unsafe fn clone3_with_pidfd(
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

/// What the child executes: a path, or an open file (execveat with AT_EMPTY_PATH), which
/// keeps working whatever happens to the path.
#[derive(Debug, Clone, Copy)]
pub(crate) enum ExecTarget<'a> {
    /// A path.
    Path(&'a CStr),
    /// An open executable.
    File(BorrowedFd<'a>),
}

/// The first fd of those handed to an isolated child's init after its report pipe (3).
pub(crate) const FIRST_HANDED_FD: libc::c_int = 4;
/// How many fds can be handed from there: the go pipe and three of the init's own.
pub(crate) const HANDED_FDS: usize = 4;
/// The first fd above the handed ones.
const HANDED_FDS_END: libc::c_int = FIRST_HANDED_FD + 4;

/// A file handed to a child at a fixed fd.
#[derive(Debug, Clone, Copy)]
pub(crate) enum HandedFd<'a> {
    /// One of the parent's.
    Fd(BorrowedFd<'a>),
    /// A directory the child opens (O_PATH) before it changes its identity (see
    /// [`crate::Handed::Dir`]).
    Dir(&'a CStr),
}

/// Everything the child needs, prepared before cloning so that the child never allocates:
/// the C strings are borrowed from the caller, the pointer arrays are built here.
#[derive(Debug)]
pub(crate) struct ChildPlan<'a> {
    pub target: ExecTarget<'a>,
    pub workdir: &'a CStr,
    /// The argument and environment strings (for a plan sent to the spawner).
    pub argv_strings: &'a [CString],
    pub env_strings: &'a [CString],
    argv: Vec<*const libc::c_char>,
    envp: Vec<*const libc::c_char>,
    pub stdio: [BorrowedFd<'a>; 3],
    pub error_pipe: BorrowedFd<'a>,
    /// Hand `error_pipe` to the program as fd 3 (an init that reports its own set-up).
    pub report_fd: bool,
    /// CLONE_NEW* flags for clone3.
    pub namespaces: u64,
    /// A pipe to wait on before anything else (read end, and the write end to close first):
    /// the parent writes one byte once it has set the child up from outside (id maps).
    pub sync: Option<(BorrowedFd<'a>, BorrowedFd<'a>)>,
    /// After the sync, become uid/gid 0 of the new user namespace (and, if `drop_groups`,
    /// shed supplementary groups), so that exec gives the program that namespace's
    /// capabilities.
    pub become_root: bool,
    /// Clear supplementary groups (impossible, and needless, for an unprivileged daemon).
    pub drop_groups: bool,
    /// Files handed to the program (with `report_fd`) as fds 4, 5, 6...: first the go pipe
    /// its init waits on until the parent has placed it in its cgroups, then the init's own
    /// (see [`crate::SpawnSpec::init_fds`]). A slot left empty is a closed fd.
    pub handed: [Option<HandedFd<'a>>; HANDED_FDS],
    /// A cgroup v2 directory to clone the child into (CLONE_INTO_CGROUP).
    pub cgroup: Option<BorrowedFd<'a>>,
    /// What to write to the child's `/proc/self/oom_score_adj` before it changes identity.
    pub oom_score_adj: Option<&'a CStr>,
    /// The process the child must be a child of (else its parent died before it ran).
    pub parent_pid: libc::pid_t,
}

impl<'a> ChildPlan<'a> {
    /// A plan to exec `target` with `argv` and `env` in `workdir`, with `stdio` as fds 0-2,
    /// reporting a failed step on `error_pipe`; the other options start off.
    pub(crate) fn new(
        target: ExecTarget<'a>,
        argv: &'a [CString],
        env: &'a [CString],
        workdir: &'a CStr,
        stdio: [BorrowedFd<'a>; 3],
        error_pipe: BorrowedFd<'a>,
    ) -> Self {
        let pointers = |strings: &'a [CString]| {
            strings.iter().map(|s| s.as_ptr()).chain(std::iter::once(std::ptr::null())).collect()
        };
        Self {
            target,
            workdir,
            argv_strings: argv,
            env_strings: env,
            argv: pointers(argv),
            envp: pointers(env),
            stdio,
            error_pipe,
            report_fd: false,
            namespaces: 0,
            sync: None,
            become_root: false,
            drop_groups: false,
            handed: [None; HANDED_FDS],
            oom_score_adj: None,
            cgroup: None,
            parent_pid: libc::pid_t::try_from(std::process::id()).expect("a pid fits pid_t"),
        }
    }
}

/// Clones a child that runs `plan` (see [`exec_child`]) and returns its pid and pidfd.
pub(crate) fn spawn_child(plan: &ChildPlan<'_>) -> io::Result<(u32, OwnedFd)> {
    // SAFETY: the child only runs `exec_child`, which is async-signal-safe and uses the plan,
    // whose pointers stay valid in the child's copy of our memory.
    match unsafe { clone3_with_pidfd(plan.namespaces, plan.cgroup) }? {
        // SAFETY: we are the freshly cloned child.
        Cloned::Child => unsafe { exec_child(plan) },
        Cloned::Parent { pid, pidfd } => Ok((pid, pidfd)),
    }
}

/// Runs in the cloned child: wires fds 0-2, marks every other fd close-on-exec, resets signal
/// state, dies with the spawning thread, and execs. On failure it writes the step and errno
/// to `error_pipe` and exits 127. Never returns.
///
/// # Safety
/// Must only be called in the child of [`clone3_with_pidfd`].
unsafe fn exec_child(plan: &ChildPlan<'_>) -> ! {
    // SAFETY: each call below is async-signal-safe and gets valid arguments from `plan`.
    unsafe {
        let error_pipe = plan.error_pipe.as_raw_fd();
        if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == -1 {
            fail(error_pipe, ChildStep::DeathSignal);
        }
        // In a new PID namespace getppid() is 0; the sync pipe then tells of a dead parent.
        if plan.namespaces & libc::CLONE_NEWPID as u64 == 0 && libc::getppid() != plan.parent_pid {
            libc::_exit(127);
        }
        if let Some((read_end, write_end)) = plan.sync {
            libc::close(write_end.as_raw_fd());
            let mut byte = 0u8;
            if libc::read(read_end.as_raw_fd(), std::ptr::addr_of_mut!(byte).cast(), 1) != 1 {
                libc::_exit(127);
            }
        }
        // Directories to hand over are opened in the child's own mount namespace, with the
        // parent's credentials still.
        let mut opened = [-1; HANDED_FDS];
        for (fd, handed) in opened.iter_mut().zip(&plan.handed) {
            *fd = match handed {
                Some(HandedFd::Dir(path)) => {
                    let flags = libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC;
                    let dir = libc::open(path.as_ptr(), flags);
                    if dir == -1 {
                        fail(error_pipe, ChildStep::HandedDir);
                    }
                    dir
                }
                Some(HandedFd::Fd(fd)) => fd.as_raw_fd(),
                None => -1,
            };
        }
        // Raised (which needs no privilege) from the daemon's own, which is below every task's.
        if let Some(score) = plan.oom_score_adj {
            let file = libc::open(c"/proc/self/oom_score_adj".as_ptr(), libc::O_WRONLY);
            let bytes = score.to_bytes();
            if file == -1 || libc::write(file, bytes.as_ptr().cast(), bytes.len()) == -1 {
                fail(error_pipe, ChildStep::OomScore);
            }
            libc::close(file);
        }
        // Raw syscalls: glibc's set*id wrappers would signal the parent's threads.
        if plan.drop_groups
            && libc::syscall(libc::SYS_setgroups, 0, std::ptr::null::<libc::gid_t>()) == -1
        {
            fail(error_pipe, ChildStep::Identity);
        }
        if plan.become_root
            && (libc::syscall(libc::SYS_setresgid, 0, 0, 0) == -1
                || libc::syscall(libc::SYS_setresuid, 0, 0, 0) == -1)
        {
            fail(error_pipe, ChildStep::Identity);
        }
        // A change of credentials clears the parent-death signal: arm it again.
        if plan.become_root && libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == -1 {
            fail(error_pipe, ChildStep::DeathSignal);
        }
        if libc::setsid() == -1 {
            fail(error_pipe, ChildStep::Session);
        }
        for (to, from) in (0..).zip(&plan.stdio) {
            if libc::dup2(from.as_raw_fd(), to) == -1 {
                fail(error_pipe, ChildStep::Stdio);
            }
        }
        let mut error_pipe = error_pipe;
        let mut first_closed = 3u32;
        if plan.report_fd {
            // Copies above the handed range first: any of them may sit in it already.
            let above = HANDED_FDS_END;
            let report = libc::fcntl(error_pipe, libc::F_DUPFD, above);
            let mut copies = [-1; HANDED_FDS];
            for (copy, fd) in copies.iter_mut().zip(opened) {
                if fd != -1 {
                    *copy = libc::fcntl(fd, libc::F_DUPFD, above);
                    if *copy == -1 {
                        fail(error_pipe, ChildStep::Stdio);
                    }
                }
            }
            if report == -1 || libc::dup2(report, 3) == -1 {
                fail(error_pipe, ChildStep::Stdio);
            }
            error_pipe = 3;
            first_closed = 4;
            let last = plan.handed.iter().rposition(Option::is_some);
            for (target, copy) in (FIRST_HANDED_FD..).zip(copies).take(last.map_or(0, |i| i + 1)) {
                // Nothing needed is left in the range (all are copies above it): an empty
                // slot is closed, so that no stray fd sits there.
                if copy == -1 {
                    libc::close(target);
                } else if libc::dup2(copy, target) == -1 {
                    fail(error_pipe, ChildStep::Stdio);
                }
                first_closed = target.cast_unsigned() + 1;
            }
        }
        let close_from_exec = libc::CLOSE_RANGE_CLOEXEC;
        if libc::syscall(libc::SYS_close_range, first_closed, u32::MAX, close_from_exec) == -1 {
            fail(error_pipe, ChildStep::CloseFds);
        }
        let mut all: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut all);
        libc::sigprocmask(libc::SIG_SETMASK, &all, std::ptr::null_mut());
        for signal in [libc::SIGPIPE, libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT] {
            libc::signal(signal, libc::SIG_DFL);
        }
        if libc::chdir(plan.workdir.as_ptr()) == -1 {
            fail(error_pipe, ChildStep::Workdir);
        }
        match plan.target {
            ExecTarget::Path(path) => {
                libc::execve(path.as_ptr(), plan.argv.as_ptr(), plan.envp.as_ptr());
            }
            ExecTarget::File(file) => {
                libc::syscall(
                    libc::SYS_execveat,
                    file.as_raw_fd(),
                    c"".as_ptr(),
                    plan.argv.as_ptr(),
                    plan.envp.as_ptr(),
                    libc::AT_EMPTY_PATH,
                );
            }
        }
        fail(error_pipe, ChildStep::Exec)
    }
}

/// The step of the child's set-up that failed, as reported through the error pipe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum ChildStep {
    DeathSignal = 1,
    Session = 2,
    Stdio = 3,
    CloseFds = 4,
    Workdir = 5,
    Exec = 6,
    Identity = 7,
    HandedDir = 8,
    OomScore = 9,
}

impl ChildStep {
    pub(crate) fn from_byte(byte: u8) -> Option<Self> {
        [
            Self::DeathSignal,
            Self::Session,
            Self::Stdio,
            Self::CloseFds,
            Self::Workdir,
            Self::Exec,
            Self::Identity,
            Self::HandedDir,
            Self::OomScore,
        ]
        .into_iter()
        .find(|step| *step as u8 == byte)
    }
}

/// Reports `step` and the current errno on `error_pipe` (a [`crate::report`] record) and
/// exits.
///
/// # Safety
/// Child-only, like [`exec_child`].
unsafe fn fail(error_pipe: RawFd, step: ChildStep) -> ! {
    // SAFETY: errno location is thread-local and valid; write and _exit are async-signal-safe
    // and the buffer outlives the call.
    unsafe {
        let message = crate::report::encode(step as u8, *libc::__errno_location());
        libc::write(error_pipe, message.as_ptr().cast(), message.len());
        libc::_exit(127)
    }
}
