//! The host side of a task's root filesystem. Each task gets a directory in the state dir
//! with `upper/` and `work/` (the writable layer of its overlay, owned by the task's root)
//! and `root/` (where init mounts the overlay inside the task's mount namespace, so no mount
//! of a task ever exists in the host's namespace). The directory is removed when the task
//! ends. Lookups inside the image never follow a symlink out of it (openat2
//! RESOLVE_IN_ROOT).

use std::fs;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use rustix::fs::{Mode, OFlags, ResolveFlags};
use uuid::Uuid;

use crate::io_context::{IoContext, IoError};
use crate::request_error::RequestError;
use crate::startup_error::StartupError;

/// A task's directory in the state dir, removed with everything the task wrote when this
/// value is dropped (symlinks are removed, never followed).
#[derive(Debug)]
pub struct TaskDir {
    path: PathBuf,
}

impl TaskDir {
    /// Where the directory of task `id` lives.
    pub fn path_for(tasks_dir: &Path, id: Uuid) -> PathBuf {
        tasks_dir.join(id.to_string())
    }

    /// Creates `path` with `upper/`, `work/` and `root/`, owned by `owner`.
    pub fn create(path: PathBuf, owner: (u32, u32)) -> Result<Self, RequestError> {
        let io_error = |path: &Path| {
            let path = path.to_owned();
            move |source: io::Error| match source.raw_os_error() {
                Some(libc::ENOSPC | libc::EDQUOT) => no_room(path.parent().unwrap_or(&path)),
                _ => IoError { action: "create", path, source }.into(),
            }
        };
        fs::DirBuilder::new().mode(0o700).create(&path).map_err(io_error(&path))?;
        let task_dir = Self { path };
        // upper/ becomes the mode of the task's `/`: 0755, like any root directory.
        for (name, mode) in [("upper", 0o755), ("work", 0o700), ("root", 0o700)] {
            let dir = task_dir.path.join(name);
            fs::DirBuilder::new().mode(mode).create(&dir).map_err(io_error(&dir))?;
        }
        for name in ["", "upper", "work", "root"] {
            let dir = task_dir.path.join(name);
            std::os::unix::fs::chown(&dir, Some(owner.0), Some(owner.1)).map_err(io_error(&dir))?;
        }
        Ok(task_dir)
    }
}

impl Drop for TaskDir {
    fn drop(&mut self) {
        match fs::remove_dir_all(&self.path) {
            Err(error) if error.kind() != io::ErrorKind::NotFound => {
                tracing::warn!(%error, dir = %self.path.display(), "cannot remove a task directory");
            }
            _ => {}
        }
    }
}

/// Least free space in the state directory for a new task: below it, its root's writes and
/// its spilled output would have nowhere to go.
pub const MIN_FREE_BYTES: u64 = 1 << 20;

/// Refuses a new task when the filesystem of `tasks_dir` has less than [`MIN_FREE_BYTES`]
/// or no inode left for an unprivileged writer.
pub fn check_room(tasks_dir: &Path) -> Result<(), RequestError> {
    let stats = rustix::fs::statvfs(tasks_dir)
        .map_err(std::io::Error::from)
        .context("read the free space of", tasks_dir)?;
    let free = stats.f_bavail.saturating_mul(stats.f_frsize);
    let no_inodes = stats.f_files > 0 && stats.f_favail == 0;
    if free < MIN_FREE_BYTES || no_inodes {
        return Err(no_room(tasks_dir));
    }
    Ok(())
}

/// The error for a state directory that is full.
fn no_room(dir: &Path) -> RequestError {
    RequestError::ResourceExhausted(format!(
        "Cannot start the task: no space is left in the state directory {}; free some there",
        dir.display()
    ))
}

/// Creates the directory that holds task directories (root's alone: a task's init is handed
/// its own directory, never walks to it) and removes what a crashed run left in it.
pub fn prepare_tasks_dir(state_dir: &Path) -> Result<PathBuf, IoError> {
    let tasks_dir = state_dir.join("tasks");
    if tasks_dir.exists() {
        fs::remove_dir_all(&tasks_dir).context("clean up", &tasks_dir)?;
    }
    crate::dirs::private_dir(&tasks_dir).context("create", &tasks_dir)?;
    Ok(tasks_dir)
}

