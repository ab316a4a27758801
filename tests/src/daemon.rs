//! The daemon under test: [`Daemon`] starts the real `rrockerd` binary with a fresh PKI and
//! state directory on a free port of 127.0.0.1, hands out gRPC clients and CLI commands for
//! any identity, and stops the daemon (SIGTERM, by pid) when dropped; [`refused_start`]
//! runs one that must not start. (Over 400 lines: the one type every end-to-end test starts
//! from, with its ways of starting, of being spoken to, and of ending, kept together.)

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};

use rrocker_certs::{Issued, LeafSpec, Pki};

use crate::{Client, bin_path, cgroup_roots, eventually, images_dir, open_stream, signal};

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

    /// The spill files the daemon holds open (unlinked files in `<state-dir>/spill`).
    pub fn spill_files(&self) -> usize {
        let spill = self.state_dir().join("spill");
        let entries = std::fs::read_dir(format!("/proc/{}/fd", self.pid())).expect("fds");
        entries
            .filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok())
            .filter(|target| target.starts_with(&spill))
            .count()
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

    /// `connections` connections of `identity`, each with `per_connection` streams of task
    /// `id` that are opened and never read: the daemon holds them until they are dropped.
    pub async fn stalled_streams(
        &self,
        identity: &str,
        id: &str,
        connections: usize,
        per_connection: usize,
    ) -> (Vec<Client>, Vec<tonic::Streaming<rrocker_proto::v1::StreamResponse>>) {
        let mut clients = Vec::new();
        for _ in 0..connections {
            clients.push(self.client(identity).await);
        }
        let mut streams = Vec::new();
        for client in &mut clients {
            for _ in 0..per_connection {
                streams.push(open_stream(client, id).await);
            }
        }
        (clients, streams)
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

    /// `rrocker-cli ARGS` as `identity`, as one shell line (for a terminal to run).
    pub fn cli_line(&self, identity: &str, args: &[&str]) -> String {
        let mut command = self.cli(identity);
        command.args(args);
        let quoted = |text: &std::ffi::OsStr| format!("'{}'", text.to_string_lossy());
        let mut words = vec![quoted(command.get_program())];
        words.extend(command.get_args().map(quoted));
        words.join(" ")
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

/// Runs rrockerd (its own listener, images from the harness) with the PKI `pki_dir`, state in
/// `state_dir` and the parent cgroup `cgroup_parent`, where it must stop at start-up; the
/// last line it printed on stderr. Should it start instead, it is stopped (SIGTERM) and the
/// test fails, rather than waiting on a daemon that serves.
pub fn refused_daemon(pki_dir: &Path, state_dir: &Path, cgroup_parent: &str) -> String {
    let mut daemon = Command::new(bin_path("rrockerd"))
        .args(["--listen", "127.0.0.1:0", "--cgroup-parent", cgroup_parent, "--images-dir"])
        .arg(images_dir())
        .arg("--pki-dir")
        .arg(pki_dir)
        .arg("--state-dir")
        .arg(state_dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run rrockerd");
    // Its ready line, or nothing (end of file) once it has stopped.
    let mut ready = String::new();
    let stdout = daemon.stdout.take().expect("piped stdout");
    BufReader::new(stdout).read_line(&mut ready).expect("read rrockerd's stdout");
    if !ready.is_empty() {
        signal(daemon.id(), libc::SIGTERM);
    }
    let output = daemon.wait_with_output().expect("wait for rrockerd");
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(ready.is_empty() && !output.status.success(), "rrockerd started: {ready}{said}");
    said.lines().last().unwrap_or_default().to_owned()
}
