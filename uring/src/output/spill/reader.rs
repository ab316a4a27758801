//! The spill's reading side: a reader behind its log's memory window reads the file back
//! in blocks and decodes the records. A block the page cache holds (the common case: the
//! file was just written) is read in place without blocking (`preadv2` with RWF_NOWAIT);
//! only one that must come from the disk goes to a blocking thread. Handing every 64 KiB
//! read to a blocking thread cost 0.4 CPU-seconds per GiB streamed. tmpfs (where the default
//! state directory, /run, is on most hosts) refuses RWF_NOWAIT: a spill file there is read in
//! place without it, as a read of memory never waits.

use std::sync::Arc;

use bytes::Bytes;

use super::format;
use crate::chunk::Chunk;
use crate::output::buffers;

/// A spill file as its readers read it: the file, and whether it is in memory (tmpfs,
/// ramfs), told once when it is made.
#[derive(Debug)]
pub(crate) struct SpillFile {
    file: std::fs::File,
    in_memory: bool,
}

impl SpillFile {
    pub(crate) fn new(file: std::fs::File) -> Self {
        Self { in_memory: in_memory(&file), file }
    }
}

/// The complete records in the file from `offset` (a record's start) on, up to `end` (the
/// file's length) and at most [`format::READ_BLOCK`] bytes, and how many bytes they took.
/// `None` if the file cannot be read back or holds something that is not a record.
pub(crate) async fn read_records(
    spill: Arc<SpillFile>,
    offset: u64,
    end: u64,
) -> Option<(Vec<Chunk>, usize)> {
    let length = usize::try_from(end - offset).unwrap_or(usize::MAX).min(format::READ_BLOCK);
    let wait = rustix::io::ReadWriteFlags::empty();
    // tmpfs refuses RWF_NOWAIT, and a read of memory never waits anyway.
    let flags = if spill.in_memory { wait } else { rustix::io::ReadWriteFlags::NOWAIT };
    if let Ok(block) = read_at(&spill.file, offset, length, flags) {
        return format::decode(block);
    }
    let blocking = move || read_at(&spill.file, offset, length, wait);
    let read = tokio::task::spawn_blocking(blocking).await;
    format::decode(read.ok()?.ok()?)
}

/// Whether `file` is on a file system in memory (tmpfs, ramfs), which a read never waits on.
fn in_memory(file: &std::fs::File) -> bool {
    const TMPFS_MAGIC: i64 = 0x0102_1994;
    const RAMFS_MAGIC: i64 = 0x8584_58f6;
    rustix::fs::fstatfs(file).is_ok_and(|stat| {
        // f_type is an i64 on x86_64 and narrower elsewhere.
        #[allow(clippy::useless_conversion)]
        let magic = i64::from(stat.f_type);
        magic == TMPFS_MAGIC || magic == RAMFS_MAGIC
    })
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

#[cfg(test)]
mod tests {
    use std::io::Write;

    use bytes::{Bytes, BytesMut};

    use super::*;
    use crate::chunk::OutputFd;

    /// An unlinked file in `dir` holding the records of `chunks`.
    fn spill_file_in(dir: &str, chunks: &[Chunk]) -> (Arc<SpillFile>, u64) {
        let mut records = BytesMut::new();
        format::encode(chunks, &mut records);
        let mut file = tempfile::tempfile_in(dir).expect("a spill file");
        file.write_all(&records).expect("write the records");
        (Arc::new(SpillFile::new(file)), records.len() as u64)
    }

    #[test]
    fn tmpfs_counts_as_memory_and_a_disk_does_not() {
        // /dev/shm is tmpfs and /var/tmp a disk wherever these tests run (CI included).
        let (on_tmpfs, _) = spill_file_in("/dev/shm", &[]);
        let (on_disk, _) = spill_file_in("/var/tmp", &[]);
        assert!(on_tmpfs.in_memory, "/dev/shm is not tmpfs here");
        assert!(!on_disk.in_memory);
    }

    #[test]
    fn records_are_read_back_from_tmpfs_and_from_a_disk_alike() {
        let chunks = [
            Chunk { fd: OutputFd::Stdout, data: Bytes::from(vec![b'a'; 40_000]), at_ns: 1 },
            Chunk { fd: OutputFd::Stderr, data: Bytes::from_static(b"oops\n"), at_ns: 2 },
        ];
        let runtime = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
        for dir in ["/dev/shm", "/var/tmp"] {
            let (file, end) = spill_file_in(dir, &chunks);
            let (read, used) =
                runtime.block_on(read_records(file, 0, end)).expect("records read back");
            assert_eq!((read.as_slice(), used as u64), (&chunks[..], end), "{dir}");
        }
    }
}
