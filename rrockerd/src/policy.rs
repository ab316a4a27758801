//! The daemon's policy on task limits, so that no holder of a client certificate can take
//! the host: defaults for the limits a start leaves unset (`--default-max-*`), maxima a
//! start may ask for (`--limit-max-*`), and the caps of rrocker's parent cgroup on all tasks
//! together (`--total-max-*`). Sizes are given as bytes with a unit (`512M`, `2G`) or as a
//! share of the host's memory (`25%`); pids as a count or a share of the host's pid space;
//! CPU as a number of CPUs (`1.5`); `0` or `unlimited` turns one off. Pure: the host's
//! figures are given, not read.

use std::fmt;
use std::str::FromStr;

use crate::request_error::RequestError;
use crate::spec::{CpuLimit, DEFAULT_CPU_PERIOD, Limits, limit};

/// A limit as a flag gives it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Amount {
    /// None.
    Unlimited,
    /// An absolute figure (bytes, pids, or thousandths of a CPU).
    Exactly(u64),
    /// A share of the host's figure, in percent.
    Share(f64),
}

impl Amount {
    /// The figure on a host whose whole is `whole`; `None` when unlimited.
    pub fn resolve(self, whole: u64) -> Option<u64> {
        match self {
            Self::Unlimited => None,
            Self::Exactly(figure) => Some(figure),
            Self::Share(percent) => Some(share_of(whole, percent)),
        }
    }
}

/// `percent` % of `whole`, at least 1.
#[expect(clippy::cast_possible_truncation, clippy::cast_sign_loss, reason = "clamped to u64")]
fn share_of(whole: u64, percent: f64) -> u64 {
    (whole as f64 * percent / 100.0).clamp(1.0, u64::MAX as f64) as u64
}

/// Parses an amount: `unlimited`/`0`, `N%`, or `text` as `absolute` reads it.
fn amount(text: &str, absolute: impl Fn(&str) -> Option<u64>) -> Result<Amount, String> {
    let text = text.trim();
    if text.eq_ignore_ascii_case("unlimited") || text == "0" {
        return Ok(Amount::Unlimited);
    }
    if let Some(percent) = text.strip_suffix('%') {
        return match percent.parse::<f64>() {
            Ok(share) if share > 0.0 && share <= 100.0 => Ok(Amount::Share(share)),
            _ => Err(format!("'{text}': a share must be above 0% and at most 100%")),
        };
    }
    absolute(text).map(Amount::Exactly).ok_or_else(|| format!("'{text}' is not an amount"))
}

/// Bytes with an optional binary unit (K, M, G, T; `B` and `iB` allowed).
fn bytes(text: &str) -> Option<u64> {
    let upper = text.to_ascii_uppercase();
    let trimmed = upper.trim_end_matches("IB").trim_end_matches('B');
    let (number, shift) = match trimmed.chars().last()? {
        'K' => (&trimmed[..trimmed.len() - 1], 10),
        'M' => (&trimmed[..trimmed.len() - 1], 20),
        'G' => (&trimmed[..trimmed.len() - 1], 30),
        'T' => (&trimmed[..trimmed.len() - 1], 40),
        _ => (trimmed, 0),
    };
    number.trim().parse::<u64>().ok()?.checked_mul(1 << shift)
}

/// A number of CPUs (`1.5`) in thousandths.
fn millicpus(text: &str) -> Option<u64> {
    let cpus: f64 = text.parse().ok()?;
    #[expect(clippy::cast_possible_truncation, clippy::cast_sign_loss, reason = "checked range")]
    (cpus > 0.0 && cpus < 1e6).then(|| (cpus * 1000.0).round() as u64)
}

/// A memory amount (`--*-max-mem`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Memory(pub Amount);
/// A pids amount (`--*-max-pids`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pids(pub Amount);
/// A CPU amount (`--*-max-cpu`), in thousandths of a CPU.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cpu(pub Amount);

impl FromStr for Memory {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        amount(text, bytes).map(Self)
    }
}

impl FromStr for Pids {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        amount(text, |text| text.parse().ok()).map(Self)
    }
}

impl FromStr for Cpu {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        match amount(text, millicpus)? {
            Amount::Share(_) => Err(format!("'{text}': give CPUs as a number, e.g. 1.5")),
            other => Ok(Self(other)),
        }
    }
}

/// How an amount is shown (and read back from `--print-config`).
fn show(
    f: &mut fmt::Formatter<'_>,
    amount: Amount,
    absolute: impl Fn(u64) -> String,
) -> fmt::Result {
    match amount {
        Amount::Unlimited => f.write_str("unlimited"),
        Amount::Exactly(figure) => f.write_str(&absolute(figure)),
        Amount::Share(percent) => write!(f, "{percent}%"),
    }
}

impl fmt::Display for Memory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        show(f, self.0, |bytes| bytes.to_string())
    }
}

