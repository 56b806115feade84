//! The upstream HTTP client. One per worker thread, living across snapshots, so
//! pooled keep-alive connections survive configuration changes.
//!
//! Three ways a request goes, told apart in [`UpstreamClient::request`]:
//! - plain HTTP/1.1 (nearly every request): the codec of `http1`, driven inline by the
//!   request's own task over a connection from the worker's pool (`pool`); the response
//!   body reads the rest and returns the connection when done. No task per connection,
//!   no channel per request.
//! - a WebSocket handshake ([`Upgrade`] in the request's extensions): hyper's HTTP/1
//!   client with upgrades, so a `101` hands the connection to the tunnel; such a
//!   connection never returns to the pool.
//! - HTTP/2 upstreams: hyper's HTTP/2 client, one shared, multiplexed connection per
//!   upstream (`http2`).

mod connect;
mod http1;
mod http2;
mod pool;

/// The codec's response reading, for `fuzz/` (see `crate::fuzzing`).
#[cfg(feature = "fuzzing")]
pub(crate) mod fuzzing {
    pub use super::http1::{FuzzRead, fuzz_read_response};
}

use std::borrow::Cow;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::uri::{Authority, Scheme};
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use crate::egress::{DialPolicy, Granted};
use crate::request_body::{BoxError, RequestBody};
use switchyard_http::tls::UpstreamTls;

