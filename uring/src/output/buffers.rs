//! Recycled read buffers. Every pipe read of the engine and every block read back from a
//! spill file lands in a buffer of [`SIZE`] bytes that, once the last `Bytes` cut from it
//! is dropped (on whichever thread), goes back to a shared free list instead of to the
//! allocator. A fresh buffer for every read made the kernel fault in and zero its pages
//! each time (the allocator returns freed memory): 14% of the daemon's CPU while streaming.

use std::sync::{Mutex, PoisonError};

use bytes::Bytes;

use super::spill::format;

/// Bytes of every buffer: one spill block, at least one read of a pipe.
pub(crate) const SIZE: usize = format::READ_BLOCK;

/// Most free buffers kept for reuse (4 MiB); more are given back to the allocator.
const KEEP: usize = 64;

static FREE: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

/// A buffer of [`SIZE`] initialised bytes, recycled if one is free.
pub(crate) fn take() -> Vec<u8> {
    let free = FREE.lock().unwrap_or_else(PoisonError::into_inner).pop();
    free.unwrap_or_else(|| vec![0; SIZE])
}

/// The first `length` bytes of `buffer` as `Bytes`, without a copy; the buffer goes back to
/// the free list once they and every slice of them are dropped.
pub(crate) fn freeze(buffer: Vec<u8>, length: usize) -> Bytes {
    Bytes::from_owner(Recycled(buffer)).slice(..length)
}

/// A buffer that returns to the free list when dropped.
struct Recycled(Vec<u8>);

impl AsRef<[u8]> for Recycled {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl Drop for Recycled {
    fn drop(&mut self) {
        let buffer = std::mem::take(&mut self.0);
        if buffer.len() != SIZE {
            return;
        }
        let mut free = FREE.lock().unwrap_or_else(PoisonError::into_inner);
        if free.len() < KEEP {
            free.push(buffer);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frozen_buffer_shows_its_bytes_and_returns_once_every_slice_is_gone() {
        let mut buffer = take();
        assert_eq!(buffer.len(), SIZE);
        buffer[..5].copy_from_slice(b"hello");
        let address = buffer.as_ptr();
        let bytes = freeze(buffer, 5);
        let slice = bytes.slice(1..3);
        assert_eq!((&bytes[..], &slice[..]), (&b"hello"[..], &b"el"[..]));
        drop(bytes);
        drop(slice);
        // Other tests may take buffers meanwhile: ours is somewhere in the free list.
        let free = FREE.lock().unwrap_or_else(PoisonError::into_inner);
        assert!(free.iter().any(|kept| kept.as_ptr() == address));
    }
}
