//! What init is asked to do, passed as its argv:
//! `rrocker-init HOSTNAME WORKDIR TERMINAL PROGRAM -- ARGV...` (TERMINAL: `-` for none, else
//! the first window size, see [`WindowSize::to_arg`]); and the directories it assembles the
//! task's root from, handed over as fds ([`TASK_DIR_FD`], [`IMAGE_FD`]) so that init never
//! walks a host path to them: the state directory and its parents may be closed to every
//! host user (mode 0700), the task's own ids included.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;

use crate::terminal::WindowSize;

/// The task's directory (`upper/`, `work/`, `root/`), opened by the daemon.
pub const TASK_DIR_FD: i32 = 6;
/// The image directory, the overlay's lower layer, opened by the daemon.
pub const IMAGE_FD: i32 = 7;

/// A handed directory as a path init can mount from: its magic link in /proc, which the
/// kernel follows without checking the directories above it.
pub fn handed_path(fd: i32) -> String {
    format!("/proc/self/fd/{fd}")
}

/// The TERMINAL argument of a task without one.
const NO_TERMINAL: &[u8] = b"-";

/// init's argv[0].
pub const ARGV0: &str = "rrocker-init";
/// init's argv[0] for a further command of a running task, whose namespaces it was started
/// in (see [`InitPlan::joined`]).
pub const EXEC_ARGV0: &str = "rrocker-exec";

/// What init needs to know to set up a task and run its command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitPlan {
    /// Whether init runs a further command in a running task, in whose namespaces, root and
    /// cgroups it was started: it sets nothing up then, and only takes the task's
    /// restrictions (capabilities, no new privileges, seccomp) before starting the command.
    pub joined: bool,
    /// The task's hostname (unused when `joined`).
    pub hostname: Vec<u8>,
    /// The command's working directory inside the task.
    pub workdir: Vec<u8>,
    /// The command's pseudo-terminal and its first size, if it has one (else its stdio are
    /// init's own).
    pub terminal: Option<WindowSize>,
    /// The command's executable, as the task sees it.
    pub program: Vec<u8>,
    /// The command's argv.
    pub argv: Vec<Vec<u8>>,
}

impl InitPlan {
    /// The argv the engine starts init with.
    pub fn to_argv(&self) -> Vec<Vec<u8>> {
        let terminal = self.terminal.map_or_else(|| NO_TERMINAL.to_vec(), WindowSize::to_arg);
        let argv0 = if self.joined { EXEC_ARGV0 } else { ARGV0 };
        let head =
            [argv0.as_bytes(), &self.hostname, &self.workdir, &terminal, &self.program, b"--"];
        head.iter().map(|item| item.to_vec()).chain(self.argv.iter().cloned()).collect()
    }

    /// Parses init's argv; `None` if malformed.
    pub fn from_argv(args: impl IntoIterator<Item = OsString>) -> Option<Self> {
        let mut args = args.into_iter().map(OsString::into_vec);
        let joined = args.next()? == EXEC_ARGV0.as_bytes();
        let mut next = || args.next();
        let (hostname, workdir, terminal, program) = (next()?, next()?, next()?, next()?);
        let terminal = match terminal.as_slice() {
            NO_TERMINAL => None,
            size => Some(WindowSize::from_arg(size)?),
        };
        if next()? != b"--" {
            return None;
        }
        let argv: Vec<Vec<u8>> = args.collect();
        if argv.is_empty() {
            return None;
        }
        Some(Self { joined, hostname, workdir, terminal, program, argv })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> InitPlan {
        InitPlan {
            joined: false,
            hostname: b"abc".to_vec(),
            workdir: b"/".to_vec(),
            terminal: None,
            program: b"/bin/sh".to_vec(),
            argv: vec![b"sh".to_vec(), b"-c".to_vec(), b"--".to_vec()],
        }
    }

    #[test]
    fn argv_round_trips() {
        let argv = plan().to_argv();
        let parsed = InitPlan::from_argv(argv.into_iter().map(OsString::from_vec));
        assert_eq!(parsed, Some(plan()));
        let exec = InitPlan { joined: true, ..plan() };
        let argv = exec.to_argv().into_iter().map(OsString::from_vec);
        assert_eq!(InitPlan::from_argv(argv), Some(exec));
        let with_terminal =
            InitPlan { terminal: Some(WindowSize { rows: 30, cols: 100 }), ..plan() };
        let argv = with_terminal.to_argv().into_iter().map(OsString::from_vec);
        assert_eq!(InitPlan::from_argv(argv), Some(with_terminal));
    }

    #[test]
    fn malformed_argv_is_refused() {
        let argv = |items: &[&str]| items.iter().map(OsString::from).collect::<Vec<_>>();
        assert!(InitPlan::from_argv(argv(&["rrocker-init"])).is_none());
        let no_separator = ["rrocker-init", "h", "/", "-", "/bin/sh", "x"];
        assert!(InitPlan::from_argv(argv(&no_separator)).is_none());
        let bad_terminal = ["rrocker-init", "h", "/", "24", "/bin/sh", "--", "sh"];
        assert!(InitPlan::from_argv(argv(&bad_terminal)).is_none());
        let no_command = ["rrocker-init", "h", "/", "-", "/bin/sh", "--"];
        assert!(InitPlan::from_argv(argv(&no_command)).is_none());
    }
}
