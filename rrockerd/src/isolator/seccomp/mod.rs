//! The seccomp filter every task's command runs under (`--seccomp-profile`): rrocker's
//! default profile (`default.json`: docker's default as it applies to a container without
//! CAP_SYS_ADMIN, CAP_SYS_PTRACE, CAP_SYS_MODULE and the like, and without io_uring), a
//! profile in docker's JSON format, or none. It is parsed and compiled to BPF once, at
//! start-up ([`profile`], [`bpf`]), and kept in a sealed memfd that every task's init gets
//! as fd 5 and installs as its last step before the command runs
//! ([`rrocker_init::filters`]). A profile that does not parse, or names a syscall no
//! architecture has, stops the daemon with one line naming it.

pub mod bpf;
pub mod profile;

use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::Arc;

use rustix::fs::MemfdFlags;

/// rrocker's default profile, in docker's format.
const DEFAULT_PROFILE: &str = include_str!("default.json");

/// What `--seccomp-profile` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SeccompMode {
    /// rrocker's default profile.
    Default,
    /// No filter.
    Unconfined,
    /// A profile file in docker's JSON format.
    File(PathBuf),
}

impl std::str::FromStr for SeccompMode {
    type Err = std::convert::Infallible;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Ok(match text {
            "default" => Self::Default,
            "unconfined" => Self::Unconfined,
            path => Self::File(PathBuf::from(path)),
        })
    }
}

impl std::fmt::Display for SeccompMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Default => f.write_str("default"),
            Self::Unconfined => f.write_str("unconfined"),
            Self::File(path) => write!(f, "{}", path.display()),
        }
    }
}

/// Why a seccomp profile cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    /// The profile file cannot be read.
    #[error("cannot read seccomp profile {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The profile is not docker's format.
    #[error("malformed profile: {0}")]
    Malformed(String),
    /// A syscall name that no architecture has.
    #[error("unknown syscall '{0}'")]
    UnknownSyscall(String),
    /// An action rrocker does not know or cannot honour (SCMP_ACT_NOTIFY needs a listener).
    #[error("unknown or unsupported action '{0}'")]
    UnknownAction(String),
    /// An argument comparison rrocker does not know.
    #[error("unknown argument comparison '{0}'")]
    UnknownOperator(String),
    /// The profile does not compile to BPF.
    #[error("cannot compile the seccomp filter: {0}")]
    Compile(String),
    /// The filter cannot be kept in a memfd.
    #[error("cannot keep the seccomp filter in a memfd: {0}")]
    Memfd(std::io::Error),
    /// Any of the above, for the profile named by `--seccomp-profile`.
    #[error("--seccomp-profile {mode}: {source}")]
    Profile {
        /// The profile asked for.
        mode: SeccompMode,
        /// What is wrong with it.
        source: Box<SeccompError>,
    },
}

/// The filters tasks get, ready to hand over.
#[derive(Debug, Clone)]
pub struct SeccompFilters {
    /// The profile they come from.
    pub mode: SeccompMode,
    /// The sealed memfd of their programs; `None` when unconfined.
    pub memfd: Option<Arc<OwnedFd>>,
}

/// Reads, resolves and compiles the profile `mode` names, for this machine.
pub fn load(mode: &SeccompMode) -> Result<SeccompFilters, SeccompError> {
    let in_profile =
        |source| SeccompError::Profile { mode: mode.clone(), source: Box::new(source) };
    let text = match mode {
        SeccompMode::Unconfined => return Ok(SeccompFilters { mode: mode.clone(), memfd: None }),
        SeccompMode::Default => DEFAULT_PROFILE.to_owned(),
        SeccompMode::File(path) => std::fs::read_to_string(path)
            .map_err(|source| in_profile(SeccompError::Read { path: path.clone(), source }))?,
    };
    let kernel = rustix::system::uname();
    let machine = profile::Machine::this(&kernel.release().to_string_lossy());
    let profile = profile::parse(&text, machine).map_err(in_profile)?;
    let programs = bpf::compile(&profile).map_err(in_profile)?;
    let bytes = rrocker_init::filters::encode(&programs);
    let memfd = super::init_binary::sealed_memfd(c"rrocker-seccomp", &bytes, MemfdFlags::empty())
        .map_err(SeccompError::Memfd)?;
    Ok(SeccompFilters { mode: mode.clone(), memfd: Some(Arc::new(memfd)) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_profile_compiles_into_a_small_stack() {
        let kernel = rustix::system::uname();
        let machine = profile::Machine::this(&kernel.release().to_string_lossy());
        let profile = profile::parse(DEFAULT_PROFILE, machine).expect("the default parses");
        let programs = bpf::compile(&profile).expect("compiles");
        assert_eq!(programs.len(), 1, "clone3's ENOSYS and the argument checks are in it too");
        let filters = load(&SeccompMode::Default).expect("loads");
        assert!(filters.memfd.is_some());
    }

    #[test]
    fn the_default_profile_refuses_what_docker_refuses() {
        let kernel = rustix::system::uname();
        let machine = profile::Machine::this(&kernel.release().to_string_lossy());
        let profile = profile::parse(DEFAULT_PROFILE, machine).expect("the default parses");
        let allowed = &profile.actions[0].1;
        assert_eq!(profile.actions[0].0, seccompiler::SeccompAction::Allow);
        for refused in [
            "io_uring_setup",
            "io_uring_enter",
            "keyctl",
            "add_key",
            "request_key",
            "unshare",
            "setns",
            "mount",
            "umount2",
            "fsopen",
            "fsconfig",
            "fsmount",
            "fspick",
            "open_tree",
            "move_mount",
            "mount_setattr",
            "pivot_root",
            "bpf",
            "perf_event_open",
            "userfaultfd",
            "kexec_load",
            "init_module",
            "finit_module",
            "reboot",
            "swapon",
            "acct",
            "quotactl",
        ] {
            let number = (machine.native)(refused).expect("a syscall here");
            assert!(!allowed.contains_key(&number), "{refused} is allowed");
        }
    }

    #[test]
    fn unconfined_has_no_filter_and_a_missing_file_names_itself() {
        assert!(load(&SeccompMode::Unconfined).expect("unconfined").memfd.is_none());
        let missing = SeccompMode::File(PathBuf::from("/nonexistent/profile.json"));
        let error = load(&missing).expect_err("missing").to_string();
        assert!(error.starts_with("--seccomp-profile /nonexistent/profile.json: cannot read"));
    }
}
