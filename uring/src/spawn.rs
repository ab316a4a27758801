//! Starting a child: the command's C strings and pipes are prepared in the engine thread,
//! then `clone3(CLONE_PIDFD)` forks and the child execs (see [`crate::sys::exec_child`]).
//! Whether the exec worked is learnt from a close-on-exec error pipe, read through io_uring
//! by [`exec_outcome`]: end-of-file means the command runs, five bytes name the failed step.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::pipe::{PipeFlags, pipe_with};

use crate::EngineError;
use crate::sys::{self, ChildPlan, ChildStep};

/// What to run and how.
#[derive(Debug, Clone)]
pub struct SpawnSpec {
    /// Absolute path of the executable.
    pub program: PathBuf,
    /// The argument vector, argv[0] first.
    pub argv: Vec<Vec<u8>>,
    /// `KEY=VALUE` environment entries.
    pub env: Vec<Vec<u8>>,
    /// Working directory of the command.
    pub workdir: PathBuf,
}

/// A child that was cloned but may not have exec'd yet.
#[derive(Debug)]
pub(crate) struct Cloning {
    pub pid: u32,
    pub pidfd: OwnedFd,
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
    pub error_pipe: OwnedFd,
}

/// Clones a child that execs `spec` with stdin on /dev/null and stdout/stderr on fresh pipes
/// of `pipe_size` bytes.
pub(crate) fn clone_child(spec: &SpawnSpec, pipe_size: usize) -> Result<Cloning, EngineError> {
    let program = c_string(spec.program.as_os_str().as_bytes(), "program path")?;
    let workdir = c_string(spec.workdir.as_os_str().as_bytes(), "working directory")?;
    let argv = c_strings(&spec.argv, "argv")?;
    let envp = c_strings(&spec.env, "env")?;

    let pipe = || pipe_with(PipeFlags::CLOEXEC).map_err(|e| EngineError::Pipe(e.into()));
    let (stdout_read, stdout_write) = pipe()?;
    let (stderr_read, stderr_write) = pipe()?;
    let (error_read, error_write) = pipe()?;
    for reader in [&stdout_read, &stderr_read] {
        // A bigger pipe lets a chatty task run ahead of our reads; the kernel may refuse a
        // size above pipe-max-size, which only costs throughput.
        let _ = rustix::pipe::fcntl_setpipe_size(reader, pipe_size);
    }
    let dev_null = std::fs::File::open("/dev/null").map_err(EngineError::DevNull)?;
    let stdio = [dev_null.as_fd(), stdout_write.as_fd(), stderr_write.as_fd()];
    let plan = ChildPlan::new(&program, &argv, &envp, &workdir, stdio, error_write.as_fd());
    let (pid, pidfd) = sys::spawn_child(&plan).map_err(EngineError::Clone)?;
    Ok(Cloning { pid, pidfd, stdout: stdout_read, stderr: stderr_read, error_pipe: error_read })
}

/// Waits (through io_uring) until the child exec'd or reported a failed step.
pub(crate) async fn exec_outcome(error_pipe: OwnedFd, program: &Path) -> Result<(), EngineError> {
    let file = tokio_uring::fs::File::from_std(std::fs::File::from(error_pipe));
    let (result, report) = file.read_at(Vec::with_capacity(5), 0).await;
    let _ = file.close().await;
    match result {
        Ok(0) => Ok(()),
        Ok(5) => {
            let step = ChildStep::from_byte(report[0]);
            let errno = i32::from_le_bytes([report[1], report[2], report[3], report[4]]);
            let source = io::Error::from_raw_os_error(errno);
            Err(match step {
                Some(ChildStep::Exec) => EngineError::Exec { program: program.to_owned(), source },
                Some(ChildStep::Workdir) => EngineError::Workdir { source },
                _ => EngineError::ChildSetup { step: format!("{step:?}"), source },
            })
        }
        Ok(_) => Err(EngineError::ChildSetup {
            step: "report".into(),
            source: io::Error::new(io::ErrorKind::InvalidData, "truncated error report"),
        }),
        Err(source) => Err(EngineError::ChildSetup { step: "report".into(), source }),
    }
}

fn c_string(bytes: &[u8], what: &'static str) -> Result<CString, EngineError> {
    CString::new(bytes).map_err(|_| EngineError::NulByte { what })
}

fn c_strings(items: &[Vec<u8>], what: &'static str) -> Result<Vec<CString>, EngineError> {
    items.iter().map(|item| c_string(item, what)).collect()
}
