//! Test harness for rrocker's end-to-end tests: [`Daemon`] starts the real `rrockerd`
//! binary with a fresh PKI and state directory on a free port of 127.0.0.1, hands out gRPC
//! clients and CLI commands for any identity, and stops the daemon (SIGTERM, by pid) when
//! dropped (`daemon.rs`); what tests do with tasks is in `tasks.rs`, test images in
//! `images.rs`, cgroup hierarchies in `cgroups.rs`, a real terminal (tmux) in `screen.rs`.
//!
//! The binaries are found in `RROCKER_BIN_DIR`, or else next to the test executable's
//! directory (`target/<profile>/`), which is where `cargo build --workspace --bins` (the
//! first half of the README's test command) puts them.

use std::path::PathBuf;

use rrocker_proto::v1::task_service_client::TaskServiceClient;
use tonic::transport::Channel;

/// Skips a test that needs root when not root, loudly; fails it instead under `CI=true`.
#[macro_export]
macro_rules! require_root {
    () => {
        if !$crate::is_root() {
            if std::env::var("CI").is_ok_and(|ci| ci == "true") {
                panic!("this test needs root, and CI=true forbids skipping it");
            }
            eprintln!("SKIPPED {}: needs root (run the tests as root)", module_path!());
            return;
        }
    };
}

/// Whether the tests run as root.
pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// A gRPC client of the daemon.
pub type Client = TaskServiceClient<Channel>;

/// Where the workspace's binaries are.
pub fn bin_path(name: &str) -> PathBuf {
    let path = bin_dir().join(name);
    assert!(
        path.is_file(),
        "{} not found: build the binaries first (`cargo build --workspace --bins`) or set RROCKER_BIN_DIR",
        path.display()
    );
    path
}

fn bin_dir() -> PathBuf {
    std::env::var_os("RROCKER_BIN_DIR").map(PathBuf::from).unwrap_or_else(|| {
        let exe = std::env::current_exe().expect("test executable path");
        let deps = exe.parent().expect("deps dir");
        deps.parent().expect("profile dir").to_owned()
    })
}

/// Where test daemons keep base images: shared by every test (built once, then reused) and
/// kept out of the system's /var/lib.
pub fn images_dir() -> PathBuf {
    bin_dir().join("rrocker-test-images")
}

mod cgroups;
mod daemon;
mod images;
mod screen;
mod tasks;

pub use cgroups::{cgroup_roots, remove_cgroup_tree};
pub use daemon::*;
pub use images::{custom_image, with_probe};
pub use screen::Screen;
pub use tasks::*;
