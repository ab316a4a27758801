//! Checks of client input before anything is created: argv, environment, working directory,
//! limits, grace periods and task ids. Pure: no I/O. Each refusal is one line naming the
//! field.

use std::time::Duration;

use rrocker_proto::v1::{Limits, StartRequest};
use uuid::Uuid;

use crate::config::MAX_GRACE_MS;
use crate::error::DaemonError;

/// Most bytes argv and env may hold together (the kernel's usual ARG_MAX is 2 MiB).
pub const MAX_COMMAND_BYTES: usize = 1024 * 1024;
/// Most entries argv or env may have.
pub const MAX_ENTRIES: usize = 4096;
/// Longest task id echoed back in an error message.
const MAX_ECHOED_ID: usize = 64;

/// Checks a start request; returns it unchanged when it is acceptable.
pub fn start_request(request: &StartRequest) -> Result<(), DaemonError> {
    let invalid = |message: String| Err(DaemonError::InvalidArgument(message));
    match request.argv.first() {
        None => return invalid("argv must not be empty".into()),
        Some(program) if program.is_empty() => return invalid("argv[0] must not be empty".into()),
        _ => {}
    }
    let too_large = |message: String| Err(DaemonError::ResourceExhausted(message));
    if request.argv.len() > MAX_ENTRIES || request.env.len() > MAX_ENTRIES {
        return too_large(format!("argv and env may have at most {MAX_ENTRIES} entries each"));
    }
    let total: usize = request.argv.iter().chain(&request.env).map(|item| item.len() + 1).sum();
    if total > MAX_COMMAND_BYTES {
        return too_large(format!("argv and env together exceed {MAX_COMMAND_BYTES} bytes"));
    }
    for (index, arg) in request.argv.iter().enumerate() {
        if arg.contains(&0) {
            return invalid(format!("argv[{index}] contains a NUL byte"));
        }
    }
    for (index, entry) in request.env.iter().enumerate() {
        match entry.iter().position(|&byte| byte == b'=') {
            _ if entry.contains(&0) => return invalid(format!("env[{index}] contains a NUL byte")),
            Some(0) | None => return invalid(format!("env[{index}] is not of the form KEY=VALUE")),
            Some(_) => {}
        }
    }
    if !request.workdir.is_empty() {
        if request.workdir[0] != b'/' {
            return invalid("workdir must be an absolute path".into());
        }
        if request.workdir.contains(&0) {
            return invalid("workdir contains a NUL byte".into());
        }
    }
    Ok(())
}

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

/// Checks limits against what the kernel accepts and the host has (`cpus` CPUs). Zero means
/// "no limit" for every field.
pub fn limits(limits: &Limits, cpus: u64) -> Result<(), DaemonError> {
    let invalid = |message: String| Err(DaemonError::InvalidArgument(message));
    let (min_period, max_period) = CPU_PERIOD_RANGE_US;
    let period = crate::cgroup::cpu_period(limits);
    if limits.cpu_period_us != 0 && limits.cpu_quota_us == 0 {
        return invalid("cpu_period_us needs cpu_quota_us".into());
    }
    if !(min_period..=max_period).contains(&period) {
        return invalid(format!(
            "cpu_period_us must be between {min_period} and {max_period} microseconds"
        ));
    }
    if limits.cpu_quota_us != 0 {
        let most = period.saturating_mul(cpus);
        if !(MIN_CPU_QUOTA_US..=most).contains(&limits.cpu_quota_us) {
            return invalid(format!(
                "cpu_quota_us must be between {MIN_CPU_QUOTA_US} and {most} (this host has {cpus} CPUs, period {period})"
            ));
        }
    }
    let memory = limits.memory_max_bytes;
    if memory != 0 && !(MIN_MEMORY_BYTES..=MAX_MEMORY_BYTES).contains(&memory) {
        return invalid("memory_max_bytes must be between 4 MiB and 8 PiB".into());
    }
    // A task needs two processes: its init and its command.
    if limits.pids_max != 0 && !(2..=MAX_PIDS).contains(&limits.pids_max) {
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
        let rates = [rule.read_bps, rule.write_bps, rule.read_iops, rule.write_iops];
        if rates.iter().all(|rate| *rate == 0) {
            return invalid(format!("io rule for {}:{} sets no rate", rule.major, rule.minor));
        }
        // The kernel reads rates as signed 64-bit numbers.
        if rates.iter().any(|rate| *rate > i64::MAX as u64) {
            return invalid(format!("io rule for {}:{}: rate too large", rule.major, rule.minor));
        }
    }
    Ok(())
}

/// Parses a task id. Anything that is not a UUID names no task.
pub fn task_id(id: &str) -> Result<Uuid, DaemonError> {
    Uuid::try_parse(id).map_err(|_| DaemonError::TaskNotFound { id: echo(id) })
}

