//! Images for tests: a copy of the default image, and one with a test helper in it.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{Daemon, bin_path, images_dir};

/// A copy of the default image in `dir` (a stand-in for any exported root filesystem), and a
/// runtime to drive a daemon that uses it from a plain `#[test]`.
pub fn custom_image(dir: &Path) -> (PathBuf, tokio::runtime::Runtime) {
    let image = dir.join("custom");
    // A daemon with defaults makes sure the default image exists.
    drop(Daemon::start());
    let default = images_dir().join("default-v2");
    let status = Command::new("cp").arg("-a").arg(&default).arg(&image).status().expect("cp");
    assert!(status.success());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("rt");
    (image, runtime)
}

/// A daemon started with `extra_args` whose image (a copy of the default one in `dir`) also
/// holds the test helper `probe`, at the same path as on the host; with a runtime to drive
/// it, and that path.
pub fn with_probe(
    dir: &Path,
    probe: &str,
    extra_args: &[&str],
) -> (Daemon, tokio::runtime::Runtime, PathBuf) {
    let (image, runtime) = custom_image(dir);
    let probe = bin_path(probe);
    rrockerd::image::build::add_host_binary(&image, &probe).expect("probe in the image");
    let mut args = vec!["--image", image.to_str().expect("utf8 path")];
    args.extend_from_slice(extra_args);
    let daemon = Daemon::start_with(&args);
    (daemon, runtime, probe)
}
