//! Writing a PKI directory: the directory itself (0700) and its files (keys 0600).

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

use crate::CertError;

/// Creates a PKI directory (0700) unless it is there.
pub(crate) fn create_pki_dir(dir: &Path) -> Result<(), CertError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| CertError::Write { path: dir.to_owned(), source })
}

/// Writes `contents` to `path` with `mode`, synced to disk.
pub(crate) fn write_file(path: &Path, contents: &str, mode: u32) -> Result<(), CertError> {
    let write = || -> std::io::Result<()> {
        let mut file =
            fs::OpenOptions::new().write(true).create(true).truncate(true).mode(mode).open(path)?;
        file.write_all(contents.as_bytes())?;
        file.sync_all()
    };
    write().map_err(|source| CertError::Write { path: path.to_owned(), source })
}