/// The grace period of a stop: the request's, or the default.
pub fn grace(requested_ms: Option<u64>, default: Duration) -> Result<Duration, DaemonError> {
    match requested_ms {
        None => Ok(default),
        Some(ms) if ms <= MAX_GRACE_MS => Ok(Duration::from_millis(ms)),
        Some(_) => Err(DaemonError::InvalidArgument(format!(
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

    fn request(argv: &[&[u8]], env: &[&[u8]]) -> StartRequest {
        StartRequest {
            argv: argv.iter().map(|a| a.to_vec()).collect(),
            env: env.iter().map(|e| e.to_vec()).collect(),
            ..StartRequest::default()
        }
    }

    fn message(result: Result<(), DaemonError>) -> String {
        result.expect_err("refused").to_string()
    }

    #[test]
    fn good_requests_pass() {
        start_request(&request(&[b"/bin/true"], &[])).expect("ok");
        start_request(&request(&[b"sh", b"-c", b"x"], &[b"A=b", b"EMPTY="])).expect("ok");
    }

    #[test]
    fn malformed_commands_are_refused_with_the_field_named() {
        assert_eq!(message(start_request(&request(&[], &[]))), "argv must not be empty");
        assert_eq!(message(start_request(&request(&[b""], &[]))), "argv[0] must not be empty");
        assert_eq!(
            message(start_request(&request(&[b"a", b"b\0"], &[]))),
            "argv[1] contains a NUL byte"
        );
        assert_eq!(
            message(start_request(&request(&[b"a"], &[b"NOEQ"]))),
            "env[0] is not of the form KEY=VALUE"
        );
        assert_eq!(
            message(start_request(&request(&[b"a"], &[b"=x"]))),
            "env[0] is not of the form KEY=VALUE"
        );
        let huge = vec![b'x'; MAX_COMMAND_BYTES];
        assert!(message(start_request(&request(&[b"a", &huge], &[]))).contains("exceed"));
        let mut relative = request(&[b"a"], &[]);
        relative.workdir = b"tmp".to_vec();
        assert_eq!(message(start_request(&relative)), "workdir must be an absolute path");
    }

    fn io(major: u32, write_bps: u64) -> rrocker_proto::v1::IoLimit {
        rrocker_proto::v1::IoLimit { major, minor: 0, write_bps, ..Default::default() }
    }

    #[test]
    fn sensible_limits_pass() {
        limits(&Limits::default(), 2).expect("no limits");
        let all = Limits {
            cpu_quota_us: 50_000,
            cpu_period_us: 100_000,
            memory_max_bytes: 1 << 30,
            pids_max: 32,
            io: vec![io(254, 10 << 20)],
        };
        limits(&all, 2).expect("ok");
        limits(&Limits { cpu_quota_us: 200_000, ..Limits::default() }, 2).expect("two CPUs");
    }

    #[test]
    fn absurd_limits_are_refused_with_the_field_named() {
        let refused = |l: Limits| message(limits(&l, 2));
        let cases = [
            (Limits { cpu_quota_us: 999, ..Limits::default() }, "cpu_quota_us"),
            (Limits { cpu_quota_us: 300_000, ..Limits::default() }, "cpu_quota_us"),
            (Limits { cpu_quota_us: u64::MAX, ..Limits::default() }, "cpu_quota_us"),
            (Limits { cpu_period_us: 100_000, ..Limits::default() }, "cpu_period_us"),
            (
                Limits { cpu_quota_us: 5000, cpu_period_us: 10, ..Limits::default() },
                "cpu_period_us",
            ),
            (Limits { memory_max_bytes: 4096, ..Limits::default() }, "memory_max_bytes"),
            (Limits { memory_max_bytes: u64::MAX, ..Limits::default() }, "memory_max_bytes"),
            (Limits { pids_max: 1, ..Limits::default() }, "pids_max"),
            (Limits { pids_max: u64::MAX, ..Limits::default() }, "pids_max"),
            (Limits { io: vec![io(0, 1)], ..Limits::default() }, "not a block device"),
            (Limits { io: vec![io(254, 0)], ..Limits::default() }, "sets no rate"),
            (Limits { io: vec![io(254, u64::MAX)], ..Limits::default() }, "too large"),
            (Limits { io: vec![io(254, 1), io(254, 2)], ..Limits::default() }, "twice"),
            (Limits { io: vec![io(8, 1); 17], ..Limits::default() }, "at most"),
        ];
        for (bad, field) in cases {
            let text = refused(bad.clone());
            assert!(text.contains(field), "{bad:?}: {text}");
            assert!(!text.contains('\n'));
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
