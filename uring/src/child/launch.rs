//! Starting a child: the command's C strings and pipes are prepared in the engine thread,
//! then `clone3(CLONE_PIDFD)` forks and the child execs (see `exec.rs`).
//! Whether the exec worked is learnt from a close-on-exec error pipe, read through io_uring
//! by [`exec_outcome`]: end-of-file means the command runs, five bytes name the failed step.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use rrocker_init::step::InitStep;
use rustix::pipe::{PipeFlags, pipe_with};

use super::exec::{ChildStep, spawn_child};
use super::plan::{ChildPlan, ExecTarget, HandedFd};
use super::spawner::Spawner;
use super::spec::{Handed, IdMap, Namespaces, Program, SpawnSpec};
use crate::netns::NetnsPool;
use crate::report::{self, Record};
use crate::sys;
use crate::{EngineError, ExitStatus, SetupStep};

/// A child that was cloned but may not have exec'd yet.
#[derive(Debug)]
pub(crate) struct Cloning {
    pub pid: u32,
    pub pidfd: OwnedFd,
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
    /// The write end of the child's stdin, when it has a pipe there.
    pub stdin: Option<OwnedFd>,
    pub error_pipe: OwnedFd,
    /// The write end of the go pipe of a child placed after it started.
    pub go: Option<OwnedFd>,
}

