//! A child's life between `clone3` and `execve`: the clone itself ([`spawn_child`]), and
//! the steps the child takes, async-signal-safe only (no allocation, no locks), each
//! reported by number on the error pipe if it fails ([`ChildStep`]). Part of the thin
//! syscall layer: it carries out a plan, it decides nothing.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use super::plan::{ChildPlan, ExecTarget, FIRST_HANDED_FD, HANDED_FDS, HANDED_FDS_END, HandedFd};
use super::spec::Namespaces;
use crate::sys::{Cloned, clone3_with_pidfd};

/// The namespaces a child joins a running task in: all of a task's (its PID namespace is
/// that of the child's own children).
const JOINED: libc::c_int = libc::CLONE_NEWUSER
    | libc::CLONE_NEWNS
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWNET
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWCGROUP;

/// Clones a child that runs `plan` (see [`exec_child`]) and returns its pid and pidfd.
pub(crate) fn spawn_child(plan: &ChildPlan<'_>) -> io::Result<(u32, OwnedFd)> {
    // SAFETY: the child only runs `exec_child`, which is async-signal-safe and uses the plan,
    // whose pointers stay valid in the child's copy of our memory.
    match unsafe { clone3_with_pidfd(plan.clone_flags(), plan.cgroup) }? {
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
        if !plan.namespaces.contains(Namespaces::PID) && libc::getppid() != plan.parent_pid {
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
        // After the steps that need the daemon's /proc and mounts, before those that take
        // the task's ids (in its user namespace).
        if let Some(pidfd) = plan.join
            && libc::setns(pidfd.as_raw_fd(), JOINED) == -1
        {
            fail(error_pipe, ChildStep::Join);
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
pub enum ChildStep {
    /// Setting its parent-death signal.
    DeathSignal = 1,
    /// Starting a session of its own.
    Session = 2,
    /// Setting up its stdin, stdout and stderr.
    Stdio = 3,
    /// Closing every other fd.
    CloseFds = 4,
    /// Entering the working directory.
    Workdir = 5,
    /// Executing the program.
    Exec = 6,
    /// Taking its identity (uid, gid, no groups).
    Identity = 7,
    /// Opening a directory handed to its init.
    HandedDir = 8,
    /// Setting its OOM score.
    OomScore = 9,
    /// Joining a running task's namespaces.
    Join = 10,
}

impl ChildStep {
    /// What the step does, for a message (`cannot ...`).
    pub fn describe(self) -> &'static str {
        match self {
            Self::DeathSignal => "set the parent-death signal",
            Self::Session => "start a session",
            Self::Stdio => "set up stdio",
            Self::CloseFds => "close inherited fds",
            Self::Workdir => "enter the working directory",
            Self::Exec => "execute the program",
            Self::Identity => "take the task's identity",
            Self::HandedDir => "open a directory for init",
            Self::OomScore => "set the OOM score",
            Self::Join => "join the task's namespaces",
        }
    }

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
            Self::Join,
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
