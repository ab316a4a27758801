//! What the engine has asked of io_uring, counted for the daemon's metrics: every read, write
//! and close submission of this process's engines. Counting only; nothing here waits.

use std::sync::atomic::{AtomicU64, Ordering};

static SUBMISSIONS: AtomicU64 = AtomicU64::new(0);

/// Counts one io_uring submission.
pub(crate) fn submitted() {
    SUBMISSIONS.fetch_add(1, Ordering::Relaxed);
}

/// The io_uring submissions this process's engines have made so far.
pub fn uring_submissions() -> u64 {
    SUBMISSIONS.load(Ordering::Relaxed)
}