impl fmt::Display for Pids {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        show(f, self.0, |pids| pids.to_string())
    }
}

impl fmt::Display for Cpu {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        show(f, self.0, |millis| format!("{}", millis as f64 / 1000.0))
    }
}

/// What the host has, for shares.
#[derive(Debug, Clone, Copy)]
pub struct Host {
    /// Its memory in bytes.
    pub memory: u64,
    /// Its pid space (the lower of kernel.pid_max and kernel.threads-max).
    pub pids: u64,
}

impl Host {
    /// This host's figures, from /proc.
    pub fn this() -> Self {
        let read =
            |path: &str| -> Option<u64> { std::fs::read_to_string(path).ok()?.trim().parse().ok() };
        let memory = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|text| {
                let line = text.lines().find(|line| line.starts_with("MemTotal:"))?.to_owned();
                line.split_whitespace().nth(1)?.parse::<u64>().ok()
            })
            .map_or(u64::MAX, |kib| kib.saturating_mul(1024));
        let pid_max = read("/proc/sys/kernel/pid_max").unwrap_or(32_768);
        let threads_max = read("/proc/sys/kernel/threads-max").unwrap_or(pid_max);
        Self { memory, pids: pid_max.min(threads_max) }
    }
}

/// The policy, resolved for a host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    /// Limits given to a start that sets none of its own (0: none).
    pub defaults: Figures,
    /// The most a start may ask for (0: any).
    pub maxima: Figures,
    /// The caps of the parent cgroup on all tasks together (0: none).
    pub totals: Figures,
}

/// Memory in bytes, pids, and CPU in thousandths; 0 for none.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Figures {
    /// Bytes.
    pub memory: u64,
    /// Processes and threads.
    pub pids: u64,
    /// Thousandths of a CPU.
    pub cpu_millis: u64,
}

impl Figures {
    /// Resolves the three amounts for `host` (CPU shares are refused at parsing).
    pub fn of(memory: Memory, pids: Pids, cpu: Cpu, host: Host) -> Self {
        Self {
            memory: memory.0.resolve(host.memory).unwrap_or(0),
            pids: pids.0.resolve(host.pids).unwrap_or(0),
            cpu_millis: cpu.0.resolve(0).unwrap_or(0),
        }
    }
}

/// Which of a task's limits came from the daemon's defaults.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Defaulted {
    /// Its memory limit.
    pub memory: bool,
    /// Its pids limit.
    pub pids: bool,
    /// Its CPU limit.
    pub cpu: bool,
}

impl Policy {
    /// The limits a task gets for `requested`: the request's own, and the defaults for what
    /// it leaves unset; refused (INVALID_ARGUMENT, naming the flag and its maximum) above a
    /// maximum.
    pub fn apply(&self, requested: &Limits) -> Result<(Limits, Defaulted), RequestError> {
        let mut limits = requested.clone();
        let mut defaulted = Defaulted::default();
        // A limit a start leaves unset is the default, never above the maximum; with a
        // maximum and no default, the maximum.
        let (maxima, defaults) = (self.maxima, self.defaults);
        let unset = |default: u64, most: u64| match (default, most) {
            (0, most) => most,
            (default, 0) => default,
            (default, most) => default.min(most),
        };
        let memory = unset(defaults.memory, maxima.memory);
        if limits.memory_max_bytes.is_none() && memory != 0 {
            limits.memory_max_bytes = limit(memory);
            defaulted.memory = true;
        }
        let pids = unset(defaults.pids, maxima.pids);
        if limits.pids_max.is_none() && pids != 0 {
            limits.pids_max = limit(pids);
            defaulted.pids = true;
        }
        let cpu = unset(defaults.cpu_millis, maxima.cpu_millis);
        let quota = limit(cpu.saturating_mul(DEFAULT_CPU_PERIOD.get()) / 1000);
        if let (None, Some(quota_us)) = (limits.cpu, quota) {
            limits.cpu = Some(CpuLimit { quota_us, period_us: DEFAULT_CPU_PERIOD });
            defaulted.cpu = true;
        }
        let over = |what: &str, flag: &str, asked: String, most: String| {
            Err(RequestError::InvalidArgument(format!(
                "Cannot start the task: its {what} limit {asked} is above this daemon's maximum {most} (--limit-max-{flag})"
            )))
        };
        let memory = limits.memory();
        if maxima.memory != 0 && (memory == 0 || memory > maxima.memory) {
            return over("memory", "mem", show_bytes(memory), show_bytes(maxima.memory));
        }
        let pids = limits.pids();
        if maxima.pids != 0 && (pids == 0 || pids > maxima.pids) {
            return over("pids", "pids", show_count(pids), maxima.pids.to_string());
        }
        let cpu = limits.cpu_millis();
        if maxima.cpu_millis != 0 && (cpu == 0 || cpu > maxima.cpu_millis) {
            return over("CPU", "cpu", show_cpus(cpu), show_cpus(maxima.cpu_millis));
        }
        Ok((limits, defaulted))
    }
}

