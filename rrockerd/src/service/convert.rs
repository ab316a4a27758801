//! Between the wire (`rrocker.v1`) and the domain core ([`crate::spec`]): a start request
//! becomes a [`TaskSpec`] only once its shape is right (each refusal one line naming the
//! field), and limits and usage go back out in the wire's form (0 for none).

use rrocker_proto::v1 as proto;

use crate::request_error::RequestError;
use crate::spec::{
    CpuLimit, DEFAULT_CPU_PERIOD, ExecSpec, IoLimit, Limits, TaskSpec, Usage, WindowSize, figure,
    limit,
};

/// Most bytes argv and env may hold together (the kernel's usual ARG_MAX is 2 MiB).
pub const MAX_COMMAND_BYTES: usize = 1024 * 1024;
/// Most entries argv or env may have.
pub const MAX_ENTRIES: usize = 4096;

impl TryFrom<proto::StartRequest> for TaskSpec {
    type Error = RequestError;

    fn try_from(request: proto::StartRequest) -> Result<Self, RequestError> {
        check_command(&request.argv, &request.env, &request.workdir)?;
        let proto::StartRequest {
            argv,
            env,
            workdir,
            limits,
            image,
            stdin,
            tty,
            tty_size,
            timeout_ms,
        } = request;
        let timeout = match timeout_ms {
            Some(0) => {
                return Err(RequestError::InvalidArgument(
                    "timeout_ms must be at least 1 (absent for none)".into(),
                ));
            }
            ms => ms.map(std::time::Duration::from_millis),
        };
        let limits = Limits::try_from(limits.unwrap_or_default())?;
        let terminal = match tty {
            true => Some(window_size(tty_size.unwrap_or_default())?),
            false => None,
        };
        Ok(Self { argv, env, workdir, limits, image, stdin, terminal, timeout })
    }
}

impl TryFrom<proto::ExecRequest> for ExecSpec {
    type Error = RequestError;

    fn try_from(request: proto::ExecRequest) -> Result<Self, RequestError> {
        let proto::ExecRequest { task_id: _, argv, env, workdir, tty, tty_size } = request;
        check_command(&argv, &env, &workdir)?;
        let terminal = match tty {
            true => Some(window_size(tty_size.unwrap_or_default())?),
            false => None,
        };
        Ok(Self { argv, env, workdir, terminal })
    }
}

/// A terminal's size as asked: 24 by 80 when none is given (both zero).
pub fn window_size(size: proto::TerminalSize) -> Result<WindowSize, RequestError> {
    if (size.rows, size.cols) == (0, 0) {
        return Ok(WindowSize { rows: 24, cols: 80 });
    }
    let cells = |figure: u32| u16::try_from(figure).ok().filter(|figure| *figure > 0);
    match (cells(size.rows), cells(size.cols)) {
        (Some(rows), Some(cols)) => Ok(WindowSize { rows, cols }),
        _ => Err(RequestError::InvalidArgument(format!(
            "Invalid terminal size {}x{}: rows and cols must be 1 to 65535",
            size.rows, size.cols
        ))),
    }
}

/// Checks argv, env and workdir: sizes, NUL bytes, `KEY=VALUE`, an absolute path.
fn check_command(argv: &[Vec<u8>], env: &[Vec<u8>], workdir: &[u8]) -> Result<(), RequestError> {
    let invalid = |message: String| Err(RequestError::InvalidArgument(message));
    match argv.first() {
        None => return invalid("argv must not be empty".into()),
        Some(program) if program.is_empty() => return invalid("argv[0] must not be empty".into()),
        _ => {}
    }
    let too_large = |message: String| Err(RequestError::ResourceExhausted(message));
    if argv.len() > MAX_ENTRIES || env.len() > MAX_ENTRIES {
        return too_large(format!("argv and env may have at most {MAX_ENTRIES} entries each"));
    }
    let total: usize = argv.iter().chain(env).map(|item| item.len() + 1).sum();
    if total > MAX_COMMAND_BYTES {
        return too_large(format!("argv and env together exceed {MAX_COMMAND_BYTES} bytes"));
    }
    for (index, arg) in argv.iter().enumerate() {
        if arg.contains(&0) {
            return invalid(format!("argv[{index}] contains a NUL byte"));
        }
    }
    for (index, entry) in env.iter().enumerate() {
        match entry.iter().position(|&byte| byte == b'=') {
            _ if entry.contains(&0) => return invalid(format!("env[{index}] contains a NUL byte")),
            Some(0) | None => return invalid(format!("env[{index}] is not of the form KEY=VALUE")),
            Some(_) => {}
        }
    }
    if !workdir.is_empty() {
        if workdir[0] != b'/' {
            return invalid("workdir must be an absolute path".into());
        }
        if workdir.contains(&0) {
            return invalid("workdir contains a NUL byte".into());
        }
    }
    Ok(())
}

