//! A task's output: [`LineChunker`] cuts the bytes read from a pipe into chunks at newlines
//! (pure, no I/O), [`OutputLog`] keeps every chunk of a task in order with its fd (its
//! oldest in a spill file once its window is full), [`OutputBudget`] bounds what all logs
//! hold, `buffers` recycles the memory that pipe and spill reads land in, and [`LogReader`]
//! lets any number of subscribers follow a log, each at its own cursor.
//!
//! The engine thread is the only writer; readers on other threads take the lock only to
//! clone a `Bytes` handle, so a slow or vanished reader never holds up the writer or the
//! other readers. The log never drops or alters a byte.

mod budget;
pub(crate) mod buffers;
mod chunker;
pub(crate) mod log;
mod reader;
pub(crate) mod spill;

pub use budget::OutputBudget;
pub use chunker::LineChunker;
pub use log::OutputLog;
pub use reader::{LogReader, View};
