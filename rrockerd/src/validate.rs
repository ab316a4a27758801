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

/// The signal a user asks to send, from a name (`TERM`, `SIGUSR1`, `rtmin+2`; any case) or
/// a number. SIGSTOP, SIGCHLD and SIGPIPE are refused: a task's init, which passes signals
/// on to its command, would take them for its own.
pub fn signal(text: &str) -> Result<i32, RequestError> {
    let trimmed = text.trim();
    let number = match trimmed.parse::<i32>() {
        Ok(number) => Some(number).filter(|n| (1..=libc::SIGRTMAX()).contains(n)),
        Err(_) => signal_by_name(trimmed),
    };
    let unknown = || {
        RequestError::InvalidArgument(format!(
            "unknown signal '{}': give a name (TERM, USR1, RTMIN+1...) or a number from 1 to {}",
            echo(trimmed),
            libc::SIGRTMAX()
        ))
    };
    // 32 and 33 are the C library's own (below SIGRTMIN).
    let number = number.filter(|&n| n < 32 || n >= libc::SIGRTMIN()).ok_or_else(unknown)?;
    if [libc::SIGSTOP, libc::SIGCHLD, libc::SIGPIPE].contains(&number) {
        let name = nix::sys::signal::Signal::try_from(number).map_or("", |s| s.as_str());
        return Err(RequestError::InvalidArgument(format!(
            "{name} cannot be sent to a task: its init would take it for its own (SIGTSTP stops a command that does not handle it)"
        )));
    }
    Ok(number)
}

/// A signal's number from its name, with or without `SIG`, in any case; `RTMIN+n`, `RTMAX-n`.
fn signal_by_name(name: &str) -> Option<i32> {
    let upper = name.to_ascii_uppercase();
    let bare = upper.strip_prefix("SIG").unwrap_or(&upper);
    let offset = |rest: &str| if rest.is_empty() { Some(0) } else { rest.parse::<i32>().ok() };
    let number = if let Some(rest) = bare.strip_prefix("RTMIN") {
        libc::SIGRTMIN() + offset(rest.strip_prefix('+').unwrap_or(rest))?
    } else if let Some(rest) = bare.strip_prefix("RTMAX") {
        libc::SIGRTMAX() - offset(rest.strip_prefix('-').unwrap_or(rest))?
    } else {
        let signal = format!("SIG{bare}").parse::<nix::sys::signal::Signal>().ok()?;
        return Some(signal as i32);
    };
    Some(number).filter(|n| (libc::SIGRTMIN()..=libc::SIGRTMAX()).contains(n))
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
    fn signals_are_named_or_numbered_and_those_init_keeps_are_refused() {
        for (text, number) in [
            ("TERM", 15),
            ("SIGUSR1", 10),
            ("usr2", 12),
            ("sigkill", 9),
            ("10", 10),
            (" HUP ", 1),
            ("RTMIN", 34),
            ("rtmin+2", 36),
            ("SIGRTMAX-1", 63),
            ("64", 64),
        ] {
            assert_eq!(signal(text).unwrap_or_else(|e| panic!("{text}: {e}")), number, "{text}");
        }
        for text in ["FOO", "0", "65", "-1", "32", "33", "RTMIN+40", "", "SIG"] {
            let refused = signal(text).expect_err(text).to_string();
            assert!(refused.starts_with("unknown signal"), "{text}: {refused}");
        }
        for text in ["STOP", "SIGCHLD", "13"] {
            let refused = signal(text).expect_err(text).to_string();
            assert!(refused.contains("cannot be sent to a task"), "{text}: {refused}");
        }
    }

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
