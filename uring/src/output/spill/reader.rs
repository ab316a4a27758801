//! The spill's reading side: a reader behind its log's memory window reads the file back
//! in blocks and decodes the records. A block the page cache holds (the common case: the
//! file was just written) is read in place without blocking (`preadv2` with RWF_NOWAIT);
//! only one that must come from the disk goes to a blocking thread. Handing every 64 KiB
//! read to a blocking thread cost 0.4 CPU-seconds per GiB streamed.

use std::sync::Arc;

use bytes::Bytes;

use super::format;
use crate::chunk::Chunk;
use crate::output::buffers;

/// The complete records in the file from `offset` (a record's start) on, up to `end` (the
/// file's length) and at most [`format::READ_BLOCK`] bytes, and how many bytes they took.
/// `None` if the file cannot be read back or holds something that is not a record.
pub(crate) async fn read_records(
    file: Arc<std::fs::File>,
    offset: u64,
    end: u64,
) -> Option<(Vec<Chunk>, usize)> {
    let length = usize::try_from(end - offset).unwrap_or(usize::MAX).min(format::READ_BLOCK);
    let nowait = rustix::io::ReadWriteFlags::NOWAIT;
    if let Ok(block) = read_at(&file, offset, length, nowait) {
        return format::decode(block);
    }
    let blocking = move || read_at(&file, offset, length, rustix::io::ReadWriteFlags::empty());
    let read = tokio::task::spawn_blocking(blocking).await;
    format::decode(read.ok()?.ok()?)
}

/// Reads `length` bytes at `offset` (all there: the records are complete) into a recycled
/// buffer (`buffers`). With `RWF_NOWAIT` in `flags`, fails (EAGAIN) rather than wait for the
/// disk.
fn read_at(
    file: &std::fs::File,
    offset: u64,
    length: usize,
    flags: rustix::io::ReadWriteFlags,
) -> std::io::Result<Bytes> {
    let mut block = buffers::take();
    let mut done = 0;
    while done < length {
        let rest = &mut [std::io::IoSliceMut::new(&mut block[done..length])];
        match rustix::io::preadv2(file, rest, offset + done as u64, flags)? {
            0 => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            read => done += read,
        }
    }
    Ok(buffers::freeze(block, length))
}
