//! Test harness for rrocker's end-to-end tests: [`Daemon`] starts the real `rrockerd`
//! binary with a fresh PKI and state directory on a free port of 127.0.0.1, hands out gRPC
//! clients and CLI commands for any identity, and stops the daemon (SIGTERM, by pid) when
//! dropped.
//!
//! The binaries are found in `RROCKER_BIN_DIR`, or else next to the test executable's
//! directory (`target/<profile>/`), which is where `cargo build --workspace --bins` (the
//! first half of the README's test command) puts them.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};

use rrocker_certs::{Issued, LeafSpec, Pki};
use rrocker_proto::v1::task_service_client::TaskServiceClient;
use rrocker_proto::v1::{StartRequest, StreamRequest, TaskStatus, stream_response::Event};
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

/// A running rrockerd with its own PKI and state directory.
#[derive(Debug)]
pub struct Daemon {
    child: Child,
    /// The daemon's stdout, after its ready line: where it answers SIGHUP.
    stdout: BufReader<ChildStdout>,
    addr: SocketAddr,
    pki: Option<Pki>,
    dir: tempfile::TempDir,
    /// How it was started, to restart it the same way.
    how: Launch,
    /// A filesystem the test mounted for the daemon, unmounted once the daemon has exited.
    mounted: Option<PathBuf>,
}

/// How the harness starts a daemon, beyond its own flags.
#[derive(Debug, Default)]
struct Launch {
    args: Vec<std::ffi::OsString>,
    uid: Option<u32>,
    /// The `cgroup.procs` files of the cgroups it starts in (made by the test, which plays
    /// its manager), leaving its parent cgroup to `--cgroup-parent auto`; empty: the
    /// harness's own parent at the root.
    joins: Vec<PathBuf>,
    /// Environment variables beyond RUST_LOG.
    env: Vec<(String, String)>,
}

/// A fresh test directory with a dev PKI in its `pki/`.
fn dev_pki_dir() -> (tempfile::TempDir, Pki) {
    let dir = tempfile::Builder::new().prefix("rrocker-test-").tempdir().expect("tempdir");
    let pki = Pki::write_dev(&dir.path().join("pki")).expect("dev pki");
    (dir, pki)
}

impl Daemon {
    /// Starts a daemon with a fresh dev PKI and default flags.
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// Starts a daemon with a fresh dev PKI and extra flags.
    pub fn start_with(extra_args: &[&str]) -> Self {
        let (dir, pki) = dev_pki_dir();
        Self::spawn_with_images(dir, pki, extra_args.iter().map(Into::into))
    }

