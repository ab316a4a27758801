//! The spill file's format: records `[fd: 1 byte][length: 4 bytes LE][read at: 8 bytes LE,
//! nanoseconds since the Unix epoch][data]`, one per chunk, appended one after the other.
//! Encoding and decoding are pure (no I/O) and unit-tested. (The file lives only as long
//! as its task in one daemon: no other version of the format is ever read.)

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::chunk::{Chunk, OutputFd};

/// Bytes of a record's header.
pub(crate) const HEADER: usize = 13;
/// File distance between two checkpoints.
pub(crate) const CHECKPOINT_EVERY: u64 = 1 << 20;
/// How much a reader reads from the file at once: at least one record of the largest chunk
/// ([`MAX_CHUNK`]). A reader holds its last block until it has handed out every chunk of it,
/// so this is also what a stalled reader of the file costs; 1 MiB blocks made 1,000 stalled
/// streams cost 1.1 GiB, and replay is as fast with these.
pub(crate) const READ_BLOCK: usize = MAX_CHUNK + HEADER;
/// The largest chunk a log may hold (`EngineConfig::chunk_limit` at most).
pub const MAX_CHUNK: usize = 64 << 10;

/// Most buffers handed to one writev (the kernel's IOV_MAX is 1024).
const MAX_BUFFERS: usize = 512;

/// The records of `chunks` as buffers to write one after the other: each chunk's header,
/// then its data as it is (no copy). Batches of more chunks than one writev takes are copied
/// into a single buffer instead (they are many small chunks: the copy is cheap).
pub(crate) fn records<'a>(chunks: impl ExactSizeIterator<Item = &'a Chunk> + Clone) -> Vec<Bytes> {
    if 2 * chunks.len() > MAX_BUFFERS {
        let mut out = BytesMut::new();
        encode(chunks, &mut out);
        return vec![out.freeze()];
    }
    let mut headers = BytesMut::with_capacity(HEADER * chunks.len());
    encode_headers(chunks.clone(), &mut headers);
    let mut headers = headers.freeze();
    chunks.flat_map(|chunk| [headers.split_to(HEADER), chunk.data.clone()]).collect()
}

fn encode_headers<'a>(chunks: impl IntoIterator<Item = &'a Chunk>, out: &mut BytesMut) {
    for chunk in chunks {
        out.put_u8(match chunk.fd {
            OutputFd::Stdout => 1,
            OutputFd::Stderr => 2,
        });
        let length = u32::try_from(chunk.data.len()).expect("a chunk is far below 4 GiB");
        out.put_u32_le(length);
        out.put_u64_le(chunk.at_ns);
    }
}

/// Appends the records of `chunks` to `out`.
pub(crate) fn encode<'a>(chunks: impl IntoIterator<Item = &'a Chunk>, out: &mut BytesMut) {
    for chunk in chunks {
        out.reserve(HEADER + chunk.data.len());
        encode_headers([chunk], out);
        out.put_slice(&chunk.data);
    }
}

/// Decodes the complete records at the start of `block` (slices of it, no copy); returns
/// them and how many bytes they took. A record cut by the block's end is left for the next
/// read. `None` if the block holds something that is not a record (a corrupt file).
pub(crate) fn decode(mut block: Bytes) -> Option<(Vec<Chunk>, usize)> {
    let mut chunks = Vec::new();
    let mut used = 0;
    while block.len() >= HEADER {
        let fd = match block[0] {
            1 => OutputFd::Stdout,
            2 => OutputFd::Stderr,
            _ => return None,
        };
        let length = u32::from_le_bytes([block[1], block[2], block[3], block[4]]) as usize;
        if block.len() < HEADER + length {
            break;
        }
        block.advance(5);
        let at_ns = block.get_u64_le();
        chunks.push(Chunk { fd, data: block.split_to(length), at_ns });
        used += HEADER + length;
    }
    Some((chunks, used))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(fd: OutputFd, data: &'static [u8]) -> Chunk {
        Chunk { fd, data: Bytes::from_static(data), at_ns: 1_764_633_600_123_456_789 }
    }

    #[test]
    fn records_round_trip_and_a_cut_record_waits() {
        let mut chunks = [
            chunk(OutputFd::Stdout, b"hello\n"),
            chunk(OutputFd::Stderr, b""),
            chunk(OutputFd::Stderr, b"err"),
        ];
        for (chunk, later) in chunks.iter_mut().zip([0, 1, 1_000_000_007]) {
            chunk.at_ns += later;
        }
        let mut out = BytesMut::new();
        encode(&chunks, &mut out);
        let whole = out.freeze();
        let (decoded, used) = decode(whole.clone()).expect("valid");
        assert_eq!(decoded, chunks);
        assert_eq!(used, whole.len());
        // Cut inside the last record: the first two decode, the third waits.
        let (decoded, used) = decode(whole.slice(..whole.len() - 1)).expect("valid");
        assert_eq!(decoded, chunks[..2]);
        assert_eq!(used, HEADER + 6 + HEADER);
    }

    #[test]
    fn write_buffers_hold_the_same_records_with_or_without_copying() {
        let few: Vec<Chunk> = (0..3).map(|_| chunk(OutputFd::Stdout, b"abc\n")).collect();
        let many: Vec<Chunk> = (0..300).map(|_| chunk(OutputFd::Stderr, b"x")).collect();
        for chunks in [few, many] {
            let mut encoded = BytesMut::new();
            encode(&chunks, &mut encoded);
            let buffers = records(chunks.iter());
            assert!(buffers.len() <= MAX_BUFFERS);
            assert_eq!(buffers.concat(), encoded.to_vec());
        }
    }

    #[test]
    fn garbage_is_not_a_record() {
        assert!(decode(Bytes::from_static(&[7; HEADER])).is_none());
    }
}