/// Clones a child that execs `spec` with stdin on a fresh pipe (`spec.stdin`) or /dev/null,
/// and stdout/stderr on fresh pipes of `pipe_size` bytes; with isolation, in new namespaces whose id maps are written here
/// before the child may go on.
pub(crate) fn clone_child(
    spec: &SpawnSpec,
    pipe_size: usize,
    netns: Option<&NetnsPool>,
    spawner: Option<&Spawner>,
    joins: Option<BorrowedFd<'_>>,
) -> Result<Cloning, EngineError> {
    let program_path;
    let target = match &spec.program {
        Program::File(file) => ExecTarget::File(file.as_fd()),
        Program::Path(path) => {
            program_path = c_string(path.as_os_str().as_bytes(), "program path")?;
            ExecTarget::Path(&program_path)
        }
    };
    let workdir = c_string(spec.workdir.as_os_str().as_bytes(), "working directory")?;
    let argv = c_strings(&spec.argv, "argv")?;
    let envp = c_strings(&spec.env, "env")?;

    let pipe = || pipe_with(PipeFlags::CLOEXEC).map_err(|e| EngineError::Pipe(e.into()));
    let (stdout_read, stdout_write) = pipe()?;
    let (stderr_read, stderr_write) = pipe()?;
    let (error_read, error_write) = pipe()?;
    let id_map = spec.isolation.and_then(|isolation| isolation.id_map);
    let procs_files = &spec.placement.procs_files;
    // Moving a process into v1 cgroups is slow (the kernel waits for an RCU grace period):
    // an isolated child's init waits on a go pipe for it, so that it overlaps with init's
    // start. Any other child is placed before it may go on.
    let deferred = spec.isolation.is_some() && !procs_files.is_empty();
    let place_now = !deferred && !procs_files.is_empty();
    // Only a child we set up from outside (id maps, cgroups) has to wait for us.
    let sync = (id_map.is_some() || place_now).then(pipe).transpose()?;
    let go = deferred.then(pipe).transpose()?;
    for reader in [&stdout_read, &stderr_read] {
        // A bigger pipe lets a chatty task run ahead of our reads; the kernel may refuse a
        // size above pipe-max-size, which only costs throughput.
        let _ = rustix::pipe::fcntl_setpipe_size(reader, pipe_size);
    }
    let (stdin_read, stdin_write): (OwnedFd, Option<OwnedFd>) = if spec.stdin {
        let (read_end, write_end) = pipe()?;
        (read_end, Some(write_end))
    } else {
        (std::fs::File::open("/dev/null").map_err(EngineError::DevNull)?.into(), None)
    };
    let stdio = [stdin_read.as_fd(), stdout_write.as_fd(), stderr_write.as_fd()];
    let oom_score_adj = spec
        .isolation
        .and_then(|isolation| isolation.oom_score_adj)
        .map(|score| c_string(score.to_string().as_bytes(), "oom score"))
        .transpose()?;
    let mut plan = ChildPlan::new(target, &argv, &envp, &workdir, stdio, error_write.as_fd());
    if let Some(isolation) = spec.isolation {
        plan.namespaces = isolation.namespaces;
        plan.report_fd = true;
    }
    plan.oom_score_adj = oom_score_adj.as_deref();
    if let Some((sync_read, sync_write)) = &sync {
        plan.sync = Some((sync_read.as_fd(), sync_write.as_fd()));
    }
    if id_map.is_some() || joins.is_some() {
        plan.become_root = true;
        plan.drop_groups = rustix::process::geteuid().is_root();
    }
    plan.join = joins;
    plan.handed[0] = go.as_ref().map(|(read_end, _)| HandedFd::Fd(read_end.as_fd()));
    let dirs: Vec<Option<CString>> = spec
        .init_fds
        .iter()
        .map(|handed| match handed {
            Some(Handed::Dir(path)) => {
                c_string(path.as_os_str().as_bytes(), "handed path").map(Some)
            }
            _ => Ok(None),
        })
        .collect::<Result<_, _>>()?;
    if plan.report_fd {
        for ((slot, handed), dir) in plan.handed[1..].iter_mut().zip(&spec.init_fds).zip(&dirs) {
            *slot = match (handed, dir) {
                (Some(Handed::File(file)), _) => Some(HandedFd::Fd(file.as_fd())),
                (Some(Handed::Dir(_)), Some(dir)) => Some(HandedFd::Dir(dir)),
                _ => None,
            };
        }
    }
    plan.cgroup = spec.placement.clone_into.as_deref().map(AsFd::as_fd);
    let pool = netns.filter(|_| plan.namespaces.contains(Namespaces::NETWORK));
    if pool.is_some() {
        // Born in a network namespace made ahead instead of one made by clone3.
        plan.namespaces = plan.namespaces.without(Namespaces::NETWORK);
    }
    let spawned = match spawner {
        // The wire to the spawner carries no pidfd to join: cloned here (a rare spawn).
        Some(spawner) if joins.is_none() => {
            let network = pool.map(NetnsPool::take).transpose().map_err(EngineError::Clone)?;
            match spawner.spawn(&plan, network.as_ref().map(AsFd::as_fd)) {
                Err(error) if Spawner::clone_here_instead(&error) => {
                    spawn_here(&plan, pool, network)
                }
                spawned => spawned,
            }
        }
        _ => spawn_here(&plan, pool, None),
    };
    let (pid, pidfd) = spawned.map_err(EngineError::Clone)?;
    if let Some((_, sync_write)) = &sync {
        let released = id_map
            .map_or(Ok(()), |map| {
                write_id_maps(pid, map).map_err(|source| EngineError::IdMap { source })
            })
            .and_then(|()| if place_now { place(pid, procs_files) } else { Ok(()) })
            .and_then(|()| {
                rustix::io::write(sync_write, &[1])
                    .map(drop)
                    .map_err(|source| EngineError::IdMap { source: source.into() })
            });
        if let Err(error) = released {
            // The child still waits on the sync pipe: kill it and reap it, leaving no zombie.
            let _ = sys::pidfd_send_signal(&pidfd, libc::SIGKILL);
            let _ = sys::wait_exited(&pidfd);
            return Err(error);
        }
    }
    Ok(Cloning {
        pid,
        pidfd,
        stdout: stdout_read,
        stderr: stderr_read,
        stdin: stdin_write,
        error_pipe: error_read,
        go: go.map(|(_, write_end)| write_end),
    })
}

/// Clones the child from the engine thread: with a pool, in `network` (taken from it) or
/// else a fresh namespace of it.
fn spawn_here(
    plan: &ChildPlan<'_>,
    pool: Option<&NetnsPool>,
    network: Option<OwnedFd>,
) -> io::Result<(u32, OwnedFd)> {
    match (pool, network) {
        (Some(pool), Some(network)) => pool.within(network, || spawn_child(plan))?,
        (Some(pool), None) => pool.within_fresh(|| spawn_child(plan))?,
        (None, _) => spawn_child(plan),
    }
}

/// Places a running child (whose init waits on the go pipe) in its v1 cgroups on a blocking
/// thread, then lets it go on. On failure the go pipe is closed unwritten: init gives up.
pub(crate) async fn place_and_go(
    pid: u32,
    procs_files: Vec<PathBuf>,
    go: OwnedFd,
) -> Result<(), EngineError> {
    tokio::task::spawn_blocking(move || place(pid, &procs_files))
        .await
        .unwrap_or(Err(EngineError::Stopped))?;
    rustix::io::write(&go, &[1])
        .map(drop)
        .map_err(|source| EngineError::ChildSetup { step: SetupStep::Go, source: source.into() })
}

