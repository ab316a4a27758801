//! How statuses are shown: the seed's `Task state:` / `Exit code:` lines, the list table and
//! the JSON form. Pure: strings in, strings out.

use rrocker_proto::v1::{
    ExecStatus, KillReason, Limits, TaskEvent, TaskEventKind, TaskState, TaskStatus, Usage,
};
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
        KillReason::Signalled => Some("signalled"),
        KillReason::TimedOut => Some("timed out"),
    }
}

/// The conventional name of a signal number (`SIGTERM`), or `SIG<n>` for others.
pub fn signal_name(signal: i32) -> String {
    nix::sys::signal::Signal::try_from(signal)
        .map_or_else(|_| format!("SIG{signal}"), |known| known.as_str().to_owned())
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
        "image": (!status.image.is_empty()).then_some(&status.image),
        "seccomp": (!status.seccomp.is_empty()).then_some(&status.seccomp),
        "held": (!status.held.is_empty()).then_some(&status.held),
        "pid": (status.pid != 0).then_some(status.pid),
        "created_at_ms": status.created_at_ms,
        "finished_at_ms": (status.finished_at_ms != 0).then_some(status.finished_at_ms),
        "timeout_ms": status.timeout_ms,
        "limits": status.limits.as_ref().map(limits_json),
        "defaulted_limits": status.defaulted_limits,
        "usage": status.usage.as_ref().map(usage_json),
        "tty": status.tty,
        "execs": status.execs.iter().map(exec_json).collect::<Vec<_>>(),
    })
}

fn exec_json(exec: &ExecStatus) -> Value {
    json!({
        "exec_id": exec.exec_id,
        "argv": exec.argv.iter().map(|arg| String::from_utf8_lossy(arg)).collect::<Vec<_>>(),
        "state": state_name(exec.state()).to_lowercase(),
        "exit_code": exec.exit_code,
        "signal": exec.signal.map(signal_name),
        "pid": (exec.pid != 0).then_some(exec.pid),
        "tty": exec.tty,
    })
}

/// One line of an exec, as `query -v` lists them: its number, how it is, its command.
fn exec_line(exec: &ExecStatus) -> String {
    let state = match (exec.state(), exec.exit_code, exec.signal) {
        (_, Some(code), _) => format!("exited {code}"),
        (_, _, Some(signal)) => format!("killed by {}", signal_name(signal)),
        (state, _, _) => state_name(state).to_lowercase(),
    };
    let argv: Vec<_> = exec.argv.iter().map(|arg| String::from_utf8_lossy(arg)).collect();
    format!("Exec {}: {state}: {}\n", exec.exec_id, argv.join(" "))
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
        "memory_current_bytes": usage.memory_current_bytes,
        "pids_current": usage.pids_current,
    })
}

