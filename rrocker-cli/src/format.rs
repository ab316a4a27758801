//! How statuses are shown: the seed's `Task state:` / `Exit code:` lines, the list table and
//! the JSON form. Pure: strings in, strings out.

use rrocker_proto::v1::{KillReason, Limits, TaskState, TaskStatus, Usage};
use serde_json::{Value, json};

/// The seed's status lines: `Task state: X`, then `Exit code: N` when there is one.
pub fn state_lines(status: &TaskStatus) -> String {
    let mut lines = format!("Task state: {}\n", state_name(status.state()));
    if let Some(code) = status.exit_code {
        lines.push_str(&format!("Exit code: {code}\n"));
    }
    if status.state() == TaskState::Failed && !status.error.is_empty() {
        lines.push_str(&format!("Error: {}\n", status.error));
    }
    lines
}

/// The state's name as the seed shows it.
pub fn state_name(state: TaskState) -> &'static str {
    match state {
        TaskState::Unspecified => "Unknown",
        TaskState::Starting => "Starting",
        TaskState::Running => "Running",
        TaskState::Completed => "Completed",
        TaskState::Killed => "Killed",
        TaskState::Failed => "Failed",
    }
}

fn reason_name(reason: KillReason) -> Option<&'static str> {
    match reason {
        KillReason::Unspecified => None,
        KillReason::Signal => Some("signal"),
        KillReason::Stopped => Some("stopped"),
        KillReason::OutOfMemory => Some("out of memory"),
        KillReason::Shutdown => Some("daemon shutdown"),
    }
}

/// The conventional name of a signal number (`SIGTERM`), or `SIG<n>` for others.
pub fn signal_name(signal: i32) -> String {
    const NAMES: [&str; 31] = [
        "SIGHUP",
        "SIGINT",
        "SIGQUIT",
        "SIGILL",
        "SIGTRAP",
        "SIGABRT",
        "SIGBUS",
        "SIGFPE",
        "SIGKILL",
        "SIGUSR1",
        "SIGSEGV",
        "SIGUSR2",
        "SIGPIPE",
        "SIGALRM",
        "SIGTERM",
        "SIGSTKFLT",
        "SIGCHLD",
        "SIGCONT",
        "SIGSTOP",
        "SIGTSTP",
        "SIGTTIN",
        "SIGTTOU",
        "SIGURG",
        "SIGXCPU",
        "SIGXFSZ",
        "SIGVTALRM",
        "SIGPROF",
        "SIGWINCH",
        "SIGIO",
        "SIGPWR",
        "SIGSYS",
    ];
    usize::try_from(signal)
        .ok()
        .and_then(|number| number.checked_sub(1))
        .and_then(|index| NAMES.get(index))
        .map_or_else(|| format!("SIG{signal}"), |name| (*name).to_owned())
}

/// The command as one line, arguments separated by spaces (bytes shown lossily).
pub fn command_line(argv: &[Vec<u8>]) -> String {
    argv.iter().map(|arg| String::from_utf8_lossy(arg)).collect::<Vec<_>>().join(" ")
}

/// The full status as JSON.
pub fn status_json(status: &TaskStatus) -> Value {
    json!({
        "id": status.task_id,
        "state": state_name(status.state()).to_lowercase(),
        "exit_code": status.exit_code,
        "signal": status.signal.map(signal_name),
        "reason": reason_name(status.reason()),
        "error": (!status.error.is_empty()).then_some(&status.error),
        "owner": status.owner,
        "argv": status.argv.iter().map(|arg| String::from_utf8_lossy(arg)).collect::<Vec<_>>(),
        "pid": (status.pid != 0).then_some(status.pid),
        "created_at_ms": status.created_at_ms,
        "finished_at_ms": (status.finished_at_ms != 0).then_some(status.finished_at_ms),
        "limits": status.limits.as_ref().map(limits_json),
        "usage": status.usage.as_ref().map(usage_json),
    })
}

fn limits_json(limits: &Limits) -> Value {
    let some = |value: u64| (value != 0).then_some(value);
    json!({
        "cpu_quota_us": some(limits.cpu_quota_us),
        "cpu_period_us": some(limits.cpu_period_us),
        "memory_max_bytes": some(limits.memory_max_bytes),
        "pids_max": some(limits.pids_max),
        "io": limits.io.iter().map(|rule| json!({
            "device": format!("{}:{}", rule.major, rule.minor),
            "read_bps": some(rule.read_bps),
            "write_bps": some(rule.write_bps),
            "read_iops": some(rule.read_iops),
            "write_iops": some(rule.write_iops),
        })).collect::<Vec<_>>(),
    })
}

fn usage_json(usage: &Usage) -> Value {
    json!({
        "cpu_time_us": usage.cpu_time_us,
        "cpu_throttled_periods": usage.cpu_throttled_periods,
        "cpu_throttled_us": usage.cpu_throttled_us,
        "memory_peak_bytes": usage.memory_peak_bytes,
        "pids_peak": usage.pids_peak,
        "io_read_bytes": usage.io_read_bytes,
        "io_write_bytes": usage.io_write_bytes,
        "oom_kills": usage.oom_kills,
    })
}

