//! What init is asked to do, passed as its argv:
//! `rrocker-init HOSTNAME WORKDIR PROGRAM -- ARGV...`; and the directories it assembles the
//! task's root from, handed over as fds ([`TASK_DIR_FD`], [`IMAGE_FD`]) so that init never
//! walks a host path to them: the state directory and its parents may be closed to every
//! host user (mode 0700), the task's own ids included.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;

/// The task's directory (`upper/`, `work/`, `root/`), opened by the daemon.
pub const TASK_DIR_FD: i32 = 6;
/// The image directory, the overlay's lower layer, opened by the daemon.
pub const IMAGE_FD: i32 = 7;

/// A handed directory as a path init can mount from: its magic link in /proc, which the
/// kernel follows without checking the directories above it.
pub fn handed_path(fd: i32) -> String {
    format!("/proc/self/fd/{fd}")
}

/// init's argv[0].
pub const ARGV0: &str = "rrocker-init";

/// What init needs to know to set up a task and run its command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitPlan {
    /// The task's hostname.
    pub hostname: Vec<u8>,
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
        let head = [ARGV0.as_bytes(), &self.hostname, &self.workdir, &self.program, b"--"];
        head.iter().map(|item| item.to_vec()).chain(self.argv.iter().cloned()).collect()
    }

    /// Parses init's argv; `None` if malformed.
    pub fn from_argv(args: impl IntoIterator<Item = OsString>) -> Option<Self> {
        let mut args = args.into_iter().skip(1).map(OsString::into_vec);
        let mut next = || args.next();
        let (hostname, workdir, program) = (next()?, next()?, next()?);
        if next()? != b"--" {
            return None;
        }
        let argv: Vec<Vec<u8>> = args.collect();
        if argv.is_empty() {
            return None;
        }
        Some(Self { hostname, workdir, program, argv })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> InitPlan {
        InitPlan {
            hostname: b"abc".to_vec(),
            workdir: b"/".to_vec(),
            program: b"/bin/sh".to_vec(),
            argv: vec![b"sh".to_vec(), b"-c".to_vec(), b"--".to_vec()],
        }
    }

    #[test]
    fn argv_round_trips() {
        let argv = plan().to_argv();
        let parsed = InitPlan::from_argv(argv.into_iter().map(OsString::from_vec));
        assert_eq!(parsed, Some(plan()));
    }

    #[test]
    fn malformed_argv_is_refused() {
        let argv = |items: &[&str]| items.iter().map(OsString::from).collect::<Vec<_>>();
        assert!(InitPlan::from_argv(argv(&["rrocker-init"])).is_none());
        let no_separator = ["rrocker-init", "h", "/", "/bin/sh", "x"];
        assert!(InitPlan::from_argv(argv(&no_separator)).is_none());
        let no_command = ["rrocker-init", "h", "/", "/bin/sh", "--"];
        assert!(InitPlan::from_argv(argv(&no_command)).is_none());
    }
}