/// The seed's status lines, then (for `query -v`) why it was killed, its limits and usage.
pub fn verbose_lines(status: &TaskStatus) -> String {
    let mut lines = state_lines(status);
    if !status.held.is_empty() {
        lines.push_str(&format!("Held: {}\n", status.held));
    }
    if let Some(reason) = reason_name(status.reason()) {
        lines.push_str(&format!("Reason: {reason}\n"));
    }
    if let Some(signal) = status.signal {
        lines.push_str(&format!("Signal: {}\n", signal_name(signal)));
    }
    let limits = status.limits.clone().unwrap_or_default();
    let mut limit_words = Vec::new();
    // A limit the daemon's defaults gave, not the start.
    let source = |name: &str| {
        if status.defaulted_limits.iter().any(|defaulted| defaulted == name) {
            " (default)"
        } else {
            ""
        }
    };
    if limits.cpu_quota_us != 0 {
        let period = if limits.cpu_period_us == 0 {
            crate::limits::CPU_PERIOD_US
        } else {
            limits.cpu_period_us
        };
        let cpus = limits.cpu_quota_us as f64 / period as f64;
        limit_words.push(format!("cpu {cpus:.2} CPUs{}", source("cpu")));
    }
    if limits.memory_max_bytes != 0 {
        limit_words.push(format!("memory {}{}", bytes(limits.memory_max_bytes), source("memory")));
    }
    if limits.pids_max != 0 {
        limit_words.push(format!("pids {}{}", limits.pids_max, source("pids")));
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
    for exec in &status.execs {
        lines.push_str(&exec_line(exec));
    }
    if status.created_at_ms != 0 {
        lines.push_str(&format!("Created: {}\n", timestamp(status.created_at_ms)));
    }
    if status.finished_at_ms != 0 {
        let ran = span(status.finished_at_ms.saturating_sub(status.created_at_ms));
        lines.push_str(&format!("Finished: {} (ran {ran})\n", timestamp(status.finished_at_ms)));
    }
    if let Some(timeout) = status.timeout_ms {
        let by = timestamp(status.created_at_ms.saturating_add(timeout));
        lines.push_str(&format!("Timeout: {} (stops at {by})\n", span(timeout)));
    }
    if status.pid != 0 {
        lines.push_str(&format!("Pid: {} (on the daemon's host)\n", status.pid));
    }
    if !status.owner.is_empty() {
        lines.push_str(&format!("Owner: {}\n", status.owner));
    }
    if !status.image.is_empty() {
        lines.push_str(&format!("Image: {}\n", status.image));
    }
    if !status.seccomp.is_empty() {
        lines.push_str(&format!("Seccomp: {}\n", status.seccomp));
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

/// Which columns `ps` shows besides ID, COMMAND and STATUS.
#[derive(Debug, Clone, Copy, Default)]
pub struct PsColumns {
    /// The daemon each task runs on (more than one daemon asked).
    pub host: bool,
    /// Who started each task (the caller is an admin).
    pub owner: bool,
    /// Whole ids and commands instead of 12 characters and 40.
    pub no_trunc: bool,
}

/// One task in `ps`'s table, and the daemon it runs on.
#[derive(Debug, Clone, Copy)]
pub struct PsRow<'a> {
    /// The daemon's address.
    pub host: &'a str,
    /// The task.
    pub status: &'a TaskStatus,
}

/// The characters of an id `ps` shows (also the task's hostname).
pub const SHORT_ID: usize = 12;

/// The first [`SHORT_ID`] characters of an id, as `ps` shows it.
pub fn short_id(id: &str) -> &str {
    id.get(..SHORT_ID).unwrap_or(id)
}
/// The characters of a command `ps` shows.
const SHORT_COMMAND: usize = 40;

/// `ps`'s table: [HOST] ID COMMAND [OWNER] STATUS, one task a line. The status is styled
/// (ANSI), for a stream that drops the styles where colour is not wanted.
pub fn ps_table(rows: &[PsRow<'_>], columns: PsColumns, now_ms: u64) -> String {
    let cut = |text: String, limit: usize| {
        if columns.no_trunc || text.chars().count() <= limit {
            text
        } else {
            let mut short: String = text.chars().take(limit - 1).collect();
            short.push('…');
            short
        }
    };
    let cells: Vec<[String; 4]> = rows
        .iter()
        .map(|row| {
            let id = &row.status.task_id;
            let id = if columns.no_trunc { id.clone() } else { short_id(id).to_owned() };
            let command = cut(command_line(&row.status.argv), SHORT_COMMAND);
            [row.host.to_owned(), id, command, row.status.owner.clone()]
        })
        .collect();
    let shown = [columns.host, true, true, columns.owner];
    let titles = ["HOST", "ID", "COMMAND", "OWNER"];
    let widths: Vec<usize> = (0..4)
        .map(|column| {
            let widest = cells.iter().map(|row| row[column].chars().count()).max().unwrap_or(0);
            widest.max(titles[column].len())
        })
        .collect();
    let line = |texts: [&str; 4], status: String| {
        let mut line = String::new();
        for column in (0..4).filter(|column| shown[*column]) {
            line.push_str(&format!("{:<width$}   ", texts[column], width = widths[column]));
        }
        line.push_str(&status);
        line.push('\n');
        line
    };
    let mut table = line(titles, "STATUS".into());
    for (row, cells) in rows.iter().zip(&cells) {
        let (text, style) = ps_status(row.status, now_ms);
        let texts = [cells[0].as_str(), &cells[1], &cells[2], &cells[3]];
        table.push_str(&line(texts, format!("{style}{text}{style:#}")));
    }
    table
}

/// A task's STATUS in `ps`, docker's way (`Running 3s`, `Completed (0) 1m ago`, `Killed
/// (SIGTERM) 5s ago`, `Killed (out of memory) 2h ago`), and its colour.
pub fn ps_status(status: &TaskStatus, now_ms: u64) -> (String, anstyle::Style) {
    use anstyle::{AnsiColor, Style};
    let colour = |colour: AnsiColor| Style::new().fg_color(Some(colour.into()));
    let state = status.state();
    let ago = format!("{} ago", age(now_ms.saturating_sub(status.finished_at_ms)));
    match state {
        TaskState::Running | TaskState::Starting | TaskState::Unspecified => {
            let running_for = age(now_ms.saturating_sub(status.created_at_ms));
            let text = format!("{} {running_for}", state_name(state));
            if status.held.is_empty() {
                (text, colour(AnsiColor::Green))
            } else {
                (format!("{text} (output held)"), colour(AnsiColor::Yellow))
            }
        }
        TaskState::Completed => {
            let code = status.exit_code.unwrap_or_default();
            let style = if code == 0 { Style::new() } else { colour(AnsiColor::Yellow) };
            (format!("Completed ({code}) {ago}"), style)
        }
        TaskState::Killed => {
            let why = match (status.reason(), status.signal, status.exit_code) {
                (KillReason::OutOfMemory, _, _) => "out of memory".to_owned(),
                (_, Some(signal), _) => signal_name(signal),
                (_, None, Some(code)) => code.to_string(),
                (_, None, None) => "unknown".to_owned(),
            };
            (format!("Killed ({why}) {ago}"), colour(AnsiColor::Red))
        }
        TaskState::Failed => (format!("Failed {ago}"), colour(AnsiColor::Red)),
    }
}

/// A time span in its largest whole unit, as `ps` shows ages: `0s`, `59s`, `1m`, `3h`, `2d`.
pub fn age(ms: u64) -> String {
    let seconds = ms / 1000;
    match seconds {
        0..60 => format!("{seconds}s"),
        60..3600 => format!("{}m", seconds / 60),
        3600..86_400 => format!("{}h", seconds / 3600),
        _ => format!("{}d", seconds / 86_400),
    }
}

/// A time in milliseconds since the Unix epoch, as UTC to the second (RFC 3339).
pub fn timestamp(unix_ms: u64) -> String {
    let time = std::time::UNIX_EPOCH + std::time::Duration::from_millis(unix_ms);
    humantime::format_rfc3339_seconds(time).to_string()
}

/// When a task event happened: RFC 3339 with milliseconds.
fn event_time(event: &TaskEvent) -> String {
    let time = std::time::UNIX_EPOCH + std::time::Duration::from_millis(event.at_ms);
    humantime::format_rfc3339_millis(time).to_string()
}

/// What kind of event it is, in one word.
fn event_kind_name(kind: TaskEventKind) -> &'static str {
    match kind {
        TaskEventKind::Created => "created",
        TaskEventKind::Started => "started",
        TaskEventKind::Ended => "ended",
        TaskEventKind::Removed => "removed",
        TaskEventKind::Unspecified => "unspecified",
    }
}

/// A task event as one line: its time (RFC 3339, milliseconds), the task, what happened.
pub fn event_line(event: &TaskEvent) -> String {
    let kind = event_kind_name(event.kind());
    let what = match event.kind() {
        TaskEventKind::Ended => {
            let ended = event.ended.clone().unwrap_or_default();
            let mut words = vec![format!("{kind} {}", state_name(ended.state()).to_lowercase())];
            words.extend(ended.exit_code.map(|code| format!("exit code {code}")));
            words.extend(ended.signal.map(signal_name));
            words.extend(reason_name(ended.reason()).map(|reason| format!("({reason})")));
            words.join(" ")
        }
        TaskEventKind::Removed => format!("{kind} ({})", event.why),
        TaskEventKind::Unspecified => "?".to_owned(),
        TaskEventKind::Created | TaskEventKind::Started => kind.to_owned(),
    };
    format!("{} task {} {what} owner={}", event_time(event), event.task_id, event.owner)
}

/// A task event as a JSON object.
pub fn event_json(event: &TaskEvent) -> Value {
    let ended = event.ended.as_ref().filter(|_| event.kind() == TaskEventKind::Ended);
    json!({
        "seq": event.seq,
        "time": event_time(event),
        "task_id": event.task_id,
        "owner": event.owner,
        "event": event_kind_name(event.kind()),
        "state": ended.map(|ended| state_name(ended.state()).to_lowercase()),
        "exit_code": ended.and_then(|ended| ended.exit_code),
        "signal": ended.and_then(|ended| ended.signal).map(signal_name),
        "reason": ended.and_then(|ended| reason_name(ended.reason())),
        "why": (!event.why.is_empty()).then_some(&event.why),
    })
}

/// A time span to the millisecond, e.g. `3.205s` or `1h 2m 3.5s`.
pub fn span(ms: u64) -> String {
    let (hours, minutes, seconds) =
        (ms / 3_600_000, ms / 60_000 % 60, (ms % 60_000) as f64 / 1000.0);
    match (hours, minutes) {
        (0, 0) => format!("{seconds:.3}s"),
        (0, _) => format!("{minutes}m {seconds:.3}s"),
        _ => format!("{hours}h {minutes}m {seconds:.3}s"),
    }
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

    fn task(state: TaskState, created_at_ms: u64, finished_at_ms: u64) -> TaskStatus {
        let mut task = status(state, None);
        task.task_id = "0e6b1e8c-ab62-4d5e-8afe-3d8d0c36fb14".into();
        task.argv = vec![b"/bin/sleep".to_vec(), b"10".to_vec()];
        task.owner = "client1".into();
        (task.created_at_ms, task.finished_at_ms) = (created_at_ms, finished_at_ms);
        task
    }

    #[test]
    fn ps_statuses_say_how_long_ago_in_dockers_words() {
        let now = 1_000_000_000;
        let text = |status: &TaskStatus| ps_status(status, now).0;
        assert_eq!(text(&task(TaskState::Running, now - 3_400, 0)), "Running 3s");
        let mut held = task(TaskState::Running, now - 3_400, 0);
        held.held = "its output cannot be kept (...)".into();
        assert_eq!(text(&held), "Running 3s (output held)");
        let mut done = task(TaskState::Completed, now - 200_000, now - 61_000);
        done.exit_code = Some(0);
        assert_eq!(text(&done), "Completed (0) 1m ago");
        let mut stopped = task(TaskState::Killed, now - 10_000, now - 5_000);
        stopped.signal = Some(15);
        stopped.set_reason(KillReason::Stopped);
        assert_eq!(text(&stopped), "Killed (SIGTERM) 5s ago");
        let mut oom = task(TaskState::Killed, now - 10_000_000, now - 7_300_000);
        oom.signal = Some(9);
        oom.set_reason(KillReason::OutOfMemory);
        assert_eq!(text(&oom), "Killed (out of memory) 2h ago");
        assert_eq!(age(3 * 86_400_000 + 5), "3d");
    }

    #[test]
    fn the_ps_table_shows_short_ids_and_owners_only_when_asked() {
        let now = 1_000_000_000;
        let running = task(TaskState::Running, now - 1_000, 0);
        let rows = [PsRow { host: "127.0.0.1:50051", status: &running }];
        let plain = |columns| {
            let table = ps_table(&rows, columns, now);
            anstream::adapter::strip_str(&table).to_string()
        };
        assert_eq!(
            plain(PsColumns::default()),
            "ID             COMMAND         STATUS\n0e6b1e8c-ab6   /bin/sleep 10   Running 1s\n"
        );
        let admin = plain(PsColumns { owner: true, host: true, no_trunc: true });
        assert_eq!(
            admin.lines().nth(1),
            Some(
                "127.0.0.1:50051   0e6b1e8c-ab62-4d5e-8afe-3d8d0c36fb14   /bin/sleep 10   client1   Running 1s"
            )
        );
        assert!(ps_table(&rows, PsColumns::default(), now).contains("\u{1b}[32mRunning 1s"));
    }

    #[test]
    fn times_are_utc_to_the_second() {
        assert_eq!(timestamp(1_764_568_800_123), "2025-12-01T06:00:00Z");
        assert_eq!(span(3_205), "3.205s");
        assert_eq!(span(3_723_500), "1h 2m 3.500s");
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