/// The seed's status lines, then (for `query -v`) why it was killed, its limits and usage.
pub fn verbose_lines(status: &TaskStatus) -> String {
    let mut lines = state_lines(status);
    if let Some(reason) = reason_name(status.reason()) {
        lines.push_str(&format!("Reason: {reason}\n"));
    }
    if let Some(signal) = status.signal {
        lines.push_str(&format!("Signal: {}\n", signal_name(signal)));
    }
    let limits = status.limits.clone().unwrap_or_default();
    let mut limit_words = Vec::new();
    if limits.cpu_quota_us != 0 {
        let period = if limits.cpu_period_us == 0 {
            crate::limits::CPU_PERIOD_US
        } else {
            limits.cpu_period_us
        };
        limit_words.push(format!("cpu {:.2} CPUs", limits.cpu_quota_us as f64 / period as f64));
    }
    if limits.memory_max_bytes != 0 {
        limit_words.push(format!("memory {}", bytes(limits.memory_max_bytes)));
    }
    if limits.pids_max != 0 {
        limit_words.push(format!("pids {}", limits.pids_max));
    }
    for rule in &limits.io {
        let rates = [
            ("read", rule.read_bps, "B/s"),
            ("write", rule.write_bps, "B/s"),
            ("read", rule.read_iops, " IOPS"),
            ("write", rule.write_iops, " IOPS"),
        ];
        for (op, value, unit) in rates.into_iter().filter(|(_, value, _)| *value != 0) {
            let value = if unit == "B/s" { bytes(value) } else { value.to_string() };
            limit_words.push(format!("io {op} {}:{} {value}{unit}", rule.major, rule.minor));
        }
    }
    let limit_text = if limit_words.is_empty() { "none".into() } else { limit_words.join(", ") };
    lines.push_str(&format!("Limits: {limit_text}\n"));
    if let Some(usage) = &status.usage {
        lines.push_str(&format!(
            "Usage: cpu {:.3}s (throttled {} times, {:.3}s), memory peak {}, pids peak {}, io read {}, io written {}, oom kills {}\n",
            usage.cpu_time_us as f64 / 1e6,
            usage.cpu_throttled_periods,
            usage.cpu_throttled_us as f64 / 1e6,
            bytes(usage.memory_peak_bytes),
            usage.pids_peak,
            bytes(usage.io_read_bytes),
            bytes(usage.io_write_bytes),
            usage.oom_kills,
        ));
    }
    lines
}

/// A byte count in binary units (`512.0 MiB`).
pub fn bytes(count: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = count as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 { format!("{count} B") } else { format!("{value:.1} {}", UNITS[unit]) }
}

/// The list as a table: ID, OWNER, STATE, COMMAND.
pub fn list_table(tasks: &[TaskStatus]) -> String {
    let mut table = format!("{:<36}  {:<12}  {:<16}  {}\n", "ID", "OWNER", "STATE", "COMMAND");
    for status in tasks {
        let mut state = state_name(status.state()).to_owned();
        match (status.exit_code, status.signal) {
            (_, Some(signal)) => state.push_str(&format!(" ({})", signal_name(signal))),
            (Some(code), None) => state.push_str(&format!(" ({code})")),
            (None, None) => {}
        }
        table.push_str(&format!(
            "{:<36}  {:<12}  {:<16}  {}\n",
            status.task_id,
            status.owner,
            state,
            command_line(&status.argv)
        ));
    }
    table
}

/// Parses a duration such as `10`, `10s`, `1.5s`, `500ms` or `2m` (a bare number is seconds).
pub fn parse_duration_ms(text: &str) -> Result<u64, String> {
    let error = || format!("invalid duration '{text}': expected e.g. 10, 10s, 500ms or 2m");
    let (number, scale) = if let Some(ms) = text.strip_suffix("ms") {
        (ms, 1.0)
    } else if let Some(s) = text.strip_suffix('s') {
        (s, 1000.0)
    } else if let Some(m) = text.strip_suffix('m') {
        (m, 60_000.0)
    } else {
        (text, 1000.0)
    };
    let value: f64 = number.trim().parse().map_err(|_| error())?;
    let ms = value * scale;
    if !ms.is_finite() || !(0.0..=86_400_000.0).contains(&ms) {
        return Err(error());
    }
    // Bounded above, so the cast is exact enough and cannot overflow.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    Ok(ms.round() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(state: TaskState, exit_code: Option<i32>) -> TaskStatus {
        let mut status = TaskStatus { exit_code, ..TaskStatus::default() };
        status.set_state(state);
        status
    }

    #[test]
    fn seed_lines() {
        assert_eq!(state_lines(&status(TaskState::Running, None)), "Task state: Running\n");
        assert_eq!(
            state_lines(&status(TaskState::Completed, Some(0))),
            "Task state: Completed\nExit code: 0\n"
        );
        assert_eq!(state_lines(&status(TaskState::Killed, None)), "Task state: Killed\n");
    }

    #[test]
    fn signal_names() {
        assert_eq!(signal_name(15), "SIGTERM");
        assert_eq!(signal_name(9), "SIGKILL");
        assert_eq!(signal_name(31), "SIGSYS");
        assert_eq!(signal_name(40), "SIG40");
        assert_eq!(signal_name(0), "SIG0");
    }

    #[test]
    fn json_carries_signal_and_reason() {
        let mut killed = status(TaskState::Killed, None);
        killed.signal = Some(15);
        killed.set_reason(KillReason::Stopped);
        let json = status_json(&killed);
        assert_eq!(json["state"], "killed");
        assert_eq!(json["signal"], "SIGTERM");
        assert_eq!(json["reason"], "stopped");
        assert_eq!(json["exit_code"], Value::Null);
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration_ms("10"), Ok(10_000));
        assert_eq!(parse_duration_ms("1.5s"), Ok(1500));
        assert_eq!(parse_duration_ms("250ms"), Ok(250));
        assert_eq!(parse_duration_ms("2m"), Ok(120_000));
        assert!(parse_duration_ms("-1").is_err());
        assert!(parse_duration_ms("abc").is_err());
        assert!(parse_duration_ms("NaN").is_err());
        assert!(parse_duration_ms("1e30").is_err());
    }
}
