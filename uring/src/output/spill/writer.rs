//! The spill's writing side: moves a task's oldest output from its log's memory window to
//! the task's spill file (created on first need, O_TMPFILE in the spill directory) through
//! io_uring. Shared by the task's two pumps on the engine thread; one batch at a time.
//!
//! When the file cannot take a batch (a full disk, a quota, the engine's limit on all kept
//! output...), nothing is dropped and memory
//! does not grow: the pumps stop reading, so the task blocks on its full pipe, and retry with
//! a backoff until the disk has room again. Once the task's command has ended, what its pipes
//! still hold (at most their buffers) stays in memory instead, so its end is never held up.

use std::cell::{Cell, OnceCell};
use std::io;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::Notify;

use crate::output::log::OutputLog;

/// Opens an unlinked read-write file in `dir` (O_TMPFILE): it disappears with its last fd.
fn create(dir: &std::path::Path) -> io::Result<std::os::fd::OwnedFd> {
    use rustix::fs::{Mode, OFlags};
    let flags = OFlags::TMPFILE | OFlags::RDWR | OFlags::CLOEXEC;
    Ok(rustix::fs::open(dir, flags, Mode::from_raw_mode(0o600))?)
}

/// First wait before retrying a failed spill; doubled up to [`RETRY_MAX`].
const RETRY_MIN: Duration = Duration::from_millis(10);
/// Longest wait between two retries.
const RETRY_MAX: Duration = Duration::from_secs(1);

/// One task's spill file and its writing state.
pub(crate) struct SpillWriter {
    dir: Option<PathBuf>,
    /// The task's host pid, to name it in logs.
    pid: u32,
    file: OnceCell<tokio_uring::fs::File>,
    busy: Cell<bool>,
    /// Set from a failed write until one succeeds.
    failing: Cell<bool>,
    /// Set once the task's command has ended.
    ended: Cell<bool>,
    wake: Notify,
}

impl SpillWriter {
    /// A writer that creates its file in `dir` on first need.
    pub(crate) fn new(dir: Option<PathBuf>, pid: u32) -> Self {
        Self {
            dir,
            pid,
            file: OnceCell::new(),
            busy: Cell::new(false),
            failing: Cell::new(false),
            ended: Cell::new(false),
            wake: Notify::new(),
        }
    }

    /// The task's command has ended: stop waiting for room; what cannot be spilled from now
    /// on (at most what its pipes still hold) stays in memory.
    pub(crate) fn end(&self) {
        self.ended.set(true);
        self.wake.notify_waiters();
    }

    /// Closes the writer's own fd of the file, if it made one (the log's readers keep theirs):
    /// at once, rather than when the engine's ring next submits the close a drop queues.
    pub(crate) async fn close(self) {
        if let Some(file) = self.file.into_inner() {
            crate::stats::submitted();
            let _ = file.close().await;
        }
    }

    /// Brings the log's memory window back under its budget by moving its oldest chunks to
    /// the file, unless the other pump is writing a batch now. While writes fail, waits and
    /// retries (the caller reads no more meanwhile) until one succeeds or the task ends.
    pub(crate) async fn make_room(&self, log: &OutputLog) {
        let mut retry = RETRY_MIN;
        while log.over_budget() && !self.busy.get() {
            self.busy.set(true);
            let written = self.write_batch(log).await;
            self.busy.set(false);
            match written {
                Ok(()) => {
                    if self.failing.replace(false) {
                        log.set_held(None);
                        tracing::info!(pid = self.pid, "task output spills to disk again");
                    }
                    return;
                }
                Err(error) => {
                    log.set_held(Some(error.to_string()));
                    if !self.failing.replace(true) {
                        tracing::error!(
                            pid = self.pid,
                            %error,
                            "cannot spill task output; the task waits until there is room"
                        );
                    }
                    let ended = self.wake.notified();
                    if self.ended.get() {
                        log.set_held(None);
                        return;
                    }
                    tokio::select! {
                        () = tokio::time::sleep(retry) => {}
                        () = ended => {}
                    }
                    retry = (retry * 2).min(RETRY_MAX);
                }
            }
        }
    }

