//! Readers of an output log: each its own cursor, from memory while the log holds its
//! chunks there, from the spill file (`spill::reader`) once they moved, waiting on the
//! log's progress for more.

use std::collections::VecDeque;
use std::sync::Arc;

use tokio::sync::watch;

use super::log::{OutputLog, Progress};
use super::spill;
use crate::chunk::{Chunk, OutputFd};

impl OutputLog {
    /// A reader positioned at the first byte.
    pub fn reader(self: &Arc<Self>) -> LogReader {
        LogReader {
            log: Arc::clone(self),
            next: 0,
            skip: 0,
            only: None,
            end: None,
            progress: self.progress.subscribe(),
            read_ahead: VecDeque::new(),
            file_position: None,
        }
    }

    /// A reader of what `view` selects: one descriptor's chunks or both, from the first
    /// byte or the last lines, following the log or ending at what it holds now.
    pub async fn reader_with(self: &Arc<Self>, view: View) -> LogReader {
        let mut reader = self.reader();
        reader.only = view.only;
        if !view.follow {
            reader.end = Some(self.progress.borrow().chunks);
        }
        if let Some(lines) = view.tail_lines {
            reader.seek_tail(lines).await;
        }
        reader
    }

    /// Where the last `lines` lines of `only`'s chunks before chunk `end` begin (chunk
    /// number, byte in it), if the in-memory window holds them or the log never spilled.
    fn tail_in_window(
        &self,
        lines: u64,
        only: Option<OutputFd>,
        end: usize,
    ) -> Option<(usize, usize)> {
        if lines == 0 {
            return Some((end, 0));
        }
        let stored = self.lock();
        let mut found = 0;
        let mut last = true;
        for number in (stored.first..end.min(stored.first + stored.window.len())).rev() {
            let chunk = &stored.window[number - stored.first];
            if only.is_some_and(|fd| fd != chunk.fd) {
                continue;
            }
            let mut data = &chunk.data[..];
            // The output's last newline ends its last line; it starts none.
            if std::mem::take(&mut last) && data.last() == Some(&b'\n') {
                data = &data[..data.len() - 1];
            }
            for at in memchr::memrchr_iter(b'\n', data) {
                found += 1;
                if found == lines {
                    return Some((number, at + 1));
                }
            }
        }
        (stored.first == 0).then_some((0, 0))
    }
}

/// Where a reader goes next: from memory, or from the file at an offset.
enum Source {
    Memory(Chunk),
    File { file: Arc<spill::SpillFile>, chunk: usize, offset: u64, end: u64 },
}

/// What a reader reads of a log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct View {
    /// Only this descriptor's output; `None` for both.
    pub only: Option<OutputFd>,
    /// Start at the last this many lines (of the output there is when the reader is made);
    /// `None` for the first byte.
    pub tail_lines: Option<u64>,
    /// Follow the log until it is closed; else end at what it holds when the reader is made.
    pub follow: bool,
}

impl Default for View {
    fn default() -> Self {
        Self { only: None, tail_lines: None, follow: true }
    }
}

/// One subscriber's cursor into an [`OutputLog`].
#[derive(Debug)]
pub struct LogReader {
    log: Arc<OutputLog>,
    /// The number of the next chunk to return.
    next: usize,
    /// Bytes of that chunk already skipped (a tail that starts inside it).
    skip: usize,
    /// Only this descriptor's chunks.
    only: Option<OutputFd>,
    /// The number of the chunk to end before, if not at the log's close.
    end: Option<usize>,
    progress: watch::Receiver<Progress>,
    /// Chunks decoded from the file and not returned yet (numbers `next..`).
    read_ahead: VecDeque<Chunk>,
    /// Where the file read stopped: (number of the next chunk, its file offset).
    file_position: Option<(usize, u64)>,
}

impl LogReader {
    /// The next chunk, waiting for it if needed; `None` once the log is closed and read to
    /// the end.
    pub async fn next(&mut self) -> Option<Chunk> {
        while let Some(chunk) = self.next_any().await {
            // A tail that starts at a chunk's end leaves nothing of it.
            if self.only.is_none_or(|fd| fd == chunk.fd) && !chunk.data.is_empty() {
                return Some(chunk);
            }
        }
        None
    }

    /// The next chunk of either descriptor, less the bytes a tail skips.
    async fn next_any(&mut self) -> Option<Chunk> {
        let mut chunk = self.next_whole().await?;
        let skip = std::mem::take(&mut self.skip);
        if skip > 0 {
            chunk.data = chunk.data.slice(skip.min(chunk.data.len())..);
        }
        Some(chunk)
    }

