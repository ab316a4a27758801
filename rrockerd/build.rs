//! Builds `rrocker-init`, the init every task starts with, from the dependency-free init/
//! crate with rustc alone: its library (the contract with the daemon) and then its binary,
//! optimised and statically linked so that its exec needs no dynamic loader, whatever
//! profile rrockerd itself is built with. The daemon embeds the result (see
//! `worker::init_binary`). Where the C library has no static archive, the binary is linked
//! dynamically instead, with a warning.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets it"));
    let sources = manifest.join("../init/src");
    println!("cargo:rerun-if-changed={}", sources.display());
    let library = out.join("librrocker_init.rlib");
    let binary = out.join("rrocker-init");
    compile(
        &sources.join("lib.rs"),
        &["--crate-type=rlib", "--crate-name=rrocker_init"],
        &library,
        false,
    );
    let extern_library = format!("rrocker_init={}", library.display());
    let bin_args =
        ["--crate-type=bin", "--crate-name=rrocker_init_main", "--extern", &extern_library];
    if !compile(&sources.join("main.rs"), &bin_args, &binary, true) {
        println!(
            "cargo:warning=no static C library: rrocker-init is linked dynamically (slower task starts)"
        );
        assert!(
            compile(&sources.join("main.rs"), &bin_args, &binary, false),
            "cannot build rrocker-init"
        );
    }
}

/// Runs rustc on `root` with `args` into `output`; whether it succeeded.
fn compile(root: &Path, args: &[&str], output: &Path, static_c: bool) -> bool {
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let target = env::var("TARGET").expect("cargo sets it");
    let mut command = Command::new(rustc);
    command
        .args(["--edition=2024", "--target", &target, "-Copt-level=3", "-Cpanic=abort"])
        .args(["-Ccodegen-units=1", "-Cdebuginfo=0", "-Cstrip=symbols"])
        .args(args)
        .arg("-o")
        .arg(output)
        .arg(root);
    if static_c {
        command.arg("-Ctarget-feature=+crt-static");
    }
    let status = command.status().unwrap_or_else(|error| panic!("cannot run rustc: {error}"));
    status.success()
}
