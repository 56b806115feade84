//! Opening an upstream connection: resolve, check the egress policy on every resolved
//! address, dial with a timeout, TCP_NODELAY, the TLS handshake for `https`, the HTTP/1
//! handshake, and the task that drives the connection.

use std::net::SocketAddr;

use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use super::{CONNECT_TIMEOUT, ClientError, Upstream};
use crate::body::RequestBody;
use crate::egress::{DialPolicy, Granted};

/// How much earlier than the attempt's deadline a dial gives up.
const CONNECT_MARGIN: std::time::Duration = std::time::Duration::from_millis(10);

/// A new connection to `upstream` (at `pinned` when the address is already chosen),
/// driven by a task of its own; every error here means the backend was never reached.
pub(super) async fn connect(
    upstream: &Upstream,
    pinned: Option<SocketAddr>,
    policy: &DialPolicy,
    grant: Option<&Granted>,
    deadline: tokio::time::Instant,
) -> Result<SendRequest<RequestBody>, ClientError> {
    // Strictly before the attempt's deadline (timers have millisecond resolution), so a
    // dial still pending when the attempt's budget ends is always reported as a connect
    // failure (retryable), never as the attempt's timeout.
    let connect_by = deadline.checked_sub(CONNECT_MARGIN).unwrap_or(deadline).min(tokio::time::Instant::now() + CONNECT_TIMEOUT);
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
    let Some(tls) = &upstream.tls else { return http1_over(stream).await };
    let stream = tokio::time::timeout_at(connect_by, tls.connect(stream))
        .await
        .map_err(|_| ClientError::Tls("TLS handshake timed out".into(), format!("TLS handshake with {authority} timed out").into()))?
        .map_err(|e| ClientError::Tls(super::tls_failure(&e), e.into()))?;
    http1_over(stream).await
}

/// The HTTP/1 handshake on an open stream, and the task that drives the connection.
async fn http1_over<T>(stream: T) -> Result<SendRequest<RequestBody>, ClientError>
where
    T: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (sender, connection) =
        http1::handshake(TokioIo::new(stream)).await.map_err(|e| ClientError::Connect("connection failed".into(), e.into()))?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "upstream connection ended with an error");
        }
    });
    Ok(sender)
}
