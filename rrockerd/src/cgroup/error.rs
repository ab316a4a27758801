//! What can go wrong with cgroups: a cgroupfs file or directory that cannot be used, a limit
//! this host's cgroups cannot apply, an IO limit's device that is not a disk.

use std::io;
use std::path::PathBuf;

use crate::io_context::IoError;

/// A cgroup failure.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// A cgroup file or directory could not be used.
    #[error("cannot {action} cgroup {}: {source}", path.display())]
    File {
        /// What was being done.
        action: &'static str,
        /// On which path.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// A file about cgroups (mountinfo, /proc/self/cgroup) could not be read.
    #[error(transparent)]
    Io(#[from] IoError),
    /// A limit this host's cgroups cannot apply (a controller rrocker lacks, and why).
    #[error("{0}")]
    Unavailable(String),
    /// Another process (another rrockerd) holds the parent cgroup.
    #[error(
        "cgroup {} is in use by another rrockerd (its tasks' parent): give this daemon a parent of its own with --cgroup-parent",
        .0.display()
    )]
    ParentInUse(PathBuf),
    /// An IO limit names a device that is not a whole disk of this host.
    #[error("{0}")]
    BadDevice(String),
}
