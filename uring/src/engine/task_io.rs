//! A task's I/O on the engine thread: reaping its child through its pidfd, and pumping
//! each of its output pipes into its log with io_uring reads.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::rc::Rc;

use bytes::Bytes;

use super::config::EngineConfig;
use crate::chunk::{Chunk, OutputFd};
use crate::output::buffers;
use crate::output::spill::SpillWriter;
use crate::output::spill::format::MAX_CHUNK;
use crate::output::{LineChunker, OutputLog};
use crate::{ExitStatus, sys};

/// Waits for the pidfd to become readable (the child exited), kills what is left of the
/// child's process group (its session, made by `setsid` in the child), and reaps the child.
/// The group is killed before the reap, while the zombie leader still holds its number.
pub(super) async fn reap(pidfd: Rc<OwnedFd>, pid: u32) -> io::Result<ExitStatus> {
    use rustix::process::{WaitId, WaitIdOptions, waitid};
    let pidfd = sys::watch_pidfd(pidfd)?;
    let wait = |options| {
        waitid(
            WaitId::PidFd(pidfd.get_ref().as_fd()),
            options | WaitIdOptions::EXITED | WaitIdOptions::NOHANG,
        )
    };
    loop {
        let mut ready = pidfd.readable().await?;
        // Peek first (NOWAIT): only a child that has really exited has its group killed.
        if wait(WaitIdOptions::NOWAIT)?.is_none() {
            ready.clear_ready();
            continue;
        }
        match sys::kill_process_group(pid) {
            Err(error) if error.raw_os_error() != Some(libc::ESRCH) => {
                tracing::warn!(%error, pid, "cannot kill the task's process group");
            }
            _ => {}
        }
        let status = wait(WaitIdOptions::empty())?
            .ok_or_else(|| io::Error::other("an exited child could not be reaped"))?;
        return Ok(match (status.exit_status(), status.terminating_signal()) {
            (_, Some(signal)) => ExitStatus::Signaled(signal),
            (Some(code), None) => ExitStatus::Exited(code),
            (None, None) => ExitStatus::Exited(0),
        });
    }
}

/// Writes what `pieces` brings to the child's stdin pipe with io_uring, in order, until the
/// sender is dropped (end of input), the pipe is closed on the far side (the task is gone, or
/// it closed its stdin and no process of it holds it) or `ended` resolves (the task ended);
/// then closes the pipe.
pub(super) async fn feed(
    pipe: OwnedFd,
    mut pieces: tokio::sync::mpsc::Receiver<Bytes>,
    ended: impl std::future::Future<Output = ()>,
) {
    let file = tokio_uring::fs::File::from_std(std::fs::File::from(pipe));
    let writes = async {
        while let Some(piece) = pieces.recv().await {
            crate::stats::submitted();
            if file.write_all_at(piece, 0).await.0.is_err() {
                break;
            }
        }
    };
    tokio::select! {
        () = writes => {}
        () = ended => {}
    }
    drop(file);
}

/// Reads one pipe to its end with io_uring and appends what it reads to `log`, moving the
/// log's oldest chunks to its spill file whenever its memory window is over budget.
pub(super) async fn pump(
    pipe: OwnedFd,
    fd: OutputFd,
    log: &OutputLog,
    spill: &SpillWriter,
    config: &EngineConfig,
) {
    use tokio_uring::buf::BoundedBuf;
    let file = tokio_uring::fs::File::from_std(std::fs::File::from(pipe));
    let mut chunker = LineChunker::new(config.chunk_limit.min(MAX_CHUNK));
    // Every chunk cut from a read is stamped with that read's time.
    let emit_read_at = |at_ns| move |data| log.append(Chunk { fd, data, at_ns });
    let mut read_at_ns = 0;
    let asked = config.read_size.min(buffers::SIZE);
    let mut buffer = buffers::take();
    loop {
        crate::stats::submitted();
        let (result, returned) = file.read_at(buffer.slice(..asked), 0).await;
        buffer = returned.into_inner();
        match result {
            Ok(0) => break,
            Ok(read) => {
                read_at_ns = crate::chunk::now_ns();
                // A partial line is held back only if more bytes are already in the pipe
                // (FIONREAD is an ioctl, not a read); otherwise it goes out now.
                let more_waiting = read == asked && sys::bytes_waiting(&file) > 0;
                // A full read keeps its buffer (no copy); a shorter one is copied out, so that
                // what a log holds is what its budget counts (a line a second does not hold
                // a whole buffer each).
                let data = if read == asked {
                    buffers::freeze(std::mem::replace(&mut buffer, buffers::take()), read)
                } else {
                    Bytes::copy_from_slice(&buffer[..read])
                };
                chunker.push(data, more_waiting, &mut emit_read_at(read_at_ns));
                if log.over_budget() {
                    spill.make_room(log).await;
                }
            }
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => {
                tracing::error!(%error, ?fd, "cannot read task output");
                break;
            }
        }
    }
    chunker.finish(&mut emit_read_at(read_at_ns));
    crate::stats::submitted();
    let _ = file.close().await;
}
