//! What init is asked to do, passed as its argv:
//! `rrocker-init HOSTNAME IMAGE TASK_DIR WORKDIR PROGRAM -- ARGV...`.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;

/// init's argv[0].
pub const ARGV0: &str = "rrocker-init";

/// What init needs to know to set up a task and run its command.
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
    pub fn from_argv(args: impl IntoIterator<Item = OsString>) -> Option<Self> {
        let mut args = args.into_iter().skip(1).map(OsString::into_vec);
        let mut next = || args.next();
        let (hostname, image, task_dir, workdir, program) =
            (next()?, next()?, next()?, next()?, next()?);
        if next()? != b"--" {
            return None;
        }
        let argv: Vec<Vec<u8>> = args.collect();
        if argv.is_empty() {
            return None;
        }
        Some(Self { hostname, image, task_dir, workdir, program, argv })
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
        let parsed = InitPlan::from_argv(argv.into_iter().map(OsString::from_vec));
        assert_eq!(parsed, Some(plan()));
    }

    #[test]
    fn malformed_argv_is_refused() {
        let argv = |items: &[&str]| items.iter().map(OsString::from).collect::<Vec<_>>();
        assert!(InitPlan::from_argv(argv(&["rrocker-init"])).is_none());
        let no_separator = ["rrocker-init", "h", "/i", "/t", "/", "/bin/sh", "x"];
        assert!(InitPlan::from_argv(argv(&no_separator)).is_none());
        let no_command = ["rrocker-init", "h", "/i", "/t", "/", "/bin/sh", "--"];
        assert!(InitPlan::from_argv(argv(&no_command)).is_none());
    }
}
