//! Base images: a directory tree every task's root filesystem is an overlay of. Without
//! `--image`, the daemon builds a default image once, with no network, from the host's own
//! binaries and the shared libraries their ELF headers name (interpreter and DT_NEEDED,
//! found in the usual library directories; `ldd` is never run), plus /etc/passwd and
//! /etc/group for root. Symlinks are mirrored as symlinks, so merged-/usr layouts survive.
//!
//! Tasks see an image through an idmapped mount of it (see `registry.rs`); only where the
//! daemon cannot make one do they see a copy whose owners are shifted into their slice's id
//! range ([`shifted_copy`]). Either way root inside the user namespace owns it, and the image
//! itself is never written after it is built.

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::image::error::ImageError;
use crate::io_context::{IoContext, IoError};

/// Name of the default image in the images directory; the suffix changes whenever what the
/// builder puts in it changes, so an image built by an older daemon is never reused.
pub const DEFAULT_IMAGE: &str = "default-v2";

/// Commands the default image carries when the host has them.
pub const DEFAULT_TOOLS: &[&str] = &[
    "bash",
    "sh",
    "dash",
    "true",
    "false",
    "echo",
    "printf",
    "cat",
    "ls",
    "sleep",
    "env",
    "id",
    "head",
    "tail",
    "wc",
    "yes",
    "dd",
    "sha256sum",
    "ps",
    "hostname",
    "grep",
    "cut",
    "tr",
    "seq",
    "mktemp",
    "rm",
    "touch",
    "tee",
    "od",
    "mkdir",
    "kill",
    "uname",
    "mount",
    "umount",
    "date",
    "cp",
    "mv",
    "ln",
    "chmod",
    "stat",
    "sort",
    "uniq",
    "test",
    "[",
    "basename",
    "dirname",
    "readlink",
    "nproc",
    "whoami",
    "tty",
    "stty",
];

/// Where host commands are looked up.
const BIN_DIRS: &[&str] = &["/usr/bin", "/bin", "/usr/sbin", "/sbin"];
/// Where shared libraries are looked up.
const LIB_DIRS: &[&str] = &[
    "/lib/x86_64-linux-gnu",
    "/usr/lib/x86_64-linux-gnu",
    "/lib/aarch64-linux-gnu",
    "/usr/lib/aarch64-linux-gnu",
    "/lib64",
    "/usr/lib64",
    "/lib",
    "/usr/lib",
];

/// Builds the default image at `dest` (atomically: built beside it, then renamed) unless it
/// already exists. Returns `dest`.
pub fn ensure_default(dest: &Path) -> Result<PathBuf, ImageError> {
    if dest.join("bin/sh").exists() || dest.join("usr/bin/sh").exists() {
        return Ok(dest.to_owned());
    }
    publish(dest, |building| build(Path::new("/"), building))?;
    tracing::info!(image = %dest.display(), "built the default base image from host binaries");
    Ok(dest.to_owned())
}

/// Makes `dest` by running `make` on a private directory beside it, then renaming that into
/// place: readers never see a half-made tree, and of several daemons racing to make the same
/// one, the first rename wins and the others discard their copy.
pub(crate) fn publish(
    dest: &Path,
    make: impl FnOnce(&Path) -> io::Result<()>,
) -> Result<(), ImageError> {
    let building = dest.with_extension(format!("building.{}", std::process::id()));
    if building.exists() {
        fs::remove_dir_all(&building).context("remove", &building)?;
    }
    if let Err(source) = make(&building) {
        let _ = fs::remove_dir_all(&building);
        return Err(IoError { action: "build", path: building, source }.into());
    }
    if let Err(error) = fs::rename(&building, dest) {
        let _ = fs::remove_dir_all(&building);
        if !dest.exists() {
            return Err(IoError { action: "publish", path: dest.to_owned(), source: error }.into());
        }
    }
    Ok(())
}

/// Builds an image at `dest` from the tools of `host` (a root directory, `/` in production).
pub fn build(host: &Path, dest: &Path) -> io::Result<()> {
    fs::DirBuilder::new().recursive(true).mode(0o755).create(dest)?;
    // Merged-/usr hosts have /bin -> usr/bin and so on: mirror those first.
    for top in ["bin", "sbin", "lib", "lib32", "lib64", "libx32"] {
        if let Ok(target) = fs::read_link(host.join(top)) {
            std::os::unix::fs::symlink(target, dest.join(top))?;
        }
    }
    let mut copier = Copier { host, dest, done: BTreeSet::new() };
    for tool in DEFAULT_TOOLS {
        if let Some(path) = BIN_DIRS
            .iter()
            .map(|dir| Path::new(dir).join(tool))
            .find(|p| host_path(host, p).is_file())
        {
            copier.copy(&path)?;
        }
    }
    for (dir, mode) in
        [("proc", 0o555), ("dev", 0o755), ("tmp", 0o1777), ("root", 0o700), ("etc", 0o755)]
    {
        let path = dest.join(dir);
        fs::DirBuilder::new().recursive(true).create(&path)?;
        fs::set_permissions(&path, fs::Permissions::from_mode(mode))?;
    }
    fs::write(
        dest.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/bash\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n",
    )?;
    fs::write(dest.join("etc/group"), "root:x:0:\nnogroup:x:65534:\n")?;
    Ok(())
}

/// Copies one more host binary into the image at `dest`, at the same path, with the libraries
/// its ELF headers name (for test images that need a tool the default image lacks).
pub fn add_host_binary(dest: &Path, binary: &Path) -> io::Result<()> {
    Copier { host: Path::new("/"), dest, done: BTreeSet::new() }.copy(binary)
}

