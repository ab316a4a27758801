//! `rrocker init`: PID 1 of every task. The daemon's own binary, started as `rrocker-init`
//! by the engine inside the task's fresh namespaces, as root of the task's user namespace.
//! It finishes the set-up that only a process inside can do ([`setup`]), reports failure on
//! fd 3 (see `rrocker_uring::report`), waits until the daemon has placed it in the task's
//! cgroups (fd 4, when given), then runs the command as its child and says READY:
//! it forwards SIGTERM, SIGINT and the other catchable job signals to it, reaps every orphan,
//! reports how the command ended and exits with its status (128 + signal when the command
//! was killed).
//!
//! It runs single-threaded before anything else in `main`, so forking is safe here.

mod setup;
mod sys;

use std::ffi::{CString, OsString};
use std::os::unix::ffi::OsStringExt;

use nix::sys::signal::{SigSet, Signal, kill};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use std::os::fd::OwnedFd;

use nix::unistd::{ForkResult, Pid, execve, fork};
use rrocker_uring::report;

pub use setup::{InitStep, kept_capability_mask};

/// The name the engine gives the init process (its argv[0]).
pub const ARGV0: &str = "rrocker-init";

/// What init needs to know, passed as its argv:
/// `rrocker-init HOSTNAME IMAGE TASK_DIR WORKDIR PROGRAM -- ARGV...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitPlan {
    /// The task's hostname.
    pub hostname: Vec<u8>,
    /// The image directory, the overlay's lower layer.
    pub image: Vec<u8>,
    /// The task's directory (upper/, work/, root/).
    pub task_dir: Vec<u8>,
    /// The command's working directory inside the task.
    pub workdir: Vec<u8>,
    /// The command's executable, as the task sees it.
    pub program: Vec<u8>,
    /// The command's argv.
    pub argv: Vec<Vec<u8>>,
}

impl InitPlan {
    /// The argv the engine starts init with.
    pub fn to_argv(&self) -> Vec<Vec<u8>> {
        let head = [
            ARGV0.as_bytes(),
            &self.hostname,
            &self.image,
            &self.task_dir,
            &self.workdir,
            &self.program,
            b"--",
        ];
        head.iter().map(|item| item.to_vec()).chain(self.argv.iter().cloned()).collect()
    }

    /// Parses init's argv; `None` if malformed.
    pub fn from_argv(args: Vec<OsString>) -> Option<Self> {
        let mut args = args.into_iter().skip(1).map(OsString::into_vec);
        let mut next = || args.next();
        let (hostname, image, task_dir, workdir, program) =
            (next()?, next()?, next()?, next()?, next()?);
        if next()? != b"--" {
            return None;
        }
        let argv: Vec<Vec<u8>> = args.collect();
        Some(Self { hostname, image, task_dir, workdir, program, argv })
    }
}

/// The plan with C strings for exec.
struct Command {
    program: CString,
    argv: Vec<CString>,
    workdir: CString,
}

impl Command {
    fn of(plan: &InitPlan) -> Option<Self> {
        Some(Self {
            program: CString::new(plan.program.clone()).ok()?,
            argv: plan
                .argv
                .iter()
                .map(|arg| CString::new(arg.clone()).ok())
                .collect::<Option<_>>()?,
            workdir: CString::new(plan.workdir.clone()).ok()?,
        })
    }
}

/// Runs init; never returns.
pub fn main() -> ! {
    let report = sys::report_fd();
    let plan = InitPlan::from_argv(std::env::args_os().collect());
    let Some((plan, command)) = plan.and_then(|plan| Command::of(&plan).map(|c| (plan, c))) else {
        sys::fail(&report, InitStep::Arguments, libc::EINVAL);
    };
    if let Err((step, errno)) = setup::run(&plan) {
        sys::fail(&report, step, errno as i32);
    }
    let forwarded = [
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGHUP,
        Signal::SIGQUIT,
        Signal::SIGUSR1,
        Signal::SIGUSR2,
    ];
    let mut waited = SigSet::empty();
    for signal in forwarded.iter().chain(&[Signal::SIGCHLD]) {
        waited.add(*signal);
    }
    if let Err(errno) = waited.thread_block() {
        sys::fail(&report, InitStep::Signals, errno as i32);
    }
    // The command starts in the task's cgroups, seeing them as its cgroup namespace's root.
    if let Err(errno) = sys::wait_for_placement() {
        sys::fail(&report, InitStep::Placement, errno as i32);
    }
    if let Err(errno) = nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWCGROUP) {
        sys::fail(&report, InitStep::CgroupNamespace, errno as i32);
    }
    let command = start_command(&command, &report);
    sys::send(&report, report::READY, 0);
    supervise(command, &waited, &report)
}

