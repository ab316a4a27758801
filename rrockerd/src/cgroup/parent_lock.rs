//! One daemon per parent cgroup: an exclusive `flock(2)` ([`crate::dirs::lock`]) on the
//! parent's directory in each hierarchy, taken before anything below it is touched and held
//! for the daemon's life. A second rrockerd given the same parent (another port or state
//! directory, the README's command run twice) would otherwise take the first one's running
//! tasks for leftovers of a crash and kill them, then remove the parent under it when it
//! stops.

use std::os::fd::OwnedFd;
use std::path::Path;
use std::sync::OnceLock;

use super::error::CgroupError;

/// The locks on the parent's directories, once taken.
#[derive(Debug, Default)]
pub struct ParentLock {
    held: OnceLock<Vec<OwnedFd>>,
}

impl ParentLock {
    /// Locks each of `dirs` (existing cgroup directories), or none if another process holds
    /// one of them. The locks go with the descriptors, which are close-on-exec. Once taken,
    /// a second call (the same directories, prepared again) keeps them.
    pub fn take(&self, dirs: &[&Path]) -> Result<(), CgroupError> {
        if self.is_held() {
            return Ok(());
        }
        let mut held = Vec::with_capacity(dirs.len());
        for dir in dirs {
            let lock = crate::dirs::lock(dir).map_err(|source| CgroupError::File {
                action: "lock",
                path: dir.to_path_buf(),
                source,
            })?;
            held.push(lock.ok_or_else(|| CgroupError::ParentInUse(dir.to_path_buf()))?);
        }
        let _ = self.held.set(held);
        Ok(())
    }

    /// Whether this daemon holds the parent, so that it may remove it.
    pub fn is_held(&self) -> bool {
        self.held.get().is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_until_the_first_lets_go() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (first, second) = (ParentLock::default(), ParentLock::default());
        first.take(&[dir.path()]).expect("first lock");
        assert!(first.is_held());
        let refused = second.take(&[dir.path()]).expect_err("second lock");
        assert!(matches!(&refused, CgroupError::ParentInUse(path) if path == dir.path()));
        assert!(refused.to_string().contains("--cgroup-parent"), "{refused}");
        assert!(!second.is_held());
        drop(first);
        second.take(&[dir.path()]).expect("lock once free");
        assert!(second.is_held());
    }
}
