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
            until_ns: None,
            progress: self.progress.subscribe(),
            read_ahead: VecDeque::new(),
            file_position: None,
        }
    }

    /// A reader of what `view` selects: one descriptor's chunks or both, from the first
    /// byte, the last lines or a time, following the log or ending at what it holds now (or
    /// at a time).
    pub async fn reader_with(self: &Arc<Self>, view: View) -> LogReader {
        let mut reader = self.reader();
        reader.only = view.only;
        reader.until_ns = view.until_ns;
        // Once `until` has passed, no chunk to come can be before it.
        let until_passed = view.until_ns.is_some_and(|until| until < crate::chunk::now_ns());
        if !view.follow || until_passed {
            let mut end = self.progress.borrow().chunks;
            if let Some(until) = view.until_ns {
                end = reader.first_at_or_after(until.saturating_add(1), end).await;
            }
            reader.end = Some(end);
        }
        if let Some(lines) = view.tail_lines {
            reader.seek_tail(lines).await;
        }
        if let Some(since) = view.since_ns {
            let end = reader.end.unwrap_or_else(|| self.progress.borrow().chunks);
            let start = reader.first_at_or_after(since, end).await;
            if start > reader.next {
                (reader.next, reader.skip) = (start, 0);
            }
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
    /// Only chunks read at or after this time (nanoseconds since the Unix epoch); with a
    /// tail, the later start of the two.
    pub since_ns: Option<u64>,
    /// Only chunks read at or before this time; a reader that follows ends once it passes.
    pub until_ns: Option<u64>,
}

impl Default for View {
    fn default() -> Self {
        Self { only: None, tail_lines: None, follow: true, since_ns: None, until_ns: None }
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
    /// End at the first chunk read after this time, or once it passes (while following).
    until_ns: Option<u64>,
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
            if self.until_ns.is_some_and(|until| chunk.at_ns > until) {
                self.end = Some(self.next);
                return None;
            }
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
            let changed = self.progress.changed();
            match self.until_ns {
                None => drop(changed.await),
                Some(until) => {
                    let left = until.saturating_sub(crate::chunk::now_ns());
                    if left == 0 {
                        return None;
                    }
                    tokio::select! {
                        _ = changed => {}
                        () = tokio::time::sleep(std::time::Duration::from_nanos(left)) => {
                            return None;
                        }
                    }
                }
            }
        }
    }

    /// The number of the first chunk read at or after `at_ns` (of either descriptor), or
    /// `end` if none before it is. Found in the memory window by bisection; in the spill
    /// file from the last checkpoint before that time, reading on from there (at most
    /// about `format::CHECKPOINT_EVERY` bytes) rather than from the file's start.
    async fn first_at_or_after(&self, at_ns: u64, end: usize) -> usize {
        let checkpoint = {
            let stored = self.log.lock();
            let in_window = end.saturating_sub(stored.first).min(stored.window.len());
            let front_earlier = stored.window.front().is_some_and(|chunk| chunk.at_ns < at_ns);
            if stored.first == 0 || (in_window > 0 && front_earlier) {
                let before = stored.window.partition_point(|chunk| chunk.at_ns < at_ns);
                return (stored.first + before.min(in_window)).min(end);
            }
            let at = stored.checkpoints.partition_point(|checkpoint| checkpoint.at_ns < at_ns);
            stored.checkpoints[at.saturating_sub(1)]
        };
        let mut scan = self.log.reader();
        (scan.next, scan.end) = (checkpoint.chunk, Some(end));
        while let Some(chunk) = scan.next_whole().await {
            if chunk.at_ns >= at_ns {
                return scan.next - 1;
            }
        }
        end
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
                let at = stored.checkpoints.partition_point(|point| point.chunk <= self.next);
                let checkpoint = stored.checkpoints[at - 1];
                (checkpoint.chunk, checkpoint.offset)
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
        log.append(Chunk::now(OutputFd::Stdout, Bytes::from_static(b"a")));
        let mut early = log.reader();
        log.append(Chunk::now(OutputFd::Stderr, Bytes::from_static(b"b")));
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
            log.append(Chunk::now(*fd, Bytes::from_static(data)));
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
        let view = |only, tail_lines| View { only, tail_lines, ..View::default() };
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
            log.append(Chunk::now(OUT, Bytes::copy_from_slice(line)));
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

    /// The chunks `reader` returns: (time, data).
    async fn timed(mut reader: LogReader) -> Vec<(u64, Vec<u8>)> {
        let mut all = Vec::new();
        while let Some(chunk) = reader.next().await {
            all.push((chunk.at_ns, chunk.data.to_vec()));
        }
        all
    }

    #[test]
    fn times_never_decrease_and_since_and_until_select_by_them() {
        let log = OutputLog::new();
        for (at_ns, fd, line) in [
            (10, OUT, "a\n"),
            (20, ERR, "b\n"),
            (20, OUT, "c\n"),
            (15, OUT, "d\n"),
            (40, OUT, "e\n"),
        ] {
            log.append(Chunk { fd, data: Bytes::from(line), at_ns });
        }
        log.close();
        let view = |since_ns, until_ns| View { since_ns, until_ns, ..View::default() };
        let times = |chunks: Vec<(u64, Vec<u8>)>| chunks.into_iter().map(|(at, _)| at).collect();
        rt().block_on(async {
            let log = &log;
            let read = |view| async move { times(timed(log.reader_with(view).await).await) };
            let all: Vec<u64> = read(View::default()).await;
            assert_eq!(all, [10, 20, 20, 20, 40], "the 15 came after a 20: it takes 20");
            assert_eq!(read(view(Some(20), None)).await, [20, 20, 20, 40]);
            assert_eq!(read(view(Some(21), None)).await, [40]);
            assert_eq!(read(view(None, Some(20))).await, [10, 20, 20, 20]);
            assert_eq!(read(view(Some(11), Some(39))).await, [20, 20, 20]);
            assert!(read(view(Some(41), None)).await.is_empty());
            assert!(read(view(None, Some(9))).await.is_empty());
            let only_out = View { only: Some(OUT), ..view(Some(20), None) };
            assert_eq!(read(only_out).await, [20, 20, 40]);
            // With a tail, the later start: the last 4 lines begin at b, since 21 at e.
            let tail = |since_ns| View { tail_lines: Some(4), ..view(since_ns, None) };
            assert_eq!(read(tail(Some(21))).await, [40]);
            assert_eq!(read(tail(Some(1))).await, [20, 20, 20, 40]);
        });
    }

    /// Appends `count` chunks of 64 KiB, the i-th read at `i * 1000`, to a log whose window
    /// holds 256 KiB, spilling to a file as the engine does; returns the log (closed) and
    /// its file.
    fn spilled_log(count: u64) -> (Arc<OutputLog>, std::fs::File) {
        use std::io::{Seek, Write};
        let log = Arc::new(OutputLog::with_window(256 << 10, None));
        let mut file = tempfile::tempfile().expect("a spill file");
        log.attach_spill_file(file.try_clone().expect("clone the file"));
        for i in 0..count {
            let data = Bytes::from(format!("{i:015}\n").repeat((64 << 10) / 16));
            log.append(Chunk { fd: OUT, data, at_ns: i * 1000 });
            while log.over_budget() {
                let (records, count, offset) = log.spill_batch();
                file.seek(std::io::SeekFrom::Start(offset)).expect("seek");
                let length: usize = records.iter().map(|record| record.len()).sum();
                for record in records {
                    file.write_all(&record).expect("spill");
                }
                log.commit_spill(count, length as u64);
            }
        }
        log.close();
        (log, file)
    }

    #[test]
    fn since_and_until_seek_through_the_spill_files_index() {
        let (log, file) = spilled_log(64);
        let last_checkpoint = {
            let stored = log.lock();
            assert!(stored.first > 40, "most chunks are in the file");
            assert!(stored.checkpoints.len() >= 3, "{:?}", stored.checkpoints);
            for pair in stored.checkpoints.windows(2) {
                assert!(pair[0].chunk < pair[1].chunk && pair[0].at_ns <= pair[1].at_ns);
            }
            let last = stored.checkpoints.last().expect("checkpoints");
            assert_eq!(last.at_ns, last.chunk as u64 * 1000, "a checkpoint's time is its chunk's");
            *last
        };
        let view = |since_ns, until_ns| View { since_ns, until_ns, ..View::default() };
        rt().block_on(async {
            for (since, until, first, last) in [
                (Some(0), None, 0, 63),
                (Some(1), None, 1, 63),
                (Some(17_000), None, 17, 63),
                (Some(33_500), Some(40_000), 34, 40),
                (Some(62_000), None, 62, 63),
                (None, Some(5_999), 0, 5),
            ] {
                let chunks = timed(log.reader_with(view(since, until)).await).await;
                let times: Vec<u64> = chunks.iter().map(|(at, _)| *at).collect();
                let expected: Vec<u64> = (first..=last).map(|i| i * 1000).collect();
                assert_eq!(times, expected, "since {since:?} until {until:?}");
                let text = format!("{first:015}\n");
                assert_eq!(&chunks[0].1[..16], text.as_bytes(), "the chunk's own bytes");
            }
            // Seeking, not scanning: with the file's first record spoilt, a reader from the
            // last checkpoint on never reads it.
            std::os::unix::fs::FileExt::write_at(&file, &[7], 0).expect("spoil the first record");
            let since = last_checkpoint.at_ns + 1;
            let chunks = timed(log.reader_with(view(Some(since), None)).await).await;
            assert_eq!(chunks.len() as u64, 63 - last_checkpoint.chunk as u64);
            assert!(timed(log.reader_with(View::default()).await).await.is_empty(), "spoilt");
        });
    }

    #[test]
    fn a_following_reader_ends_once_its_until_passes() {
        let log = OutputLog::new();
        log.append(Chunk::now(OUT, Bytes::from_static(b"before\n")));
        let until = crate::chunk::now_ns() + 50_000_000;
        rt().block_on(async {
            let view = View { until_ns: Some(until), ..View::default() };
            let chunks = timed(log.reader_with(view).await).await;
            assert_eq!(chunks.len(), 1, "the chunk before, then the end with nothing after");
            assert!(crate::chunk::now_ns() >= until);
        });
        assert!(!log.is_closed());
    }

    #[test]
    fn a_reader_that_does_not_follow_ends_at_what_the_log_held() {
        let log = log_of(&[(OUT, b"before\n")]);
        rt().block_on(async {
            let reader = log.reader_with(View { follow: false, ..View::default() }).await;
            log.append(Chunk::now(OUT, Bytes::from_static(b"after\n")));
            assert_eq!(read_all(reader).await, b"before\n");
            let tail = View { tail_lines: Some(0), ..View::default() };
            let mut live = log.reader_with(tail).await;
            log.append(Chunk::now(OUT, Bytes::from_static(b"new\n")));
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
            writer.append(Chunk::now(OutputFd::Stdout, Bytes::from_static(b"x")));
            let chunk = wait.await.expect("join").expect("a chunk");
            assert_eq!(chunk.data, Bytes::from_static(b"x"));
        });
    }
}
