//! `rrockerd image import FILE.tar`: a container filesystem export (`docker export`,
//! `podman export`, any tar of a root tree, gzip-compressed or not) unpacked into a named
//! image under the images directory, which `start --image NAME` then gives tasks as their
//! root. Unpacking keeps owners, modes and links, refuses entries that would land outside
//! the image (absolute or `..` paths, writes through symlinks), and publishes the image whole
//! or not at all.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};

use crate::config::{DaemonCommand, ImageCommand};
use crate::error::DaemonError;
use crate::worker::image::publish;

/// The longest image name.
const MAX_NAME: usize = 64;

/// Checks an image name: 1 to 64 lowercase letters, digits, `-` and `_`, starting with a
/// letter or digit (so that it is one path component, and never one of the images
/// directory's own names, which carry a dot).
pub fn check_name(name: &str) -> Result<(), DaemonError> {
    let first_ok =
        name.chars().next().is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    let rest_ok =
        name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if first_ok && rest_ok && name.len() <= MAX_NAME {
        return Ok(());
    }
    let shown: String = name.chars().take(MAX_NAME).collect();
    Err(DaemonError::InvalidArgument(format!(
        "Invalid image name '{shown}': use 1 to {MAX_NAME} lowercase letters, digits, '-' and '_', starting with a letter or digit"
    )))
}

/// The name an archive's image gets when none is given: its file name without `.tar`,
/// `.tar.gz` or `.tgz`, lowercased.
pub fn name_of(archive: &Path) -> String {
    let file =
        archive.file_name().map(|name| name.to_string_lossy().to_lowercase()).unwrap_or_default();
    let stem = [".tar.gz", ".tgz", ".tar"]
        .iter()
        .find_map(|suffix| file.strip_suffix(suffix))
        .unwrap_or(&file);
    stem.to_owned()
}

/// Unpacks `archive` into `<images_dir>/<name>` and returns that path. Refused, with nothing
/// changed, when the name is taken or the archive is not a tar of a root tree.
pub fn import(archive: &Path, images_dir: &Path, name: &str) -> Result<PathBuf, DaemonError> {
    check_name(name)?;
    let dest = images_dir.join(name);
    if dest.exists() {
        return Err(DaemonError::InvalidArgument(format!(
            "Image '{name}' already exists in {}; remove it there or pick another --name",
            images_dir.display()
        )));
    }
    let open_error = |source| DaemonError::Io { action: "read", path: archive.to_owned(), source };
    let mut file = BufReader::new(File::open(archive).map_err(open_error)?);
    let gzip = is_gzip(&mut file).map_err(open_error)?;
    std::fs::create_dir_all(images_dir).map_err(|source| DaemonError::Io {
        action: "create",
        path: images_dir.to_owned(),
        source,
    })?;
    let unpacked = publish(&dest, |building| {
        let reader: Box<dyn Read> =
            if gzip { Box::new(flate2::read::GzDecoder::new(file)) } else { Box::new(file) };
        unpack(reader, building)
    });
    unpacked.map_err(|error| match error {
        DaemonError::Io { source, .. } => DaemonError::InvalidArgument(format!(
            "Cannot import {} as an image: {}",
            archive.display(),
            chain(&source)
        )),
        other => other,
    })?;
    Ok(dest)
}

/// Runs `rrockerd image ...` on `images_dir`; returns what to print.
pub fn run_command(command: &DaemonCommand, images_dir: &Path) -> Result<String, DaemonError> {
    match command {
        DaemonCommand::Image(ImageCommand::Import { file, name }) => {
            let name = name.clone().unwrap_or_else(|| name_of(file));
            let image = import(file, images_dir, &name)?;
            Ok(format!("Imported image '{name}' into {}\n", image.display()))
        }
        DaemonCommand::Image(ImageCommand::List) => {
            let listed = std::fs::read_dir(images_dir).map_err(|source| DaemonError::Io {
                action: "list",
                path: images_dir.to_owned(),
                source,
            })?;
            let mut names: Vec<String> = listed
                .filter_map(Result::ok)
                .filter(|entry| entry.path().is_dir())
                .map(|entry| entry.file_name().to_string_lossy().into_owned())
                .filter(|name| check_name(name).is_ok())
                .collect();
            names.sort();
            Ok(names.iter().map(|name| format!("{name}\n")).collect())
        }
    }
}

