//! The set-up steps init takes inside the task's namespaces, one per line, each with its own
//! step number for the report: mounts made private, a fresh /proc for the new PID namespace,
//! the task's hostname, loopback up, and no new privileges from here on.

use std::ffi::OsStr;

use nix::errno::Errno;
use nix::mount::{MsFlags, mount};

use super::sys;

/// Init's set-up steps, as reported to the daemon on failure (engine steps are below 16).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum InitStep {
    /// Init's own arguments were malformed.
    Arguments = rrocker_uring::report::FIRST_INIT_STEP,
    /// Making every mount private.
    PrivateMounts = 17,
    /// Mounting a fresh /proc.
    Proc = 18,
    /// Setting the hostname.
    Hostname = 19,
    /// Bringing loopback up.
    Loopback = 20,
    /// Setting no_new_privs.
    NoNewPrivs = 21,
    /// Blocking the forwarded signals.
    Signals = 22,
    /// Forking the command.
    Fork = 23,
    /// Executing the command.
    Exec = 24,
}

impl InitStep {
    /// The step for a report byte, if it is one of init's.
    pub fn from_byte(byte: u8) -> Option<Self> {
        use InitStep::*;
        [Arguments, PrivateMounts, Proc, Hostname, Loopback, NoNewPrivs, Signals, Fork, Exec]
            .into_iter()
            .find(|step| *step as u8 == byte)
    }

    /// What the step does, for error messages.
    pub fn describe(self) -> &'static str {
        match self {
            Self::Arguments => "parse init's arguments",
            Self::PrivateMounts => "make the task's mounts private",
            Self::Proc => "mount /proc",
            Self::Hostname => "set the hostname",
            Self::Loopback => "bring up loopback",
            Self::NoNewPrivs => "set no_new_privs",
            Self::Signals => "block the forwarded signals",
            Self::Fork => "fork the command",
            Self::Exec => "execute the command",
        }
    }
}

/// Runs every step in order; the first failure names its step.
pub fn run(hostname: &OsStr) -> Result<(), (InitStep, Errno)> {
    let step = |step: InitStep| move |errno: Errno| (step, errno);
    let private = MsFlags::MS_REC | MsFlags::MS_PRIVATE;
    mount(None::<&str>, "/", None::<&str>, private, None::<&str>)
        .map_err(step(InitStep::PrivateMounts))?;
    let proc_flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    mount(Some("proc"), "/proc", Some("proc"), proc_flags, None::<&str>)
        .map_err(step(InitStep::Proc))?;
    nix::unistd::sethostname(hostname).map_err(step(InitStep::Hostname))?;
    sys::loopback_up().map_err(step(InitStep::Loopback))?;
    sys::no_new_privs().map_err(step(InitStep::NoNewPrivs))?;
    Ok(())
}
