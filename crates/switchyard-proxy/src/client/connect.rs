//! Opening an upstream connection: dial with a timeout, TCP_NODELAY, HTTP/1
//! handshake, and the task that drives the connection.

use http::uri::{Authority, Scheme};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::CONNECT_TIMEOUT;
use crate::body::{BoxError, RequestBody};

/// A new connection to `scheme://authority`, driven by a task of its own; every
/// error here means the backend was never reached.
pub(super) async fn connect(scheme: &Scheme, authority: &Authority) -> Result<SendRequest<RequestBody>, BoxError> {
    if *scheme != Scheme::HTTP {
        return Err(format!("unsupported upstream scheme {scheme}").into());
    }
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, dial(authority))
        .await
        .map_err(|_| format!("connect to {authority} timed out after {CONNECT_TIMEOUT:?}"))??;
    // Requests and responses are small and latency-bound: do not wait to coalesce.
    stream.set_nodelay(true)?;
    let (sender, connection) = http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "upstream connection ended with an error");
        }
    });
    Ok(sender)
}

/// Connects to the first address of `authority` that accepts (IP literals are not
/// looked up; names go through the system resolver).
async fn dial(authority: &Authority) -> std::io::Result<TcpStream> {
    let host = authority.host().trim_start_matches('[').trim_end_matches(']');
    TcpStream::connect((host, authority.port_u16().unwrap_or(80))).await
}