    /// Starts a daemon whose state directory lies below a directory closed to every user
    /// but root (mode 0700, as `mktemp -d` makes it).
    pub fn start_below_a_private_dir() -> Self {
        use std::os::unix::fs::PermissionsExt;
        let (dir, pki) = dev_pki_dir();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700))
            .expect("chmod");
        Self::spawn_with_images(dir, pki, [])
    }

    /// Starts a daemon with a fresh dev PKI whose client CA has a revocation list (empty for
    /// now: see [`Self::revoke`]), given with `--crl`.
    pub fn start_with_crl() -> Self {
        let (dir, pki) = dev_pki_dir();
        let crl = dir.path().join("pki").join("client-ca.crl");
        std::fs::write(&crl, pki.client_revocation_list(&[]).expect("crl")).expect("write crl");
        Self::spawn_with_images(dir, pki, ["--crl".into(), crl.into_os_string()])
    }

    /// Starts a daemon whose state directory is a tmpfs of `bytes` (mounted by the test, as
    /// root), with extra flags. Needs root.
    pub fn start_with_state_on_tmpfs(bytes: u64, extra_args: &[&str]) -> Self {
        let (dir, pki) = dev_pki_dir();
        let state = dir.path().join("state");
        std::fs::create_dir(&state).expect("state dir");
        rustix::mount::mount(
            "tmpfs",
            &state,
            "tmpfs",
            rustix::mount::MountFlags::empty(),
            std::ffi::CString::new(format!("size={bytes},mode=0700")).expect("options").as_c_str(),
        )
        .expect("mount a tmpfs on the state directory");
        let mut daemon = Self::spawn_with_images(dir, pki, extra_args.iter().map(Into::into));
        daemon.mounted = Some(state);
        daemon
    }

    /// Spawns rrockerd in `dir` with the tests' shared images directory and `extra_args`.
    fn spawn_with_images(
        dir: tempfile::TempDir,
        pki: Pki,
        extra_args: impl IntoIterator<Item = std::ffi::OsString>,
    ) -> Self {
        let mut args = Self::with_images(&[]);
        args.extend(extra_args);
        Self::spawn(args, None, dir, Some(pki))
    }

    /// Revokes `certificates` in the client CA's revocation list (see
    /// [`Self::start_with_crl`]) and has the daemon reload it; returns the daemon's answer.
    pub fn revoke(&mut self, certificates: &[&Issued]) -> String {
        let pki = self.pki.as_ref().expect("a PKI made by the test");
        let crl = pki.client_revocation_list(certificates).expect("crl");
        std::fs::write(self.pki_dir().join("client-ca.crl"), crl).expect("write crl");
        self.reload()
    }

    /// Sends SIGHUP and returns the line the daemon answers with on stdout (once the reload
    /// is done).
    pub fn reload(&mut self) -> String {
        signal(self.child.id(), libc::SIGHUP);
        self.next_line()
    }

    /// The daemon's next line on stdout (after its ready line: e.g. where its metrics are).
    pub fn next_line(&mut self) -> String {
        let mut line = String::new();
        self.stdout.read_line(&mut line).expect("read the daemon's stdout");
        line.trim_end().to_owned()
    }

    /// Starts a daemon as an unprivileged user (`nobody`), with its own images directory and
    /// the dev PKI it generates itself. Needs root.
    pub fn start_unprivileged() -> Self {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::Builder::new().prefix("rrocker-test-").tempdir().expect("tempdir");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777))
            .expect("chmod");
        let args = vec!["--images-dir".into(), dir.path().join("images").into_os_string()];
        Self::spawn(args, Some(65534), dir, None)
    }

    fn spawn(
        args: Vec<std::ffi::OsString>,
        uid: Option<u32>,
        dir: tempfile::TempDir,
        pki: Option<Pki>,
    ) -> Self {
        Self::spawn_as(Launch { args, uid, ..Launch::default() }, dir, pki)
    }

    fn spawn_as(how: Launch, dir: tempfile::TempDir, pki: Option<Pki>) -> Self {
        let (child, stdout, addr) = Self::launch(&how, dir.path());
        Self { child, stdout, addr, pki, dir, how, mounted: None }
    }

    /// The tests' shared images and `extra_args`, as [`Launch`] arguments.
    fn with_images(extra_args: &[&str]) -> Vec<std::ffi::OsString> {
        let mut args = vec!["--images-dir".into(), images_dir().into_os_string()];
        args.extend(extra_args.iter().map(Into::into));
        args
    }

    /// Starts a daemon (dev PKI, shared images, `extra_args`) inside the cgroups whose
    /// `cgroup.procs` files are `joins`, with the default `--cgroup-parent` (auto).
    pub fn start_in_cgroups(joins: Vec<PathBuf>, extra_args: &[&str]) -> Self {
        let (dir, pki) = dev_pki_dir();
        let how = Launch { args: Self::with_images(extra_args), joins, ..Launch::default() };
        Self::spawn_as(how, dir, Some(pki))
    }

    /// Starts a daemon (dev PKI, shared images, `extra_args`) with the environment
    /// variables `env` (a fault for the tests to inject, say).
    pub fn start_with_env(env: &[(&str, &str)], extra_args: &[&str]) -> Self {
        let (dir, pki) = dev_pki_dir();
        let env = env.iter().map(|(key, value)| ((*key).to_owned(), (*value).to_owned()));
        let how =
            Launch { args: Self::with_images(extra_args), env: env.collect(), ..Launch::default() };
        Self::spawn_as(how, dir, Some(pki))
    }

    /// Runs rrockerd as `how` says plus this harness's own flags (port 0, PKI and state in
    /// `dir`, a parent cgroup of its own unless it joins cgroups first) and waits for its
    /// ready line.
    fn launch(how: &Launch, dir: &Path) -> (Child, BufReader<ChildStdout>, SocketAddr) {
        use std::os::unix::process::CommandExt;
        let Launch { args, uid, joins, env } = how;
        let mut command = if joins.is_empty() {
            let mut command = Command::new(bin_path("rrockerd"));
            command.arg("--cgroup-parent").arg(cgroup_parent_for(dir));
            command
        } else {
            // A shell writes its own pid ("0") into each cgroup, then becomes the daemon.
            let moves: Vec<String> =
                joins.iter().map(|procs| format!("echo 0 > '{}'", procs.display())).collect();
            let mut command = Command::new("/bin/sh");
            command.arg("-c").arg(format!("{} && exec \"$0\" \"$@\"", moves.join(" && ")));
            command.arg(bin_path("rrockerd"));
            command
        };
        if let Some(uid) = *uid {
            command.uid(uid).gid(uid);
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("daemon.log"))
            .expect("log file");
        let mut child = command
            .args(args)
            .args(["--listen", "127.0.0.1:0"])
            .arg("--pki-dir")
            .arg(dir.join("pki"))
            .arg("--state-dir")
            .arg(dir.join("state"))
            .env("RUST_LOG", "info")
            .envs(env.iter().map(|(key, value)| (key, value)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("spawn rrockerd");
        let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        let mut line = String::new();
        stdout.read_line(&mut line).expect("read the daemon's ready line");
        let addr = line
            .trim()
            .strip_prefix("rrockerd listening on ")
            .unwrap_or_else(|| {
                let log = std::fs::read_to_string(dir.join("daemon.log")).unwrap_or_default();
                panic!("rrockerd did not start: {line:?}\n{log}")
            })
            .parse()
            .expect("socket address");
        (child, stdout, addr)
    }

    /// Kills the daemon with SIGKILL (no clean-up of its own), then starts it again with the
    /// same flags, PKI, state directory and parent cgroup.
    pub fn kill_and_restart(&mut self) {
        signal(self.child.id(), libc::SIGKILL);
        self.child.wait().expect("wait for rrockerd");
        let (child, stdout, addr) = Self::launch(&self.how, self.dir.path());
        (self.child, self.stdout, self.addr) = (child, stdout, addr);
    }

    /// The daemon's parent cgroup (relative to each hierarchy's root).
    pub fn cgroup_parent(&self) -> String {
        cgroup_parent_for(self.dir.path())
    }

    /// The task cgroups below the daemon's parent, in every cgroup hierarchy of this host.
    pub fn task_cgroups(&self) -> Vec<PathBuf> {
        cgroup_roots()
            .into_iter()
            .filter_map(|root| std::fs::read_dir(root.join(self.cgroup_parent())).ok())
            .flatten()
            .filter_map(|entry| Some(entry.ok()?.path()).filter(|path| path.is_dir()))
            .collect()
    }

    /// The daemon's open fds, apart from the network namespaces its pool keeps ready, and
    /// the number of those (it varies with the pool's refill, by a few at most).
    pub fn open_fds(&self) -> (usize, usize) {
        let mut counts = (0, 0);
        for entry in std::fs::read_dir(format!("/proc/{}/fd", self.pid())).expect("fds") {
            let target = entry.and_then(|entry| std::fs::read_link(entry.path()));
            match target {
                Ok(target) if target.to_string_lossy().starts_with("net:[") => counts.1 += 1,
                // An fd closed while listing still counts: it was open when listed.
                _ => counts.0 += 1,
            }
        }
        counts
    }

    /// [`Self::open_fds`] once the network namespace pool is full again and its maker idle
    /// (the maker opens sysctl files and sockets while it makes one): the engine's and the
    /// maker's own namespaces, four ready and one in the maker's hand. Root daemons only.
    pub async fn open_fds_at_rest(&self) -> usize {
        eventually("the network namespace pool to fill up", || self.open_fds().1 == 7).await;
        self.open_fds().0
    }

    /// The daemon's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The daemon's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The PKI directory (dev PKI plus anything [`issue`](Self::issue)d).
    pub fn pki_dir(&self) -> PathBuf {
        self.dir.path().join("pki")
    }

    /// The state directory.
    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// What the daemon logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("daemon.log")).unwrap_or_default()
    }

    /// Issues a certificate from this daemon's PKI and writes it as `<name>.pem/.key`.
    pub fn issue(&self, name: &str, spec: &LeafSpec) -> Issued {
        let pki = self.pki.as_ref().expect("a PKI made by the test");
        let issued = pki.issue(spec).expect("issue certificate");
        issued.write(&self.pki_dir(), name).expect("write certificate");
        issued
    }

    /// The CLI's connection options for `identity`.
    pub fn options(&self, identity: &str) -> rrocker_cli::ConnectOptions {
        rrocker_cli::ConnectOptions {
            addr: self.addr.to_string(),
            pki_dir: self.pki_dir(),
            identity: identity.to_owned(),
            cert: None,
            key: None,
            ca: None,
        }
    }

    /// A gRPC client authenticated as `identity` (a file name in the PKI directory).
    pub async fn client(&self, identity: &str) -> Client {
        rrocker_cli::connect(&self.options(identity)).await.expect("connect to rrockerd")
    }

    /// A bare channel authenticated as `identity`, for any of the daemon's services.
    pub async fn channel(&self, identity: &str) -> tonic::transport::Channel {
        let config = rrocker_cli::client_config(&self.options(identity)).expect("client config");
        rrocker_cli::channel_with(&self.addr.to_string(), config).await.expect("connect")
    }

    /// A gRPC client with a custom TLS configuration.
    pub async fn client_with(
        &self,
        config: rustls::ClientConfig,
    ) -> Result<Client, rrocker_cli::CliError> {
        rrocker_cli::connect_with(&self.addr.to_string(), config).await
    }

    /// The daemon's server CA, as a client's trust roots.
    pub fn server_roots(&self) -> rustls::RootCertStore {
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        for ca in CertificateDer::pem_file_iter(self.pki_dir().join("server-ca.pem")).expect("ca") {
            roots.add(ca.expect("ca certificate")).expect("add ca");
        }
        roots
    }

    /// A TLS 1.3 client configuration that trusts this daemon's server CA and offers no
    /// client certificate.
    pub fn config_without_certificate(&self) -> rustls::ClientConfig {
        let roots = self.server_roots();
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .expect("TLS 1.3")
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"h2".to_vec()];
        config
    }

    /// The `rrocker-cli` binary set up to talk to this daemon as `identity`.
    pub fn cli(&self, identity: &str) -> Command {
        let mut command = Command::new(bin_path("rrocker-cli"));
        command
            .env_remove("RROCKER_ADDR")
            .args(["--addr", &self.addr.to_string(), "--identity", identity, "--pki-dir"])
            .arg(self.pki_dir());
        command
    }

    /// Waits for the daemon to exit of itself.
    pub fn wait(&mut self) -> ExitStatus {
        self.child.wait().expect("wait for rrockerd")
    }

    /// Sends SIGTERM and waits for the daemon to exit.
    pub fn terminate(&mut self) -> ExitStatus {
        signal(self.child.id(), libc::SIGTERM);
        self.child.wait().expect("wait for rrockerd")
    }

    /// Directory for test files.
    pub fn scratch(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            self.terminate();
        }
        if let Some(mounted) = self.mounted.take() {
            let _ = rustix::mount::unmount(&mounted, rustix::mount::UnmountFlags::DETACH);
        }
    }
}

