//! One task's output log: its chunks in order, the newest in memory (its window), the
//! oldest moved to its spill file, and how far it has got for readers to wait on.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use bytes::Bytes;
use tokio::sync::watch;

use super::budget::OutputBudget;
use super::spill::{SpillFile, format};
use crate::chunk::Chunk;

/// How far a log has got: the number of chunks and whether it is complete.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Progress {
    pub(super) chunks: usize,
    pub(super) closed: bool,
}

/// Where a log's chunks are: the oldest in the spill file, the newest in memory.
#[derive(Debug, Default)]
pub(super) struct Stored {
    /// The in-memory chunks, numbers `first..first + window.len()`.
    pub(super) window: VecDeque<Chunk>,
    /// The number of the window's first chunk (every earlier one is in the file).
    pub(super) first: usize,
    /// Bytes held by the window.
    pub(super) window_bytes: usize,
    /// Bytes of records in the file (all complete).
    pub(super) file_len: u64,
    /// Bytes of output appended so far (in memory and in the file).
    pub(super) total: u64,
    /// Some records' starts, at least `format::CHECKPOINT_EVERY` apart, the first at the
    /// file's start: the spill's index, by chunk number and by time.
    pub(super) checkpoints: Vec<Checkpoint>,
    /// The time of the newest chunk (0 before the first).
    pub(super) last_at_ns: u64,
}

/// A record's start in the spill file, where a reader can begin.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Checkpoint {
    /// The number of the chunk whose record starts there.
    pub(super) chunk: usize,
    /// The record's offset in the file.
    pub(super) offset: u64,
    /// That chunk's time; no chunk before it is later. (0 for the file's start: a bound
    /// below every chunk's.)
    pub(super) at_ns: u64,
}

/// Every chunk a task has written, in order. Written by the engine, read by any number of
/// [`LogReader`](super::LogReader)s. The newest chunks stay in memory, up to a budget; with a spill file, older
/// ones move to it (see `spill/`) so that memory does not grow with the output.
#[derive(Debug)]
pub struct OutputLog {
    stored: Mutex<Stored>,
    pub(super) progress: watch::Sender<Progress>,
    /// The spill file, for readers (the engine writes through its own io_uring handle).
    pub(super) file: OnceLock<Arc<SpillFile>>,
    /// In-memory budget in bytes (unbounded without a spill file).
    window_limit: usize,
    /// The budget every log of the engine shares, if any.
    shared: Option<Arc<OutputBudget>>,
    /// Why the log cannot take more output now (its spill fails), while that lasts.
    held: Mutex<Option<String>>,
}

impl Default for OutputLog {
    fn default() -> Self {
        Self::with_window(usize::MAX, None)
    }
}

impl Drop for OutputLog {
    fn drop(&mut self) {
        if let Some(shared) = &self.shared {
            let stored = self.lock();
            shared.used.fetch_sub(stored.window_bytes, Ordering::Relaxed);
            shared.kept.fetch_sub(stored.total, Ordering::Relaxed);
        }
    }
}

impl OutputLog {
    /// An empty, open log that keeps everything in memory.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// An empty, open log whose in-memory window holds `window_limit` bytes (less while
    /// `shared` is exceeded) once a spill file is attached.
    pub fn with_window(window_limit: usize, shared: Option<Arc<OutputBudget>>) -> Self {
        Self {
            stored: Mutex::new(Stored {
                checkpoints: vec![Checkpoint::default()],
                ..Stored::default()
            }),
            progress: watch::Sender::new(Progress::default()),
            file: OnceLock::new(),
            window_limit,
            shared,
            held: Mutex::new(None),
        }
    }

