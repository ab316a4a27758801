//! `rrockerd image import FILE.tar`: a container filesystem export (`docker export`,
//! `podman export`, any tar of a root tree, gzip-compressed or not) unpacked into a named
//! image under the images directory, which `start --image NAME` then gives tasks as their
//! root. Unpacking keeps owners, modes (setuid and setgid bits too: a task may need `su`;
//! the images directory is closed to host users, which is what protects the host) and
//! links, refuses entries that would land outside the image (absolute or `..` paths, writes
//! through symlinks), skips and names the entries it cannot keep as they are (device nodes,
//! fifos, hard links out of the tree; `--strict` refuses the archive instead), and publishes
//! the image whole or not at all.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};

use crate::config::{DaemonCommand, ImageCommand};
use crate::image::build::publish;
use crate::image::error::ImageError;
use crate::io_context::{IoContext, IoError};

/// The longest image name.
const MAX_NAME: usize = 64;

/// Checks an image name: 1 to 64 lowercase letters, digits, `-` and `_`, starting with a
/// letter or digit (so that it is one path component, and never one of the images
/// directory's own names, which carry a dot).
pub fn check_name(name: &str) -> Result<(), ImageError> {
    let first_ok =
        name.chars().next().is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    let rest_ok =
        name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if first_ok && rest_ok && name.len() <= MAX_NAME {
        return Ok(());
    }
    let shown: String = name.chars().take(MAX_NAME).collect();
    Err(ImageError::Invalid(format!(
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

/// How many of the skipped entries an import names.
const NAMED_SKIPS: usize = 5;

/// What an import made.
#[derive(Debug)]
pub struct Imported {
    /// The image.
    pub path: PathBuf,
    /// The entries it did not keep, each as `PATH (KIND)`.
    pub skipped: Vec<String>,
}

/// Unpacks `archive` into `<images_dir>/<name>`. Refused, with nothing changed, when the
/// name is taken, the archive is not a tar of a root tree, or (`strict`) it holds an entry
/// that cannot be kept as it is.
pub fn import(
    archive: &Path,
    images_dir: &Path,
    name: &str,
    strict: bool,
) -> Result<Imported, ImageError> {
    check_name(name)?;
    let dest = images_dir.join(name);
    if dest.exists() {
        return Err(ImageError::Invalid(format!(
            "Image '{name}' already exists in {}; remove it there or pick another --name",
            images_dir.display()
        )));
    }
    let open_error = |source| IoError { action: "read", path: archive.to_owned(), source };
    let mut file = BufReader::new(File::open(archive).map_err(open_error)?);
    let gzip = is_gzip(&mut file).map_err(open_error)?;
    crate::dirs::private_dir(images_dir).context("create", images_dir)?;
    let mut skipped = Vec::new();
    let unpacked = publish(&dest, |building| {
        let reader: Box<dyn Read> =
            if gzip { Box::new(flate2::read::GzDecoder::new(file)) } else { Box::new(file) };
        skipped = unpack(reader, building)?;
        match skipped.first() {
            Some(first) if strict => Err(io::Error::other(format!(
                "--strict: {} entries cannot be kept as they are, the first {first}",
                skipped.len()
            ))),
            _ => Ok(()),
        }
    });
    unpacked.map_err(|error| match error {
        ImageError::Io(IoError { source, .. }) => ImageError::Invalid(format!(
            "Cannot import {} as an image: {}",
            archive.display(),
            chain(&source)
        )),
        other => other,
    })?;
    Ok(Imported { path: dest, skipped })
}

/// What a command says: on stdout, and on stderr.
#[derive(Debug, Default)]
pub struct Said {
    /// For stdout.
    pub out: String,
    /// For stderr (warnings).
    pub err: String,
}

/// Runs `rrockerd image ...` on `images_dir`; returns what to print.
pub fn run_command(command: &DaemonCommand, images_dir: &Path) -> Result<Said, ImageError> {
    match command {
        DaemonCommand::Image(ImageCommand::Import { file, name, strict }) => {
            let name = name.clone().unwrap_or_else(|| name_of(file));
            let imported = import(file, images_dir, &name, *strict)?;
            let out = format!("Imported image '{name}' into {}\n", imported.path.display());
            let err = match imported.skipped.len() {
                0 => String::new(),
                count => format!(
                    "rrockerd: skipped {count} entries that cannot be kept as they are: {}{} (--strict refuses such archives)\n",
                    imported.skipped[..count.min(NAMED_SKIPS)].join(", "),
                    if count > NAMED_SKIPS { ", ..." } else { "" }
                ),
            };
            Ok(Said { out, err })
        }
        DaemonCommand::Image(ImageCommand::List) => {
            let listed = std::fs::read_dir(images_dir).context("list", images_dir)?;
            let mut names: Vec<String> = listed
                .filter_map(Result::ok)
                .filter(|entry| entry.path().is_dir())
                .map(|entry| entry.file_name().to_string_lossy().into_owned())
                .filter(|name| check_name(name).is_ok())
                .collect();
            names.sort();
            Ok(Said {
                out: names.iter().map(|name| format!("{name}\n")).collect(),
                err: String::new(),
            })
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
/// archive with no entries is refused. Returns the entries it skipped, as `PATH (KIND)`:
/// device nodes and fifos (a task's /dev is its own; the tar crate would leave an empty
/// file in their place), and hard links whose target lies out of the tree.
fn unpack(reader: impl Read, dest: &Path) -> io::Result<Vec<String>> {
    std::fs::create_dir(dest)?;
    let mut archive = tar::Archive::new(reader);
    archive.set_preserve_ownerships(rustix::process::geteuid().is_root());
    archive.set_preserve_permissions(true);
    archive.set_preserve_mtime(true);
    archive.set_unpack_xattrs(false);
    archive.set_overwrite(true);
    let mut entries = 0usize;
    let mut skipped = Vec::new();
    for entry in archive.entries()? {
        let mut entry = entry?;
        if let Some(kind) = not_kept(&entry) {
            let path = entry.path().map(|path| path.display().to_string()).unwrap_or_default();
            skipped.push(format!("{path} ({kind})"));
            continue;
        }
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
    Ok(skipped)
}

/// What kind of entry `entry` is, if it is one an image does not keep.
fn not_kept(entry: &tar::Entry<'_, impl Read>) -> Option<&'static str> {
    use tar::EntryType;
    match entry.header().entry_type() {
        EntryType::Char => Some("character device"),
        EntryType::Block => Some("block device"),
        EntryType::Fifo => Some("fifo"),
        EntryType::Link => {
            let target = entry.link_name().ok().flatten()?;
            let outside = target.is_absolute()
                || target.components().any(|part| part == std::path::Component::ParentDir);
            outside.then_some("hard link out of the tree")
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for good in ["alpine", "debian-12", "my_image", "0"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in ["", "Alpine", "../etc", "a/b", "-x", "default-v2.100000", &"a".repeat(65)] {
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
        let image = import(&good, &images, "good", false).expect("import").path;
        assert_eq!(std::fs::read(image.join("etc/marker")).expect("marker"), b"ok");
        let again = import(&good, &images, "good", false).expect_err("taken");
        assert!(again.to_string().starts_with("Image 'good' already exists in "), "{again}");

        let evil = dir.path().join("evil.tar");
        std::fs::write(&evil, archive(&[("etc/fine", b"x"), ("../escaped", b"x")])).expect("write");
        let refused = import(&evil, &images, "evil", false).expect_err("refused");
        assert!(refused.to_string().contains("would land outside the image"), "{refused}");
        assert!(!dir.path().join("escaped").exists());
        let left: Vec<_> =
            std::fs::read_dir(&images).expect("list").map(|e| e.expect("e").file_name()).collect();
        assert_eq!(left, ["good"], "nothing of the refused import is left");

        let empty = dir.path().join("empty.tar");
        std::fs::write(&empty, archive(&[])).expect("write");
        assert!(import(&empty, &images, "empty", false).is_err());
        let junk = dir.path().join("junk.tar");
        std::fs::write(&junk, b"not a tar at all, just words that go on for a while")
            .expect("write");
        assert!(import(&junk, &images, "junk", false).is_err());
    }

    #[test]
    fn device_nodes_fifos_and_links_out_are_skipped_and_named_and_strict_refuses_them() {
        let header = |kind: tar::EntryType, size: u64, mode: u32| {
            let mut header = tar::Header::new_gnu();
            header.set_entry_type(kind);
            header.set_size(size);
            header.set_mode(mode);
            header.set_uid(0);
            header.set_gid(0);
            header
        };
        let mut builder = tar::Builder::new(Vec::new());
        let mut file = header(tar::EntryType::Regular, 2, 0o4755);
        file.set_cksum();
        builder.append_data(&mut file, "bin/su", &b"ok"[..]).expect("file");
        for (path, kind) in [("dev/null", tar::EntryType::Char), ("run/pipe", tar::EntryType::Fifo)]
        {
            let mut node = header(kind, 0, 0o666);
            node.set_device_major(1).expect("major");
            node.set_device_minor(3).expect("minor");
            node.set_cksum();
            builder.append_data(&mut node, path, &[][..]).expect("node");
        }
        let mut link = header(tar::EntryType::Link, 0, 0o644);
        let target = b"../../etc/shadow";
        link.as_gnu_mut().expect("gnu").linkname[..target.len()].copy_from_slice(target);
        link.set_cksum();
        builder.append_data(&mut link, "etc/shadow", &[][..]).expect("link");
        let dir = tempfile::tempdir().expect("tempdir");
        let tar = dir.path().join("nodes.tar");
        std::fs::write(&tar, builder.into_inner().expect("tar")).expect("write");
        let images = dir.path().join("images");

        let refused = import(&tar, &images, "strict", true).expect_err("strict");
        assert!(refused.to_string().contains("--strict: 3 entries"), "{refused}");
        assert!(!images.join("strict").exists(), "no image is left behind");

        let imported = import(&tar, &images, "lenient", false).expect("import");
        assert_eq!(
            imported.skipped,
            [
                "dev/null (character device)",
                "run/pipe (fifo)",
                "etc/shadow (hard link out of the tree)"
            ]
        );
        assert!(
            !imported.path.join("dev/null").exists() && !imported.path.join("run/pipe").exists()
        );
        use std::os::unix::fs::PermissionsExt;
        let su = std::fs::metadata(imported.path.join("bin/su")).expect("su");
        assert_eq!(su.permissions().mode() & 0o7777, 0o4755, "setuid is kept");
    }
}
