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
