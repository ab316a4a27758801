//! Accepting connections: TCP accept, then the TLS handshake in a task of its own (a slow or
//! hostile peer never holds up the accept loop), then the verified client certificate is
//! turned into an [`Access`] that travels with the connection. tonic hands it to every
//! request of the connection as a request extension ([`Peer`]), so no handler touches
//! certificates.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
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

/// How long a peer may take to complete the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// What the server knows about the other end of a connection.
#[derive(Debug, Clone)]
pub struct Peer {
    /// The peer's address.
    pub addr: SocketAddr,
    /// What its verified certificate grants.
    pub access: Access,
}

/// A TLS connection with a verified client certificate.
#[derive(Debug)]
pub struct TlsConnection {
    stream: TlsStream<TcpStream>,
    peer: Peer,
}

impl Connected for TlsConnection {
    type ConnectInfo = Peer;

    fn connect_info(&self) -> Peer {
        self.peer.clone()
    }
}

/// Accepts connections on `listener` and yields those that complete the TLS handshake with
/// the acceptor `acceptors` holds at the time (it changes when the TLS files are reloaded).
/// The accept loop ends when the returned stream is dropped.
pub fn accept_tls(
    listener: TcpListener,
    acceptors: watch::Receiver<TlsAcceptor>,
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
            tokio::spawn(async move {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(stream)) => {
                        let access = match stream.get_ref().1.peer_certificates() {
                            Some([leaf, ..]) => authz::authorize(leaf),
                            _ => Access::Denied("no client certificate".into()),
                        };
                        let peer = Peer { addr, access };
                        let _ = connections.send(Ok(TlsConnection { stream, peer })).await;
                    }
                    Ok(Err(error)) => tracing::info!(%addr, %error, "TLS handshake refused"),
                    Err(_) => tracing::info!(%addr, "TLS handshake timed out"),
                }
            });
        }
    });
    ReceiverStream::new(incoming)
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
