//! Cutting the bytes read from a pipe into chunks at newlines: pure, no I/O.

use bytes::{Bytes, BytesMut};

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
}