    async fn next_whole(&mut self) -> Option<Chunk> {
        loop {
            if self.end.is_some_and(|end| self.next >= end) {
                return None;
            }
            if let Some(chunk) = self.read_ahead.pop_front() {
                self.next += 1;
                return Some(chunk);
            }
            let progress = *self.progress.borrow_and_update();
            if self.next < progress.chunks {
                match self.source() {
                    Source::Memory(chunk) => {
                        self.next += 1;
                        return Some(chunk);
                    }
                    Source::File { file, chunk, offset, end } => {
                        self.read_file(file, chunk, offset, end).await;
                        continue;
                    }
                }
            }
            if progress.closed {
                return None;
            }
            // The sender lives in the log we hold, so `changed` cannot fail.
            let _ = self.progress.changed().await;
        }
    }

    /// Moves the reader to where the last `lines` lines (of its descriptor) before its end
    /// begin: found in memory when the window holds them, else by counting every line of
    /// the log (spill file included) and skipping all but the last `lines`.
    async fn seek_tail(&mut self, lines: u64) {
        let end = self.end.unwrap_or_else(|| self.progress.borrow().chunks);
        if let Some((chunk, skip)) = self.log.tail_in_window(lines, self.only, end) {
            (self.next, self.skip) = (chunk, skip);
            return;
        }
        let scan = || {
            let mut scan = self.log.reader();
            (scan.only, scan.end) = (self.only, Some(end));
            scan
        };
        let (mut newlines, mut ends_in_newline) = (0u64, true);
        let mut counter = scan();
        while let Some(chunk) = counter.next().await {
            newlines += memchr::memchr_iter(b'\n', &chunk.data).count() as u64;
            ends_in_newline = chunk.data.last().is_none_or(|byte| *byte == b'\n');
        }
        let total = newlines + u64::from(!ends_in_newline);
        let Some(mut to_skip) = total.checked_sub(lines).filter(|skip| *skip > 0) else {
            return;
        };
        let mut finder = scan();
        while let Some(chunk) = finder.next().await {
            for at in memchr::memchr_iter(b'\n', &chunk.data) {
                to_skip -= 1;
                if to_skip == 0 {
                    (self.next, self.skip) = (finder.next - 1, at + 1);
                    return;
                }
            }
        }
        self.next = end;
    }

    fn source(&self) -> Source {
        let stored = self.log.lock();
        if self.next >= stored.first {
            return Source::Memory(stored.window[self.next - stored.first].clone());
        }
        let (chunk, offset) = match self.file_position {
            Some((chunk, offset)) if chunk <= self.next => (chunk, offset),
            _ => {
                let at = stored.checkpoints.partition_point(|(chunk, _)| *chunk <= self.next);
                stored.checkpoints[at - 1]
            }
        };
        let file = Arc::clone(self.log.file.get().expect("chunks were spilled to a file"));
        Source::File { file, chunk, offset, end: stored.file_len }
    }

    /// Reads a block of records from `offset` (the start of chunk `chunk`) and keeps the
    /// chunks from `self.next` on.
    async fn read_file(
        &mut self,
        file: Arc<spill::SpillFile>,
        chunk: usize,
        offset: u64,
        end: u64,
    ) {
        let decoded = spill::read_records(file, offset, end).await;
        let Some((chunks, used)) = decoded.filter(|(chunks, _)| !chunks.is_empty()) else {
            // The file cannot be read back: this reader ends here rather than loop.
            tracing::error!(offset, "cannot read spilled output back");
            self.next = usize::MAX;
            return;
        };
        let count = chunks.len();
        let skip = self.next - chunk;
        self.read_ahead.extend(chunks.into_iter().skip(skip));
        self.file_position = Some((chunk + count, offset + used as u64));
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime")
    }

    #[test]
    fn readers_replay_from_the_start_and_end_after_close() {
        let log = OutputLog::new();
        log.append(Chunk { fd: OutputFd::Stdout, data: Bytes::from_static(b"a") });
        let mut early = log.reader();
        log.append(Chunk { fd: OutputFd::Stderr, data: Bytes::from_static(b"b") });
        log.close();
        let mut late = log.reader();
        rt().block_on(async {
            for reader in [&mut early, &mut late] {
                assert_eq!(reader.next().await.map(|c| c.data), Some(Bytes::from_static(b"a")));
                assert_eq!(reader.next().await.map(|c| c.fd), Some(OutputFd::Stderr));
                assert_eq!(reader.next().await, None);
            }
        });
    }

