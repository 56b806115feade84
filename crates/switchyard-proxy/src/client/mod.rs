//! The upstream HTTP client. One per worker thread, living across snapshots, so
//! pooled keep-alive connections survive configuration changes.
//!
//! Built on hyper's connection-level API rather than hyper-util's legacy client: the
//! worker is single-threaded and its upstreams are known, so a per-key stack of idle
//! senders replaces the general pool, and a connection goes back to it when the
//! response body is done, without a task spawned per request. HTTP/2 upstreams get one
//! shared, multiplexed connection per upstream instead (`http2`).

mod connect;
mod http2;
mod pool;

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use http::uri::{Authority, Scheme};
use http::{Request, Response};
use hyper::body::Incoming;

use crate::egress::{DialPolicy, Granted};
use crate::request_body::{BoxError, RequestBody};
use switchyard_http::tls::UpstreamTls;

use self::http2::Http2Pool;
use self::pool::{Http1Lease, Key, Pool};

/// Dial timeout: a backend that does not accept within this (or within the attempt's
/// deadline, when that comes first) is a connect failure.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Idle keep-alive connections are closed after this long unused.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// Idle connections kept per upstream; more are closed when they come back.
const MAX_IDLE_PER_UPSTREAM: usize = 1024;

/// Why a request got no response. The split decides retries and the error code: a
/// connect failure never reached the backend, so it is always safe to try another.
///
/// Display and the sources are the operator's detail (addresses, OS error text);
/// [`ClientError::kind`] is the part a client may see.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// `.0`: the kind of failure, in a client's words.
    #[error("connect error")]
    Connect(Cow<'static, str>, #[source] BoxError),
    #[error(transparent)]
    Denied(crate::egress::Denied),
    /// The TLS handshake failed (untrusted certificate, name mismatch, protocol).
    #[error("TLS handshake failed")]
    Tls(Cow<'static, str>, #[source] BoxError),
    #[error("request error")]
    Request(#[source] hyper::Error),
}

impl ClientError {
    /// The request never reached the backend's application (TCP or TLS failed).
    pub fn is_connect(&self) -> bool {
        matches!(self, Self::Connect(..) | Self::Tls(..))
    }

    pub fn is_tls(&self) -> bool {
        matches!(self, Self::Tls(..))
    }

    pub fn denied(&self) -> Option<&crate::egress::Denied> {
        match self {
            Self::Denied(d) => Some(d),
            _ => None,
        }
    }

    /// The kind of failure, fit for a client: connection refused, timed out, connection
    /// reset, certificate not trusted, ... Never an address or OS error text.
    pub fn kind(&self) -> Cow<'static, str> {
        match self {
            Self::Connect(kind, _) | Self::Tls(kind, _) => kind.clone(),
            Self::Denied(denied) => denied.why.clone(),
            Self::Request(e) => request_failure(e).into(),
        }
    }
}

/// A failed dial, in a client's words.
pub(crate) fn io_failure(error: &std::io::Error) -> &'static str {
    use std::io::ErrorKind::*;
    match error.kind() {
        ConnectionRefused => "connection refused",
        ConnectionReset | ConnectionAborted | BrokenPipe => "connection reset",
        UnexpectedEof => "connection closed",
        TimedOut => "timed out",
        HostUnreachable | NetworkUnreachable | AddrNotAvailable => "the address is unreachable",
        _ => "connection failed",
    }
}

/// Why a request on an open connection got no response.
fn request_failure(error: &hyper::Error) -> &'static str {
    if let Some(io) = crate::request_body::find_in_chain::<std::io::Error>(error) {
        return io_failure(io);
    }
    if error.is_incomplete_message() || error.is_canceled() || error.is_closed() {
        "connection closed before a response"
    } else if error.is_parse() || error.is_parse_status() || error.is_parse_too_large() {
        "invalid HTTP response"
    } else if error.is_timeout() {
        "timed out"
    } else {
        "request failed"
    }
}

