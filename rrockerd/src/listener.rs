//! Accepting connections: TCP accept, then the TLS handshake in a task of its own (a slow or
//! hostile peer never holds up the accept loop), then the verified client certificate is
//! turned into an [`Access`] that travels with the connection. tonic hands it to every
//! request of the connection as a request extension ([`Peer`]), so no handler touches
//! certificates.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::Connected;

use crate::authz::{self, Access};
use crate::open_caps::{Held, OpenCap};

/// How long a peer may take to complete the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// What the server knows about the other end of a connection.
#[derive(Debug, Clone)]
pub struct Peer {
    /// The peer's address.
    pub addr: SocketAddr,
    /// What its verified certificate grants.
    pub access: Access,
    /// Why every request of the connection is refused though its certificate grants a role
    /// (its identity holds `--max-connections-per-user` others), if it is.
    pub over_cap: Option<String>,
}

/// A TLS connection with a verified client certificate.
#[derive(Debug)]
pub struct TlsConnection {
    stream: TlsStream<TcpStream>,
    peer: Peer,
    /// Counts the connection against its identity's cap while it is open.
    _held: Option<Held>,
}

impl Connected for TlsConnection {
    type ConnectInfo = Peer;

    fn connect_info(&self) -> Peer {
        self.peer.clone()
    }
}

/// Most bytes of TLS records a connection holds that its socket has not taken: what a
/// client that stops reading keeps of the daemon's memory there (rustls' own default is 64
/// KiB).
const SEND_BUFFER: usize = 32 << 10;

/// Accepts connections on `listener` and yields those that complete the TLS handshake with
/// the acceptor `acceptors` holds at the time (it changes when the TLS files are reloaded).
/// The accept loop ends when the returned stream is dropped.
pub fn accept_tls(
    listener: TcpListener,
    acceptors: watch::Receiver<TlsAcceptor>,
    per_identity: Arc<OpenCap>,
) -> ReceiverStream<io::Result<TlsConnection>> {
    let (connections, incoming) = mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                () = connections.closed() => return,
            };
            let (tcp, addr) = match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of fds or similar: back off briefly rather than spin.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            let acceptor = acceptors.borrow().clone();
            let connections = connections.clone();
            let per_identity = Arc::clone(&per_identity);
            tokio::spawn(async move {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(mut stream)) => {
                        stream.get_mut().1.set_buffer_limit(Some(SEND_BUFFER));
                        let access = match stream.get_ref().1.peer_certificates() {
                            Some([leaf, ..]) => authz::authorize(leaf),
                            _ => Access::Denied("no client certificate".into()),
                        };
                        let (held, over_cap) = match &access {
                            Access::Granted(caller) => match per_identity.take(&caller.identity) {
                                Ok(held) => (Some(held), None),
                                Err(cap) => (None, Some(over_cap(&caller.identity, cap))),
                            },
                            Access::Denied(_) => (None, None),
                        };
                        let peer = Peer { addr, access, over_cap };
                        let connection = TlsConnection { stream, peer, _held: held };
                        let _ = connections.send(Ok(connection)).await;
                    }
                    Ok(Err(error)) => tracing::info!(%addr, %error, "TLS handshake refused"),
                    Err(_) => tracing::info!(%addr, "TLS handshake timed out"),
                }
            });
        }
    });
    ReceiverStream::new(incoming)
}

/// Why a connection of `identity` over its cap is refused.
fn over_cap(identity: &str, cap: usize) -> String {
    tracing::info!(identity, cap, "a connection over its identity's cap: its requests are refused");
    format!(
        "identity '{identity}' has {cap} connections open to rrockerd, its limit (--max-connections-per-user); close one first"
    )
}

impl AsyncRead for TlsConnection {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsConnection {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}
