//! Turning a validated start request into what the engine runs: the program resolved to an
//! executable file (absolute path, or a PATH lookup for a bare name), the environment with
//! defaults, and the working directory; then wrapped in `rrocker init` (embedded in the
//! daemon and loaded into a sealed memfd at start-up) running in new user, PID, mount,
//! network, UTS, IPC and cgroup namespaces as root of a user namespace mapped to an
//! unprivileged id range.

use std::ffi::OsStr;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use std::os::fd::OwnedFd;
use std::sync::Arc;

use rrocker_uring::{IdMap, Isolation, Placement, Program, SpawnSpec};

use rrocker_init::plan::InitPlan;

use crate::error::DaemonError;
use crate::worker::images::Images;
use crate::worker::seccomp::{SeccompFilters, SeccompMode};

pub mod idmap;
pub mod image;
pub mod images;
pub mod import;
mod init_binary;
pub mod rootfs;
pub mod seccomp;

/// PATH used when the request's environment has none.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The environment of a task whose request gave none.
fn default_env() -> Vec<Vec<u8>> {
    [format!("PATH={DEFAULT_PATH}"), "HOME=/root".into(), "TERM=xterm".into()]
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

/// How tasks are wrapped: the init binary, the images tasks' roots are overlays of, the id
/// range root inside maps to, and the seccomp filters of their commands.
#[derive(Debug, Clone)]
pub struct Isolator {
    init: Arc<OwnedFd>,
    images: Arc<Images>,
    id_map: IdMap,
    filters: SeccompFilters,
}

impl Isolator {
    /// Loads every task's init. Tasks' roots are overlays of one of `images`; root inside
    /// tasks maps to `id_map`; their commands run under `filters`.
    pub fn new(
        images: Arc<Images>,
        id_map: IdMap,
        filters: SeccompFilters,
    ) -> Result<Self, DaemonError> {
        let init = init_binary::load().map_err(|source| DaemonError::Io {
            action: "load rrocker-init into",
            path: PathBuf::from("a memfd"),
            source,
        })?;
        Ok(Self { init: Arc::new(init), images, id_map, filters })
    }

    /// The seccomp profile tasks run under.
    pub fn seccomp_mode(&self) -> &SeccompMode {
        &self.filters.mode
    }

    /// The host uid and gid of root inside tasks.
    pub fn root_owner(&self) -> (u32, u32) {
        (self.id_map.first_uid, self.id_map.first_gid)
    }

    /// Builds the engine's spawn spec for a validated request: the program, resolved inside
    /// the image `image` (`""`: the daemon's own), under `rrocker init`, in new namespaces,
    /// with `hostname`, its root an overlay in `task_dir`.
    pub fn spawn_spec(
        &self,
        hostname: &str,
        task_dir: &Path,
        image: &str,
        argv: Vec<Vec<u8>>,
        env: Vec<Vec<u8>>,
        workdir: &[u8],
    ) -> Result<SpawnSpec, DaemonError> {
        let image = self.images.get(image)?;
        let env = if env.is_empty() { default_env() } else { env };
        let workdir = if workdir.is_empty() { b"/".to_vec() } else { workdir.to_vec() };
        let search_path = env
            .iter()
            .find_map(|entry| entry.strip_prefix(b"PATH="))
            .unwrap_or(DEFAULT_PATH.as_bytes())
            .to_vec();
        let program = rootfs::resolve_program(&image, &argv[0], &search_path, &path(&workdir))
            .ok_or_else(|| DaemonError::BinaryNotFound {
                program: String::from_utf8_lossy(&argv[0]).into_owned(),
            })?;
        let plan = InitPlan {
            hostname: hostname.as_bytes().to_vec(),
            image: image.as_os_str().as_bytes().to_vec(),
            task_dir: task_dir.as_os_str().as_bytes().to_vec(),
            workdir,
            program: program.into_os_string().into_vec(),
            argv,
        };
        Ok(SpawnSpec {
            program: Program::File(Arc::clone(&self.init)),
            argv: plan.to_argv(),
            env,
            workdir: PathBuf::from("/"),
            isolation: Some(Isolation { namespaces: TASK_NAMESPACES, id_map: Some(self.id_map) }),
            placement: Placement::default(),
            init_fds: [self.filters.memfd.clone(), None, None],
        })
    }
}

fn path(bytes: &[u8]) -> PathBuf {
    PathBuf::from(OsStr::from_bytes(bytes))
}

#[cfg(test)]
mod tests {
    use rrocker_init::plan::ARGV0;

    use super::*;

    fn isolator() -> Isolator {
        let id_map = IdMap { first_uid: 100_000, first_gid: 100_000, count: 65_536 };
        let filters = seccomp::load(&SeccompMode::Default).expect("the default profile");
        Isolator::new(Arc::new(Images::as_is(Path::new("/"))), id_map, filters).expect("exe")
    }

    #[test]
    fn missing_binary_gets_the_seed_message() {
        let argv = vec![b"/bin/a_binary_that_doesnt_exist".to_vec()];
        let error = isolator()
            .spawn_spec("h", Path::new("/t"), "", argv, vec![], b"")
            .expect_err("missing");
        assert_eq!(
            error.to_string(),
            "Binary '/bin/a_binary_that_doesnt_exist' not found in base image."
        );
    }

    #[test]
    fn the_command_runs_under_init_in_every_namespace() {
        let spec = isolator()
            .spawn_spec("host", Path::new("/t"), "", vec![b"true".to_vec()], vec![], b"")
            .expect("spec");
        assert_eq!(spec.workdir, Path::new("/"));
        assert!(spec.env.iter().any(|e| e.starts_with(b"PATH=")));
        assert_eq!(spec.argv[0], ARGV0.as_bytes());
        assert_eq!(spec.isolation.map(|i| i.namespaces), Some(TASK_NAMESPACES));
        let plan = InitPlan::from_argv(spec.argv.iter().map(|a| OsStr::from_bytes(a).to_owned()))
            .expect("init argv");
        assert_eq!(plan.hostname, b"host");
        assert!(plan.program.ends_with(b"/true"));
        assert_eq!(plan.argv, [b"true".to_vec()]);
    }

    #[test]
    fn an_image_that_is_not_there_is_refused_in_one_line() {
        let argv = vec![b"true".to_vec()];
        let error = isolator().spawn_spec("h", Path::new("/t"), "alpine", argv, vec![], b"");
        assert_eq!(
            error.expect_err("no such image").to_string(),
            "Image 'alpine' doesn't exist on this host; import one with `rrockerd image import FILE.tar --name alpine`"
        );
        let bad = isolator().spawn_spec(
            "h",
            Path::new("/t"),
            "../x",
            vec![b"true".to_vec()],
            vec![],
            b"",
        );
        assert!(bad.expect_err("bad name").to_string().starts_with("Invalid image name '../x'"));
    }
}
