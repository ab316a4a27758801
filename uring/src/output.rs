//! A task's output: [`LineChunker`] cuts the bytes read from a pipe into chunks at newlines
//! (pure, no I/O), [`OutputLog`] keeps every chunk of a task in order with its fd, and
//! [`LogReader`] lets any number of subscribers follow the log, each at its own cursor.
//!
//! The engine thread is the only writer; readers on other threads take the lock only to
//! clone a `Bytes` handle, so a slow or vanished reader never holds up the writer or the
//! other readers. The log never drops or alters a byte.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use bytes::{Bytes, BytesMut};
use tokio::sync::watch;

use crate::chunk::{Chunk, OutputFd};

/// Cuts a byte stream into chunks of at most `limit` bytes that end at a newline where
/// possible. A partial line is held back only while the caller knows more bytes are already
/// waiting (its read filled the buffer and the pipe still holds data); otherwise it is
/// emitted at once, so a prompt without a newline is never delayed.
#[derive(Debug)]
pub struct LineChunker {
    pending: BytesMut,
    limit: usize,
}

impl LineChunker {
    /// A chunker that emits chunks of at most `limit` bytes (`limit` > 0).
    pub fn new(limit: usize) -> Self {
        assert!(limit > 0, "chunk limit must be positive");
        Self { pending: BytesMut::new(), limit }
    }

    /// Feeds one read's bytes. `more_waiting` says more bytes are already waiting to be read,
    /// so the rest of a partial line follows at once. Every byte is emitted by this call or a later one (or
    /// [`finish`](Self::finish)), in order.
    pub fn push(&mut self, mut data: Bytes, more_waiting: bool, emit: &mut impl FnMut(Bytes)) {
        if !self.pending.is_empty() {
            match memchr_newline(&data) {
                Some(end) => {
                    self.pending.extend_from_slice(&data.split_to(end + 1));
                    let line = self.pending.split().freeze();
                    self.emit_cut(line, emit);
                }
                None => {
                    self.pending.extend_from_slice(&data);
                    while self.pending.len() >= self.limit {
                        emit(self.pending.split_to(self.limit).freeze());
                    }
                    if !more_waiting {
                        self.finish(emit);
                    }
                    return;
                }
            }
        }
        let complete = match memrchr_newline(&data) {
            Some(last) if more_waiting => data.split_to(last + 1),
            _ if more_waiting => Bytes::new(),
            _ => std::mem::take(&mut data),
        };
        self.emit_cut(complete, emit);
        if data.len() >= self.limit {
            let whole = data.len() - data.len() % self.limit;
            self.emit_cut(data.split_to(whole), emit);
        }
        self.pending.extend_from_slice(&data);
    }

    /// Emits whatever is held back (at end of stream).
    pub fn finish(&mut self, emit: &mut impl FnMut(Bytes)) {
        if !self.pending.is_empty() {
            emit(self.pending.split().freeze());
        }
    }

    /// Emits `data` in pieces of at most `limit`, each ending at its last newline if it has one.
    fn emit_cut(&self, mut data: Bytes, emit: &mut impl FnMut(Bytes)) {
        while data.len() > self.limit {
            let cut = memrchr_newline(&data[..self.limit]).map_or(self.limit, |at| at + 1);
            emit(data.split_to(cut));
        }
        if !data.is_empty() {
            emit(data);
        }
    }
}

fn memchr_newline(data: &[u8]) -> Option<usize> {
    memchr::memchr(b'\n', data)
}

fn memrchr_newline(data: &[u8]) -> Option<usize> {
    memchr::memrchr(b'\n', data)
}

/// How far a log has got: the number of chunks and whether it is complete.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Progress {
    chunks: usize,
    closed: bool,
}