/// The parent cgroup of the daemon whose files are in `dir`: one per daemon, so that test
/// daemons running side by side never take each other's cgroups for leftovers.
fn cgroup_parent_for(dir: &Path) -> String {
    // Test daemons' directories are named rrocker-test-XXXXXX.
    dir.file_name().expect("a tempdir has a name").to_string_lossy().into_owned()
}

/// The root of every cgroup hierarchy of this host (the unified one first, if mounted).
pub fn cgroup_roots() -> Vec<PathBuf> {
    let mounts = rrockerd::cgroup::mounts::CgroupMounts::read().expect("cgroup mounts");
    mounts.unified.into_iter().chain(mounts.v1.into_iter().map(|(_, path)| path)).collect()
}

/// Removes the cgroup `top` (one the test made) and everything below it, deepest first,
/// each once the kernel lets go of it.
pub fn remove_cgroup_tree(top: &Path) {
    let mut dirs = vec![top.to_owned()];
    let mut index = 0;
    while let Some(dir) = dirs.get(index).cloned() {
        let children = std::fs::read_dir(&dir).into_iter().flatten();
        dirs.extend(children.filter_map(|e| Some(e.ok()?.path()).filter(|p| p.is_dir())));
        index += 1;
    }
    for dir in dirs.iter().rev() {
        let _ = rrockerd::cgroup::files::remove(dir);
    }
}

