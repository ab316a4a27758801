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
    export_with(dir, &[("etc/rrocker-image", b"an imported image\n", 0o644)])
}

/// A gzip-compressed tar of the tests' default image with `files` (path, contents, mode;
/// owned by root) added.
fn export_with(dir: &Path, files: &[(&str, &[u8], u32)]) -> PathBuf {
    let path = dir.join("exported.tar.gz");
    let file = std::fs::File::create(&path).expect("create");
    let gzip = flate2::write::GzEncoder::new(file, flate2::Compression::fast());
    let mut archive = tar::Builder::new(gzip);
    archive.follow_symlinks(false);
    archive.append_dir_all("", images_dir().join("default-v2")).expect("the default image");
    for (name, contents, mode) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(contents.len() as u64);
        header.set_mode(*mode);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(0);
        header.set_cksum();
        archive.append_data(&mut header, name, *contents).expect("a file");
    }
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
    assert!(listed.lines().any(|line| line == name) && listed.contains("default-v2"), "{listed}");
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
    let bad = cli(&["start", "--image", "../default-v2", "/bin/true"]);
    assert!(text(&bad.stderr).starts_with("Invalid image name '../default-v2': "));

    // The daemon leaves nothing of the image's mount behind.
    assert!(daemon.terminate().success());
    assert!(!daemon.state_dir().exists(), "the state directory is gone");
}

/// A program, built with gcc, that prints its effective uid.
fn euid_program(dir: &Path) -> Vec<u8> {
    let source = dir.join("euid.c");
    let source_text = "#include <stdio.h>\n#include <unistd.h>\nint main(void) { printf(\"euid %d\\n\", (int) geteuid()); return 0; }\n";
    std::fs::write(&source, source_text).expect("source");
    let binary = dir.join("euid");
    let built = Command::new("gcc").arg("-o").arg(&binary).arg(&source).status().expect("gcc");
    assert!(built.success(), "gcc");
    std::fs::read(binary).expect("the program")
}

