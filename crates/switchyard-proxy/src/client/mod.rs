//! The upstream HTTP/1 client. One per worker thread, living across snapshots, so
//! pooled keep-alive connections survive configuration changes.
//!
//! Built on hyper's connection-level API rather than hyper-util's legacy client: the
//! worker is single-threaded and its upstreams are known, so a per-key stack of idle
//! senders replaces the general pool, and a connection goes back to it when the
//! response body is done, without a task spawned per request.

mod connect;
mod pool;

use std::sync::Arc;
use std::time::Duration;

use http::uri::{Authority, Scheme};
use http::{Request, Response};
use hyper::body::Incoming;

use crate::body::{BoxError, RequestBody};
use crate::egress::{DialPolicy, Granted};
use switchyard_http::tls::UpstreamTls;

pub use self::pool::Lease;
use self::pool::{Key, Pool};

/// Dial timeout: a backend that does not accept within this is a connect failure.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Idle keep-alive connections are closed after this long unused.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// Idle connections kept per upstream; more are closed when they come back.
const MAX_IDLE_PER_UPSTREAM: usize = 1024;

/// Why a request got no response. The split decides retries and the error code: a
/// connect failure never reached the backend, so it is always safe to try another.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("connect error")]
    Connect(#[source] BoxError),
    #[error(transparent)]
    Denied(crate::egress::Denied),
    /// The TLS handshake failed (untrusted certificate, name mismatch, protocol).
    #[error("TLS handshake failed")]
    Tls(#[source] BoxError),
    #[error("request error")]
    Request(#[source] hyper::Error),
}

impl ClientError {
    /// The request never reached the backend's application (TCP or TLS failed).
    pub fn is_connect(&self) -> bool {
        matches!(self, Self::Connect(_) | Self::Tls(_))
    }

    pub fn is_tls(&self) -> bool {
        matches!(self, Self::Tls(_))
    }

    pub fn denied(&self) -> Option<&crate::egress::Denied> {
        match self {
            Self::Denied(d) => Some(d),
            _ => None,
        }
    }
}

/// Where requests go: scheme and authority, and for `https` how TLS is done.
#[derive(Clone, Debug)]
pub struct Upstream {
    pub scheme: Scheme,
    pub authority: Authority,
    /// Shared so the pool key clones a pointer, not the server name.
    pub tls: Option<Arc<UpstreamTls>>,
    /// The authority as a socket address when its host is an IP literal (parsed once
    /// here, not per request).
    pub literal: Option<std::net::SocketAddr>,
}

impl Upstream {
    pub fn new(scheme: Scheme, authority: Authority, tls: Option<Arc<UpstreamTls>>) -> Self {
        let host = authority.host().trim_start_matches('[').trim_end_matches(']');
        let default_port = if scheme == Scheme::HTTPS { 443 } else { 80 };
        let literal =
            host.parse::<std::net::IpAddr>().ok().map(|ip| std::net::SocketAddr::new(ip, authority.port_u16().unwrap_or(default_port)));
        Self { scheme, authority, tls, literal }
    }
}

/// A worker's upstream client: its pool of keep-alive connections.
pub struct UpstreamClient {
    pool: Arc<Pool>,
}

pub fn upstream_client() -> UpstreamClient {
    UpstreamClient { pool: Arc::new(Pool::new(IDLE_TIMEOUT, MAX_IDLE_PER_UPSTREAM)) }
}

impl UpstreamClient {
    /// Sends `request` (origin-form URI, Host set) to `upstream`. The returned lease
    /// must live as long as the response body: dropping it hands the connection back to
    /// the pool.
    pub async fn request(
        &self,
        upstream: &Upstream,
        mut request: Request<RequestBody>,
        policy: &DialPolicy,
        grant: Option<&Granted>,
    ) -> Result<(Response<Incoming>, Lease), ClientError> {
        let pinned = policy.pinned(upstream);
        let key = Key::new(upstream, pinned, grant.map(Granted::fingerprint));
        if let Some(mut lease) = self.pool.checkout(&key) {
            match lease.send(request).await {
                Ok(response) => return Ok((response, lease)),
                // The pooled connection closed before the request was written (the
                // backend dropped it while idle): a fresh connection may take it.
                Err(mut e) => match e.take_message() {
                    Some(unsent) => request = unsent,
                    None => return Err(ClientError::Request(e.into_error())),
                },
            }
        }
        // Boxed: dialling (DNS, TLS) is rare next to reusing a pooled connection, and its
        // large state would otherwise be moved around with every request's future.
        let sender = Box::pin(connect::connect(upstream, pinned, policy, grant)).await?;
        let mut lease = self.pool.lease(key, sender);
        let response = lease.send(request).await.map_err(|e| ClientError::Request(e.into_error()))?;
        Ok((response, lease))
    }
}
