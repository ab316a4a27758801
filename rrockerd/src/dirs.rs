//! The daemon's own directories on the host: created with the mode they need, and closed to
//! every other host user where they hold images or task files (a setuid-root program from an
//! untrusted image must not be reachable by a host user: the CVE-2021-41091 class). A
//! directory an older version left more open is tightened at start-up, with a log line;
//! never loosened.

use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;

/// Creates the directory `path` with `mode`, unless a directory is there already (a daemon
/// that did not stop cleanly leaves its state directory's subdirectories behind).
pub fn dir_with_mode(path: &Path, mode: u32) -> io::Result<()> {
    match std::fs::DirBuilder::new().mode(mode).create(path) {
        Err(_) if path.is_dir() => Ok(()),
        created => created,
    }
}

/// Makes `path` a directory only its owner may enter (0700; its missing parents 0755), or
/// takes the group's and others' bits off the one that is there.
pub fn private_dir(path: &Path) -> io::Result<()> {
    if let Some(parent) = path.parent().filter(|parent| !parent.as_os_str().is_empty()) {
        std::fs::DirBuilder::new().recursive(true).mode(0o755).create(parent)?;
    }
    dir_with_mode(path, 0o700)?;
    let mode = std::fs::metadata(path)?.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        let tightened = mode & !0o077;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(tightened))?;
        tracing::info!(
            dir = %path.display(),
            from = format!("{mode:04o}"),
            to = format!("{tightened:04o}"),
            "closed a directory to other host users"
        );
    }
    Ok(())
}

/// An exclusive `flock(2)` on the directory `path`, held while the returned descriptor
/// (close-on-exec) is open; `None` while another process holds one. The daemon's claim on
/// its state directory and its parent cgroups: a second daemon given either would take the
/// first one's tasks for leftovers of a crash.
pub fn lock(path: &Path) -> io::Result<Option<OwnedFd>> {
    use rustix::fs::{FlockOperation, Mode, OFlags};
    let flags = OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC;
    let fd = rustix::fs::open(path, flags, Mode::empty())?;
    match rustix::fs::flock(&fd, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(Some(fd)),
        Err(rustix::io::Errno::WOULDBLOCK) => Ok(None),
        Err(error) => Err(error.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).expect("metadata").permissions().mode() & 0o7777
    }

    #[test]
    fn a_locked_dir_is_refused_to_another_holder_until_let_go() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = lock(dir.path()).expect("lock").expect("free");
        assert!(lock(dir.path()).expect("lock").is_none(), "held");
        drop(first);
        assert!(lock(dir.path()).expect("lock").is_some(), "free again");
        assert!(lock(&dir.path().join("missing")).is_err());
    }

    #[test]
    fn a_private_dir_is_made_0700_and_an_open_one_is_tightened_never_loosened() {
        let dir = tempfile::tempdir().expect("tempdir");
        let new = dir.path().join("a/b/images");
        private_dir(&new).expect("made");
        assert_eq!((mode(&new), mode(&dir.path().join("a/b"))), (0o700, 0o755));
        let old = dir.path().join("old");
        std::fs::create_dir(&old).expect("mkdir");
        std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o711)).expect("chmod");
        private_dir(&old).expect("tightened");
        assert_eq!(mode(&old), 0o700);
        std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o500)).expect("chmod");
        private_dir(&old).expect("left");
        assert_eq!(mode(&old), 0o500, "never loosened");
    }
}