/// Refuses `dir` (given as `flag`) at start-up when a directory on its way (itself, if it
/// exists, included) cannot be searched by this process's uid and groups without
/// capabilities: a task's engine child opens its task directory and image from there with
/// nothing more (it is in the task's new user namespace already). POSIX ACLs are not read.
pub fn check_searchable(flag: &str, dir: &Path) -> Result<(), StartupError> {
    use std::os::unix::fs::MetadataExt;
    let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.to_owned());
    let uid = rustix::process::geteuid().as_raw();
    let mut gids: Vec<u32> = rustix::process::getgroups()
        .unwrap_or_default()
        .into_iter()
        .map(rustix::process::Gid::as_raw)
        .collect();
    gids.push(rustix::process::getegid().as_raw());
    for step in dir.ancestors() {
        let Ok(metadata) = fs::metadata(step) else { continue };
        let bit = if metadata.uid() == uid {
            0o100
        } else if gids.contains(&metadata.gid()) {
            0o010
        } else {
            0o001
        };
        if metadata.mode() & bit == 0 {
            return Err(StartupError::Unsearchable {
                flag: flag.to_owned(),
                dir: dir.clone(),
                blocker: step.to_owned(),
                mode: metadata.mode() & 0o7777,
                owner: metadata.uid(),
                uid,
            });
        }
    }
    Ok(())
}

/// Finds the executable `name` refers to inside the image `root`: itself if it contains a
/// slash (relative to `workdir`), otherwise the first executable regular file named so in
/// `search_path`. Returns the path as the task sees it.
pub fn resolve_program(
    root: &Path,
    name: &[u8],
    search_path: &[u8],
    workdir: &Path,
) -> Option<PathBuf> {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    let root =
        rustix::fs::open(root, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
            .ok()?;
    let name = Path::new(OsStr::from_bytes(name));
    if name.as_os_str().as_bytes().contains(&b'/') {
        let candidate = workdir.join(name);
        return is_executable_in(&root, &candidate).then_some(candidate);
    }
    search_path
        .split(|&byte| byte == b':')
        .filter(|dir| !dir.is_empty())
        .map(|dir| Path::new(OsStr::from_bytes(dir)).join(name))
        .find(|candidate| is_executable_in(&root, candidate))
}

/// Whether `path` names an executable regular file inside `root`, resolving every component
/// (symlinks and `..` included) as if `root` were `/`.
fn is_executable_in(root: &OwnedFd, path: &Path) -> bool {
    let relative = path.strip_prefix("/").unwrap_or(path);
    let flags = OFlags::PATH | OFlags::CLOEXEC;
    let Ok(file) = rustix::fs::openat2(root, relative, flags, Mode::empty(), ResolveFlags::IN_ROOT)
    else {
        return false;
    };
    rustix::fs::fstat(&file).is_ok_and(|stat| {
        let mode = stat.st_mode;
        mode & libc::S_IFMT == libc::S_IFREG && mode & 0o111 != 0
    })
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn programs_resolve_inside_the_root_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        fs::create_dir_all(root.join("usr/bin")).expect("dirs");
        fs::write(root.join("usr/bin/tool"), "#!/bin/sh\n").expect("tool");
        fs::set_permissions(root.join("usr/bin/tool"), fs::Permissions::from_mode(0o755))
            .expect("chmod");
        fs::write(root.join("usr/bin/data"), "").expect("data");
        std::os::unix::fs::symlink("usr/bin", root.join("bin")).expect("bin link");
        // An absolute symlink that would leave the root if followed on the host.
        std::os::unix::fs::symlink("/usr/bin/env", root.join("usr/bin/escape")).expect("escape");
        let slash = Path::new("/");
        assert_eq!(
            resolve_program(root, b"tool", b"/bin", slash),
            Some(PathBuf::from("/bin/tool"))
        );
        assert_eq!(
            resolve_program(root, b"/usr/bin/tool", b"", slash),
            Some("/usr/bin/tool".into())
        );
        assert_eq!(resolve_program(root, b"data", b"/usr/bin", slash), None, "not executable");
        assert_eq!(
            resolve_program(root, b"escape", b"/usr/bin", slash),
            None,
            "resolved in the root"
        );
        assert_eq!(
            resolve_program(root, b"/../../usr/bin/tool", b"", slash),
            Some("/../../usr/bin/tool".into())
        );
        assert_eq!(resolve_program(root, b"missing", b"/usr/bin:/bin", slash), None);
    }
}
