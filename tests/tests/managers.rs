//! rrockerd under a real systemd, as an operator runs it: this host's own tree booted as a
//! container (`systemd-nspawn --boot --volatile=yes`, loopback only), the built binaries and
//! `deploy/rrockerd.service` bound into it, and the unit driven with systemctl through
//! nsenter: start (readiness by sd_notify), a task placed in the unit's delegated cgroup, a
//! limit refused where the container's v1 hierarchies are read-only, reload, a SIGKILL
//! followed by systemd's restart, and a stop that leaves nothing. The container is torn
//! down whatever happens.

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use rrocker_tests::require_root;

/// How long the container may take to boot.
const BOOT_TIMEOUT: Duration = Duration::from_secs(120);

/// A booted container of the host's tree, in cgroups of its own made below each writable
/// hierarchy's root (systemd inside needs the unified and name=systemd ones).
struct Container {
    nspawn: Child,
    /// Its init, as the host sees it.
    leader: u32,
    /// Its cgroup in each hierarchy it was started in.
    cgroups: Vec<PathBuf>,
    name: String,
}

impl Container {
    /// Boots the host's tree with `binaries` as /usr/local/bin and `unit` as rrockerd.service;
    /// `Err` says why it could not.
    fn boot(binaries: &Path, unit: &Path) -> Result<Self, String> {
        let name = format!("rrocker-test-nspawn-{}", std::process::id());
        let cgroups: Vec<PathBuf> = ["unified", "systemd"]
            .iter()
            .map(|hierarchy| Path::new("/sys/fs/cgroup").join(hierarchy).join(&name))
            .collect();
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let notify = dir.path().join("notify");
        let socket = UnixDatagram::bind(&notify).map_err(|e| e.to_string())?;
        socket.set_read_timeout(Some(Duration::from_secs(1))).map_err(|e| e.to_string())?;
        let mut moves = Vec::new();
        for cgroup in &cgroups {
            std::fs::create_dir(cgroup).map_err(|e| format!("{}: {e}", cgroup.display()))?;
            moves.push(format!("echo 0 > {}/cgroup.procs", cgroup.display()));
        }
        // A shell joins the container's cgroups, then becomes systemd-nspawn, which puts the
        // container below them (--keep-unit: no host systemd to ask for a scope).
        let script = format!("{} && exec systemd-nspawn \"$@\"", moves.join(" && "));
        let spawned = Command::new("/bin/sh")
            .args(["-c", &script, "sh", "--boot", "--volatile=yes", "--register=no"])
            .args(["--keep-unit", "--directory=/", "--private-network", "--console=passive"])
            .args(["--notify-ready=yes", "--quiet", &format!("--machine={name}")])
            .arg(format!("--bind-ro={}:/usr/local/bin", binaries.display()))
            .arg(format!("--bind-ro={}:/run/systemd/system/rrockerd.service", unit.display()))
            .args(["--", "systemd.firstboot=off"])
            .env("NOTIFY_SOCKET", &notify)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn();
        let nspawn = match spawned {
            Ok(child) => child,
            Err(error) => {
                cgroups.iter().for_each(|top| rrocker_tests::remove_cgroup_tree(top));
                return Err(format!("cannot run systemd-nspawn: {error}"));
            }
        };
        let mut container = Self { nspawn, leader: 0, cgroups, name };
        // nspawn names the container's init, then says READY=1 once systemd inside has booted.
        let deadline = Instant::now() + BOOT_TIMEOUT;
        let mut message = [0u8; 4096];
        loop {
            if let Ok(Some(status)) = container.nspawn.try_wait() {
                let mut said = String::new();
                if let Some(mut stderr) = container.nspawn.stderr.take() {
                    let _ = std::io::Read::read_to_string(&mut stderr, &mut said);
                }
                return Err(format!("systemd-nspawn exited ({status}): {said}"));
            }
            if Instant::now() > deadline {
                return Err("the container did not boot within two minutes".to_owned());
            }
            let Ok(length) = socket.recv(&mut message) else { continue };
            let text = String::from_utf8_lossy(&message[..length]).into_owned();
            for line in text.lines() {
                if let Some(pid) = line.strip_prefix("X_NSPAWN_LEADER_PID=") {
                    container.leader = pid.parse().map_err(|_| format!("leader {pid}"))?;
                }
            }
            if text.lines().any(|line| line == "READY=1") && container.leader != 0 {
                return Ok(container);
            }
        }
    }

    /// Runs `script` with sh inside the container (all its namespaces).
    fn sh(&self, script: &str) -> Output {
        Command::new("nsenter")
            .args(["-t", &self.leader.to_string(), "-a", "/bin/sh", "-c", script])
            .stdin(Stdio::null())
            .output()
            .expect("run nsenter")
    }

