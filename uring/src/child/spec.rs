//! What the engine is asked to spawn ([`SpawnSpec`]): the program, its argv and env, its
//! namespaces and id map, its cgroup placement, the files its init is handed.

use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::Arc;

/// What to run and how.
#[derive(Debug, Clone)]
pub struct SpawnSpec {
    /// The executable.
    pub program: Program,
    /// The argument vector, `argv[0]` first.
    pub argv: Vec<Vec<u8>>,
    /// `KEY=VALUE` environment entries.
    pub env: Vec<Vec<u8>>,
    /// Working directory of the command.
    pub workdir: PathBuf,
    /// New namespaces and identity for the child; `None` runs it in the daemon's.
    pub isolation: Option<Isolation>,
    /// The cgroups the child belongs to from its first instruction on.
    pub placement: Placement,
    /// Files an isolated child's init gets as fds 5, 6 and 7 (after the go pipe's 4), in
    /// order; an empty slot is a closed fd there.
    pub init_fds: [Option<Handed>; 3],
    /// Whether the child's stdin is a pipe the engine writes (see `Spawned::stdin`), rather
    /// than /dev/null.
    pub stdin: bool,
}

/// A file an isolated child's init is handed at a fixed fd.
#[derive(Debug, Clone)]
pub enum Handed {
    /// An open file of the daemon's.
    File(Arc<OwnedFd>),
    /// A directory the child opens itself (O_PATH), in its own mount namespace and while it
    /// still has the daemon's credentials: the directories above it may then be closed to
    /// the task's ids, and its mount is the child's own (overlayfs takes no other as a
    /// layer).
    Dir(PathBuf),
}

/// Where a child's processes are accounted and limited, set before the child runs anything
/// of its own.
#[derive(Debug, Clone, Default)]
pub struct Placement {
    /// A cgroup v2 directory the child is cloned straight into (CLONE_INTO_CGROUP).
    pub clone_into: Option<Arc<OwnedFd>>,
    /// cgroup v1 `cgroup.procs` files the child's pid is written to while it waits.
    pub procs_files: Vec<PathBuf>,
}

/// The executable of a spawn.
#[derive(Debug, Clone)]
pub enum Program {
    /// An absolute path.
    Path(PathBuf),
    /// An open executable file, run with `execveat(AT_EMPTY_PATH)`.
    File(Arc<OwnedFd>),
}

impl Program {
    /// How the program is shown in errors.
    pub fn display(&self) -> PathBuf {
        match self {
            Self::Path(path) => path.clone(),
            Self::File(_) => PathBuf::from("rrocker init"),
        }
    }
}

/// How a child is isolated. The program is an init that reports its own set-up on fd 3 (one
/// byte naming the step that failed, then the errno as 4 little-endian bytes; closing fd 3
/// without writing means success).
#[derive(Debug, Clone, Copy)]
pub struct Isolation {
    /// The new namespaces it is cloned into.
    pub namespaces: Namespaces,
    /// The uid/gid range root inside maps to, if a user namespace is made.
    pub id_map: Option<IdMap>,
    /// The OOM killer's score adjustment of the child and all it starts (raised from the
    /// daemon's own before the child takes the task's ids), if any.
    pub oom_score_adj: Option<i32>,
}

/// Maps ids `0..count` inside a user namespace to `first..first+count` outside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdMap {
    /// The first host uid.
    pub first_uid: u32,
    /// The first host gid.
    pub first_gid: u32,
    /// How many ids.
    pub count: u32,
}

/// A set of namespaces a child gets new ones of (clone3's `CLONE_NEW*` flags).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Namespaces(u64);

impl Namespaces {
    /// None: the child shares the daemon's.
    pub const NONE: Self = Self(0);
    /// A user namespace.
    pub const USER: Self = Self::flag(libc::CLONE_NEWUSER);
    /// A PID namespace.
    pub const PID: Self = Self::flag(libc::CLONE_NEWPID);
    /// A mount namespace.
    pub const MOUNT: Self = Self::flag(libc::CLONE_NEWNS);
    /// A network namespace.
    pub const NETWORK: Self = Self::flag(libc::CLONE_NEWNET);
    /// A UTS (host name) namespace.
    pub const UTS: Self = Self::flag(libc::CLONE_NEWUTS);
    /// An IPC namespace.
    pub const IPC: Self = Self::flag(libc::CLONE_NEWIPC);
    /// A cgroup namespace.
    pub const CGROUP: Self = Self::flag(libc::CLONE_NEWCGROUP);

    const fn flag(flag: libc::c_int) -> Self {
        Self(flag.cast_unsigned() as u64)
    }

    /// These and `other`.
    #[must_use]
    pub const fn and(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }

    /// These without `other`.
    #[must_use]
    pub const fn without(self, other: Self) -> Self {
        Self(self.0 & !other.0)
    }

    /// Whether all of `other` are among these.
    pub const fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }

    /// The set that clone3 `flags` make (other flags left out: only namespaces cross).
    pub(crate) const fn from_clone_flags(flags: u64) -> Self {
        Self(flags & Self::ALL.0)
    }

    /// Every namespace above.
    pub const ALL: Self = Self::USER
        .and(Self::PID)
        .and(Self::MOUNT)
        .and(Self::NETWORK)
        .and(Self::UTS)
        .and(Self::IPC)
        .and(Self::CGROUP);

    /// The clone3 flags that make them.
    pub(crate) const fn clone_flags(self) -> u64 {
        self.0
    }
}