    fn log_of(pieces: &[(OutputFd, &'static [u8])]) -> Arc<OutputLog> {
        let log = OutputLog::new();
        for (fd, data) in pieces {
            log.append(Chunk { fd: *fd, data: Bytes::from_static(data) });
        }
        log
    }

    async fn read_all(mut reader: LogReader) -> Vec<u8> {
        let mut all = Vec::new();
        while let Some(chunk) = reader.next().await {
            all.extend_from_slice(&chunk.data);
        }
        all
    }

    const OUT: OutputFd = OutputFd::Stdout;
    const ERR: OutputFd = OutputFd::Stderr;

    #[test]
    fn a_tail_starts_at_the_last_lines_of_the_chosen_descriptor() {
        let log = log_of(&[(OUT, b"1\n2\n"), (ERR, b"e1\n"), (OUT, b"3\n4"), (ERR, b"e2\n")]);
        log.close();
        let view = |only, tail_lines| View { only, tail_lines, follow: true };
        rt().block_on(async {
            let log = &log;
            let read = |view| async move { read_all(log.reader_with(view).await).await };
            assert_eq!(read(view(None, Some(1))).await, b"4e2\n");
            assert_eq!(read(view(None, Some(2))).await, b"3\n4e2\n");
            assert_eq!(read(view(None, Some(3))).await, b"e1\n3\n4e2\n");
            assert_eq!(read(view(Some(OUT), Some(2))).await, b"3\n4");
            assert_eq!(read(view(Some(OUT), Some(3))).await, b"2\n3\n4");
            assert_eq!(read(view(Some(ERR), Some(1))).await, b"e2\n");
            assert_eq!(read(view(Some(ERR), None)).await, b"e1\ne2\n");
            assert_eq!(read(view(None, Some(100))).await, b"1\n2\ne1\n3\n4e2\n");
            assert_eq!(read(view(None, Some(0))).await, b"");
        });
    }

    #[test]
    fn a_tail_reaching_into_the_spill_file_counts_the_lines_there() {
        use std::io::Write;
        let log = Arc::new(OutputLog::with_window(4, None));
        for line in [&b"a\nb\n"[..], b"c\n", b"d\ne\n", b"f"] {
            log.append(Chunk { fd: OUT, data: Bytes::copy_from_slice(line) });
        }
        log.close();
        // Spill the window down to its budget's half, as the engine does.
        let mut file = tempfile::tempfile().expect("a spill file");
        let (records, count, offset) = log.spill_batch();
        assert_eq!((count, offset), (3, 0), "the three oldest chunks go to the file");
        let length: usize = records.iter().map(|record| record.len()).sum();
        for record in records {
            file.write_all(&record).expect("spill");
        }
        log.attach_spill_file(file);
        log.commit_spill(count, length as u64);
        let tail = |lines| View { tail_lines: Some(lines), ..View::default() };
        rt().block_on(async {
            assert_eq!(read_all(log.reader_with(tail(1)).await).await, b"f");
            assert_eq!(read_all(log.reader_with(tail(3)).await).await, b"d\ne\nf");
            assert_eq!(read_all(log.reader_with(tail(4)).await).await, b"c\nd\ne\nf");
            assert_eq!(read_all(log.reader_with(tail(5)).await).await, b"b\nc\nd\ne\nf");
            assert_eq!(read_all(log.reader_with(tail(9)).await).await, b"a\nb\nc\nd\ne\nf");
        });
    }

    #[test]
    fn a_reader_that_does_not_follow_ends_at_what_the_log_held() {
        let log = log_of(&[(OUT, b"before\n")]);
        rt().block_on(async {
            let reader = log.reader_with(View { follow: false, ..View::default() }).await;
            log.append(Chunk { fd: OUT, data: Bytes::from_static(b"after\n") });
            assert_eq!(read_all(reader).await, b"before\n");
            let tail = View { tail_lines: Some(0), ..View::default() };
            let mut live = log.reader_with(tail).await;
            log.append(Chunk { fd: OUT, data: Bytes::from_static(b"new\n") });
            assert_eq!(
                live.next().await.map(|chunk| chunk.data),
                Some(Bytes::from_static(b"new\n"))
            );
        });
    }

    #[test]
    fn a_waiting_reader_wakes_on_append() {
        let log = OutputLog::new();
        let mut reader = log.reader();
        let writer = Arc::clone(&log);
        rt().block_on(async {
            let wait = tokio::spawn(async move { reader.next().await });
            tokio::task::yield_now().await;
            writer.append(Chunk { fd: OutputFd::Stdout, data: Bytes::from_static(b"x") });
            let chunk = wait.await.expect("join").expect("a chunk");
            assert_eq!(chunk.data, Bytes::from_static(b"x"));
        });
    }
}
