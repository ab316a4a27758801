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
    if request.argv.len() > MAX_ENTRIES || request.env.len() > MAX_ENTRIES {
        return invalid(format!("argv and env may have at most {MAX_ENTRIES} entries each"));
    }
    let total: usize = request.argv.iter().chain(&request.env).map(|item| item.len() + 1).sum();
    if total > MAX_COMMAND_BYTES {
        return invalid(format!("argv and env together exceed {MAX_COMMAND_BYTES} bytes"));
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
    if request.limits.as_ref().is_some_and(|limits| *limits != Limits::default()) {
        return Err(DaemonError::Unsupported(
            "resource limits are not supported by this rrockerd yet",
        ));
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

    #[test]
    fn limits_are_refused_until_supported() {
        let mut limited = request(&[b"a"], &[]);
        limited.limits = Some(Limits { pids_max: 5, ..Limits::default() });
        assert!(matches!(start_request(&limited), Err(DaemonError::Unsupported(_))));
        limited.limits = Some(Limits::default());
        start_request(&limited).expect("empty limits are no limits");
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
