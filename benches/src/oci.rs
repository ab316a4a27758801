//! The OCI runtime baselines of `start_latency`: `runc run` and `crun run` of a bundle made
//! from the same base image rrocker uses, with the same namespaces (user, PID, mount,
//! network, UTS, IPC, cgroup) and their cgroups below `rrocker-bench` (removed afterwards).
//!
//! crun refuses hybrid cgroup hosts ("cgroups in hybrid mode not supported"); for it the
//! loop runs in a re-exec of the bench binary that first hides the empty unified mount in a
//! private mount namespace of its own. The host's mounts are never touched.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Environment variable that turns the bench binary into the timing loop of one runtime.
const LOOP_ROLE: &str = "RROCKER_BENCH_OCI_LOOP";
/// The cgroup parent the baselines' containers use.
pub const CGROUP_PARENT: &str = "rrocker-bench";

/// Whether `runtime` (`runc`, `crun`) is installed.
pub fn installed(runtime: &str) -> bool {
    Command::new(runtime)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// Writes an OCI bundle in `dir` that runs `args` in the read-only root `image`, as root of
/// a user namespace mapped like rrocker's tasks.
pub fn bundle(dir: &Path, image: &Path, args: &[&str]) -> std::io::Result<PathBuf> {
    let ids = serde_json::json!([{ "containerID": 0, "hostID": 100_000, "size": 65_536 }]);
    let config = serde_json::json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": { "uid": 0, "gid": 0 },
            "args": args,
            "env": ["PATH=/usr/bin:/bin"],
            "cwd": "/",
            "noNewPrivileges": true
        },
        "root": { "path": image, "readonly": true },
        "hostname": "bench",
        "mounts": [
            { "destination": "/proc", "type": "proc", "source": "proc" },
            { "destination": "/dev", "type": "tmpfs", "source": "tmpfs",
              "options": ["nosuid", "strictatime", "mode=755", "size=65536k"] },
            { "destination": "/tmp", "type": "tmpfs", "source": "tmpfs" }
        ],
        "linux": {
            "namespaces": [
                { "type": "pid" }, { "type": "network" }, { "type": "ipc" }, { "type": "uts" },
                { "type": "mount" }, { "type": "user" }, { "type": "cgroup" }
            ],
            "uidMappings": ids,
            "gidMappings": ids,
            "cgroupsPath": format!("/{CGROUP_PARENT}/baseline")
        }
    });
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("config.json"), serde_json::to_vec_pretty(&config)?)?;
    Ok(dir.to_owned())
}

/// Times `iterations` sequential `RUNTIME run` of `bundle`, each to the container's exit.
/// For crun, in a private mount namespace without the unified cgroup mount.
pub fn time_runs(runtime: &str, bundle: &Path, iterations: usize) -> Vec<Duration> {
    let output = Command::new(std::env::current_exe().expect("bench executable"))
        .env(LOOP_ROLE, format!("{runtime}:{iterations}:{}", bundle.display()))
        .stderr(Stdio::inherit())
        .output()
        .expect("run the OCI loop");
    assert!(output.status.success(), "{runtime} loop failed");
    let text = String::from_utf8(output.stdout).expect("utf8");
    let times: Vec<Duration> =
        text.lines().filter_map(|line| line.parse().ok()).map(Duration::from_nanos).collect();
    assert_eq!(times.len(), iterations, "{text}");
    times
}

/// In the re-exec'd loop: runs the loop `LOOP_ROLE` asks for, prints one duration in
/// nanoseconds per line, and exits. Returns if this process is not such a loop.
pub fn serve_loop_if_asked() {
    let Ok(role) = std::env::var(LOOP_ROLE) else { return };
    let mut parts = role.splitn(3, ':');
    let (Some(runtime), Some(iterations), Some(bundle)) =
        (parts.next(), parts.next(), parts.next())
    else {
        panic!("malformed {LOOP_ROLE}: {role}")
    };
    let iterations: usize = iterations.parse().expect("iterations");
    if runtime == "crun" && Path::new("/sys/fs/cgroup/unified").exists() {
        hide_unified_mount();
    }
    for index in 0..iterations {
        let id = format!("rrocker-bench-{runtime}-{}-{index}", std::process::id());
        let begin = Instant::now();
        let status = Command::new(runtime)
            .args(["run", "--bundle", bundle, &id])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .status()
            .expect("run the runtime");
        let elapsed = begin.elapsed();
        assert!(status.success(), "{runtime} run {id} failed");
        println!("{}", elapsed.as_nanos());
    }
    std::process::exit(0);
}

/// Unmounts the (controller-less) unified cgroup hierarchy in a mount namespace private to
/// this process, so that crun sees a plain v1 host.
fn hide_unified_mount() {
    use nix::mount::{MntFlags, MsFlags, mount, umount2};
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS).expect("a private mount namespace");
    mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>)
        .expect("make the mounts private");
    umount2("/sys/fs/cgroup/unified", MntFlags::MNT_DETACH).expect("hide the unified mount");
}

/// Removes the (empty) `rrocker-bench` parent cgroups the runtimes left in every hierarchy.
pub fn remove_cgroup_parents() {
    let Ok(mounts) = rrockerd::cgroup::mounts::CgroupMounts::read() else { return };
    let roots = mounts.unified.into_iter().chain(mounts.v1.into_iter().map(|(_, path)| path));
    for root in roots {
        let parent = root.join(CGROUP_PARENT);
        let _ = std::fs::remove_dir(parent.join("baseline"));
        let _ = std::fs::remove_dir(parent);
    }
    // systemd's named hierarchy is not a controller mount: clean it the same way.
    let _ = std::fs::remove_dir(Path::new("/sys/fs/cgroup/systemd").join(CGROUP_PARENT));
}