impl TryFrom<proto::Limits> for Limits {
    type Error = RequestError;

    fn try_from(wire: proto::Limits) -> Result<Self, RequestError> {
        let cpu = match (limit(wire.cpu_quota_us), limit(wire.cpu_period_us)) {
            (None, None) => None,
            (None, Some(_)) => {
                return Err(RequestError::InvalidArgument(
                    "cpu_period_us needs cpu_quota_us".into(),
                ));
            }
            (Some(quota_us), period) => {
                Some(CpuLimit { quota_us, period_us: period.unwrap_or(DEFAULT_CPU_PERIOD) })
            }
        };
        let io = wire
            .io
            .iter()
            .map(|rule| IoLimit {
                major: rule.major,
                minor: rule.minor,
                read_bps: limit(rule.read_bps),
                write_bps: limit(rule.write_bps),
                read_iops: limit(rule.read_iops),
                write_iops: limit(rule.write_iops),
            })
            .collect();
        Ok(Self {
            cpu,
            memory_max_bytes: limit(wire.memory_max_bytes),
            pids_max: limit(wire.pids_max),
            io,
        })
    }
}

impl From<&Limits> for proto::Limits {
    fn from(limits: &Limits) -> Self {
        Self {
            cpu_quota_us: figure(limits.cpu.map(|cpu| cpu.quota_us)),
            cpu_period_us: figure(limits.cpu.map(|cpu| cpu.period_us)),
            memory_max_bytes: limits.memory(),
            pids_max: limits.pids(),
            io: limits
                .io
                .iter()
                .map(|rule| proto::IoLimit {
                    major: rule.major,
                    minor: rule.minor,
                    read_bps: figure(rule.read_bps),
                    write_bps: figure(rule.write_bps),
                    read_iops: figure(rule.read_iops),
                    write_iops: figure(rule.write_iops),
                })
                .collect(),
        }
    }
}

