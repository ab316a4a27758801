//! The bound on what all of an engine's output logs hold, in memory and in all.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// What all of an engine's output logs may hold together: in memory (over it, every log that
/// is being written shrinks its window to [`OutputBudget::MIN_WINDOW`]), and in all (memory
/// and spill files: over it, nothing more is spilled, so writing tasks wait).
#[derive(Debug)]
pub struct OutputBudget {
    pub(super) used: AtomicUsize,
    pub(super) limit: usize,
    pub(super) kept: AtomicU64,
    pub(super) kept_limit: u64,
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

    pub(super) fn exceeded(&self) -> bool {
        self.used() > self.limit
    }
}