pub use self::http1::Http1Body;
use self::http2::Http2Pool;
use self::pool::{Key, Pool};

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
    /// hyper's client failed (a WebSocket handshake, HTTP/2).
    #[error("request error")]
    Request(#[source] hyper::Error),
    /// The HTTP/1 codec failed on an open connection.
    #[error("request error")]
    Exchange(#[source] http1::Error),
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
            Self::Exchange(e) => e.kind().into(),
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

/// Marks a request as a WebSocket handshake (in its extensions): it goes through
/// hyper's client, which can hand the connection over on a `101`.
#[derive(Clone, Copy, Debug)]
pub struct Upgrade;

/// A response body from an upstream: read by the HTTP/1 codec, or by hyper (WebSocket
/// handshakes, HTTP/2).
pub enum UpstreamBody {
    Http1(Http1Body),
    Hyper(Incoming),
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            Self::Http1(body) => Pin::new(body).poll_frame(cx).map_err(Into::into),
            Self::Hyper(body) => Pin::new(body).poll_frame(cx).map_err(Into::into),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Http1(body) => body.is_end_stream(),
            Self::Hyper(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Http1(body) => body.size_hint(),
            Self::Hyper(body) => body.size_hint(),
        }
    }
}

/// What the response body keeps of the connection it came on until it is done.
pub struct Lease(Held);

enum Held {
    /// The HTTP/1 codec's connection rides in the body itself, which pools it.
    Http1 { reused: bool },
    /// hyper's sender for a WebSocket handshake's connection: the connection lives while
    /// the response does, and is never pooled.
    Upgrade { _connection: hyper::client::conn::http1::SendRequest<RequestBody>, reused: bool },
    /// A handle on the shared connection, so it outlives the pool's own (an idle
    /// eviction) while this stream is open.
    Http2 { _connection: http2::Sender, reused: bool },
}

impl Lease {
    /// Whether the connection came from the pool rather than a new dial.
    pub fn reused(&self) -> bool {
        match &self.0 {
            Held::Http1 { reused } | Held::Upgrade { reused, .. } | Held::Http2 { reused, .. } => *reused,
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

type Answer = Result<(Response<UpstreamBody>, Lease), ClientError>;

impl UpstreamClient {
    /// Sends `request` (origin-form URI, Host set; absolute for HTTP/2) to `upstream`.
    /// The returned lease must live as long as the response body.
    pub async fn request(
        &self,
        upstream: &Upstream,
        request: Request<RequestBody>,
        policy: &DialPolicy,
        grant: Option<&Granted>,
        deadline: tokio::time::Instant,
    ) -> Answer {
        let pinned = upstream.pinned(policy);
        let key = Key::new(upstream, pinned, grant.map(Granted::fingerprint));
        let dial = Dial { upstream, pinned, policy, grant, deadline };
        // Boxed: both are rare next to plain HTTP/1, and their futures are large.
        if upstream.http2 {
            return Box::pin(self.request_h2(dial, key, request)).await;
        }
        if request.extensions().get::<Upgrade>().is_some() {
            return Box::pin(self.request_upgrade(dial, key, request)).await;
        }
        self.request_http1(dial, key, request).await
    }

    /// Plain HTTP/1.1 through the codec, on a pooled connection when one is idle. A
    /// pooled connection that fails before a byte of the request was written (the
    /// backend closed it while idle) lets a new connection take the request as it is.
    async fn request_http1(&self, dial: Dial<'_>, key: Key, request: Request<RequestBody>) -> Answer {
        let (parts, body) = request.into_parts();
        let mut upload = http1::Upload::new(body);
        if let Some(conn) = self.pool.checkout(&key) {
            match http1::send(conn, &parts, &mut upload).await {
                Ok((conn, head)) => return Ok(self.respond(conn, head, upload, key, true)),
                // Not a byte written, and the connection (not the client's body) failed.
                Err(e) if !upload.sent() && e.is_connection_failure() => {}
                Err(e) => return Err(ClientError::Exchange(e)),
            }
        }
        // Boxed: dialling (DNS, TLS) is rare next to reusing a pooled connection, and its
        // large state would otherwise be moved around with every request's future.
        let stream = Box::pin(dial.connect()).await?;
        let (conn, head) = http1::send(http1::Connection::new(stream), &parts, &mut upload).await.map_err(ClientError::Exchange)?;
        Ok(self.respond(conn, head, upload, key, false))
    }

    fn respond(
        &self,
        conn: http1::Connection,
        head: http1::Head,
        upload: http1::Upload,
        key: Key,
        reused: bool,
    ) -> (Response<UpstreamBody>, Lease) {
        let response = http1::response(conn, head, upload, self.pool.home(key));
        (response.map(UpstreamBody::Http1), Lease(Held::Http1 { reused }))
    }

    /// A WebSocket handshake through hyper's client (which hands the connection to the
    /// tunnel on a `101`), over a pooled connection's stream when one is idle.
    async fn request_upgrade(&self, dial: Dial<'_>, key: Key, mut request: Request<RequestBody>) -> Answer {
        if let Some(conn) = self.pool.checkout(&key) {
            let mut sender = connect::http1_over(conn.into_stream()).await?;
            match sender.try_send_request(request).await {
                Ok(response) => return Ok(upgrade_answer(response, sender, true)),
                // Closed before the request was written: a new connection may take it.
                Err(mut e) => match e.take_message() {
                    Some(unsent) => request = unsent,
                    None => return Err(ClientError::Request(e.into_error())),
                },
            }
        }
        let mut sender = connect::http1_over(dial.connect().await?).await?;
        let response = sender.send_request(request).await.map_err(ClientError::Request)?;
        Ok(upgrade_answer(response, sender, false))
    }

    /// The same over the upstream's shared HTTP/2 connection, dialled when there is none
    /// (or it died). The request's URI must be absolute: HTTP/2 sends `:scheme` and
    /// `:authority` from it.
    async fn request_h2(&self, dial: Dial<'_>, key: Key, mut request: Request<RequestBody>) -> Answer {
        if let Some(mut sender) = self.http2.checkout(&key) {
            match sender.try_send_request(request).await {
                Ok(response) => return Ok((response.map(UpstreamBody::Hyper), Lease(Held::Http2 { _connection: sender, reused: true }))),
                // The connection went away (GOAWAY, closed) before taking the stream: a
                // fresh one may take it.
                Err(mut e) => match e.take_message() {
                    Some(unsent) => request = unsent,
                    None => return Err(ClientError::Request(e.into_error())),
                },
            }
        }
        let mut sender = connect::connect_h2(dial.upstream, dial.pinned, dial.policy, dial.grant, dial.deadline).await?;
        self.http2.offer(key, &sender);
        let response = sender.send_request(request).await.map_err(ClientError::Request)?;
        Ok((response.map(UpstreamBody::Hyper), Lease(Held::Http2 { _connection: sender, reused: false })))
    }
}

fn upgrade_answer(
    response: Response<Incoming>,
    sender: hyper::client::conn::http1::SendRequest<RequestBody>,
    reused: bool,
) -> (Response<UpstreamBody>, Lease) {
    (response.map(UpstreamBody::Hyper), Lease(Held::Upgrade { _connection: sender, reused }))
}

/// How to open a new connection for one request.
#[derive(Clone, Copy)]
struct Dial<'a> {
    upstream: &'a Upstream,
    /// The address when it is already chosen (an IP literal, a DnsRecord pick).
    pinned: Option<std::net::SocketAddr>,
    policy: &'a DialPolicy,
    grant: Option<&'a Granted>,
    deadline: tokio::time::Instant,
}

impl Dial<'_> {
    async fn connect(self) -> Result<connect::Stream, ClientError> {
        connect::connect(self.upstream, self.pinned, self.policy, self.grant, self.deadline).await
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
            ("http1::send", of(|(c, p, u): (http1::Connection, &'a http::request::Parts, &'a mut http1::Upload)| http1::send(c, p, u))),
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
