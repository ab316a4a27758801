//! `rrocker init`: PID 1 of every task. The daemon's own binary, started as `rrocker-init`
//! by the engine inside the task's fresh namespaces, as root of the task's user namespace.
//! It finishes the set-up that only a process inside can do ([`setup`]), reports failure on
//! fd 3 (see `rrocker_uring::report`), then runs the command as its child and says READY:
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

pub use setup::InitStep;

/// The name the engine gives the init process (its argv[0]).
pub const ARGV0: &str = "rrocker-init";

/// What init needs to know, from its argv: `rrocker-init HOSTNAME PROGRAM -- ARGV...`.
#[derive(Debug)]
struct InitArgs {
    hostname: OsString,
    program: CString,
    argv: Vec<CString>,
}

/// The argv the daemon gives init to run `program` with `argv` on `hostname`.
pub fn init_argv(hostname: &str, program: &[u8], argv: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let mut all = vec![ARGV0.as_bytes().to_vec(), hostname.as_bytes().to_vec(), program.to_vec()];
    all.push(b"--".to_vec());
    all.extend(argv.iter().cloned());
    all
}

fn parse(args: Vec<OsString>) -> Option<InitArgs> {
    let mut args = args.into_iter().skip(1);
    let hostname = args.next()?;
    let program = CString::new(args.next()?.into_vec()).ok()?;
    if args.next()? != "--" {
        return None;
    }
    let argv = args.map(|arg| CString::new(arg.into_vec()).ok()).collect::<Option<Vec<_>>>()?;
    Some(InitArgs { hostname, program, argv })
}

/// Runs init; never returns.
pub fn main() -> ! {
    let report = sys::report_fd();
    let Some(args) = parse(std::env::args_os().collect()) else {
        sys::fail(&report, InitStep::Arguments, libc::EINVAL);
    };
    if let Err((step, errno)) = setup::run(&args.hostname) {
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
    let command = start_command(&args, &report);
    sys::send(&report, report::READY, 0);
    supervise(command, &waited, &report)
}

/// Forks and execs the command; returns once its exec succeeded. An exec failure is reported
/// (and init exits).
fn start_command(args: &InitArgs, report: &OwnedFd) -> Pid {
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
            let errno = execve(&args.program, &args.argv, &env).err().map_or(0, |e| e as i32);
            let _ = nix::unistd::write(&exec_write, &errno.to_le_bytes());
            std::process::exit(127)
        }
        Ok(ForkResult::Parent { child }) => {
            drop(exec_write);
            let mut errno = [0u8; 4];
            // The exec closes the child's end: end of file means the command runs.
            if let Ok(4) = nix::unistd::read(&exec_read, &mut errno) {
                let _ = waitpid(child, None);
                sys::fail(report, InitStep::Exec, i32::from_le_bytes(errno));
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

    #[test]
    fn argv_round_trips() {
        let argv = init_argv("abc", b"/bin/sh", &[b"sh".to_vec(), b"-c".to_vec(), b"--".to_vec()]);
        let parsed = parse(argv.into_iter().map(OsString::from_vec).collect()).expect("parses");
        assert_eq!(parsed.hostname, "abc");
        assert_eq!(parsed.program.as_bytes(), b"/bin/sh");
        let argv: Vec<&[u8]> = parsed.argv.iter().map(|a| a.as_bytes()).collect();
        assert_eq!(argv, [&b"sh"[..], b"-c", b"--"]);
    }

    #[test]
    fn malformed_argv_is_refused() {
        let argv = |items: &[&str]| items.iter().map(OsString::from).collect();
        assert!(parse(argv(&["rrocker-init"])).is_none());
        assert!(parse(argv(&["rrocker-init", "h", "/bin/sh", "x"])).is_none());
    }
}