/// Where a log's chunks are: the oldest in the spill file, the newest in memory.
#[derive(Debug, Default)]
struct Stored {
    /// The in-memory chunks, numbers `first..first + window.len()`.
    window: VecDeque<Chunk>,
    /// The number of the window's first chunk (every earlier one is in the file).
    first: usize,
    /// Bytes held by the window.
    window_bytes: usize,
    /// Bytes of records in the file (all complete).
    file_len: u64,
    /// Bytes of output appended so far (in memory and in the file).
    total: u64,
    /// (chunk number, file offset) of some records' starts, at least
    /// [`spill::CHECKPOINT_EVERY`] apart, the first at (0, 0).
    checkpoints: Vec<(usize, u64)>,
}

/// Every chunk a task has written, in order. Written by the engine, read by any number of
/// [`LogReader`]s. The newest chunks stay in memory, up to a budget; with a spill file, older
/// ones move to it (see [`crate::spill`]) so that memory does not grow with the output.
#[derive(Debug)]
pub struct OutputLog {
    stored: Mutex<Stored>,
    progress: watch::Sender<Progress>,
    /// The spill file, for readers (the engine writes through its own io_uring handle).
    file: OnceLock<Arc<std::fs::File>>,
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

/// What all of an engine's output logs may hold together: in memory (over it, every log that
/// is being written shrinks its window to [`OutputBudget::MIN_WINDOW`]), and in all (memory
/// and spill files: over it, nothing more is spilled, so writing tasks wait).
#[derive(Debug)]
pub struct OutputBudget {
    used: AtomicUsize,
    limit: usize,
    kept: AtomicU64,
    kept_limit: u64,
}

impl OutputBudget {
    /// The smallest window a log is shrunk to when the shared budget is exceeded.
    pub const MIN_WINDOW: usize = 64 * 1024;

    /// A budget of `limit` bytes in memory and `kept_limit` bytes in all.
    pub fn new(limit: usize, kept_limit: u64) -> Arc<Self> {
        Arc::new(Self { used: AtomicUsize::new(0), limit, kept: AtomicU64::new(0), kept_limit })
    }

    /// Bytes held by all windows now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// Bytes of output all logs hold now, in memory and in spill files.
    pub fn kept(&self) -> u64 {
        self.kept.load(Ordering::Relaxed)
    }

    /// Whether the logs hold as much output as they may.
    pub fn is_full(&self) -> bool {
        self.kept() >= self.kept_limit
    }