/// Runs `program` with `args` as the host user `nobody`; its output, or the spawn's error.
fn as_nobody(program: &Path, args: &[&Path]) -> std::io::Result<Output> {
    use std::os::unix::process::CommandExt;
    Command::new(program).args(args).uid(65_534).gid(65_534).output()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_setuid_root_program_of_an_imported_image_is_out_of_every_host_users_reach() {
    require_root!();
    let daemon = Daemon::start();
    let scratch = tempfile::tempdir().expect("tempdir");
    let program = euid_program(scratch.path());
    let export = export_with(scratch.path(), &[("usr/local/bin/euid", &program, 0o4755)]);
    let name = format!("suid-{}", std::process::id());
    let imported = image_command(&["import", &export.to_string_lossy(), "--name", &name]);
    assert!(imported.status.success(), "{}", text(&imported.stderr));
    let _cleanup = Imported(name.clone());
    let image = images_dir().join(&name);
    let binary = image.join("usr/local/bin/euid");
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let metadata = std::fs::metadata(&binary).expect("the program");
    assert_eq!((metadata.mode() & 0o7777, metadata.uid()), (0o4755, 0), "setuid root, kept");

    // Inside a task it runs, as root of the task's user namespace.
    let cli = |args: &[&str]| daemon.cli("client1").args(args).output().expect("rrocker-cli");
    let ran = cli(&["run", "--image", &name, "/usr/local/bin/euid"]);
    assert_eq!(text(&ran.stdout), "euid 0\n", "{}", text(&ran.stderr));
    // A running task that wrote a file into its root.
    let script = "echo secret > /written && echo up && exec sleep 600";
    let id = text(&cli(&["run", "-d", "--image", &name, "/bin/sh", "-c", script]).stdout)
        .trim()
        .to_owned();
    let mut client = daemon.client("client1").await;
    let task_dir = daemon.state_dir().join("tasks").join(&id);
    let written = task_dir.join("upper/written");
    drop(rrocker_tests::wait_for_output(&mut client, &id, "up").await);
    let pid = client
        .query(rrocker_proto::v1::QueryRequest { task_id: id.clone() })
        .await
        .expect("query")
        .into_inner()
        .pid;
    let views = daemon.state_dir().join("views");

    // No host path lets nobody execute the setuid program.
    let through_task = PathBuf::from(format!("/proc/{pid}/root/usr/local/bin/euid"));
    let through_daemon = PathBuf::from(format!("/proc/{}/root", daemon.pid()))
        .join(views.strip_prefix("/").expect("absolute"))
        .join(format!("0/image-{name}/usr/local/bin/euid"));
    for path in [&binary, &through_task, &through_daemon] {
        let refused = as_nobody(path, &[]).expect_err("nobody cannot run it");
        assert_eq!(refused.raw_os_error(), Some(libc::EACCES), "{}: {refused}", path.display());
    }
    // Nor list the directories, nor read what the task wrote.
    for dir in [&images_dir(), &daemon.state_dir(), &task_dir.join("upper")] {
        let listed = as_nobody(Path::new("/bin/ls"), &[dir]).expect("ls");
        assert!(!listed.status.success(), "nobody lists {}", dir.display());
        assert!(text(&listed.stderr).contains("Permission denied"), "{}", text(&listed.stderr));
    }
    let read = as_nobody(Path::new("/bin/cat"), &[&written]).expect("cat");
    assert!(text(&read.stderr).contains("Permission denied"), "{}", text(&read.stderr));

    // Every directory on those paths is closed where it must be, so that a change that
    // reopens one fails here.
    let mode_and_owner = |path: &Path| {
        let metadata = std::fs::metadata(path).expect("metadata");
        (metadata.permissions().mode() & 0o7777, metadata.uid())
    };
    for dir in [images_dir(), daemon.state_dir(), daemon.state_dir().join("tasks"), views] {
        assert_eq!(mode_and_owner(&dir), (0o700, 0), "{}", dir.display());
    }
    // A task's own directory is its root's (the slice's first uid), and no one else's.
    assert_eq!(mode_and_owner(&task_dir), (0o700, 100_000));
    let stop =
        rrocker_proto::v1::StopRequest { task_id: id, grace_ms: Some(0), ..Default::default() };
    client.stop(stop).await.expect("stop");
}

#[test]
fn an_import_names_the_device_nodes_it_skips_and_strict_refuses_them_leaving_nothing() {
    require_root!();
    drop(Daemon::start());
    let scratch = tempfile::tempdir().expect("tempdir");
    let path = scratch.path().join("with-a-device.tar");
    let mut archive = tar::Builder::new(std::fs::File::create(&path).expect("create"));
    archive.follow_symlinks(false);
    archive.append_dir_all("", images_dir().join("default-v2")).expect("the default image");
    let mut node = tar::Header::new_gnu();
    node.set_entry_type(tar::EntryType::Char);
    node.set_size(0);
    node.set_mode(0o666);
    node.set_uid(0);
    node.set_gid(0);
    node.set_device_major(1).expect("major");
    node.set_device_minor(3).expect("minor");
    node.set_cksum();
    archive.append_data(&mut node, "dev/null", &[][..]).expect("node");
    archive.finish().expect("finish");
    let name = format!("dev-{}", std::process::id());
    let _cleanup = Imported(name.clone());
    let archive = path.to_string_lossy().into_owned();

    let strict = image_command(&["import", &archive, "--name", &name, "--strict"]);
    assert!(!strict.status.success());
    assert!(
        text(&strict.stderr).contains(
            "--strict: 1 entries cannot be kept as they are, the first dev/null (character device)"
        ),
        "{}",
        text(&strict.stderr)
    );
    assert!(!images_dir().join(&name).exists(), "no image is left");

    let lenient = image_command(&["import", &archive, "--name", &name]);
    assert!(lenient.status.success(), "{}", text(&lenient.stderr));
    assert_eq!(
        text(&lenient.stderr),
        "rrockerd: skipped 1 entries that cannot be kept as they are: dev/null (character device) (--strict refuses such archives)\n"
    );
    assert!(!images_dir().join(&name).join("dev/null").exists());
}