/// Waits until `done` holds, asking every 10 ms, for at most a minute; for conditions that
/// the daemon gives no event for (its log file, its fds). Panics naming `what` it waited for.
pub async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !done() {
        assert!(std::time::Instant::now() < deadline, "waited a minute for {what}");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// A `/proc/PID/status` memory figure in KiB (`VmRSS`, `VmHWM`...), if the process and the
/// field exist.
pub fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let value = status.lines().find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))?;
    value.split_whitespace().next()?.parse().ok()
}

/// Sends `signal` to a process this test started.
pub fn signal(pid: u32, signal: i32) {
    let pid =
        i32::try_from(pid).ok().and_then(rustix::process::Pid::from_raw).expect("a valid pid");
    let signal = rustix::process::Signal::from_named_raw(signal).expect("a named signal");
    let _ = rustix::process::kill_process(pid, signal);
}

/// A start request for `argv`.
pub fn command(argv: &[&str]) -> StartRequest {
    StartRequest {
        argv: argv.iter().map(|a| a.as_bytes().to_vec()).collect(),
        ..Default::default()
    }
}

/// A start request for `sh -c script`.
pub fn shell(script: &str) -> StartRequest {
    command(&["/bin/sh", "-c", script])
}

/// Starts a task and returns its id.
pub async fn start(client: &mut Client, request: StartRequest) -> String {
    client.start(request).await.expect("start").into_inner().task_id
}

