//! Authentication at the TLS layer: only a client certificate signed by the client CA, valid
//! now, over TLS 1.3, gets a session; and a valid certificate with an unknown organisation
//! gets PERMISSION_DENIED on every call.

use std::sync::Arc;

use rrocker_certs::{LeafSpec, Signer};
use rrocker_proto::v1::ListRequest;
use rrocker_tests::{Daemon, command};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tonic::Code;

/// A call over a connection the daemon must refuse: either connecting fails, or the first
/// RPC fails at the transport (TLS 1.3 lets the client finish its handshake before the
/// server rejects its certificate). Never an application answer.
async fn assert_refused(daemon: &Daemon, config: rustls::ClientConfig) {
    match daemon.client_with(config).await {
        Err(rrocker_cli::CliError::Connection { .. }) => {}
        Err(other) => panic!("unexpected error kind: {other}"),
        Ok(mut client) => {
            let status = client.list(ListRequest {}).await.expect_err("the call must be refused");
            assert!(
                matches!(status.code(), Code::Unavailable | Code::Unknown | Code::Cancelled),
                "a transport failure, not an answer: {status:?}"
            );
        }
    }
}

fn config_for(daemon: &Daemon, name: &str) -> rustls::ClientConfig {
    rrocker_cli::client_config(&daemon.options(name)).expect("client config")
}