/// A failed TLS handshake, in a client's words. rustls's reasons are matched by their
/// text (this crate does not link rustls itself); the names a certificate presents are
/// left out (they may be internal addresses), the name that was checked is kept.
pub(crate) fn tls_failure(error: &std::io::Error) -> Cow<'static, str> {
    if error.kind() != std::io::ErrorKind::InvalidData {
        return io_failure(error).into();
    }
    let text = error.to_string();
    if text.contains("UnknownIssuer") {
        return "certificate not trusted (UnknownIssuer)".into();
    }
    if let Some(start) = text.find("certificate not valid for name") {
        let checked = text[start..].split(';').next().unwrap_or_default();
        return checked.to_owned().into();
    }
    let known = [
        ("NotValidForName", "certificate not valid for the server name"),
        ("certificate expired", "certificate expired"),
        ("Expired", "certificate expired"),
        ("not valid yet", "certificate not valid yet"),
        ("NotValidYet", "certificate not valid yet"),
        ("Revoked", "certificate revoked"),
        ("BadSignature", "certificate signature invalid"),
        ("invalid peer certificate", "certificate rejected"),
        ("received fatal alert", "the backend refused the handshake"),
        ("peer is incompatible", "no TLS version or cipher in common"),
        ("peer sent no certificates", "the backend sent no certificate"),
    ];
    known.iter().find(|(needle, _)| text.contains(needle)).map_or("TLS handshake failed", |(_, kind)| kind).into()
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
    /// Spoken to in HTTP/2 (prior knowledge, or ALPN `h2` over TLS).
    pub http2: bool,
    /// The pool's name for `scheme`, `authority` and `tls`, made once here.
    destination: Arc<pool::Destination>,
}

impl Upstream {
    pub fn new(scheme: Scheme, authority: Authority, tls: Option<Arc<UpstreamTls>>) -> Self {
        let host = authority.host().trim_start_matches('[').trim_end_matches(']');
        let literal = host
            .parse::<std::net::IpAddr>()
            .ok()
            .map(|ip| std::net::SocketAddr::new(ip, authority.port_u16().unwrap_or(default_port(&scheme))));
        let destination = Arc::new(pool::Destination::new(&scheme, &authority, tls.clone()));
        Self { scheme, authority, tls, literal, http2: false, destination }
    }

    /// The address chosen before any DNS: an IP literal is its own address; a name with
    /// a DnsRecord in `policy` gets a weighted pick (per call, so weights hold per request).
    pub fn pinned(&self, policy: &DialPolicy) -> Option<std::net::SocketAddr> {
        if self.literal.is_some() {
            return self.literal;
        }
        // Compile lowercases host names, so the lookup needs no copy.
        let ip = policy.record_address(self.authority.host())?;
        Some(std::net::SocketAddr::new(ip, self.authority.port_u16().unwrap_or(default_port(&self.scheme))))
    }

    /// The same upstream spoken to in HTTP/2 (`tls`, if any, must offer ALPN `h2`).
    pub fn with_http2(mut self, http2: bool) -> Self {
        self.http2 = http2;
        self
    }
}

fn default_port(scheme: &Scheme) -> u16 {
    if *scheme == Scheme::HTTPS { 443 } else { 80 }
}

/// The upstream connection a response came on; the response body keeps it until done.
pub struct Lease(Held);

enum Held {
    /// Back to the pool when dropped.
    Http1(Http1Lease),
    /// A handle on the shared connection, so it outlives the pool's own (an idle
    /// eviction) while this stream is open.
    Http2 { _connection: http2::Sender, reused: bool },
}

impl Lease {
    /// Whether the connection came from the pool rather than a new dial.
    pub fn reused(&self) -> bool {
        match &self.0 {
            Held::Http1(lease) => lease.reused(),
            Held::Http2 { reused, .. } => *reused,
        }
    }
}

/// A worker's upstream client: its pools of keep-alive connections.
pub struct UpstreamClient {
    pool: Arc<Pool>,
    http2: Arc<Http2Pool>,
}