/// Moves the child into each v1 cgroup by writing its pid to the hierarchy's cgroup.procs.
fn place(pid: u32, procs_files: &[PathBuf]) -> Result<(), EngineError> {
    for path in procs_files {
        std::fs::write(path, pid.to_string())
            .map_err(|source| EngineError::Cgroup { path: path.clone(), source })?;
    }
    Ok(())
}

/// Writes the child's uid_map and gid_map: `0 first count`.
fn write_id_maps(pid: u32, map: IdMap) -> io::Result<()> {
    if !rustix::process::geteuid().is_root() {
        // An unprivileged writer may map its own gid only with setgroups disabled.
        std::fs::write(format!("/proc/{pid}/setgroups"), "deny")?;
    }
    std::fs::write(format!("/proc/{pid}/uid_map"), format!("0 {} {}\n", map.first_uid, map.count))?;
    std::fs::write(format!("/proc/{pid}/gid_map"), format!("0 {} {}\n", map.first_gid, map.count))
}

/// The engine's end of a child's report pipe, read through io_uring.
#[derive(Debug)]
pub(crate) struct ReportPipe {
    file: tokio_uring::fs::File,
}

impl ReportPipe {
    pub(crate) fn new(pipe: OwnedFd) -> Self {
        Self { file: tokio_uring::fs::File::from_std(std::fs::File::from(pipe)) }
    }

    /// The next record (or the end of the pipe).
    pub(crate) async fn next(&self) -> io::Result<Record> {
        crate::stats::submitted();
        let (result, bytes) = self.file.read_at(Vec::with_capacity(report::RECORD_LEN), 0).await;
        result?;
        report::decode(&bytes)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "malformed report record"))
    }
}

/// Waits until the child runs its command or reports a failed step. A plain child's command
/// runs once its exec closed the pipe; an isolated child's init says READY and keeps the pipe
/// for the command's end, which is returned for [`final_status`].
pub(crate) async fn exec_outcome(
    report: ReportPipe,
    program: &Program,
    isolated: bool,
) -> Result<Option<ReportPipe>, EngineError> {
    let record = report
        .next()
        .await
        .map_err(|source| EngineError::ChildSetup { step: SetupStep::Report, source })?;
    match record {
        Record::End if !isolated => Ok(None),
        Record::Ready if isolated => Ok(Some(report)),
        Record::Failed { step, errno } => {
            let source = io::Error::from_raw_os_error(errno);
            Err(match (ChildStep::from_byte(step), InitStep::from_byte(step)) {
                (Some(ChildStep::Exec), _) => {
                    EngineError::Exec { program: program.display(), source }
                }
                (Some(ChildStep::Workdir), _) => EngineError::Workdir { source },
                (Some(child), _) => {
                    EngineError::ChildSetup { step: SetupStep::Child(child), source }
                }
                (None, Some(init)) => {
                    EngineError::ChildSetup { step: SetupStep::Init(init), source }
                }
                (None, None) => EngineError::ChildSetup {
                    step: SetupStep::Report,
                    source: io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("an unknown step {step} failed ({source})"),
                    ),
                },
            })
        }
        other => Err(EngineError::ChildSetup {
            step: SetupStep::Report,
            source: io::Error::new(io::ErrorKind::InvalidData, format!("unexpected {other:?}")),
        }),
    }
}

/// How an isolated child's command ended, as its init reported it; `None` if init ended
/// without saying (it was killed).
pub(crate) async fn final_status(report: ReportPipe) -> Option<ExitStatus> {
    match report.next().await {
        Ok(Record::Exited(code)) => Some(ExitStatus::Exited(code)),
        Ok(Record::Signaled(signal)) => Some(ExitStatus::Signaled(signal)),
        _ => None,
    }
}

fn c_string(bytes: &[u8], what: &'static str) -> Result<CString, EngineError> {
    CString::new(bytes).map_err(|_| EngineError::NulByte { what })
}

fn c_strings(items: &[Vec<u8>], what: &'static str) -> Result<Vec<CString>, EngineError> {
    items.iter().map(|item| c_string(item, what)).collect()
}
