//! `rrocker-init`, built by the build script and embedded in the daemon, is loaded once into
//! a sealed memfd that every task's init is exec'd from (the seccomp filters are handed over in
//! one too, [`sealed_memfd`]): nothing on disk to keep in step
//! with the daemon, and nothing a task could write to even if it reached the file (the
//! seals forbid every change; CVE-2019-5736 class).

use std::fs::File;
use std::io::Write;
use std::os::fd::OwnedFd;

use rustix::fs::{MemfdFlags, SealFlags};

/// The init executable.
const INIT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/rrocker-init"));

/// A sealed, executable memfd holding `rrocker-init`.
pub fn load() -> std::io::Result<OwnedFd> {
    // MFD_EXEC (Linux 6.3+) keeps the memfd executable under vm.memfd_noexec=1; older kernels
    // refuse the flag, and their memfds are always executable.
    sealed_memfd(c"rrocker-init", INIT, MemfdFlags::EXEC)
        .or_else(|_| sealed_memfd(c"rrocker-init", INIT, MemfdFlags::empty()))
}

/// A close-on-exec memfd named `name` holding `bytes`, sealed against every change;
/// `extra` adds memfd flags (MFD_EXEC, MFD_NOEXEC_SEAL).
pub fn sealed_memfd(
    name: &std::ffi::CStr,
    bytes: &[u8],
    extra: MemfdFlags,
) -> std::io::Result<OwnedFd> {
    let flags = MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING | extra;
    let mut file = File::from(rustix::fs::memfd_create(name, flags)?);
    file.write_all(bytes)?;
    let seals = SealFlags::SEAL | SealFlags::SHRINK | SealFlags::GROW | SealFlags::WRITE;
    rustix::fs::fcntl_add_seals(&file, seals)?;
    Ok(file.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_memfd_holds_init_and_refuses_changes() {
        let memfd = load().expect("memfd");
        let mut file = File::from(memfd);
        assert_eq!(file.metadata().expect("stat").len(), INIT.len() as u64);
        assert!(file.write_all(b"x").is_err(), "a sealed memfd takes no writes");
        assert!(file.set_len(0).is_err(), "nor shrinks");
    }
}
