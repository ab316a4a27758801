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

use rrocker_uring::{Handed, IdMap, Isolation, Namespaces, Placement, Program, SpawnSpec};

use rrocker_init::filters::FILTERS_FD;
use rrocker_init::plan::{IMAGE_FD, InitPlan, TASK_DIR_FD};
use rrocker_init::terminal::WindowSize;

use crate::image::registry::Images;
use crate::io_context::{IoContext, IoError};
use crate::isolator::seccomp::{SeccompFilters, SeccompMode};
use crate::isolator::uid_slices::UidSlices;
use crate::request_error::RequestError;
use crate::task_root;

mod init_binary;
pub mod seccomp;
pub mod uid_slices;

/// PATH used when the request's environment has none.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The environment of a task whose request gave none.
fn default_env() -> Vec<Vec<u8>> {
    [format!("PATH={DEFAULT_PATH}"), "HOME=/root".into(), "TERM=xterm".into()]
        .map(String::into_bytes)
        .to_vec()
}

/// Every namespace a task gets.
pub const TASK_NAMESPACES: Namespaces = Namespaces::ALL;

/// How tasks are wrapped: the init binary, the images tasks' roots are overlays of, the
/// pool of host id slices root inside maps to, and the seccomp filters of their commands.
#[derive(Debug, Clone)]
pub struct Isolator {
    init: Arc<OwnedFd>,
    images: Arc<Images>,
    slices: Arc<UidSlices>,
    filters: SeccompFilters,
    oom_score_adj: Option<i32>,
}

/// A task's hold on its owner's host id slice, given back when dropped (once everything the
/// task held is gone): the last one of an identity frees the slice and its image views.
#[derive(Debug)]
pub struct SliceLease {
    slices: Arc<UidSlices>,
    images: Arc<Images>,
    identity: String,
    slice: u32,
    /// The host ids of the slice.
    pub id_map: IdMap,
}

impl SliceLease {
    /// The host uid and gid of root inside the task.
    pub fn root_owner(&self) -> (u32, u32) {
        (self.id_map.first_uid, self.id_map.first_gid)
    }
}

impl Drop for SliceLease {
    fn drop(&mut self) {
        let images = &self.images;
        self.slices.release(&self.identity, |slice| images.release_slice(slice));
    }
}

/// What a task runs: its command in an image.
#[derive(Debug)]
pub struct TaskCommand<'a> {
    /// The image its root is a view of (`""`: the daemon's own).
    pub image: &'a str,
    /// The command, `argv[0]` first.
    pub argv: Vec<Vec<u8>>,
    /// `KEY=VALUE` entries; none gives a default environment.
    pub env: Vec<Vec<u8>>,
    /// The working directory inside the task; empty for `/`.
    pub workdir: &'a [u8],
    /// Its pseudo-terminal's first size, if it runs on one.
    pub terminal: Option<WindowSize>,
}

/// The slot of [`SpawnSpec::init_fds`] that init finds as `fd`.
fn init_fd_slot(fd: i32) -> usize {
    usize::try_from(fd - 5).expect("init's own fds start at 5")
}

impl Isolator {
    /// Loads every task's init. Tasks' roots are overlays of one of `images`; root inside
    /// tasks maps to a slice of `slices`; their commands run under `filters`, with the OOM
    /// killer's score adjustment `oom_score_adj` if given.
    pub fn new(
        images: Arc<Images>,
        slices: Arc<UidSlices>,
        filters: SeccompFilters,
        oom_score_adj: Option<i32>,
    ) -> Result<Self, IoError> {
        let init = init_binary::load()
            .context("load rrocker-init into", std::path::Path::new("a memfd"))?;
        Ok(Self { init: Arc::new(init), images, slices, filters, oom_score_adj })
    }

    /// The seccomp profile tasks run under.
    pub fn seccomp_mode(&self) -> &SeccompMode {
        &self.filters.mode
    }

    /// The host id slice of `identity` for one more of its tasks; RESOURCE_EXHAUSTED when
    /// every slice is held by another identity.
    pub fn lease(&self, identity: &str) -> Result<SliceLease, RequestError> {
        let slice = self.slices.acquire(identity)?;
        Ok(SliceLease {
            slices: Arc::clone(&self.slices),
            images: Arc::clone(&self.images),
            identity: identity.to_owned(),
            slice,
            id_map: self.slices.id_map(slice),
        })
    }

    /// Builds the engine's spawn spec for a validated `command`: the program, resolved inside
    /// its image as `lease`'s slice sees it, under `rrocker
    /// init`, in new namespaces mapped to that slice, with `hostname`, its root assembled in
    /// `task_dir` (which must exist by the time the spec is spawned).
    pub fn spawn_spec(
        &self,
        lease: &SliceLease,
        hostname: &str,
        task_dir: &Path,
        command: TaskCommand<'_>,
    ) -> Result<SpawnSpec, RequestError> {
        let image = self.images.get(command.image, lease.slice, lease.id_map)?;
        let mut spec = self.init_spec(&image, hostname.as_bytes(), false, command)?;
        spec.init_fds[init_fd_slot(TASK_DIR_FD)] = Some(Handed::Dir(task_dir.to_owned()));
        spec.init_fds[init_fd_slot(IMAGE_FD)] = Some(Handed::Dir(image));
        spec.isolation = Some(Isolation {
            namespaces: TASK_NAMESPACES,
            id_map: Some(lease.id_map),
            oom_score_adj: self.oom_score_adj,
        });
        Ok(spec)
    }

