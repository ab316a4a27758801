//! The steps init takes, as it reports them when one fails: each has its own number on the
//! report pipe, from [`FIRST_INIT_STEP`](crate::report::FIRST_INIT_STEP) up.

/// Init's set-up steps, as reported to the daemon on failure (engine steps are below 16).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum InitStep {
    /// Init's own arguments were malformed.
    Arguments = crate::report::FIRST_INIT_STEP,
    /// Making every mount private.
    PrivateMounts,
    /// Mounting the overlay root.
    Overlay,
    /// Mounting a fresh /proc.
    Proc,
    /// Populating /dev.
    Dev,
    /// Mounting /tmp.
    Tmp,
    /// Switching to the new root.
    PivotRoot,
    /// Masking /proc paths and making others read-only.
    MaskPaths,
    /// Setting the hostname.
    Hostname,
    /// Bringing loopback up.
    Loopback,
    /// Setting no_new_privs.
    NoNewPrivs,
    /// Dropping capabilities from the bounding set.
    Capabilities,
    /// Making init non-dumpable.
    NonDumpable,
    /// Blocking the forwarded signals.
    Signals,
    /// Waiting for the daemon to place the task in its cgroups.
    Placement,
    /// Rooting a cgroup namespace at the task's own cgroups.
    CgroupNamespace,
    /// Installing the seccomp filters.
    Seccomp,
    /// Forking the command.
    Fork,
    /// Entering the working directory.
    Workdir,
    /// Executing the command.
    Exec,
    /// Opening the command's pseudo-terminal.
    Terminal,
}

impl InitStep {
    const ALL: [Self; 21] = [
        Self::Arguments,
        Self::PrivateMounts,
        Self::Overlay,
        Self::Proc,
        Self::Dev,
        Self::Tmp,
        Self::PivotRoot,
        Self::MaskPaths,
        Self::Hostname,
        Self::Loopback,
        Self::NoNewPrivs,
        Self::Capabilities,
        Self::NonDumpable,
        Self::Signals,
        Self::Placement,
        Self::CgroupNamespace,
        Self::Seccomp,
        Self::Fork,
        Self::Workdir,
        Self::Exec,
        Self::Terminal,
    ];

    /// The step for a report byte, if it is one of init's.
    pub fn from_byte(byte: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|step| *step as u8 == byte)
    }

    /// What the step does, for error messages.
    pub fn describe(self) -> &'static str {
        match self {
            Self::Arguments => "parse init's arguments",
            Self::PrivateMounts => "make the task's mounts private",
            Self::Overlay => "mount the task's root filesystem",
            Self::Proc => "mount /proc",
            Self::Dev => "populate /dev",
            Self::Tmp => "mount /tmp",
            Self::PivotRoot => "switch to the task's root filesystem",
            Self::MaskPaths => "mask /proc paths",
            Self::Hostname => "set the hostname",
            Self::Loopback => "bring up loopback",
            Self::NoNewPrivs => "set no_new_privs",
            Self::Capabilities => "drop capabilities",
            Self::NonDumpable => "make init non-dumpable",
            Self::Signals => "block the forwarded signals",
            Self::Placement => "wait for the task's cgroups",
            Self::CgroupNamespace => "root a cgroup namespace at the task's cgroups",
            Self::Seccomp => "install the seccomp filter",
            Self::Fork => "fork the command",
            Self::Workdir => "enter the working directory",
            Self::Exec => "execute the command",
            Self::Terminal => "open the task's terminal",
        }
    }
}
