//! Opening an upstream connection: resolve, check the egress policy on every resolved
//! address, dial with a timeout, TCP_NODELAY, the TLS handshake for `https`; for HTTP/2
//! (and a WebSocket handshake, which hyper's HTTP/1 client makes) the handshake and the
//! task that drives the connection.

use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use switchyard_http::tls::TlsStream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use super::{CONNECT_TIMEOUT, ClientError, Upstream};
use crate::egress::{DialPolicy, Granted};
use crate::request_body::RequestBody;

/// How much earlier than the attempt's deadline a dial gives up.
const CONNECT_MARGIN: std::time::Duration = std::time::Duration::from_millis(10);

/// An HTTP/2 connection that carried nothing for this long is pinged; one whose ping is
/// not answered within [`H2_PING_TIMEOUT`] is closed (a blackholed peer), so the pool
/// dials afresh instead of queueing streams on a dead connection.
const H2_PING_INTERVAL: Duration = Duration::from_secs(30);
const H2_PING_TIMEOUT: Duration = Duration::from_secs(10);

/// An open upstream connection: TCP, or TLS over TCP (boxed: rustls's state is large).
pub enum Stream {
    Tcp(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

/// A new connection to `upstream` for HTTP/1 (at `pinned` when the address is already
/// chosen); every error here means the backend was never reached.
pub(super) async fn connect(
    upstream: &Upstream,
    pinned: Option<SocketAddr>,
    policy: &DialPolicy,
    grant: Option<&Granted>,
    deadline: tokio::time::Instant,
) -> Result<Stream, ClientError> {
    let stream = dial(upstream, pinned, policy, grant, deadline).await?;
    let Some(tls) = &upstream.tls else { return Ok(Stream::Tcp(stream)) };
    Ok(Stream::Tls(Box::new(handshake(tls, stream, &upstream.authority, deadline).await?)))
}

/// A new HTTP/2 connection: prior knowledge over plain TCP (`H2C`), or TLS whose ALPN
/// must settle on `h2` (`H2`). One such connection carries many requests at once.
pub(super) async fn connect_h2(
    upstream: &Upstream,
    pinned: Option<SocketAddr>,
    policy: &DialPolicy,
    grant: Option<&Granted>,
    deadline: tokio::time::Instant,
) -> Result<http2::SendRequest<RequestBody>, ClientError> {
    let stream = dial(upstream, pinned, policy, grant, deadline).await?;
    let Some(tls) = &upstream.tls else { return http2_over(stream).await };
    let stream = handshake(tls, stream, &upstream.authority, deadline).await?;
    // Only `h2` is offered; a server without ALPN still completes the handshake, and must
    // not then be spoken HTTP/2 to unasked.
    if stream.get_ref().1.alpn_protocol() != Some(b"h2") {
        let why = format!("{} did not select ALPN h2", upstream.authority);
        return Err(ClientError::Tls("the backend does not offer HTTP/2 (ALPN h2)".into(), why.into()));
    }
    http2_over(stream).await
}

/// The TLS handshake, within the dial's time.
async fn handshake(
    tls: &switchyard_http::tls::UpstreamTls,
    stream: TcpStream,
    authority: &http::uri::Authority,
    deadline: tokio::time::Instant,
) -> Result<switchyard_http::tls::TlsStream<TcpStream>, ClientError> {
    tokio::time::timeout_at(connect_by(deadline), tls.connect(stream))
        .await
        .map_err(|_| ClientError::Tls("TLS handshake timed out".into(), format!("TLS handshake with {authority} timed out").into()))?
        .map_err(|e| ClientError::Tls(super::tls_failure(&e), e.into()))
}

/// When a dial gives up: strictly before the attempt's deadline (timers have millisecond
/// resolution), so a dial still pending when the attempt's budget ends is always reported
/// as a connect failure (retryable), never as the attempt's timeout.
fn connect_by(deadline: tokio::time::Instant) -> tokio::time::Instant {
    deadline.checked_sub(CONNECT_MARGIN).unwrap_or(deadline).min(tokio::time::Instant::now() + CONNECT_TIMEOUT)
}

/// Resolves, checks the egress policy on every address and opens the TCP connection.
async fn dial(
    upstream: &Upstream,
    pinned: Option<SocketAddr>,
    policy: &DialPolicy,
    grant: Option<&Granted>,
    deadline: tokio::time::Instant,
) -> Result<TcpStream, ClientError> {
    let connect_by = connect_by(deadline);
    let failed = |kind: &'static str, e: Box<dyn std::error::Error + Send + Sync>| ClientError::Connect(kind.into(), e);
    let authority = &upstream.authority;
    let candidates = tokio::time::timeout_at(connect_by, crate::resolver::addresses(authority, pinned))
        .await
        .map_err(|_| failed("timed out", format!("resolving {authority} timed out").into()))?
        .map_err(|e| failed("the name does not resolve", e.into()))?;
    // The check is on resolved addresses: a name that resolves somewhere forbidden is
    // refused whatever it was called.
    let mut allowed = Vec::with_capacity(candidates.len());
    let mut first_denial = None;
    for addr in candidates {
        match policy.check(addr, grant.map(Granted::grant)) {
            Ok(()) => allowed.push(addr),
            Err(denied) => first_denial = first_denial.or(Some(denied)),
        }
    }
    if allowed.is_empty() {
        return Err(match first_denial {
            Some(denied) => ClientError::Denied(denied),
            None => failed("the name resolved to no address", format!("{authority} resolved to no address").into()),
        });
    }
    let stream = tokio::time::timeout_at(connect_by, TcpStream::connect(&allowed[..]))
        .await
        .map_err(|_| failed("timed out", format!("connect to {authority} timed out").into()))?
        .map_err(|e| failed(super::io_failure(&e), e.into()))?;
    // Requests and responses are small and latency-bound: do not wait to coalesce.
    stream.set_nodelay(true).map_err(|e| failed(super::io_failure(&e), e.into()))?;
    Ok(stream)
}

/// hyper's HTTP/1 handshake on an open stream, and the task that drives the connection
/// (with upgrades, so a WebSocket's `101` hands the connection over to the tunnel).
pub(super) async fn http1_over(stream: Stream) -> Result<http1::SendRequest<RequestBody>, ClientError> {
    let (sender, connection) =
        http1::handshake(TokioIo::new(stream)).await.map_err(|e| ClientError::Connect("connection failed".into(), e.into()))?;
    tokio::spawn(async move {
        if let Err(e) = connection.with_upgrades().await {
            tracing::debug!(error = %e, "upstream connection ended with an error");
        }
    });
    Ok(sender)
}

/// The HTTP/2 handshake (the preface and SETTINGS exchange) and the connection's task.
async fn http2_over<T>(stream: T) -> Result<http2::SendRequest<RequestBody>, ClientError>
where
    T: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (sender, connection) = http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .keep_alive_interval(H2_PING_INTERVAL)
        .keep_alive_timeout(H2_PING_TIMEOUT)
        .handshake(TokioIo::new(stream))
        .await
        .map_err(|e| ClientError::Connect("HTTP/2 handshake failed".into(), e.into()))?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "upstream HTTP/2 connection ended with an error");
        }
    });
    Ok(sender)
}

impl AsyncRead for Stream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Self::Tls(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Self::Tls(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[IoSlice<'_>]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Tcp(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Self::Tls(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Self::Tcp(s) => s.is_write_vectored(),
            Self::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(s) => Pin::new(s).poll_flush(cx),
            Self::Tls(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Self::Tls(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}