/// Stops task `id` at once (SIGTERM, then SIGKILL with no grace period).
pub async fn stop_now(client: &mut Client, id: &str) -> rrocker_proto::v1::StopResponse {
    let request = rrocker_proto::v1::StopRequest {
        task_id: id.to_owned(),
        grace_ms: Some(0),
        ..Default::default()
    };
    client.stop(request).await.expect("stop").into_inner()
}

/// Starts a task that runs until it is stopped, and returns its id once its command runs.
pub async fn start_running(client: &mut Client) -> String {
    let id = start(client, shell("echo up; exec sleep 600")).await;
    drop(wait_for_output(client, &id, "up").await);
    id
}

/// Everything a stream delivered: stdout bytes, stderr bytes, and the final status.
#[derive(Debug, Default)]
pub struct Streamed {
    /// The task's stdout.
    pub stdout: Vec<u8>,
    /// The task's stderr.
    pub stderr: Vec<u8>,
    /// The final status.
    pub status: Option<TaskStatus>,
}

/// Streams a task to its end.
pub async fn stream_all(client: &mut Client, id: &str) -> Streamed {
    stream_view(client, StreamRequest { task_id: id.to_owned(), ..Default::default() }).await
}

/// Streams what `request` asks for (a descriptor, a tail, no following) to its last message.
pub async fn stream_view(client: &mut Client, request: StreamRequest) -> Streamed {
    let mut events = client.stream(request).await.expect("stream").into_inner();
    let mut streamed = Streamed::default();
    while let Some(message) = events.message().await.expect("stream message") {
        match message.event.expect("event") {
            Event::Output(output) if output.fd() == rrocker_proto::v1::Fd::Stderr => {
                streamed.stderr.extend_from_slice(&output.data)
            }
            Event::Output(output) => streamed.stdout.extend_from_slice(&output.data),
            Event::Status(status) => {
                assert!(streamed.status.is_none(), "one final status");
                streamed.status = Some(status);
            }
        }
    }
    assert!(streamed.status.is_some(), "the stream ends with the final status");
    streamed
}

