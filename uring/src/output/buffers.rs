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

/// The daemon's one free list.
static POOL: Pool = Pool::new();

/// A buffer of [`SIZE`] initialised bytes, recycled if one is free.
pub(crate) fn take() -> Vec<u8> {
    POOL.take()
}

/// The first `length` bytes of `buffer` as `Bytes`, without a copy; the buffer goes back to
/// the free list once they and every slice of them are dropped.
pub(crate) fn freeze(buffer: Vec<u8>, length: usize) -> Bytes {
    POOL.freeze(buffer, length)
}

/// A free list of buffers.
struct Pool {
    free: Mutex<Vec<Vec<u8>>>,
}

impl Pool {
    const fn new() -> Self {
        Self { free: Mutex::new(Vec::new()) }
    }

    fn take(&self) -> Vec<u8> {
        let free = self.free.lock().unwrap_or_else(PoisonError::into_inner).pop();
        free.unwrap_or_else(|| vec![0; SIZE])
    }

    fn freeze(&'static self, buffer: Vec<u8>, length: usize) -> Bytes {
        Bytes::from_owner(Recycled { buffer, pool: self }).slice(..length)
    }

    fn give_back(&self, buffer: Vec<u8>) {
        if buffer.len() != SIZE {
            return;
        }
        let mut free = self.free.lock().unwrap_or_else(PoisonError::into_inner);
        if free.len() < KEEP {
            free.push(buffer);
        }
    }
}

/// A buffer that returns to its free list when dropped.
struct Recycled {
    buffer: Vec<u8>,
    pool: &'static Pool,
}

impl AsRef<[u8]> for Recycled {
    fn as_ref(&self) -> &[u8] {
        &self.buffer
    }
}

impl Drop for Recycled {
    fn drop(&mut self) {
        self.pool.give_back(std::mem::take(&mut self.buffer));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frozen_buffer_shows_its_bytes_and_returns_once_every_slice_is_gone() {
        // A free list of the test's own: the daemon's is shared with other tests.
        let pool: &'static Pool = Box::leak(Box::new(Pool::new()));
        let mut buffer = pool.take();
        assert_eq!(buffer.len(), SIZE);
        buffer[..5].copy_from_slice(b"hello");
        let address = buffer.as_ptr();
        let bytes = pool.freeze(buffer, 5);
        let slice = bytes.slice(1..3);
        assert_eq!((&bytes[..], &slice[..]), (&b"hello"[..], &b"el"[..]));
        drop(bytes);
        assert!(pool.free.lock().expect("lock").is_empty(), "a slice still holds it");
        drop(slice);
        let again = pool.take();
        assert_eq!(again.as_ptr(), address, "the same buffer, recycled");
    }

    #[test]
    fn the_free_list_keeps_at_most_its_bound() {
        let pool: &'static Pool = Box::leak(Box::new(Pool::new()));
        let frozen: Vec<Bytes> = (0..KEEP + 3).map(|_| pool.freeze(pool.take(), 1)).collect();
        drop(frozen);
        assert_eq!(pool.free.lock().expect("lock").len(), KEEP);
    }
}