/// Forks and execs the command; returns once its exec succeeded. An exec failure is reported
/// (and init exits).
fn start_command(command: &Command, report: &OwnedFd) -> Pid {
    let env: Vec<CString> = std::env::vars_os()
        .filter_map(|(key, value)| {
            let mut entry = key.into_vec();
            entry.push(b'=');
            entry.extend(value.into_vec());
            CString::new(entry).ok()
        })
        .collect();
    let (exec_read, exec_write) = match nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC) {
        Ok(pipe) => pipe,
        Err(errno) => sys::fail(report, InitStep::Fork, errno as i32),
    };
    // SAFETY: init is single-threaded (nothing in this process started a thread).
    match unsafe { fork() } {
        Ok(ForkResult::Child) => {
            drop(exec_read);
            if let Err(errno) = sys::only_stdio_on_exec() {
                let _ = nix::unistd::write(&exec_write, &(errno as i32).to_le_bytes());
                std::process::exit(127)
            }
            let _ = SigSet::all().thread_unblock();
            if let Err(errno) = nix::unistd::chdir(command.workdir.as_c_str()) {
                let _ = nix::unistd::write(&exec_write, &(-(errno as i32)).to_le_bytes());
                std::process::exit(127)
            }
            let errno = execve(&command.program, &command.argv, &env).err().map_or(0, |e| e as i32);
            let _ = nix::unistd::write(&exec_write, &errno.to_le_bytes());
            std::process::exit(127)
        }
        Ok(ForkResult::Parent { child }) => {
            drop(exec_write);
            let mut errno = [0u8; 4];
            // The exec closes the child's end: end of file means the command runs.
            if let Ok(4) = nix::unistd::read(&exec_read, &mut errno) {
                let _ = waitpid(child, None);
                // A negative errno is the working directory's.
                match i32::from_le_bytes(errno) {
                    errno if errno < 0 => sys::fail(report, InitStep::Workdir, -errno),
                    errno => sys::fail(report, InitStep::Exec, errno),
                }
            }
            child
        }
        Err(errno) => sys::fail(report, InitStep::Fork, errno as i32),
    }
}

/// Forwards signals to `command` and reaps children until `command` has exited; then reports
/// how it ended and exits with its status (128 + signal if a signal killed it).
fn supervise(command: Pid, waited: &SigSet, report: &OwnedFd) -> ! {
    loop {
        match waited.wait() {
            Ok(Signal::SIGCHLD) => {
                while let Ok(status) = waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                    match status {
                        WaitStatus::Exited(pid, code) if pid == command => {
                            sys::send(report, report::EXITED, code);
                            std::process::exit(code)
                        }
                        WaitStatus::Signaled(pid, signal, _) if pid == command => {
                            sys::send(report, report::SIGNALED, signal as i32);
                            std::process::exit(128 + signal as i32)
                        }
                        WaitStatus::StillAlive => break,
                        _ => {}
                    }
                }
            }
            Ok(signal) => {
                let _ = kill(command, signal);
            }
            Err(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> InitPlan {
        InitPlan {
            hostname: b"abc".to_vec(),
            image: b"/img".to_vec(),
            task_dir: b"/run/t".to_vec(),
            workdir: b"/".to_vec(),
            program: b"/bin/sh".to_vec(),
            argv: vec![b"sh".to_vec(), b"-c".to_vec(), b"--".to_vec()],
        }
    }

    #[test]
    fn argv_round_trips() {
        let argv = plan().to_argv();
        let parsed = InitPlan::from_argv(argv.into_iter().map(OsString::from_vec).collect());
        assert_eq!(parsed, Some(plan()));
    }

    #[test]
    fn malformed_argv_is_refused() {
        let argv = |items: &[&str]| items.iter().map(OsString::from).collect();
        assert!(InitPlan::from_argv(argv(&["rrocker-init"])).is_none());
        assert!(
            InitPlan::from_argv(argv(&["rrocker-init", "h", "/i", "/t", "/", "/bin/sh", "x"]))
                .is_none()
        );
    }
}