/// Streams a task until its stdout contains `marker` (the task says it is ready), then
/// returns the open stream so the caller can keep reading.
pub async fn wait_for_output(
    client: &mut Client,
    id: &str,
    marker: &str,
) -> tonic::Streaming<rrocker_proto::v1::StreamResponse> {
    let mut events = client
        .stream(StreamRequest { task_id: id.to_owned(), ..Default::default() })
        .await
        .expect("stream")
        .into_inner();
    let mut seen = Vec::new();
    while let Some(message) = events.message().await.expect("message") {
        if let Some(Event::Output(output)) = message.event {
            seen.extend_from_slice(&output.data);
            if String::from_utf8_lossy(&seen).contains(marker) {
                return events;
            }
        }
    }
    panic!("the task ended without printing {marker:?}: {}", String::from_utf8_lossy(&seen));
}

/// Reads what is left of a stream (a broken connection ends it too) and returns the final
/// status it ended with; panics if it ended without one.
pub async fn final_status_of(
    mut events: tonic::Streaming<rrocker_proto::v1::StreamResponse>,
) -> TaskStatus {
    let mut last = None;
    while let Ok(Some(message)) = events.message().await {
        last = message.event;
    }
    match last {
        Some(Event::Status(status)) => status,
        other => panic!("expected a final status, got {other:?}"),
    }
}

/// Hex sha256 of some bytes.
pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(data).iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Runs a shell script as a task and returns its stdout (asserting it completed with 0).
pub async fn run(client: &mut Client, script: &str) -> String {
    let id = start(client, shell(script)).await;
    let streamed = stream_all(client, &id).await;
    let status = streamed.status.expect("status");
    assert_eq!(
        status.exit_code,
        Some(0),
        "{script}: {}",
        String::from_utf8_lossy(&streamed.stderr)
    );
    String::from_utf8(streamed.stdout).expect("utf8")
}

/// A copy of the default image in `dir` (a stand-in for any exported root filesystem), and a
/// runtime to drive a daemon that uses it from a plain `#[test]`.
pub fn custom_image(dir: &Path) -> (PathBuf, tokio::runtime::Runtime) {
    let image = dir.join("custom");
    // A daemon with defaults makes sure the default image exists.
    drop(Daemon::start());
    let default = images_dir().join("default-v1");
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

/// Runs rrockerd (port 0, no cgroups, a PKI in `pki_dir`, state in `state_dir`, and `args`)
/// where it must stop at start-up; the last line it printed on stderr, once it has exited
/// unsuccessfully.
pub fn refused_start(pki_dir: &Path, state_dir: &Path, args: &[&std::ffi::OsStr]) -> String {
    let output = Command::new(bin_path("rrockerd"))
        .args(["--listen", "127.0.0.1:0", "--cgroup-version", "off", "--pki-dir"])
        .arg(pki_dir)
        .arg("--state-dir")
        .arg(state_dir)
        .args(args)
        .output()
        .expect("run rrockerd");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "rrockerd started: {stderr}");
    stderr.lines().last().unwrap_or_default().to_owned()
}
