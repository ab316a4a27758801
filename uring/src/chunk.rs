//! The unit of a task's output: a [`Chunk`] of bytes exactly as written to one [`OutputFd`],
//! with the time it was read.
//! Shared by the in-memory log (`output/log.rs`) and its on-disk part (`output/spill/`).

use bytes::Bytes;

/// Which descriptor of the task wrote some output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OutputFd {
    /// fd 1.
    Stdout,
    /// fd 2.
    Stderr,
}

/// A piece of output, exactly as written, and when it was read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    /// The descriptor it was written to.
    pub fd: OutputFd,
    /// The bytes.
    pub data: Bytes,
    /// When the engine read it (the read that completed it), in nanoseconds since the Unix
    /// epoch. A log never holds a chunk earlier than the one before it (see
    /// [`OutputLog::append`](crate::OutputLog::append)).
    pub at_ns: u64,
}

impl Chunk {
    /// `data` written to `fd`, read now.
    pub fn now(fd: OutputFd, data: Bytes) -> Self {
        Self { fd, data, at_ns: now_ns() }
    }
}

/// The wall-clock time now, in nanoseconds since the Unix epoch (0 before it).
pub(crate) fn now_ns() -> u64 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    since.map_or(0, |since| u64::try_from(since.as_nanos()).unwrap_or(u64::MAX))
}