    fn exceeded(&self) -> bool {
        self.used() > self.limit
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
            stored: Mutex::new(Stored { checkpoints: vec![(0, 0)], ..Stored::default() }),
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

    /// Appends a chunk and wakes the readers.
    pub fn append(&self, chunk: Chunk) {
        if let Some(shared) = &self.shared {
            shared.used.fetch_add(chunk.data.len(), Ordering::Relaxed);
            shared.kept.fetch_add(chunk.data.len() as u64, Ordering::Relaxed);
        }
        let count = {
            let mut stored = self.lock();
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
        let _ = self.file.set(Arc::new(file));
    }

    /// The records of the oldest chunks that bring the window down to half its budget (as
    /// buffers to write in order, see [`crate::spill::records`]), the number of chunks they
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
        let records = crate::spill::records(stored.window.iter().take(count));
        (records, count, stored.file_len)
    }

    /// Records that the `count` oldest in-memory chunks are now `length` bytes in the file,
    /// and drops them from memory.
    pub(crate) fn commit_spill(&self, count: usize, length: u64) {
        let mut stored = self.lock();
        let freed: usize = stored.window.drain(..count).map(|chunk| chunk.data.len()).sum();
        stored.window_bytes -= freed;
        if let Some(shared) = &self.shared {
            shared.used.fetch_sub(freed, Ordering::Relaxed);
        }
        let (last_chunk, last_offset) = *stored.checkpoints.last().expect("(0, 0) is first");
        if stored.file_len - last_offset >= crate::spill::CHECKPOINT_EVERY
            && stored.first > last_chunk
        {
            let checkpoint = (stored.first, stored.file_len);
            stored.checkpoints.push(checkpoint);
        }
        stored.first += count;
        stored.file_len += length;
    }

    fn lock(&self) -> MutexGuard<'_, Stored> {
        // A panic while holding this lock leaves the state consistent (updates are atomic
        // for us).
        self.stored.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Reads `length` bytes at `offset` (all there: the records are complete) into a fresh
/// buffer, without zeroing it first.
fn read_block(file: &std::fs::File, offset: u64, length: usize) -> std::io::Result<Bytes> {
    let mut block = Vec::with_capacity(length);
    while block.len() < length {
        let at = offset + block.len() as u64;
        let read = rustix::io::pread(file, rustix::buffer::spare_capacity(&mut block), at)?;
        if read == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
    }
    Ok(Bytes::from(block))
}

/// Where a reader goes next: from memory, or from the file at an offset.
enum Source {
    Memory(Chunk),
    File { file: Arc<std::fs::File>, chunk: usize, offset: u64, end: u64 },
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
    async fn read_file(&mut self, file: Arc<std::fs::File>, chunk: usize, offset: u64, end: u64) {
        let length =
            usize::try_from(end - offset).unwrap_or(usize::MAX).min(crate::spill::READ_BLOCK);
        let read = tokio::task::spawn_blocking(move || read_block(&file, offset, length)).await;
        let decoded = match read {
            Ok(Ok(block)) => crate::spill::decode(block),
            _ => None,
        };
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
    use super::*;

    fn chunks_of(limit: usize, reads: &[(&[u8], bool)]) -> Vec<Vec<u8>> {
        let mut chunker = LineChunker::new(limit);
        let mut out = Vec::new();
        let mut emit = |bytes: Bytes| out.push(bytes.to_vec());
        for (read, more) in reads {
            chunker.push(Bytes::copy_from_slice(read), *more, &mut emit);
        }
        chunker.finish(&mut emit);
        out
    }

    fn joined(chunks: &[Vec<u8>]) -> Vec<u8> {
        chunks.concat()
    }

    #[test]
    fn short_read_is_emitted_whole_even_without_newline() {
        assert_eq!(chunks_of(16, &[(b"prompt> ", false)]), [b"prompt> ".to_vec()]);
    }

    #[test]
    fn full_read_holds_back_the_partial_line_until_its_newline() {
        let chunks = chunks_of(16, &[(b"one\ntw", true), (b"o\nthree", false)]);
        assert_eq!(chunks, [b"one\n".to_vec(), b"two\n".to_vec(), b"three".to_vec()]);
    }

    #[test]
    fn long_line_is_split_at_the_limit_and_never_dropped() {
        let line = vec![b'x'; 40];
        let chunks = chunks_of(16, &[(&line[..20], true), (&line[20..], true)]);
        assert!(chunks.iter().all(|chunk| chunk.len() <= 16), "{chunks:?}");
        assert_eq!(joined(&chunks), line);
    }

    #[test]
    fn many_lines_are_cut_at_newlines_within_the_limit() {
        let data = b"aaaa\nbbbb\ncccc\ndddd\n";
        let chunks = chunks_of(12, &[(data, false)]);
        assert_eq!(chunks, [b"aaaa\nbbbb\n".to_vec(), b"cccc\ndddd\n".to_vec()]);
    }

    #[test]
    fn every_byte_survives_any_read_pattern() {
        let data: Vec<u8> =
            (0..5000u32).map(|i| if i % 37 == 0 { b'\n' } else { (i % 251) as u8 }).collect();
        for limit in [1, 7, 64, 4096] {
            for step in [1, 13, 100, 5000] {
                let reads: Vec<(&[u8], bool)> =
                    data.chunks(step).map(|piece| (piece, piece.len() == step)).collect();
                let chunks = chunks_of(limit, &reads);
                assert!(chunks.iter().all(|c| !c.is_empty() && c.len() <= limit));
                assert_eq!(joined(&chunks), data, "limit {limit} step {step}");
            }
        }
    }

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