    /// `script`'s stdout, which must succeed.
    fn ok(&self, script: &str) -> String {
        let output = self.sh(script);
        let said = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        let err = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "`{script}` failed: {said}\n{err}\n{}", self.journal());
        said
    }

    fn journal(&self) -> String {
        let output = self.sh("journalctl -u rrockerd --no-pager -o cat");
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Waits (asking every 50 ms, for at most a minute) until `script` prints `expected`.
    fn eventually(&self, script: &str, expected: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let output = self.sh(script);
            if String::from_utf8_lossy(&output.stdout).trim() == expected {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "`{script}` never said {expected}\n{}",
                self.journal()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        // SIGKILL to the init of the container's pid namespace ends every process in it.
        if self.leader != 0 {
            rrocker_tests::signal(self.leader, libc::SIGKILL);
        }
        let _ = self.nspawn.kill();
        let _ = self.nspawn.wait();
        self.cgroups.iter().for_each(|top| rrocker_tests::remove_cgroup_tree(top));
        let _ = std::fs::remove_dir(Path::new("/run/systemd/nspawn/propagate").join(&self.name));
    }
}

/// The unit's cgroup in the container's unified hierarchy.
const UNIT_CGROUP: &str = "/sys/fs/cgroup/unified/system.slice/rrockerd.service";

#[test]
fn the_unit_runs_under_a_real_systemd_with_tasks_in_its_delegated_cgroup() {
    require_root!();
    let unit = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/rrockerd.service");
    let binaries = rrocker_tests::bin_path("rrockerd");
    let binaries = binaries.parent().expect("the binaries' directory");
    let container = match Container::boot(binaries, &unit) {
        Ok(container) => container,
        Err(why) if std::env::var("CI").is_ok_and(|ci| ci == "true") => {
            panic!("cannot boot a systemd container ({why}), and CI=true forbids skipping")
        }
        Err(why) => {
            eprintln!("SKIPPED: cannot boot a systemd container: {why}");
            return;
        }
    };
    container.ok("systemctl is-system-running --wait || true");

    // Type=notify: start returns once the daemon has said READY=1.
    container.ok("systemctl start rrockerd");
    assert_eq!(container.ok("systemctl is-active rrockerd"), "active");
    let journal = container.journal();
    assert!(journal.contains("rrockerd listening on 127.0.0.1:50051"), "{journal}");
    assert!(journal.contains("/system.slice/rrockerd.service/rrocker"), "{journal}");

    // A task runs with its cgroup inside the unit's, read from its /proc/PID/cgroup.
    assert_eq!(container.ok("rrocker-cli run /bin/echo hello"), "hello");
    let id = container.ok("rrocker-cli start /bin/sleep 600");
    let cgroup = format!("{UNIT_CGROUP}/rrocker/{id}");
    let pid = container.ok(&format!("head -n 1 {cgroup}/cgroup.procs"));
    let placed = container.ok(&format!("cat /proc/{pid}/cgroup"));
    let expected = format!("0::/system.slice/rrockerd.service/rrocker/{id}");
    assert!(placed.lines().any(|line| line == expected), "{placed}");
    let daemon = container.ok("systemctl show -p MainPID --value rrockerd");
    let own = container.ok(&format!("cat /proc/{daemon}/cgroup"));
    assert!(own.lines().any(|l| l == "0::/system.slice/rrockerd.service/daemon"), "{own}");

    // The container's v1 hierarchies are read-only: a memory limit is refused, and says why.
    let refused = container.sh("rrocker-cli start --max-mem 64M /bin/true");
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{said}");
    assert!(said.contains("memory cgroup controller") && said.contains("read-only"), "{said}");

    // systemctl reload is SIGHUP: the TLS configuration is read again.
    container.ok("systemctl reload rrockerd");
    container
        .eventually("journalctl -u rrockerd -o cat | grep -c 'TLS configuration reloaded'", "1");

    // A SIGKILL to the unit: systemd restarts it, with no trace of the killed task.
    container.ok("systemctl kill -s KILL rrockerd");
    container.eventually("systemctl show -p NRestarts --value rrockerd", "1");
    container.eventually("systemctl is-active rrockerd", "active");
    assert!(container.sh(&format!("test -e /proc/{pid}/cgroup")).status.code() == Some(1));
    assert!(container.sh(&format!("test -d {cgroup}")).status.code() == Some(1));
    assert_eq!(container.ok("rrocker-cli run /bin/echo again"), "again");

    // A stop leaves no task process, no task cgroup and no mount of rrocker's.
    let id = container.ok("rrocker-cli start /bin/sleep 600");
    let pid = container.ok(&format!("head -n 1 {UNIT_CGROUP}/rrocker/{id}/cgroup.procs"));
    container.ok("systemctl stop rrockerd");
    assert_eq!(container.ok("systemctl is-active rrockerd || true"), "inactive");
    assert_eq!(container.sh(&format!("test -e /proc/{pid}/cgroup")).status.code(), Some(1));
    let left = container.ok(&format!("find {UNIT_CGROUP} -mindepth 1 -type d 2>/dev/null || true"));
    assert_eq!(left, "", "no cgroup is left below the unit's");
    let mounts = container.ok("grep -e /run/rrocker -e /var/lib/rrocker /proc/1/mountinfo || true");
    assert_eq!(mounts, "", "no mount is left");
    let processes = container.ok("ps -eo comm= | grep -e rrocker -e sleep || true");
    assert_eq!(processes, "", "no process is left");
    let journal = container.journal();
    assert!(journal.contains("SIGTERM: shutting down") && journal.contains("stopped"), "{journal}");
}