    async fn write_batch(&self, log: &OutputLog) -> io::Result<()> {
        if log.kept_budget_full() {
            let full = "all tasks' output has reached the limit of what rrocker keeps";
            return Err(io::Error::new(io::ErrorKind::StorageFull, full));
        }
        if self.file.get().is_none() {
            let dir = self.dir.as_deref().ok_or_else(|| io::Error::other("no spill directory"))?;
            let file = create(dir)?;
            log.attach_spill_file(std::fs::File::from(file.try_clone()?));
            let _ = self.file.set(tokio_uring::fs::File::from_std(std::fs::File::from(file)));
        }
        let file = self.file.get().expect("set above");
        let (records, count, offset) = log.spill_batch();
        if count == 0 {
            return Ok(());
        }
        let length = write_all_at(file, records, offset).await?;
        log.commit_spill(count, length);
        Ok(())
    }
}

/// Writes all of `buffers` at `offset` with as many writev submissions as short writes need;
/// returns the bytes written. (tokio-uring's own `writev_at_all` panics on a short write,
/// which a full disk gives.)
async fn write_all_at(
    file: &tokio_uring::fs::File,
    mut buffers: Vec<Bytes>,
    offset: u64,
) -> io::Result<u64> {
    let mut written = 0;
    while !buffers.is_empty() {
        crate::stats::submitted();
        let (result, returned) = file.writev_at(buffers, offset + written).await;
        let count = result?;
        if count == 0 {
            return Err(io::Error::new(io::ErrorKind::WriteZero, "the spill file takes no more"));
        }
        written += count as u64;
        buffers = advance(returned, count);
    }
    Ok(written)
}

/// What is left of `buffers` once their first `count` bytes are written.
fn advance(buffers: Vec<Bytes>, mut count: usize) -> Vec<Bytes> {
    let mut left = Vec::with_capacity(buffers.len());
    for buffer in buffers {
        if count >= buffer.len() {
            count -= buffer.len();
        } else {
            left.push(buffer.slice(count..));
            count = 0;
        }
    }
    left
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(buffers: &[Bytes]) -> Vec<&[u8]> {
        buffers.iter().map(|buffer| buffer.as_ref()).collect()
    }

    #[test]
    fn advance_drops_written_buffers_and_cuts_the_one_written_in_part() {
        let buffers = || {
            vec![Bytes::from_static(b"abc"), Bytes::from_static(b"de"), Bytes::from_static(b"f")]
        };
        assert_eq!(texts(&advance(buffers(), 0)), [&b"abc"[..], b"de", b"f"]);
        assert_eq!(texts(&advance(buffers(), 2)), [&b"c"[..], b"de", b"f"]);
        assert_eq!(texts(&advance(buffers(), 3)), [&b"de"[..], b"f"]);
        assert_eq!(texts(&advance(buffers(), 4)), [&b"e"[..], b"f"]);
        assert!(advance(buffers(), 6).is_empty());
    }

    #[test]
    fn buffers_written_at_an_offset_land_in_order() {
        tokio_uring::start(async {
            let dir = tempfile::tempdir().expect("tempdir");
            let path = dir.path().join("spill");
            let file = tokio_uring::fs::File::create(&path).await.expect("create");
            let buffers: Vec<Bytes> =
                (0..600u32).map(|i| Bytes::from(i.to_le_bytes().to_vec())).collect();
            let written = write_all_at(&file, buffers, 4).await.expect("write");
            assert_eq!(written, 2400);
            file.close().await.expect("close");
            let data = std::fs::read(&path).expect("read back");
            assert_eq!(data.len(), 2404);
            assert_eq!(&data[4..8], &0u32.to_le_bytes());
            assert_eq!(&data[2400..], &599u32.to_le_bytes());
        });
    }
}
