//! The on-disk part of an [`crate::OutputLog`]: once a log's in-memory window is over its
//! budget, its oldest chunks are appended to an unlinked file (O_TMPFILE) as records
//! ([`format`]), written by the engine through io_uring ([`writer`]). Readers behind the
//! window read the file back in blocks and decode the records ([`reader`]); sparse
//! checkpoints (chunk number, file offset, time) kept by the log let a new reader start
//! anywhere, by position or by time, without scanning it all. The file is only appended to.

pub(crate) mod format;
pub(crate) mod reader;
pub(crate) mod writer;

pub(crate) use reader::{SpillFile, read_records};
pub(crate) use writer::SpillWriter;
