//! Turning a validated start request into what the engine runs: the program resolved to an
//! executable file (absolute path, or a PATH lookup for a bare name), the environment with
//! defaults, and the working directory. Tasks run in the host's filesystem until isolation
//! lands; the resolution already treats `/` as the task's root.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rrocker_uring::SpawnSpec;

use crate::error::DaemonError;

/// PATH used when the request's environment has none.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The environment of a task whose request gave none.
fn default_env() -> Vec<Vec<u8>> {
    [format!("PATH={DEFAULT_PATH}"), "HOME=/".into(), "TERM=xterm".into()]
        .map(String::into_bytes)
        .to_vec()
}

/// Builds the engine's spawn spec for a validated request, resolving the program.
pub fn spawn_spec(
    argv: Vec<Vec<u8>>,
    env: Vec<Vec<u8>>,
    workdir: &[u8],
) -> Result<SpawnSpec, DaemonError> {
    let env = if env.is_empty() { default_env() } else { env };
    let workdir = if workdir.is_empty() { PathBuf::from("/") } else { path(workdir) };
    let search_path = env
        .iter()
        .find_map(|entry| entry.strip_prefix(b"PATH="))
        .unwrap_or(DEFAULT_PATH.as_bytes())
        .to_vec();
    let program = resolve_program(&argv[0], &search_path, &workdir).ok_or_else(|| {
        DaemonError::BinaryNotFound { program: String::from_utf8_lossy(&argv[0]).into_owned() }
    })?;
    Ok(SpawnSpec { program, argv, env, workdir })
}

/// Finds the executable `name` refers to: itself if it contains a slash (relative to
/// `workdir`), otherwise the first executable regular file named so in `search_path`.
pub fn resolve_program(name: &[u8], search_path: &[u8], workdir: &Path) -> Option<PathBuf> {
    if name.contains(&b'/') {
        let candidate = workdir.join(path(name));
        return is_executable(&candidate).then_some(candidate);
    }
    search_path
        .split(|&byte| byte == b':')
        .filter(|dir| !dir.is_empty())
        .map(|dir| path(dir).join(path(name)))
        .find(|candidate| is_executable(candidate))
}

fn path(bytes: &[u8]) -> PathBuf {
    PathBuf::from(OsStr::from_bytes(bytes))
}

fn is_executable(candidate: &Path) -> bool {
    candidate.is_file() && rustix::fs::access(candidate, rustix::fs::Access::EXEC_OK).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_names_are_found_in_path_and_paths_are_checked() {
        let root = Path::new("/");
        assert_eq!(resolve_program(b"sh", b"/nonexistent:/bin", root), Some("/bin/sh".into()));
        assert_eq!(resolve_program(b"/bin/sh", b"", root), Some("/bin/sh".into()));
        assert_eq!(resolve_program(b"no-such-binary-x", DEFAULT_PATH.as_bytes(), root), None);
        assert_eq!(resolve_program(b"/etc/passwd", b"", root), None, "not executable");
        assert_eq!(resolve_program(b"/bin", b"", root), None, "a directory");
    }

    #[test]
    fn missing_binary_gets_the_seed_message() {
        let error = spawn_spec(vec![b"/bin/a_binary_that_doesnt_exist".to_vec()], vec![], b"")
            .expect_err("missing");
        assert_eq!(
            error.to_string(),
            "Binary '/bin/a_binary_that_doesnt_exist' not found in base image."
        );
    }

    #[test]
    fn defaults_fill_env_and_workdir() {
        let spec = spawn_spec(vec![b"true".to_vec()], vec![], b"").expect("spec");
        assert_eq!(spec.workdir, Path::new("/"));
        assert!(spec.env.iter().any(|e| e.starts_with(b"PATH=")));
        assert!(spec.program.ends_with("true"));
    }
}