/// An error and its causes, as one line (the tar crate wraps the cause of a failed entry).
fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(inner) = cause {
        text.push_str(&format!(": {inner}"));
        cause = inner.source();
    }
    text
}

/// Whether the stream starts with gzip's magic number (without consuming it).
fn is_gzip(file: &mut BufReader<File>) -> io::Result<bool> {
    use std::io::BufRead;
    Ok(file.fill_buf()?.starts_with(&[0x1f, 0x8b]))
}

/// Unpacks every entry of a tar stream into `dest`: modes, times and links kept, and owners
/// too when run as root (an unprivileged daemon's tasks see its own files as root's). An
/// archive with no entries is refused.
fn unpack(reader: impl Read, dest: &Path) -> io::Result<()> {
    std::fs::create_dir(dest)?;
    let mut archive = tar::Archive::new(reader);
    archive.set_preserve_ownerships(rustix::process::geteuid().is_root());
    archive.set_preserve_permissions(true);
    archive.set_preserve_mtime(true);
    archive.set_unpack_xattrs(false);
    archive.set_overwrite(true);
    let mut entries = 0usize;
    for entry in archive.entries()? {
        let mut entry = entry?;
        // unpack_in refuses paths that leave `dest` (`..`, and writes through symlinks that
        // point out of it); it skips such an entry and says so with `false`.
        if !entry.unpack_in(dest)? {
            let path = entry.path().map(|path| path.display().to_string()).unwrap_or_default();
            return Err(io::Error::other(format!("entry '{path}' would land outside the image")));
        }
        entries += 1;
    }
    if entries == 0 {
        return Err(io::Error::other("the archive holds no file"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for good in ["alpine", "debian-12", "my_image", "0"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in ["", "Alpine", "../etc", "a/b", "-x", "default-v1.100000", &"a".repeat(65)] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
        assert_eq!(name_of(Path::new("/tmp/Alpine.tar.gz")), "alpine");
        assert_eq!(name_of(Path::new("busybox.tar")), "busybox");
        assert_eq!(name_of(Path::new("rootfs.tgz")), "rootfs");
    }

    fn archive(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (path, data) in entries {
            let mut header = tar::Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_mode(0o755);
            header.set_uid(0);
            header.set_gid(0);
            // `append` writes the name as given (append_data would refuse a `..` itself).
            header.as_gnu_mut().expect("gnu").name[..path.len()].copy_from_slice(path.as_bytes());
            header.set_cksum();
            builder.append(&header, *data).expect("append");
        }
        builder.into_inner().expect("tar")
    }

    #[test]
    fn an_archive_is_unpacked_whole_and_a_bad_one_leaves_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let good = dir.path().join("good.tar");
        std::fs::write(&good, archive(&[("bin/tool", b"#!/bin/sh\n"), ("etc/marker", b"ok")]))
            .expect("write");
        let images = dir.path().join("images");
        let image = import(&good, &images, "good").expect("import");
        assert_eq!(std::fs::read(image.join("etc/marker")).expect("marker"), b"ok");
        let again = import(&good, &images, "good").expect_err("taken");
        assert!(again.to_string().starts_with("Image 'good' already exists in "), "{again}");

        let evil = dir.path().join("evil.tar");
        std::fs::write(&evil, archive(&[("etc/fine", b"x"), ("../escaped", b"x")])).expect("write");
        let refused = import(&evil, &images, "evil").expect_err("refused");
        assert!(refused.to_string().contains("would land outside the image"), "{refused}");
        assert!(!dir.path().join("escaped").exists());
        let left: Vec<_> =
            std::fs::read_dir(&images).expect("list").map(|e| e.expect("e").file_name()).collect();
        assert_eq!(left, ["good"], "nothing of the refused import is left");

        let empty = dir.path().join("empty.tar");
        std::fs::write(&empty, archive(&[])).expect("write");
        assert!(import(&empty, &images, "empty").is_err());
        let junk = dir.path().join("junk.tar");
        std::fs::write(&junk, b"not a tar at all, just words that go on for a while")
            .expect("write");
        assert!(import(&junk, &images, "junk").is_err());
    }
}