    /// Builds the engine's spawn spec for a further command of the running task whose init
    /// is `task_pid`, for [`rrocker_uring::Engine::spawn_in`]: the program, resolved in the
    /// task's root as it is now (its own files too), under `rrocker init` as `rrocker-exec`,
    /// which takes the task's restrictions and filters and starts it.
    pub fn exec_spec(
        &self,
        task_pid: u32,
        command: TaskCommand<'_>,
    ) -> Result<SpawnSpec, RequestError> {
        let root = PathBuf::from(format!("/proc/{task_pid}/root"));
        let mut spec = self.init_spec(&root, b"-", true, command)?;
        // No namespace of its own: it joins the task's.
        spec.isolation = Some(Isolation {
            namespaces: Namespaces::NONE,
            id_map: None,
            oom_score_adj: self.oom_score_adj,
        });
        Ok(spec)
    }

    /// The spec of `command` under init: its program looked up in `root`, init's plan, its
    /// environment, the seccomp filters handed over.
    fn init_spec(
        &self,
        root: &Path,
        hostname: &[u8],
        joined: bool,
        command: TaskCommand<'_>,
    ) -> Result<SpawnSpec, RequestError> {
        let TaskCommand { image: _, argv, env, workdir, terminal } = command;
        let env = if env.is_empty() { default_env() } else { env };
        let workdir = if workdir.is_empty() { b"/".to_vec() } else { workdir.to_vec() };
        let search_path = env
            .iter()
            .find_map(|entry| entry.strip_prefix(b"PATH="))
            .unwrap_or(DEFAULT_PATH.as_bytes())
            .to_vec();
        let program = task_root::resolve_program(root, &argv[0], &search_path, &path(&workdir))
            .ok_or_else(|| RequestError::BinaryNotFound {
                program: String::from_utf8_lossy(&argv[0]).into_owned(),
            })?;
        let plan = InitPlan {
            joined,
            hostname: hostname.to_vec(),
            workdir,
            terminal,
            program: program.into_os_string().into_vec(),
            argv,
        };
        let mut init_fds = [None, None, None];
        init_fds[init_fd_slot(FILTERS_FD)] = self.filters.memfd.clone().map(Handed::File);
        Ok(SpawnSpec {
            program: Program::File(Arc::clone(&self.init)),
            argv: plan.to_argv(),
            env,
            workdir: PathBuf::from("/"),
            isolation: None,
            placement: Placement::default(),
            init_fds,
            stdin: false,
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
        let slices = Arc::new(UidSlices::new(100_000, 2 * uid_slices::SLICE));
        let filters = seccomp::load(&SeccompMode::Default).expect("the default profile");
        Isolator::new(Arc::new(Images::as_is(Path::new("/"))), slices, filters, Some(500))
            .expect("exe")
    }

    /// `isolator().spawn_spec` for client1.
    fn spec(image: &str, argv: Vec<Vec<u8>>) -> Result<SpawnSpec, RequestError> {
        let isolator = isolator();
        let lease = isolator.lease("client1").expect("a slice");
        let command = TaskCommand { image, argv, env: vec![], workdir: b"", terminal: None };
        isolator.spawn_spec(&lease, "host", Path::new("/t"), command)
    }

    #[test]
    fn missing_binary_gets_the_seed_message() {
        let argv = vec![b"/bin/a_binary_that_doesnt_exist".to_vec()];
        let error = spec("", argv).expect_err("missing");
        assert_eq!(
            error.to_string(),
            "Binary '/bin/a_binary_that_doesnt_exist' not found in base image."
        );
    }

    #[test]
    fn the_command_runs_under_init_in_every_namespace() {
        let spec = spec("", vec![b"true".to_vec()]).expect("spec");
        assert_eq!(spec.workdir, Path::new("/"));
        assert!(spec.env.iter().any(|e| e.starts_with(b"PATH=")));
        assert_eq!(spec.argv[0], ARGV0.as_bytes());
        assert_eq!(spec.isolation.map(|i| i.namespaces), Some(TASK_NAMESPACES));
        let id_map = spec.isolation.and_then(|isolation| isolation.id_map);
        assert_eq!(id_map.map(|map| (map.first_uid, map.count)), Some((100_000, 65_536)));
        let task_dir = &spec.init_fds[init_fd_slot(TASK_DIR_FD)];
        assert!(matches!(task_dir, Some(Handed::Dir(dir)) if dir == Path::new("/t")));
        let plan = InitPlan::from_argv(spec.argv.iter().map(|a| OsStr::from_bytes(a).to_owned()))
            .expect("init argv");
        assert_eq!(plan.hostname, b"host");
        assert!(plan.program.ends_with(b"/true"));
        assert_eq!(plan.argv, [b"true".to_vec()]);
    }

    #[test]
    fn an_image_that_is_not_there_is_refused_in_one_line() {
        let error = spec("alpine", vec![b"true".to_vec()]);
        assert_eq!(
            error.expect_err("no such image").to_string(),
            "Image 'alpine' doesn't exist on this host; import one with `rrockerd image import FILE.tar --name alpine`"
        );
        let bad = spec("../x", vec![b"true".to_vec()]);
        assert!(bad.expect_err("bad name").to_string().starts_with("Invalid image name '../x'"));
    }
}
