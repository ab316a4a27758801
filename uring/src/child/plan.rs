//! A child's plan ([`ChildPlan`]), made by the engine (or the spawner) before the clone so
//! that the child never allocates: its stdio, the fds it is handed, its namespaces and
//! cgroup, its working directory and what it executes.

use std::ffi::{CStr, CString};
use std::os::fd::BorrowedFd;

use super::spec::Namespaces;

/// What the child executes: a path, or an open file (execveat with AT_EMPTY_PATH), which
/// keeps working whatever happens to the path.
#[derive(Debug, Clone, Copy)]
pub(crate) enum ExecTarget<'a> {
    /// A path.
    Path(&'a CStr),
    /// An open executable.
    File(BorrowedFd<'a>),
}

/// The first fd of those handed to an isolated child's init after its report pipe (3).
pub(crate) const FIRST_HANDED_FD: libc::c_int = 4;
/// How many fds can be handed from there: the go pipe and three of the init's own.
pub(crate) const HANDED_FDS: usize = 4;
/// The first fd above the handed ones.
pub(super) const HANDED_FDS_END: libc::c_int = FIRST_HANDED_FD + 4;

/// A file handed to a child at a fixed fd.
#[derive(Debug, Clone, Copy)]
pub(crate) enum HandedFd<'a> {
    /// One of the parent's.
    Fd(BorrowedFd<'a>),
    /// A directory the child opens (O_PATH) before it changes its identity (see
    /// [`crate::Handed::Dir`]).
    Dir(&'a CStr),
}

/// Everything the child needs, prepared before cloning so that the child never allocates:
/// the C strings are borrowed from the caller, the pointer arrays are built here.
#[derive(Debug)]
pub(crate) struct ChildPlan<'a> {
    pub target: ExecTarget<'a>,
    pub workdir: &'a CStr,
    /// The argument and environment strings (for a plan sent to the spawner).
    pub argv_strings: &'a [CString],
    pub env_strings: &'a [CString],
    pub(super) argv: Vec<*const libc::c_char>,
    pub(super) envp: Vec<*const libc::c_char>,
    pub stdio: [BorrowedFd<'a>; 3],
    pub error_pipe: BorrowedFd<'a>,
    /// Hand `error_pipe` to the program as fd 3 (an init that reports its own set-up).
    pub report_fd: bool,
    /// The new namespaces to clone it into.
    pub namespaces: Namespaces,
    /// Clone it as a sibling of its cloner (CLONE_PARENT: the spawner's children are the
    /// daemon's).
    pub as_sibling: bool,
    /// A pipe to wait on before anything else (read end, and the write end to close first):
    /// the parent writes one byte once it has set the child up from outside (id maps).
    pub sync: Option<(BorrowedFd<'a>, BorrowedFd<'a>)>,
    /// After the sync, become uid/gid 0 of the new user namespace (and, if `drop_groups`,
    /// shed supplementary groups), so that exec gives the program that namespace's
    /// capabilities.
    pub become_root: bool,
    /// Clear supplementary groups (impossible, and needless, for an unprivileged daemon).
    pub drop_groups: bool,
    /// Files handed to the program (with `report_fd`) as fds 4, 5, 6...: first the go pipe
    /// its init waits on until the parent has placed it in its cgroups, then the init's own
    /// (see [`crate::SpawnSpec::init_fds`]). A slot left empty is a closed fd.
    pub handed: [Option<HandedFd<'a>>; HANDED_FDS],
    /// A cgroup v2 directory to clone the child into (CLONE_INTO_CGROUP).
    pub cgroup: Option<BorrowedFd<'a>>,
    /// What to write to the child's `/proc/self/oom_score_adj` before it changes identity.
    pub oom_score_adj: Option<&'a CStr>,
    /// A running process (its pidfd) whose namespaces the child joins first, all at once
    /// (setns): a further command of a running task. The child then takes uid/gid 0 there
    /// (`become_root`).
    pub join: Option<BorrowedFd<'a>>,
    /// The process the child must be a child of (else its parent died before it ran).
    pub parent_pid: libc::pid_t,
}

impl<'a> ChildPlan<'a> {
    /// The flags of its clone3: its namespaces, and CLONE_PARENT if cloned as a sibling.
    pub(crate) fn clone_flags(&self) -> u64 {
        let parent = if self.as_sibling { libc::CLONE_PARENT as u64 } else { 0 };
        self.namespaces.clone_flags() | parent
    }

    /// A plan to exec `target` with `argv` and `env` in `workdir`, with `stdio` as fds 0-2,
    /// reporting a failed step on `error_pipe`; the other options start off.
    pub(crate) fn new(
        target: ExecTarget<'a>,
        argv: &'a [CString],
        env: &'a [CString],
        workdir: &'a CStr,
        stdio: [BorrowedFd<'a>; 3],
        error_pipe: BorrowedFd<'a>,
    ) -> Self {
        let pointers = |strings: &'a [CString]| {
            strings.iter().map(|s| s.as_ptr()).chain(std::iter::once(std::ptr::null())).collect()
        };
        Self {
            target,
            workdir,
            argv_strings: argv,
            env_strings: env,
            argv: pointers(argv),
            envp: pointers(env),
            stdio,
            error_pipe,
            report_fd: false,
            namespaces: Namespaces::NONE,
            as_sibling: false,
            sync: None,
            become_root: false,
            drop_groups: false,
            handed: [None; HANDED_FDS],
            oom_score_adj: None,
            cgroup: None,
            join: None,
            parent_pid: libc::pid_t::try_from(std::process::id()).expect("a pid fits pid_t"),
        }
    }
}
