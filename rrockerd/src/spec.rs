//! The domain core: what a task is asked to be ([`TaskSpec`], its [`Limits`]) and what it
//! used ([`Usage`]). The gRPC edge (`service/`) converts requests into these and these back
//! into responses; nothing below it knows the wire types. A limit that is not set is `None`,
//! never a zero.

use std::num::NonZeroU64;

pub use rrocker_init::terminal::WindowSize;

/// The CPU period when a request gives none, in microseconds (the kernel's default).
pub const DEFAULT_CPU_PERIOD_US: u64 = 100_000;
/// The same, as a period.
pub const DEFAULT_CPU_PERIOD: NonZeroU64 = match NonZeroU64::new(DEFAULT_CPU_PERIOD_US) {
    Some(period) => period,
    None => panic!("the default period is not zero"),
};

/// A figure of a limit, `0` meaning none (as the wire and the flags give them).
pub fn limit(figure: u64) -> Option<NonZeroU64> {
    NonZeroU64::new(figure)
}

/// A limit as a figure, `0` for none: the inverse of [`limit`].
pub fn figure(limit: Option<NonZeroU64>) -> u64 {
    limit.map_or(0, NonZeroU64::get)
}

/// A task to start, with its request's shape checked (see `service::convert`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskSpec {
    /// The command and its arguments (`argv[0]` non-empty; no NUL byte).
    pub argv: Vec<Vec<u8>>,
    /// `KEY=VALUE` entries; empty: the default environment.
    pub env: Vec<Vec<u8>>,
    /// An absolute working directory; empty: `/`.
    pub workdir: Vec<u8>,
    /// Its limits, as asked (the daemon's policy may add defaults).
    pub limits: Limits,
    /// The name of an imported image; empty: the daemon's own.
    pub image: String,
    /// Whether its stdin is a pipe a client writes (else /dev/null).
    pub stdin: bool,
    /// Its pseudo-terminal's first size, if it runs on one.
    pub terminal: Option<WindowSize>,
    /// Its deadline from its start, if it asks for one.
    pub timeout: Option<std::time::Duration>,
}

/// A further command to run in a running task, with its request's shape checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecSpec {
    /// The command and its arguments (`argv[0]` non-empty; no NUL byte).
    pub argv: Vec<Vec<u8>>,
    /// `KEY=VALUE` entries; empty: the default environment.
    pub env: Vec<Vec<u8>>,
    /// An absolute working directory; empty: `/`.
    pub workdir: Vec<u8>,
    /// Its pseudo-terminal's first size, if it runs on one.
    pub terminal: Option<WindowSize>,
}

/// A task's resource limits.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Limits {
    /// CPU time per period.
    pub cpu: Option<CpuLimit>,
    /// Memory in bytes, swap excluded.
    pub memory_max_bytes: Option<NonZeroU64>,
    /// Processes and threads.
    pub pids_max: Option<NonZeroU64>,
    /// Disk throttling, one rule per block device.
    pub io: Vec<IoLimit>,
}

/// CPU time a task may use per period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuLimit {
    /// Microseconds of CPU time per period.
    pub quota_us: NonZeroU64,
    /// The period, in microseconds.
    pub period_us: NonZeroU64,
}

/// Throttling of one whole-disk block device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IoLimit {
    /// The device's major number.
    pub major: u32,
    /// Its minor number.
    pub minor: u32,
    /// Bytes per second read.
    pub read_bps: Option<NonZeroU64>,
    /// Bytes per second written.
    pub write_bps: Option<NonZeroU64>,
    /// Read operations per second.
    pub read_iops: Option<NonZeroU64>,
    /// Write operations per second.
    pub write_iops: Option<NonZeroU64>,
}

impl IoLimit {
    /// The rule's rates, in the order read bps, write bps, read iops, write iops.
    pub fn rates(&self) -> [Option<NonZeroU64>; 4] {
        [self.read_bps, self.write_bps, self.read_iops, self.write_iops]
    }
}

impl Limits {
    /// The memory limit in bytes (0: none).
    pub fn memory(&self) -> u64 {
        figure(self.memory_max_bytes)
    }

    /// The pids limit (0: none).
    pub fn pids(&self) -> u64 {
        figure(self.pids_max)
    }

    /// The CPUs the limits give, in thousandths (0: unlimited).
    pub fn cpu_millis(&self) -> u64 {
        self.cpu.map_or(0, |cpu| cpu.quota_us.get().saturating_mul(1000) / cpu.period_us.get())
    }
}

/// What a task used.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// CPU time, user and system, in microseconds.
    pub cpu_time_us: u64,
    /// Periods in which the CPU quota throttled it.
    pub cpu_throttled_periods: u64,
    /// Time it was throttled, in microseconds.
    pub cpu_throttled_us: u64,
    /// Highest memory use, in bytes.
    pub memory_peak_bytes: u64,
    /// Most processes and threads at once.
    pub pids_peak: u64,
    /// Bytes read from block devices.
    pub io_read_bytes: u64,
    /// Bytes written to block devices.
    pub io_write_bytes: u64,
    /// Its processes the OOM killer killed.
    pub oom_kills: u64,
    /// Memory in use now, in bytes.
    pub memory_current_bytes: u64,
    /// Processes and threads now.
    pub pids_current: u64,
}