/// `path` (absolute, as seen from `host`) on the machine.
fn host_path(host: &Path, path: &Path) -> PathBuf {
    host.join(path.strip_prefix("/").unwrap_or(path))
}

struct Copier<'a> {
    host: &'a Path,
    dest: &'a Path,
    done: BTreeSet<PathBuf>,
}

impl Copier<'_> {
    /// Copies `path` (absolute, in host terms) into the image: a symlink as a symlink plus
    /// what it points to, an ELF file with its interpreter and libraries.
    fn copy(&mut self, path: &Path) -> io::Result<()> {
        // Resolve the directories (they may be symlinks themselves), keep the file name.
        let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else { return Ok(()) };
        let real_parent = fs::canonicalize(host_path(self.host, parent))?;
        let real_parent =
            Path::new("/").join(real_parent.strip_prefix(self.host).unwrap_or(&real_parent));
        let path = real_parent.join(name);
        if !self.done.insert(path.clone()) {
            return Ok(());
        }
        let source = host_path(self.host, &path);
        let target = host_path(self.dest, &path);
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(target.parent().unwrap_or(self.dest))?;
        let metadata = fs::symlink_metadata(&source)?;
        if metadata.file_type().is_symlink() {
            let link = fs::read_link(&source)?;
            if !target.exists() {
                std::os::unix::fs::symlink(&link, &target)?;
            }
            return self.copy(&real_parent.join(link));
        }
        fs::copy(&source, &target)?;
        fs::set_permissions(
            &target,
            fs::Permissions::from_mode(metadata.mode() & 0o7777 & !0o6000),
        )?;
        for dependency in elf_dependencies(&source)? {
            self.copy(&dependency)?;
        }
        Ok(())
    }
}

/// The interpreter and shared libraries an ELF file names, located in the usual library
/// directories (or its RUNPATH). Not an ELF file: none.
pub fn elf_dependencies(path: &Path) -> io::Result<Vec<PathBuf>> {
    let bytes = fs::read(path)?;
    let Ok(elf) = goblin::elf::Elf::parse(&bytes) else { return Ok(Vec::new()) };
    let mut found = Vec::new();
    if let Some(interpreter) = elf.interpreter {
        found.push(PathBuf::from(interpreter));
    }
    let run_paths: Vec<&str> =
        elf.runpaths.iter().chain(&elf.rpaths).flat_map(|p| p.split(':')).collect();
    for library in &elf.libraries {
        let located = run_paths
            .iter()
            .chain(LIB_DIRS)
            .map(|dir| Path::new(dir).join(library))
            .find(|candidate| candidate.exists());
        match located {
            Some(path) => found.push(path),
            None => tracing::warn!(library, binary = %path.display(), "shared library not found"),
        }
    }
    Ok(found)
}

/// A copy of `image` at `dest` whose every owner is shifted by `first` (uid and gid), so that
/// root inside a user namespace mapped to `first..` owns it. Built once per image and range.
pub fn shifted_copy(image: &Path, dest: &Path, first: u32) -> Result<PathBuf, ImageError> {
    if dest.exists() {
        return Ok(dest.to_owned());
    }
    publish(dest, |building| copy_shifted(image, building, first))?;
    Ok(dest.to_owned())
}

fn copy_shifted(source: &Path, dest: &Path, first: u32) -> io::Result<()> {
    let metadata = fs::symlink_metadata(source)?;
    let shift =
        |id: u32| id.checked_add(first).ok_or_else(|| io::Error::other("id overflows the range"));
    let (uid, gid) = (shift(metadata.uid())?, shift(metadata.gid())?);
    let file_type = metadata.file_type();
    if file_type.is_symlink() {
        std::os::unix::fs::symlink(fs::read_link(source)?, dest)?;
    } else if file_type.is_dir() {
        fs::create_dir(dest)?;
        for entry in fs::read_dir(source)? {
            let entry = entry?;
            copy_shifted(&entry.path(), &dest.join(entry.file_name()), first)?;
        }
    } else if file_type.is_file() {
        fs::copy(source, dest)?;
    } else {
        return Ok(()); // devices, fifos, sockets: not part of an image
    }
    std::os::unix::fs::lchown(dest, Some(uid), Some(gid))?;
    if !file_type.is_symlink() {
        fs::set_permissions(dest, fs::Permissions::from_mode(metadata.mode() & 0o7777))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_image_has_the_tools_and_their_libraries() {
        let dir = tempfile::tempdir().expect("tempdir");
        let image = dir.path().join("image");
        build(Path::new("/"), &image).expect("build");
        for tool in ["bin/sh", "bin/bash", "bin/sleep", "bin/cat", "bin/true"] {
            assert!(image.join(tool).is_file(), "{tool}");
        }
        let bash = fs::canonicalize(image.join("bin/bash")).expect("bash");
        for dependency in elf_dependencies(&bash).expect("deps") {
            let inside = image.join(dependency.strip_prefix("/").expect("absolute"));
            assert!(inside.exists(), "{} is in the image", dependency.display());
        }
        let passwd = fs::read_to_string(image.join("etc/passwd")).expect("passwd");
        assert!(passwd.starts_with("root:x:0:0:"));
    }

    #[test]
    fn elf_dependencies_name_the_interpreter_and_libc() {
        let deps = elf_dependencies(Path::new("/bin/sh")).expect("deps");
        assert!(deps.iter().any(|d| d.to_string_lossy().contains("ld-linux")), "{deps:?}");
        assert!(deps.iter().any(|d| d.to_string_lossy().contains("libc.so")), "{deps:?}");
        assert!(elf_dependencies(Path::new("/etc/passwd")).expect("not elf").is_empty());
    }
}