impl From<Usage> for proto::Usage {
    fn from(usage: Usage) -> Self {
        let Usage {
            cpu_time_us,
            cpu_throttled_periods,
            cpu_throttled_us,
            memory_peak_bytes,
            pids_peak,
            io_read_bytes,
            io_write_bytes,
            oom_kills,
            memory_current_bytes,
            pids_current,
        } = usage;
        Self {
            cpu_time_us,
            cpu_throttled_periods,
            cpu_throttled_us,
            memory_peak_bytes,
            pids_peak,
            io_read_bytes,
            io_write_bytes,
            oom_kills,
            memory_current_bytes,
            pids_current,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(argv: &[&[u8]], env: &[&[u8]]) -> proto::StartRequest {
        proto::StartRequest {
            argv: argv.iter().map(|a| a.to_vec()).collect(),
            env: env.iter().map(|e| e.to_vec()).collect(),
            ..proto::StartRequest::default()
        }
    }

    fn refusal(request: proto::StartRequest) -> String {
        TaskSpec::try_from(request).expect_err("refused").to_string()
    }

    #[test]
    fn good_requests_become_specs() {
        let spec = TaskSpec::try_from(request(&[b"/bin/true"], &[])).expect("ok");
        assert_eq!(spec.argv, vec![b"/bin/true".to_vec()]);
        TaskSpec::try_from(request(&[b"sh", b"-c", b"x"], &[b"A=b", b"EMPTY="])).expect("ok");
    }

    #[test]
    fn malformed_commands_are_refused_with_the_field_named() {
        assert_eq!(refusal(request(&[], &[])), "argv must not be empty");
        assert_eq!(refusal(request(&[b""], &[])), "argv[0] must not be empty");
        assert_eq!(refusal(request(&[b"a", b"b\0"], &[])), "argv[1] contains a NUL byte");
        assert_eq!(refusal(request(&[b"a"], &[b"NOEQ"])), "env[0] is not of the form KEY=VALUE");
        assert_eq!(refusal(request(&[b"a"], &[b"=x"])), "env[0] is not of the form KEY=VALUE");
        let huge = vec![b'x'; MAX_COMMAND_BYTES];
        assert!(refusal(request(&[b"a", &huge], &[])).contains("exceed"));
        let mut relative = request(&[b"a"], &[]);
        relative.workdir = b"tmp".to_vec();
        assert_eq!(refusal(relative), "workdir must be an absolute path");
    }

    fn io(major: u32, write_bps: u64) -> proto::IoLimit {
        proto::IoLimit { major, minor: 0, write_bps, ..Default::default() }
    }

    /// The wire's limits as the registry checks them: converted, then against a 2-CPU host.
    fn checked(wire: proto::Limits) -> Result<Limits, RequestError> {
        let limits = Limits::try_from(wire)?;
        crate::validate::limits(&limits, 2)?;
        Ok(limits)
    }

    #[test]
    fn sensible_limits_pass_and_go_back_out_as_they_came() {
        checked(proto::Limits::default()).expect("no limits");
        let all = proto::Limits {
            cpu_quota_us: 50_000,
            cpu_period_us: 100_000,
            memory_max_bytes: 1 << 30,
            pids_max: 32,
            io: vec![io(254, 10 << 20)],
        };
        let limits = checked(all.clone()).expect("ok");
        assert_eq!(proto::Limits::from(&limits), all);
        let two = checked(proto::Limits { cpu_quota_us: 200_000, ..Default::default() });
        let cpu = two.expect("two CPUs").cpu.expect("a CPU limit");
        assert_eq!(cpu.period_us, DEFAULT_CPU_PERIOD, "the kernel's default period");
    }

    #[test]
    fn absurd_limits_are_refused_with_the_field_named() {
        let default = proto::Limits::default;
        let cases = [
            (proto::Limits { cpu_quota_us: 999, ..default() }, "cpu_quota_us"),
            (proto::Limits { cpu_quota_us: 300_000, ..default() }, "cpu_quota_us"),
            (proto::Limits { cpu_quota_us: u64::MAX, ..default() }, "cpu_quota_us"),
            (proto::Limits { cpu_period_us: 100_000, ..default() }, "cpu_period_us"),
            (proto::Limits { cpu_quota_us: 5000, cpu_period_us: 10, ..default() }, "cpu_period_us"),
            (proto::Limits { memory_max_bytes: 4096, ..default() }, "memory_max_bytes"),
            (proto::Limits { memory_max_bytes: u64::MAX, ..default() }, "memory_max_bytes"),
            (proto::Limits { pids_max: 1, ..default() }, "pids_max"),
            (proto::Limits { pids_max: u64::MAX, ..default() }, "pids_max"),
            (proto::Limits { io: vec![io(0, 1)], ..default() }, "not a block device"),
            (proto::Limits { io: vec![io(254, 0)], ..default() }, "sets no rate"),
            (proto::Limits { io: vec![io(254, u64::MAX)], ..default() }, "too large"),
            (proto::Limits { io: vec![io(254, 1), io(254, 2)], ..default() }, "twice"),
            (proto::Limits { io: vec![io(8, 1); 17], ..default() }, "at most"),
        ];
        for (bad, field) in cases {
            let text = checked(bad.clone()).expect_err("refused").to_string();
            assert!(text.contains(field), "{bad:?}: {text}");
            assert!(!text.contains('\n'));
        }
    }

    #[test]
    fn usage_goes_out_field_for_field() {
        let usage = Usage { cpu_time_us: 1, pids_peak: 5, oom_kills: 8, ..Usage::default() };
        let wire = proto::Usage::from(usage);
        assert_eq!((wire.cpu_time_us, wire.pids_peak, wire.oom_kills), (1, 5, 8));
    }
}
