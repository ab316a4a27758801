//! The daemon's configuration: a TOML file (`--config`) under environment variables under
//! flags, `--print-config` printing the result as a file that reads back the same, and an
//! unknown setting refused in one line.

use std::process::{Command, Output};

fn rrockerd(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(rrocker_tests::bin_path("rrockerd"));
    for name in ["RROCKERD_LISTEN", "RROCKERD_MAX_TASKS", "RROCKERD_CONFIG"] {
        command.env_remove(name);
    }
    command.args(args).envs(env.iter().copied()).output().expect("run rrockerd")
}

fn printed(output: &Output) -> String {
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout.clone()).expect("UTF-8")
}

#[test]
fn the_file_yields_to_the_environment_which_yields_to_flags() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("rrockerd.toml");
    std::fs::write(&file, "listen = \"127.0.0.1:6000\"\nmax_tasks = 7\nno-spawner = true\n")
        .expect("write config");
    let file = file.to_str().expect("UTF-8 path");
    let from_file = printed(&rrockerd(&["--config", file, "--print-config"], &[]));
    assert!(from_file.contains("listen = \"127.0.0.1:6000\"\n"), "{from_file}");
    assert!(from_file.contains("max-tasks = 7\n"), "{from_file}");
    assert!(from_file.contains("no-spawner = true\n"), "{from_file}");
    let env = [("RROCKERD_LISTEN", "127.0.0.1:7000"), ("RROCKERD_MAX_TASKS", "8")];
    let from_env = printed(&rrockerd(&["--config", file, "--print-config"], &env));
    assert!(from_env.contains("listen = \"127.0.0.1:7000\"\n"), "{from_env}");
    assert!(from_env.contains("max-tasks = 8\n"), "{from_env}");
    let args = ["--config", file, "--max-tasks", "9", "--print-config"];
    let from_flags = printed(&rrockerd(&args, &env));
    assert!(from_flags.contains("max-tasks = 9\n"), "{from_flags}");
    assert!(from_flags.contains("listen = \"127.0.0.1:7000\"\n"), "{from_flags}");
}

#[test]
fn the_printed_configuration_reads_back_the_same() {
    let defaults = printed(&rrockerd(&["--print-config"], &[]));
    assert!(defaults.contains("listen = \"127.0.0.1:50051\"\n"), "{defaults}");
    assert!(defaults.contains("stop-grace-ms = 10000\n"), "{defaults}");
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("printed.toml");
    std::fs::write(&file, &defaults).expect("write");
    let again =
        printed(&rrockerd(&["--config", file.to_str().expect("path"), "--print-config"], &[]));
    assert_eq!(again, defaults);
}

#[test]
fn an_unknown_setting_is_refused_in_one_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("bad.toml");
    std::fs::write(&file, "max_taks = 3\n").expect("write");
    let output = rrockerd(&["--config", file.to_str().expect("path"), "--print-config"], &[]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("unknown setting 'max_taks'"), "{stderr}");
}
