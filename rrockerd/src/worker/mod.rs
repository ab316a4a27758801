//! Turning a validated start request into what the engine runs: the program resolved to an
//! executable file (absolute path, or a PATH lookup for a bare name), the environment with
//! defaults, and the working directory; then wrapped in `rrocker init` (the daemon's own
//! binary, held open since start-up) running in new user, PID, mount, network, UTS, IPC and
//! cgroup namespaces as root of a user namespace mapped to an unprivileged id range.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use std::os::fd::OwnedFd;
use std::sync::Arc;

use rrocker_uring::{IdMap, Isolation, Program, SpawnSpec};

use crate::error::DaemonError;
use crate::init;

pub mod image;

/// PATH used when the request's environment has none.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The environment of a task whose request gave none.
fn default_env() -> Vec<Vec<u8>> {
    [format!("PATH={DEFAULT_PATH}"), "HOME=/".into(), "TERM=xterm".into()]
        .map(String::into_bytes)
        .to_vec()
}

/// Every namespace a task gets.
pub const TASK_NAMESPACES: u64 = (libc::CLONE_NEWUSER
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWNS
    | libc::CLONE_NEWNET
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWCGROUP) as u64;

/// How tasks are wrapped: the init binary and the id range root inside maps to.
#[derive(Debug, Clone)]
pub struct Isolator {
    init: Arc<OwnedFd>,
    id_map: IdMap,
}

impl Isolator {
    /// Opens the daemon's own binary as every task's init; root inside tasks maps to
    /// `id_map` (for an unprivileged daemon: its own uid and gid, one id).
    pub fn new(id_map: IdMap) -> Result<Self, DaemonError> {
        let exe = Path::new("/proc/self/exe");
        let init = std::fs::File::open(exe).map_err(|source| DaemonError::Io {
            action: "open",
            path: exe.to_owned(),
            source,
        })?;
        Ok(Self { init: Arc::new(init.into()), id_map })
    }

    /// The id map root inside a task gets.
    pub fn id_map(&self) -> IdMap {
        self.id_map
    }

    /// Builds the engine's spawn spec for a validated request: the resolved program under
    /// `rrocker init`, in new namespaces, with `hostname`.
    pub fn spawn_spec(
        &self,
        hostname: &str,
        argv: Vec<Vec<u8>>,
        env: Vec<Vec<u8>>,
        workdir: &[u8],
    ) -> Result<SpawnSpec, DaemonError> {
        let env = if env.is_empty() { default_env() } else { env };
        let workdir = if workdir.is_empty() { PathBuf::from("/") } else { path(workdir) };
        let search_path = env
            .iter()
            .find_map(|entry| entry.strip_prefix(b"PATH="))
            .unwrap_or(DEFAULT_PATH.as_bytes())
            .to_vec();
        let program = resolve_program(&argv[0], &search_path, &workdir).ok_or_else(|| {
            DaemonError::BinaryNotFound { program: String::from_utf8_lossy(&argv[0]).into_owned() }
        })?;
        Ok(SpawnSpec {
            program: Program::File(Arc::clone(&self.init)),
            argv: init::init_argv(hostname, program.as_os_str().as_bytes(), &argv),
            env,
            workdir,
            isolation: Some(Isolation { namespaces: TASK_NAMESPACES, id_map: Some(self.id_map) }),
        })
    }
}

/// Finds the executable `name` refers to: itself if it contains a slash (relative to
/// `workdir`), otherwise the first executable regular file named so in `search_path`.
pub fn resolve_program(name: &[u8], search_path: &[u8], workdir: &Path) -> Option<PathBuf> {
    if name.contains(&b'/') {
        let candidate = workdir.join(path(name));
        return is_executable(&candidate).then_some(candidate);
    }
    search_path
        .split(|&byte| byte == b':')
        .filter(|dir| !dir.is_empty())
        .map(|dir| path(dir).join(path(name)))
        .find(|candidate| is_executable(candidate))
}

fn path(bytes: &[u8]) -> PathBuf {
    PathBuf::from(OsStr::from_bytes(bytes))
}

fn is_executable(candidate: &Path) -> bool {
    candidate.is_file() && rustix::fs::access(candidate, rustix::fs::Access::EXEC_OK).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_names_are_found_in_path_and_paths_are_checked() {
        let root = Path::new("/");
        assert_eq!(resolve_program(b"sh", b"/nonexistent:/bin", root), Some("/bin/sh".into()));
        assert_eq!(resolve_program(b"/bin/sh", b"", root), Some("/bin/sh".into()));
        assert_eq!(resolve_program(b"no-such-binary-x", DEFAULT_PATH.as_bytes(), root), None);
        assert_eq!(resolve_program(b"/etc/passwd", b"", root), None, "not executable");
        assert_eq!(resolve_program(b"/bin", b"", root), None, "a directory");
    }

    fn isolator() -> Isolator {
        Isolator::new(IdMap { first_uid: 100_000, first_gid: 100_000, count: 65_536 }).expect("exe")
    }

    #[test]
    fn missing_binary_gets_the_seed_message() {
        let error = isolator()
            .spawn_spec("h", vec![b"/bin/a_binary_that_doesnt_exist".to_vec()], vec![], b"")
            .expect_err("missing");
        assert_eq!(
            error.to_string(),
            "Binary '/bin/a_binary_that_doesnt_exist' not found in base image."
        );
    }

    #[test]
    fn the_command_runs_under_init_in_every_namespace() {
        let spec =
            isolator().spawn_spec("host", vec![b"true".to_vec()], vec![], b"").expect("spec");
        assert_eq!(spec.workdir, Path::new("/"));
        assert!(spec.env.iter().any(|e| e.starts_with(b"PATH=")));
        assert_eq!(spec.argv[0], init::ARGV0.as_bytes());
        assert_eq!(spec.argv[1], b"host");
        assert!(spec.argv[2].ends_with(b"/true"));
        assert_eq!(&spec.argv[3..], [b"--".to_vec(), b"true".to_vec()]);
        assert_eq!(spec.isolation.map(|i| i.namespaces), Some(TASK_NAMESPACES));
    }
}
