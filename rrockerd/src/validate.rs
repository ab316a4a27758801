//! Checks of client input before anything is created, beyond its shape (which the gRPC
//! edge checks as it builds a `TaskSpec`): limits against the kernel and the host, grace
//! periods and task ids. Pure: no I/O. Each refusal is one line naming the field.

use std::time::Duration;

use uuid::Uuid;

use crate::config::MAX_GRACE_MS;
use crate::request_error::RequestError;
use crate::spec::Limits;

/// Longest task id echoed back in an error message.
const MAX_ECHOED_ID: usize = 64;

/// Smallest memory limit: below it, not even the task's init can start.
pub const MIN_MEMORY_BYTES: u64 = 4 << 20;
/// Largest memory limit (8 PiB): anything above is a mistake, not a limit.
pub const MAX_MEMORY_BYTES: u64 = 8 << 50;
/// Shortest and longest CPU period the kernel accepts, in microseconds.
pub const CPU_PERIOD_RANGE_US: (u64, u64) = (1_000, 1_000_000);
/// Smallest CPU quota the kernel accepts, in microseconds.
pub const MIN_CPU_QUOTA_US: u64 = 1_000;
/// Most processes a limit may allow (the kernel's PID_MAX_LIMIT).
pub const MAX_PIDS: u64 = 4 << 20;
/// Most IO rules a task may have.
pub const MAX_IO_RULES: usize = 16;

/// Checks limits against what the kernel accepts and the host has (`cpus` CPUs).
pub fn limits(limits: &Limits, cpus: u64) -> Result<(), RequestError> {
    let invalid = |message: String| Err(RequestError::InvalidArgument(message));
    let (min_period, max_period) = CPU_PERIOD_RANGE_US;
    if let Some(cpu) = limits.cpu {
        let (quota, period) = (cpu.quota_us.get(), cpu.period_us.get());
        if !(min_period..=max_period).contains(&period) {
            return invalid(format!(
                "cpu_period_us must be between {min_period} and {max_period} microseconds"
            ));
        }
        let most = period.saturating_mul(cpus);
        if !(MIN_CPU_QUOTA_US..=most).contains(&quota) {
            return invalid(format!(
                "cpu_quota_us must be between {MIN_CPU_QUOTA_US} and {most} (this host has {cpus} CPUs, period {period})"
            ));
        }
    }
    let memory = limits.memory();
    if memory != 0 && !(MIN_MEMORY_BYTES..=MAX_MEMORY_BYTES).contains(&memory) {
        return invalid("memory_max_bytes must be between 4 MiB and 8 PiB".into());
    }
    // A task needs two processes: its init and its command.
    if limits.pids() != 0 && !(2..=MAX_PIDS).contains(&limits.pids()) {
        return invalid(format!("pids_max must be between 2 and {MAX_PIDS}"));
    }
    if limits.io.len() > MAX_IO_RULES {
        return invalid(format!("at most {MAX_IO_RULES} io rules"));
    }
    for (index, rule) in limits.io.iter().enumerate() {
        let device = (rule.major, rule.minor);
        if limits.io[..index].iter().any(|other| (other.major, other.minor) == device) {
            return invalid(format!("io rules name {}:{} twice", rule.major, rule.minor));
        }
        if rule.major == 0 {
            return invalid(format!(
                "io rule {index}: {}:{} is not a block device",
                rule.major, rule.minor
            ));
        }
        let rates = rule.rates();
        if rates.iter().all(Option::is_none) {
            return invalid(format!("io rule for {}:{} sets no rate", rule.major, rule.minor));
        }
        // The kernel reads rates as signed 64-bit numbers.
        if rates.iter().flatten().any(|rate| rate.get() > i64::MAX as u64) {
            return invalid(format!("io rule for {}:{}: rate too large", rule.major, rule.minor));
        }
    }
    Ok(())
}

/// Parses a task id. Anything that is not a UUID names no task.
pub fn task_id(id: &str) -> Result<Uuid, RequestError> {
    Uuid::try_parse(id).map_err(|_| RequestError::TaskNotFound { id: echo(id) })
}

/// The grace period of a stop: the request's, or the default.
pub fn grace(requested_ms: Option<u64>, default: Duration) -> Result<Duration, RequestError> {
    match requested_ms {
        None => Ok(default),
        Some(ms) if ms <= MAX_GRACE_MS => Ok(Duration::from_millis(ms)),
        Some(_) => Err(RequestError::InvalidArgument(format!(
            "grace_ms must be at most {MAX_GRACE_MS} (one day)"
        ))),
    }
}

/// An id as it may appear in a message: absurdly long ones are cut.
pub fn echo(id: &str) -> String {
    match id.char_indices().nth(MAX_ECHOED_ID) {
        Some((cut, _)) => format!("{}...", &id[..cut]),
        None => id.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_grace_are_checked() {
        assert!(task_id("0e6b1e8c-ab62-4d5e-8afe-3d8d0c36fb14").is_ok());
        assert_eq!(
            task_id("abcdefgh-1234-5678-0987-abcdefgh").expect_err("bad").to_string(),
            "Task 'abcdefgh-1234-5678-0987-abcdefgh' doesn't exist"
        );
        let long = "x".repeat(1 << 20);
        assert!(task_id(&long).expect_err("bad").to_string().len() < 100);
        let default = Duration::from_secs(10);
        assert_eq!(grace(None, default).expect("ok"), default);
        assert_eq!(grace(Some(0), default).expect("ok"), Duration::ZERO);
        assert!(grace(Some(u64::MAX), default).is_err());
    }
}