pub fn upstream_client() -> UpstreamClient {
    UpstreamClient { pool: Arc::new(Pool::new(IDLE_TIMEOUT, MAX_IDLE_PER_UPSTREAM)), http2: Arc::new(Http2Pool::new(IDLE_TIMEOUT)) }
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
        deadline: tokio::time::Instant,
    ) -> Result<(Response<Incoming>, Lease), ClientError> {
        let pinned = upstream.pinned(policy);
        let key = Key::new(upstream, pinned, grant.map(Granted::fingerprint));
        if upstream.http2 {
            return self.request_h2(upstream, key, pinned, request, policy, grant, deadline).await;
        }
        let key = match self.pool.checkout(key) {
            Ok(mut lease) => match lease.send(request).await {
                Ok(response) => return Ok((response, Lease(Held::Http1(lease)))),
                // The pooled connection closed before the request was written (the
                // backend dropped it while idle): a fresh connection may take it.
                Err(mut e) => match e.take_message() {
                    Some(unsent) => {
                        request = unsent;
                        lease.key().clone()
                    }
                    None => return Err(ClientError::Request(e.into_error())),
                },
            },
            Err(key) => key,
        };
        // Boxed: dialling (DNS, TLS) is rare next to reusing a pooled connection, and its
        // large state would otherwise be moved around with every request's future.
        let sender = Box::pin(connect::connect(upstream, pinned, policy, grant, deadline)).await?;
        let mut lease = self.pool.lease(key, sender);
        let response = lease.send(request).await.map_err(|e| ClientError::Request(e.into_error()))?;
        Ok((response, Lease(Held::Http1(lease))))
    }

    /// The same over the upstream's shared HTTP/2 connection, dialled when there is none
    /// (or it died). The request's URI must be absolute: HTTP/2 sends `:scheme` and
    /// `:authority` from it.
    #[allow(clippy::too_many_arguments)]
    async fn request_h2(
        &self,
        upstream: &Upstream,
        key: Key,
        pinned: Option<std::net::SocketAddr>,
        mut request: Request<RequestBody>,
        policy: &DialPolicy,
        grant: Option<&Granted>,
        deadline: tokio::time::Instant,
    ) -> Result<(Response<Incoming>, Lease), ClientError> {
        if let Some(mut sender) = self.http2.checkout(&key) {
            match sender.try_send_request(request).await {
                Ok(response) => return Ok((response, Lease(Held::Http2 { _connection: sender, reused: true }))),
                // The connection went away (GOAWAY, closed) before taking the stream: a
                // fresh one may take it.
                Err(mut e) => match e.take_message() {
                    Some(unsent) => request = unsent,
                    None => return Err(ClientError::Request(e.into_error())),
                },
            }
        }
        let mut sender = Box::pin(connect::connect_h2(upstream, pinned, policy, grant, deadline)).await?;
        self.http2.offer(key, &sender);
        let response = sender.send_request(request).await.map_err(ClientError::Request)?;
        Ok((response, Lease(Held::Http2 { _connection: sender, reused: false })))
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Error, ErrorKind};

    use super::*;

    /// The client's futures of one request, in bytes.
    fn client_futures<'a>(_: std::marker::PhantomData<&'a ()>) -> Vec<(&'static str, usize)> {
        use crate::future_size::of;
        type Args<'b> = (&'b UpstreamClient, &'b Upstream, Request<RequestBody>, &'b DialPolicy, Option<&'b Granted>);
        vec![
            ("request", of(|(c, u, r, p, g): Args<'a>| c.request(u, r, p, g, tokio::time::Instant::now()))),
            ("Http1Lease::send", of(|(l, r): (&'a mut pool::Http1Lease, Request<RequestBody>)| l.send(r))),
            (
                "connect",
                of(|(u, p, g): (&'a Upstream, &'a DialPolicy, Option<&'a Granted>)| {
                    connect::connect(u, None, p, g, tokio::time::Instant::now())
                }),
            ),
        ]
    }

    /// A measurement to read with `--ignored --nocapture`, not a check (the dispatch
    /// future's check is `service::tests::request_path_future_sizes`).
    #[test]
    #[ignore = "prints future sizes"]
    fn client_future_sizes() {
        for (name, size) in client_futures(std::marker::PhantomData) {
            eprintln!("{name}: {size} bytes");
        }
    }

    #[test]
    fn upstreams_share_a_pool_key_when_scheme_authority_and_tls_agree_ignoring_case() {
        let upstream = |scheme: &str, authority: &str| Upstream::new(scheme.parse().unwrap(), authority.parse().unwrap(), None);
        let key = |u: &Upstream| Key::new(u, None, None);
        let orders = upstream("http", "orders.internal:8080");
        assert!(key(&orders) == key(&upstream("http", "Orders.Internal:8080")), "rebuilt, another spelling: the same pool");
        assert!(key(&orders) != key(&upstream("https", "orders.internal:8080")));
        assert!(key(&orders) != key(&upstream("http", "orders.internal:8081")));
        assert!(key(&orders) != key(&upstream("http", "orders.internal")));
        assert!(key(&orders) != Key::new(&orders, Some("10.0.0.1:8080".parse().unwrap()), None));
        assert!(key(&orders) != Key::new(&orders, None, Some(7)));
    }

    #[test]
    fn an_upstream_is_pinned_to_its_ip_literal_or_its_dns_record_on_its_schemes_default_port() {
        use switchyard_compile::snapshot::{DnsEntry, Snapshot};
        let entry = DnsEntry { domain: "orders.internal".into(), records: vec![("10.0.3.15".parse().unwrap(), 1)] };
        let snapshot = Snapshot { dns_records: vec![entry], ..Snapshot::default() };
        let policy = DialPolicy::build(&Default::default(), &snapshot);
        let pinned =
            |scheme: &str, authority: &str| Upstream::new(scheme.parse().unwrap(), authority.parse().unwrap(), None).pinned(&policy);
        assert_eq!(pinned("http", "orders.internal"), Some("10.0.3.15:80".parse().unwrap()));
        assert_eq!(pinned("https", "orders.internal"), Some("10.0.3.15:443".parse().unwrap()), "not 80 for TLS");
        assert_eq!(pinned("http", "orders.internal:8080"), Some("10.0.3.15:8080".parse().unwrap()));
        assert_eq!(pinned("https", "[fd00::7]"), Some("[fd00::7]:443".parse().unwrap()), "a literal is its own address");
        assert_eq!(pinned("http", "other.internal"), None, "no record: the resolver picks");
        let empty = DialPolicy::build(&Default::default(), &Snapshot::default());
        assert_eq!(Upstream::new("http".parse().unwrap(), "orders.internal".parse().unwrap(), None).pinned(&empty), None);
    }

    #[test]
    fn dial_failures_are_named_by_kind_without_os_error_text() {
        let refused = Error::from_raw_os_error(111);
        assert_eq!(io_failure(&refused), "connection refused");
        assert_eq!(io_failure(&Error::from(ErrorKind::ConnectionReset)), "connection reset");
        assert_eq!(io_failure(&Error::from(ErrorKind::TimedOut)), "timed out");
        let error = ClientError::Connect(io_failure(&refused).into(), Box::new(refused));
        assert!(error.is_connect());
        assert_eq!(error.kind(), "connection refused");
    }

    #[test]
    fn tls_failures_keep_the_reason_and_the_checked_name_but_not_the_presented_names() {
        let tls = |text: &str| tls_failure(&Error::new(ErrorKind::InvalidData, text.to_owned()));
        assert_eq!(tls("invalid peer certificate: UnknownIssuer"), "certificate not trusted (UnknownIssuer)");
        assert_eq!(
            tls(
                "invalid peer certificate: certificate not valid for name \"billing.internal\"; certificate is only valid for IpAddress(10.0.3.15)"
            ),
            "certificate not valid for name \"billing.internal\""
        );
        assert_eq!(tls("invalid peer certificate: certificate expired: verification time 5 (UNIX)"), "certificate expired");
        assert_eq!(tls("received fatal alert: HandshakeFailure"), "the backend refused the handshake");
        assert_eq!(tls_failure(&Error::from(ErrorKind::ConnectionReset)), "connection reset");
    }
}
