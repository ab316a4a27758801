//! An I/O error that says what was being done and on which path, and the one extension
//! trait ([`IoContext::context`]) that attaches both to an `io::Error`. Each concern's error
//! type (`RequestError`, `StartupError`, `CgroupError`, `ImageError`) takes it with
//! `#[from]`.

use std::io;
use std::path::{Path, PathBuf};

/// "cannot `action` `path`: why".
#[derive(Debug, thiserror::Error)]
#[error("cannot {action} {}: {source}", path.display())]
pub struct IoError {
    /// What was being done.
    pub action: &'static str,
    /// On which path.
    pub path: PathBuf,
    /// The I/O error.
    #[source]
    pub source: io::Error,
}

/// Attaches what was being done, and on which path, to an I/O error.
pub trait IoContext<T> {
    /// `Err` becomes an [`IoError`]: "cannot `action` `path`: why".
    fn context(self, action: &'static str, path: &Path) -> Result<T, IoError>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn context(self, action: &'static str, path: &Path) -> Result<T, IoError> {
        self.map_err(|source| IoError { action, path: path.to_owned(), source })
    }
}