    /// Why the log takes no more output now, its writer waiting for room (its spill file
    /// cannot take more), while that lasts.
    pub fn held(&self) -> Option<String> {
        self.held.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// Records why the log takes no more output now, or that it does again (`None`).
    pub(crate) fn set_held(&self, why: Option<String>) {
        *self.held.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = why;
    }

    /// The window's size limit now: its own, or the minimum while the shared budget is
    /// exceeded.
    fn current_limit(&self) -> usize {
        match &self.shared {
            Some(shared) if shared.exceeded() => self.window_limit.min(OutputBudget::MIN_WINDOW),
            _ => self.window_limit,
        }
    }

    /// Appends a chunk and wakes the readers. A chunk earlier than the one before it (the
    /// wall clock was set back, or the other descriptor's pump read it first and appended it
    /// second) takes that one's time: a log's times never decrease.
    pub fn append(&self, mut chunk: Chunk) {
        if let Some(shared) = &self.shared {
            shared.used.fetch_add(chunk.data.len(), Ordering::Relaxed);
            shared.kept.fetch_add(chunk.data.len() as u64, Ordering::Relaxed);
        }
        let count = {
            let mut stored = self.lock();
            chunk.at_ns = chunk.at_ns.max(stored.last_at_ns);
            stored.last_at_ns = chunk.at_ns;
            stored.window_bytes += chunk.data.len();
            stored.total += chunk.data.len() as u64;
            stored.window.push_back(chunk);
            stored.first + stored.window.len()
        };
        self.progress.send_modify(|progress| progress.chunks = count);
    }

    /// Marks the log complete: no chunk follows.
    pub fn close(&self) {
        self.progress.send_modify(|progress| progress.closed = true);
    }

    /// Whether the log is complete.
    pub fn is_closed(&self) -> bool {
        self.progress.borrow().closed
    }

    /// Bytes the log keeps for replay (all it was given: in memory and spilled).
    pub fn kept_bytes(&self) -> u64 {
        self.lock().total
    }

    /// Bytes held in memory.
    pub fn window_bytes(&self) -> usize {
        self.lock().window_bytes
    }

    /// Whether the window is over its budget (its own, or the shared one).
    pub(crate) fn over_budget(&self) -> bool {
        self.window_limit != usize::MAX && self.lock().window_bytes > self.current_limit()
    }

    /// Whether the logs sharing this one's budget hold as much output as they may.
    pub(crate) fn kept_budget_full(&self) -> bool {
        self.shared.as_ref().is_some_and(|shared| shared.is_full())
    }

    /// Gives the log its spill file (for readers).
    pub(crate) fn attach_spill_file(&self, file: std::fs::File) {
        let _ = self.file.set(Arc::new(SpillFile::new(file)));
    }

    /// The records of the oldest chunks that bring the window down to half its budget (as
    /// buffers to write in order, see `format::records`), the number of chunks they
    /// hold, and the file offset they go to. The chunks stay readable in memory until
    /// [`commit_spill`](Self::commit_spill).
    pub(crate) fn spill_batch(&self) -> (Vec<Bytes>, usize, u64) {
        let target = self.current_limit() / 2;
        let stored = self.lock();
        let mut bytes = stored.window_bytes;
        let mut count = 0;
        for chunk in &stored.window {
            if bytes <= target {
                break;
            }
            bytes -= chunk.data.len();
            count += 1;
        }
        let records = format::records(stored.window.iter().take(count));
        (records, count, stored.file_len)
    }

    /// Records that the `count` oldest in-memory chunks are now `length` bytes in the file,
    /// and drops them from memory.
    pub(crate) fn commit_spill(&self, count: usize, length: u64) {
        let mut stored = self.lock();
        let first_at_ns = stored.window.front().map_or(0, |chunk| chunk.at_ns);
        let freed: usize = stored.window.drain(..count).map(|chunk| chunk.data.len()).sum();
        stored.window_bytes -= freed;
        if let Some(shared) = &self.shared {
            shared.used.fetch_sub(freed, Ordering::Relaxed);
        }
        let last = *stored.checkpoints.last().expect("the file's start is first");
        if stored.file_len - last.offset >= format::CHECKPOINT_EVERY && stored.first > last.chunk {
            let checkpoint =
                Checkpoint { chunk: stored.first, offset: stored.file_len, at_ns: first_at_ns };
            stored.checkpoints.push(checkpoint);
        }
        stored.first += count;
        stored.file_len += length;
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, Stored> {
        // A panic while holding this lock leaves the state consistent (updates are atomic
        // for us).
        self.stored.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
