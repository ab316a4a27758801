//! Running under a service manager: systemd's Type=notify readiness and stopping messages,
//! and `deploy/rrockerd.service` accepted by `systemd-analyze verify`.

#[test]
fn systemd_hears_ready_once_the_daemon_listens_and_stopping_at_sigterm() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket_path = dir.path().join("notify");
    let socket = std::os::unix::net::UnixDatagram::bind(&socket_path).expect("notify socket");
    socket.set_read_timeout(Some(std::time::Duration::from_secs(120))).expect("timeout");
    let mut daemon = std::process::Command::new(rrocker_tests::bin_path("rrockerd"))
        .args(["--listen", "127.0.0.1:0", "--cgroup-version", "off", "--cgroup-parent"])
        .arg(dir.path().file_name().expect("a name"))
        .arg("--images-dir")
        .arg(rrocker_tests::images_dir())
        .arg("--pki-dir")
        .arg(dir.path().join("pki"))
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .env("NOTIFY_SOCKET", &socket_path)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn rrockerd");
    let mut message = [0u8; 256];
    let length = socket.recv(&mut message).expect("a readiness message");
    assert_eq!(&message[..length], b"READY=1\n");
    rrocker_tests::signal(daemon.id(), libc::SIGTERM);
    let length = socket.recv(&mut message).expect("a stopping message");
    assert_eq!(&message[..length], b"STOPPING=1\n");
    assert!(daemon.wait().expect("wait").success());
}

#[test]
fn the_systemd_unit_verifies() {
    let Ok(version) = std::process::Command::new("systemd-analyze").arg("--version").output()
    else {
        if std::env::var("CI").is_ok_and(|ci| ci == "true") {
            panic!("systemd-analyze is needed, and CI=true forbids skipping");
        }
        eprintln!("SKIPPED: systemd-analyze is not installed");
        return;
    };
    assert!(version.status.success());
    // The unit as shipped, but for where this build's binary is.
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let unit = std::fs::read_to_string(root.join("deploy/rrockerd.service")).expect("unit");
    let binary = rrocker_tests::bin_path("rrockerd");
    let unit = unit.replace("/usr/local/bin/rrockerd", &binary.to_string_lossy());
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("rrockerd.service");
    std::fs::write(&path, unit).expect("write unit");
    let output = std::process::Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect("verify");
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success() && said.trim().is_empty(), "{said}");
}

/// The long flags rrockerd has, from its own --help.
fn daemon_flags() -> Vec<String> {
    let help = std::process::Command::new(rrocker_tests::bin_path("rrockerd"))
        .arg("--help")
        .output()
        .expect("rrockerd --help");
    let help = String::from_utf8(help.stdout).expect("UTF-8");
    let flags = help.lines().filter_map(|line| line.trim_start().strip_prefix("--"));
    flags.map(|rest| rest.split([' ', ',', '=']).next().unwrap_or_default().to_owned()).collect()
}

/// The `--flags` a manifest passes: each word starting with `--` (quotes and commas of HCL
/// lists stripped).
fn flags_in(text: &str) -> Vec<String> {
    let words = text.split_whitespace().map(|word| word.trim_matches(|c| c == '"' || c == ','));
    words.filter_map(|word| word.strip_prefix("--")).map(str::to_owned).collect()
}

fn deploy_file(path: &str) -> String {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy");
    std::fs::read_to_string(root.join(path)).expect("a deploy file")
}

#[test]
fn the_nomad_and_kubernetes_manifests_pass_only_flags_rrockerd_has() {
    let known = daemon_flags();
    assert!(known.contains(&"metrics-listen".to_owned()), "{known:?}");
    for path in ["nomad/rrockerd.nomad.hcl", "kubernetes/rrockerd-daemonset.yaml"] {
        let text = deploy_file(path);
        let args: String = text
            .lines()
            .filter(|line| !line.trim_start().starts_with('#'))
            .collect::<Vec<_>>()
            .join("\n");
        let used = flags_in(&args);
        assert!(used.len() >= 6, "{path}: {used:?}");
        for flag in used {
            assert!(known.contains(&flag), "{path} passes --{flag}, which rrockerd does not have");
        }
    }
}

#[test]
fn the_kubernetes_manifest_is_a_privileged_daemonset_without_host_pid() {
    // PyYAML parses it (CI installs it; elsewhere the test skips, loudly, without it).
    let script = "import json, sys, yaml; print(json.dumps(yaml.safe_load(sys.stdin)))";
    let parsed = std::process::Command::new("python3")
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            let manifest = deploy_file("kubernetes/rrockerd-daemonset.yaml");
            child.stdin.take().expect("stdin").write_all(manifest.as_bytes())?;
            child.wait_with_output()
        });
    let parsed = match parsed {
        Ok(output) if output.status.success() => output.stdout,
        Ok(output)
            if String::from_utf8_lossy(&output.stderr).contains("No module named 'yaml'") =>
        {
            if std::env::var("CI").is_ok_and(|ci| ci == "true") {
                panic!("PyYAML is needed, and CI=true forbids skipping");
            }
            eprintln!("SKIPPED: python3 has no yaml module (pip install pyyaml)");
            return;
        }
        other => panic!("the manifest does not parse: {other:?}"),
    };
    let manifest: serde_json::Value = serde_json::from_slice(&parsed).expect("JSON");
    assert_eq!(manifest["kind"], "DaemonSet");
    let pod = &manifest["spec"]["template"]["spec"];
    assert_eq!(pod["hostPID"], false);
    assert_eq!(pod["hostNetwork"], true);
    let container = &pod["containers"][0];
    assert_eq!(container["securityContext"]["privileged"], true);
    let args: Vec<&str> =
        container["args"].as_array().expect("args").iter().filter_map(|arg| arg.as_str()).collect();
    assert_eq!(args[..2], ["--listen", "$(NODE_IP):50051"]);
    let mounts = container["volumeMounts"].as_array().expect("mounts");
    assert!(mounts.iter().any(|mount| mount["mountPath"] == "/etc/rrocker/pki"));
}
