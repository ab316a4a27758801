//! Named images: `rrockerd image import` turns a container filesystem export (a tar, here
//! gzip-compressed) into an image, and `--image NAME` gives a task a private writable view of
//! it instead of the daemon's own, through the real daemon and CLI.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use rrocker_tests::{Daemon, bin_path, images_dir, require_root};

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A gzip-compressed tar of the tests' default image with a marker file added, as `docker
/// export` would give of a container.
fn export_of_an_image(dir: &Path) -> PathBuf {
    let path = dir.join("exported.tar.gz");
    let file = std::fs::File::create(&path).expect("create");
    let gzip = flate2::write::GzEncoder::new(file, flate2::Compression::fast());
    let mut archive = tar::Builder::new(gzip);
    archive.follow_symlinks(false);
    archive.append_dir_all("", images_dir().join("default-v1")).expect("the default image");
    let marker = b"an imported image\n";
    let mut header = tar::Header::new_gnu();
    header.set_size(marker.len() as u64);
    header.set_mode(0o644);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    header.set_cksum();
    archive.append_data(&mut header, "etc/rrocker-image", &marker[..]).expect("marker");
    archive.into_inner().and_then(|gzip| gzip.finish()).expect("finish");
    path
}

fn image_command(args: &[&str]) -> Output {
    Command::new(bin_path("rrockerd"))
        .arg("--images-dir")
        .arg(images_dir())
        .arg("image")
        .args(args)
        .output()
        .expect("rrockerd image")
}

/// Removes the imported image (and a shifted copy of it, if the daemon made one).
struct Imported(String);

impl Drop for Imported {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(images_dir().join(&self.0));
        let _ = std::fs::remove_dir_all(images_dir().join(format!("{}.100000", self.0)));
    }
}

#[test]
fn an_imported_export_is_a_named_image_tasks_get_a_private_view_of() {
    require_root!();
    // Started first: the daemon builds the default image the export is made of.
    let mut daemon = Daemon::start();
    let scratch = tempfile::tempdir().expect("tempdir");
    let export = export_of_an_image(scratch.path());
    let name = format!("test-{}", std::process::id());
    let imported = image_command(&["import", &export.to_string_lossy(), "--name", &name]);
    assert!(imported.status.success(), "{}", text(&imported.stderr));
    let _cleanup = Imported(name.clone());
    let path = images_dir().join(&name);
    assert_eq!(
        text(&imported.stdout),
        format!("Imported image '{name}' into {}\n", path.display())
    );
    let listed = text(&image_command(&["ls"]).stdout);
    assert!(listed.lines().any(|line| line == name) && listed.contains("default-v1"), "{listed}");
    let again = image_command(&["import", &export.to_string_lossy(), "--name", &name]);
    assert!(
        text(&again.stderr).starts_with(&format!("rrockerd: Image '{name}' already exists in "))
    );

    let cli = |args: &[&str]| daemon.cli("client1").args(args).output().expect("rrocker-cli");
    let ran = cli(&["run", "--image", &name, "/bin/cat", "/etc/rrocker-image"]);
    assert_eq!(text(&ran.stdout), "an imported image\n", "{}", text(&ran.stderr));
    let own = cli(&["run", "/bin/cat", "/etc/rrocker-image"]);
    assert_eq!(own.status.code(), Some(1), "the daemon's own image has no marker");

    // A task writes to its view; the image stays as imported.
    let write =
        cli(&["run", "--image", &name, "/bin/sh", "-c", "echo changed > /etc/rrocker-image"]);
    assert!(write.status.success(), "{}", text(&write.stderr));
    let on_disk = std::fs::read_to_string(path.join("etc/rrocker-image")).expect("marker");
    assert_eq!(on_disk, "an imported image\n");
    let id = text(&cli(&["run", "-d", "--image", &name, "/bin/true"]).stdout).trim().to_owned();
    let _ = cli(&["stream", &id]);
    let verbose = text(&cli(&["query", "-v", &id]).stdout);
    assert!(verbose.contains(&format!("\nImage: {name}\n")), "{verbose}");

    let missing = cli(&["run", "--image", "no-such-image", "/bin/true"]);
    assert_eq!(missing.status.code(), Some(125));
    assert_eq!(
        text(&missing.stderr),
        "Image 'no-such-image' doesn't exist on this host; import one with `rrockerd image import FILE.tar --name no-such-image`\n"
    );
    let bad = cli(&["start", "--image", "../default-v1", "/bin/true"]);
    assert!(text(&bad.stderr).starts_with("Invalid image name '../default-v1': "));

    // The daemon leaves nothing of the image's mount behind.
    assert!(daemon.terminate().success());
    assert!(!daemon.state_dir().exists(), "the state directory is gone");
}
