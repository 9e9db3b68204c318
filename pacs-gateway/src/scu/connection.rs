//! The connection an association radhub requests runs on: TCP, or TLS over
//! TCP when the peer is configured for it (one type for both, so that every
//! SCU operation runs over either).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use super::{Peer, ScuError};

pub(crate) enum Connection {
    Tcp(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

/// A TCP connection to `peer`, wrapped in TLS when the peer has it: the
/// handshake checks the peer's certificate against its CA and offers
/// radhub's own when one is configured.
pub(crate) async fn connect(peer: &Peer) -> Result<Connection, ScuError> {
    let failed = |reason: String| ScuError::Connect { peer: peer.to_string(), reason };
    let tcp = TcpStream::connect((peer.host.trim_start_matches('[').trim_end_matches(']'), peer.port)).await.map_err(|e| failed(e.to_string()))?;
    // Small command PDUs would otherwise wait on delayed ACKs.
    let _ = tcp.set_nodelay(true);
    let Some(tls) = &peer.tls else { return Ok(Connection::Tcp(tcp)) };
    let name = rustls::pki_types::ServerName::try_from(tls.server_name.clone()).map_err(|e| failed(format!("TLS server name {:?}: {e}", tls.server_name)))?;
    let stream = tokio_rustls::TlsConnector::from(tls.config.clone())
        .connect(name, tcp)
        .await
        .map_err(|e| failed(format!("TLS handshake: {}", super::error::chain(&e))))?;
    Ok(Connection::Tls(Box::new(stream)))
}

impl crate::association::Stream for Connection {
    fn tcp(&self) -> &TcpStream {
        match self {
            Connection::Tcp(s) => s,
            Connection::Tls(s) => s.get_ref().0,
        }
    }
}

impl AsyncRead for Connection {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Connection::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Connection::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Connection {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Connection::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Connection::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[io::IoSlice<'_>]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Connection::Tcp(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Connection::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Connection::Tcp(s) => s.is_write_vectored(),
            Connection::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Connection::Tcp(s) => Pin::new(s).poll_flush(cx),
            Connection::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Connection::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Connection::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}