fn show_bytes(bytes: u64) -> String {
    if bytes == 0 { "unlimited".into() } else { format!("{bytes} bytes") }
}

fn show_count(count: u64) -> String {
    if count == 0 { "unlimited".into() } else { count.to_string() }
}

fn show_cpus(millis: u64) -> String {
    if millis == 0 { "unlimited".into() } else { format!("{} CPUs", millis as f64 / 1000.0) }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOST: Host = Host { memory: 24 << 30, pids: 4_194_304 };

    #[test]
    fn amounts_parse_and_show_as_given() {
        assert_eq!("512M".parse::<Memory>(), Ok(Memory(Amount::Exactly(512 << 20))));
        assert_eq!("2GiB".parse::<Memory>(), Ok(Memory(Amount::Exactly(2 << 30))));
        assert_eq!("25%".parse::<Memory>(), Ok(Memory(Amount::Share(25.0))));
        assert_eq!("unlimited".parse::<Memory>(), Ok(Memory(Amount::Unlimited)));
        assert_eq!("0".parse::<Pids>(), Ok(Pids(Amount::Unlimited)));
        assert_eq!("1024".parse::<Pids>(), Ok(Pids(Amount::Exactly(1024))));
        assert_eq!("1.5".parse::<Cpu>(), Ok(Cpu(Amount::Exactly(1500))));
        for bad in ["", "x", "150%", "-1", "12Q"] {
            assert!(bad.parse::<Memory>().is_err(), "{bad}");
        }
        assert!("50%".parse::<Cpu>().is_err(), "CPUs are a number");
        assert_eq!(Memory(Amount::Share(25.0)).to_string(), "25%");
        assert_eq!(Cpu(Amount::Exactly(1500)).to_string(), "1.5");
        assert_eq!(Pids(Amount::Unlimited).to_string(), "unlimited");
        let memory = Memory(Amount::Share(25.0));
        let figures = Figures::of(memory, Pids(Amount::Share(50.0)), Cpu(Amount::Unlimited), HOST);
        assert_eq!(figures, Figures { memory: 6 << 30, pids: 2_097_152, cpu_millis: 0 });
    }

    fn policy() -> Policy {
        Policy {
            defaults: Figures { memory: 1 << 30, pids: 1024, cpu_millis: 0 },
            maxima: Figures { memory: 4 << 30, pids: 4096, cpu_millis: 2000 },
            totals: Figures::default(),
        }
    }

    #[test]
    fn defaults_fill_what_a_start_leaves_unset_and_say_so() {
        let (limits, defaulted) = policy().apply(&Limits::default()).expect("applied");
        let quota = limits.cpu.map(|cpu| cpu.quota_us.get());
        let figures = (limits.memory(), limits.pids(), quota);
        assert_eq!(figures, (1 << 30, 1024, Some(200_000)), "with no CPU default, its maximum");
        assert_eq!(defaulted, Defaulted { memory: true, pids: true, cpu: true });
        let own = Limits { memory_max_bytes: limit(64 << 20), ..Limits::default() };
        let (limits, defaulted) = policy().apply(&own).expect("applied");
        assert_eq!(limits.memory(), 64 << 20);
        assert!(!defaulted.memory && defaulted.pids);
        let cpu = Policy {
            defaults: Figures { cpu_millis: 500, ..Figures::default() },
            ..Policy::default()
        };
        let (limits, defaulted) = cpu.apply(&Limits::default()).expect("applied");
        let cpu = limits.cpu.expect("a CPU limit");
        assert_eq!((cpu.quota_us.get(), cpu.period_us.get()), (50_000, 100_000));
        assert_eq!(defaulted, Defaulted { memory: false, pids: false, cpu: true });
    }

    #[test]
    fn a_start_above_a_maximum_is_refused_naming_the_flag() {
        let big = Limits { memory_max_bytes: limit(8 << 30), ..Limits::default() };
        let refused = policy().apply(&big).expect_err("over").to_string();
        assert_eq!(
            refused,
            "Cannot start the task: its memory limit 8589934592 bytes is above this daemon's maximum 4294967296 bytes (--limit-max-mem)"
        );
        let three =
            CpuLimit { quota_us: limit(300_000).expect("3 CPUs"), period_us: DEFAULT_CPU_PERIOD };
        let cpus = Limits { cpu: Some(three), ..Limits::default() };
        assert!(policy().apply(&cpus).expect_err("over").to_string().contains("--limit-max-cpu"));
        // A default above the maximum is the maximum.
        let small =
            Policy { maxima: Figures { memory: 1 << 29, ..Figures::default() }, ..policy() };
        let (limits, _) = small.apply(&Limits::default()).expect("the default, within the maximum");
        assert_eq!(limits.memory(), 1 << 29);
    }
}
