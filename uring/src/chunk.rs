//! The unit of a task's output: a [`Chunk`] of bytes exactly as written to one [`OutputFd`].
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

/// A piece of output, exactly as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    /// The descriptor it was written to.
    pub fd: OutputFd,
    /// The bytes.
    pub data: Bytes,
}
