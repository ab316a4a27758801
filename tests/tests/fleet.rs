//! A fleet of daemons under one PKI, as deploy/FLEET.md runs it: `rrocker-certs` issues each
//! host its server certificate and each person a client certificate from the PKI's CAs, the
//! CLI reaches a host by the name its certificate carries, and `ps` asks every host that
//! RROCKER_ADDR lists. The hosts are daemons on 127.0.0.1, 127.0.0.2 and 127.0.0.3 (loopback).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

use rrocker_tests::{bin_path, images_dir, require_root};

fn certs(args: &[&str]) {
    let output = Command::new(bin_path("rrocker-certs")).args(args).output().expect("certs");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
}

/// A daemon of the fleet, on `ip`, serving with the PKI files in `pki`.
struct Host {
    child: Child,
    addr: String,
}

impl Host {
    fn start(ip: &str, pki: &Path, scratch: &Path) -> Self {
        let name =
            format!("rrocker-fleet-{}", scratch.file_name().expect("name").to_string_lossy());
        let state = scratch.join(format!("state-{ip}"));
        let mut child = Command::new(bin_path("rrockerd"))
            .args(["--listen", &format!("{ip}:0"), "--cgroup-version", "off"])
            .args(["--cgroup-parent", &format!("{name}-{ip}")])
            .arg("--images-dir")
            .arg(images_dir())
            .arg("--pki-dir")
            .arg(pki)
            .arg("--state-dir")
            .arg(state)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn rrockerd");
        let mut line = String::new();
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
        stdout.read_line(&mut line).expect("the ready line");
        let addr = line.trim().strip_prefix("rrockerd listening on ").expect("ready").to_owned();
        Self { child, addr }
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        rrocker_tests::signal(self.child.id(), libc::SIGTERM);
        let _ = self.child.wait();
    }
}

fn cli(pki: &Path, identity: &str, addrs: &str, args: &[&str]) -> Output {
    Command::new(bin_path("rrocker-cli"))
        .env("RROCKER_ADDR", addrs)
        .arg("--pki-dir")
        .arg(pki)
        .args(["--identity", identity])
        .args(args)
        .output()
        .expect("rrocker-cli")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn one_pki_per_host_server_certificates_and_ps_across_the_hosts() {
    require_root!();
    let scratch = tempfile::tempdir().expect("tempdir");
    let (pki, b, c) =
        (scratch.path().join("pki"), scratch.path().join("b"), scratch.path().join("c"));
    let path = |dir: &Path| dir.to_string_lossy().into_owned();
    certs(&["--out", &path(&pki)]);
    certs(&[
        "server",
        "--ca-dir",
        &path(&pki),
        "--name",
        "rrocker-b",
        "--name",
        "127.0.0.2",
        "--out",
        &path(&b),
    ]);
    certs(&["server", "--ca-dir", &path(&pki), "--name", "rrocker-c", "--out", &path(&c)]);
    certs(&[
        "client",
        "--ca-dir",
        &path(&pki),
        "--org",
        "client",
        "--cn",
        "alice",
        "--out",
        &path(&pki),
    ]);
    let host_b = Host::start("127.0.0.2", &b, scratch.path());
    let host_c = Host::start("127.0.0.3", &c, scratch.path());
    let host_d = Host::start("127.0.0.1", &pki, scratch.path());

    // The new identity runs a task on the host whose certificate names its address.
    let ran = cli(&pki, "alice", &host_b.addr, &["run", "/bin/sh", "-c", "echo $(hostname) up"]);
    assert!(ran.status.success(), "{}", text(&ran.stderr));
    assert!(text(&ran.stdout).ends_with(" up\n"));

    // A host whose certificate does not carry the address it is reached by is refused.
    let refused = cli(&pki, "alice", &host_c.addr, &["ps"]);
    let said = text(&refused.stderr);
    assert!(
        said.starts_with(&format!(
            "Cannot talk to rrockerd at {}: the daemon's certificate is not trusted (",
            host_c.addr
        )),
        "{said}"
    );

    // ps asks every host listed: B (alice's task) and D, served with the dev certificate
    // (localhost, 127.0.0.1, ::1) and reached by its name.
    let d_port = host_d.addr.rsplit_once(':').expect("port").1;
    let d_addr = format!("localhost:{d_port}");
    let list = format!("{},{d_addr}", host_b.addr);
    let started = cli(&pki, "alice", &d_addr, &["start", "/bin/sleep", "60"]);
    assert!(started.status.success(), "{}", text(&started.stderr));
    let ps = text(&cli(&pki, "alice", &list, &["ps", "-a"]).stdout);
    let rows: Vec<&str> = ps.lines().collect();
    assert!(rows[0].starts_with("HOST "), "{ps}");
    assert!(rows.iter().any(|row| row.starts_with(&host_b.addr) && row.contains("Completed (0)")));
    assert!(rows.iter().any(|row| row.starts_with(&d_addr) && row.contains("Running")), "{ps}");
}