fn builder(
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> rustls::ConfigBuilder<rustls::ClientConfig, rustls::WantsVerifier> {
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_protocol_versions(versions)
        .expect("versions")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dev_client_certificate_is_accepted() {
    let daemon = Daemon::start();
    let mut client = daemon.client("client1").await;
    client.list(ListRequest {}).await.expect("list works");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_client_certificate_is_refused() {
    let daemon = Daemon::start();
    assert_refused(&daemon, daemon.config_without_certificate()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_self_signed_rogue_certificate_is_refused() {
    let daemon = Daemon::start();
    assert_refused(&daemon, config_for(&daemon, "rogue")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_certificate_signed_by_the_server_ca_is_refused() {
    let daemon = Daemon::start();
    daemon.issue("wrong-ca", &LeafSpec::client("admin", "intruder").signed_by(Signer::ServerCa));
    assert_refused(&daemon, config_for(&daemon, "wrong-ca")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_certificate_is_refused() {
    let daemon = Daemon::start();
    daemon.issue("expired", &LeafSpec::client("client", "client1").expired());
    assert_refused(&daemon, config_for(&daemon, "expired")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls12_only_client_is_refused() {
    let daemon = Daemon::start();
    let chain: Vec<_> = CertificateDer::pem_file_iter(daemon.pki_dir().join("client1.pem"))
        .expect("chain")
        .map(|cert| cert.expect("cert"))
        .collect();
    let key = PrivateKeyDer::from_pem_file(daemon.pki_dir().join("client1.key")).expect("key");
    let mut config = builder(&[&rustls::version::TLS12])
        .with_root_certificates(daemon.server_roots())
        .with_client_auth_cert(chain, key)
        .expect("client auth");
    config.alpn_protocols = vec![b"h2".to_vec()];
    assert_refused(&daemon, config).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_outside_the_server_ca_is_not_trusted_by_the_client() {
    let daemon = Daemon::start();
    let other = rrocker_certs::Pki::generate().expect("other pki");
    let other_dir = daemon.scratch().join("other");
    other.write_authorities(&other_dir).expect("write other pki");
    let mut options = daemon.options("client1");
    options.ca = Some(other_dir.join("server-ca.pem"));
    let config = rrocker_cli::client_config(&options).expect("config");
    match daemon.client_with(config).await {
        Err(rrocker_cli::CliError::Connection { reason, .. }) => {
            assert!(reason.contains("not trusted"), "{reason}")
        }
        other => panic!("expected a connection error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_organization_is_denied_on_every_call() {
    let daemon = Daemon::start();
    daemon.issue("guest", &LeafSpec::client("guests", "guest1"));
    let mut client = daemon.client("guest").await;
    let id = "0e6b1e8c-ab62-4d5e-8afe-3d8d0c36fb14".to_owned();
    let codes = [
        client.list(ListRequest {}).await.map(drop),
        client.start(command(&["/bin/true"])).await.map(drop),
        client.query(rrocker_proto::v1::QueryRequest { task_id: id.clone() }).await.map(drop),
        client
            .stop(rrocker_proto::v1::StopRequest {
                task_id: id.clone(),
                grace_ms: None,
                ..Default::default()
            })
            .await
            .map(drop),
        client
            .stream(rrocker_proto::v1::StreamRequest { task_id: id.clone(), ..Default::default() })
            .await
            .map(drop),
        client.remove(rrocker_proto::v1::RemoveRequest { task_id: id }).await.map(drop),
    ];
    for result in codes {
        let status = result.expect_err("denied");
        assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
        assert!(status.message().contains("guests"), "{}", status.message());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_explains_a_refused_certificate_in_one_line() {
    let daemon = Daemon::start();
    let output = daemon.cli("rogue").arg("list").output().expect("run cli");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with(&format!("Cannot talk to rrockerd at {}", daemon.addr())),
        "{stderr}"
    );
    let output = daemon.cli("nobody").arg("list").output().expect("run cli");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.starts_with("Cannot read the client certificate at "), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_client_is_refused_once_the_crl_is_reloaded() {
    let mut daemon = Daemon::start_with_crl();
    let doomed = daemon.issue("doomed", &LeafSpec::client("client", "doomed"));
    let mut connected = daemon.client("doomed").await;
    connected.list(ListRequest {}).await.expect("not revoked yet");
    assert_eq!(daemon.revoke(&[&doomed]), "rrockerd reloaded its TLS configuration");
    assert_refused(&daemon, config_for(&daemon, "doomed")).await;
    // Others are unaffected, and so is a connection made before the revocation.
    daemon.client("client1").await.list(ListRequest {}).await.expect("client1");
    connected.list(ListRequest {}).await.expect("an established connection stays");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crl_that_does_not_parse_keeps_the_configuration_in_use() {
    let mut daemon = Daemon::start_with_crl();
    let doomed = daemon.issue("doomed", &LeafSpec::client("client", "doomed"));
    daemon.revoke(&[&doomed]);
    std::fs::write(daemon.pki_dir().join("client-ca.crl"), "not a CRL").expect("garble");
    let answer = daemon.reload();
    assert!(answer.starts_with("rrockerd kept its TLS configuration: "), "{answer}");
    assert!(answer.contains("client-ca.crl"), "it names the file: {answer}");
    assert_refused(&daemon, config_for(&daemon, "doomed")).await;
    daemon.client("client1").await.list(ListRequest {}).await.expect("client1");
}

#[test]
fn a_missing_crl_stops_the_daemon_from_starting() {
    let dir = tempfile::tempdir().expect("tempdir");
    let crl = dir.path().join("missing.crl");
    let (pki, state) = (dir.path().join("pki"), dir.path().join("state"));
    let flag = std::ffi::OsStr::new("--crl");
    let last = rrocker_tests::refused_start(&pki, &state, &[flag, crl.as_os_str()]);
    assert!(last.contains("missing.crl"), "the error names the file: {last}");
    assert!(!dir.path().join("state").exists(), "nothing was created");
}

/// Runs `openssl s_client` against the daemon as client1 with `args`; whether the
/// handshake succeeded, and what it printed.
fn s_client(daemon: &Daemon, args: &[&str]) -> (bool, String) {
    let pki = daemon.pki_dir();
    let output = std::process::Command::new("openssl")
        .args(["s_client", "-connect", &daemon.addr().to_string(), "-servername", "localhost"])
        .args(["-partial_chain", "-verify_return_error", "-CAfile"])
        .arg(pki.join("server-ca.pem"))
        .arg("-cert")
        .arg(pki.join("client1.pem"))
        .arg("-key")
        .arg(pki.join("client1.key"))
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("openssl s_client (.ci/run installs openssl)");
    let text = String::from_utf8_lossy(&output.stdout) + String::from_utf8_lossy(&output.stderr);
    (output.status.success(), text.into_owned())
}

#[test]
fn openssl_finds_tls13_with_an_aead_suite_and_x25519_and_nothing_weaker() {
    let daemon = Daemon::start_with(&["--cgroup-version", "off"]);
    let (connected, text) = s_client(&daemon, &[]);
    assert!(connected, "{text}");
    // openssl lists AES-256-GCM first; the server picks AES-128-GCM, the cheaper to stream.
    assert!(text.contains("New, TLSv1.3, Cipher is TLS_AES_128_GCM_SHA256"), "{text}");
    assert!(text.contains("Server Temp Key: X25519"), "{text}");
    for suite in ["TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256"] {
        let (connected, text) = s_client(&daemon, &["-tls1_3", "-ciphersuites", suite]);
        assert!(connected && text.contains(&format!("Cipher is {suite}")), "{suite}: {text}");
    }
    let refused = [
        (&["-tls1_2"][..], "alert protocol version"),
        (&["-tls1_2", "-cipher", "AES128-SHA:RC4-SHA:DES-CBC3-SHA"][..], "alert protocol version"),
        (&["-tls1_3", "-ciphersuites", "TLS_AES_128_CCM_SHA256"][..], "alert handshake failure"),
        (&["-tls1_3", "-groups", "ffdhe2048"][..], "alert handshake failure"),
    ];
    for (args, alert) in refused {
        let (connected, text) = s_client(&daemon, args);
        assert!(!connected && text.contains(alert), "{args:?}: {text}");
    }
}

/// A client session store that counts the TLS 1.3 tickets it is given.
#[derive(Debug)]
struct TicketCounter {
    inner: rustls::client::ClientSessionMemoryCache,
    tickets: std::sync::atomic::AtomicUsize,
}

impl rustls::client::ClientSessionStore for TicketCounter {
    fn set_kx_hint(
        &self,
        server: rustls::pki_types::ServerName<'static>,
        group: rustls::NamedGroup,
    ) {
        self.inner.set_kx_hint(server, group);
    }

    fn kx_hint(&self, server: &rustls::pki_types::ServerName<'_>) -> Option<rustls::NamedGroup> {
        self.inner.kx_hint(server)
    }

    fn set_tls12_session(
        &self,
        server: rustls::pki_types::ServerName<'static>,
        value: rustls::client::Tls12ClientSessionValue,
    ) {
        self.inner.set_tls12_session(server, value);
    }

    fn tls12_session(
        &self,
        server: &rustls::pki_types::ServerName<'_>,
    ) -> Option<rustls::client::Tls12ClientSessionValue> {
        self.inner.tls12_session(server)
    }

    fn remove_tls12_session(&self, server: &rustls::pki_types::ServerName<'static>) {
        self.inner.remove_tls12_session(server);
    }

    fn insert_tls13_ticket(
        &self,
        server: rustls::pki_types::ServerName<'static>,
        value: rustls::client::Tls13ClientSessionValue,
    ) {
        self.tickets.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.inner.insert_tls13_ticket(server, value);
    }

    fn take_tls13_ticket(
        &self,
        server: &rustls::pki_types::ServerName<'static>,
    ) -> Option<rustls::client::Tls13ClientSessionValue> {
        self.inner.take_tls13_ticket(server)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_session_ticket_is_issued_so_no_session_outlives_a_revocation() {
    let daemon = Daemon::start();
    let counter = Arc::new(TicketCounter {
        inner: rustls::client::ClientSessionMemoryCache::new(8),
        tickets: std::sync::atomic::AtomicUsize::new(0),
    });
    let mut config = config_for(&daemon, "client1");
    config.resumption = rustls::client::Resumption::store(counter.clone());
    let mut client = daemon.client_with(config).await.expect("connect");
    // Tickets come right after the handshake, before any answer: two answers read them.
    client.list(ListRequest {}).await.expect("list");
    client.list(ListRequest {}).await.expect("list again");
    assert_eq!(counter.tickets.load(std::sync::atomic::Ordering::SeqCst), 0);
}
