//! The engine's tuning, given to [`super::Engine::start`].

use std::path::PathBuf;
use std::sync::Arc;

use crate::child::Spawner;

/// Tuning of the engine.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Size of each io_uring read of a task's pipe.
    pub read_size: usize,
    /// Largest output chunk kept in a log (at most [`crate::MAX_CHUNK`]).
    pub chunk_limit: usize,
    /// Pipe buffer size requested with F_SETPIPE_SZ.
    pub pipe_size: usize,
    /// io_uring submission queue entries.
    pub ring_entries: u32,
    /// Directory for spill files; `None` keeps every task's whole output in memory.
    pub spill_dir: Option<PathBuf>,
    /// Bytes of output a task keeps in memory when it has a spill directory; older output
    /// moves to its spill file.
    pub window_bytes: usize,
    /// Bytes of output all tasks together keep in memory (with a spill directory); over it,
    /// the windows of tasks that are writing shrink to 64 KiB.
    pub budget_bytes: usize,
    /// Bytes of output all tasks together keep, in memory and spill files; at it, tasks that
    /// write wait (their output is not spilled) until logs are dropped.
    pub kept_bytes: u64,
    /// Give isolated tasks network namespaces made ahead by a thread of the engine (needs
    /// CAP_SYS_ADMIN; without it, each clone3 makes its own).
    pub netns_pool: bool,
    /// The helper process that clones tasks (see [`Spawner`]); without it, the engine thread
    /// clones them itself.
    pub spawner: Option<Arc<Spawner>>,
    /// A fault for the tests (debug builds only): the engine thread panics at its first
    /// spawn, as a bug would make it.
    #[cfg(debug_assertions)]
    pub panic_at_spawn: bool,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            read_size: 64 * 1024,
            chunk_limit: 64 * 1024,
            pipe_size: 1024 * 1024,
            ring_entries: 1024,
            spill_dir: None,
            window_bytes: 4 << 20,
            budget_bytes: 256 << 20,
            kept_bytes: u64::MAX,
            netns_pool: false,
            spawner: None,
            #[cfg(debug_assertions)]
            panic_at_spawn: false,
        }
    }
}
