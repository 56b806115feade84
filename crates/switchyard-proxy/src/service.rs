//! The request path as named phases over one request, each able to answer itself:
//!
//! 1. `check_limits`  — URL plus headers within 8 KiB (431 otherwise).
//! 2. `match_route`   — host, path, method, headers, query (404 / 405).
//! 3. `authenticate`  — the route's auth (401; a signature may read the body first).
//! 4. `choose_backend`— weighted pick among the route's backends.
//! 5. `shape`         — rewrite, constant parameters, Host, forwarding headers, body limit.
//! 6. `call_backend`  — the backend kind serves it (timeouts, retries, 5xx codes).
//! 7. `finish`        — request id on every response, metrics; the access log line
//!    when the response body is done (`ClientBody`).
//!
//! One [`Exchange`] per request records what the phases decided (route, backend,
//! endpoint, attempts, upstream time, bytes in) for the metrics and the access log.
//!
//! The snapshot is loaded once at the start: a request finishes on the snapshot it
//! started with even if a new one is swapped in meanwhile.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use std::borrow::Cow;

use bytes::Bytes;
use http::header::HOST;
use http::{HeaderValue, Request, Response};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use pin_project_lite::pin_project;

use crate::Worker;
use crate::access_log::{AccessLogFormat, AccessRecord};
use crate::auth::BodyLimits;
use crate::auth::nonce::NonceStore;
use crate::backends::CallContext;
use crate::body::{BoxError, ResponseBody};
use crate::client::UpstreamClient;
use crate::error::GatewayError;
use crate::exchange::Exchange;
use crate::headers::X_CA_REQUEST_ID;
use crate::router::{NoMatch, RequestView};
use crate::runtime::Runtime;
use crate::shape::{ShapeInput, shape};
use crate::trace::{OpenSpan, Outcome};
use crate::trace_context::TraceContext;
use switchyard_compile::request_path;
use switchyard_compile::snapshot::Protocols;
use switchyard_http::Peer;

/// Largest request line plus headers accepted.
pub const MAX_HEADER_BYTES: usize = 8 * 1024;

/// Serves one client request on `worker`; never fails: errors become gateway responses.
pub(crate) async fn handle(worker: Arc<Worker>, request: Request<Incoming>, peer: Peer) -> Response<ClientBody> {
    let (proxy, client) = (&*worker.proxy, &worker.client);
    let started = Instant::now();
    let client_addr = peer.addr;
    let request_id = crate::request_id::of(request.headers());
    // Read before the request is consumed: a gRPC client gets its errors the gRPC way.
    let grpc = crate::grpc::is_grpc(request.headers());
    let runtime = proxy.runtime();
    // Always propagated; a span is recorded only when sampled and exported.
    let trace = proxy.tracing.begin(request.headers());
    let span = proxy.tracing.start(&trace, request.method(), request.uri().path());
    // The request's record: on the stack, or inside the access log's record when the log
    // is on (the response body writes the line once it is done).
    let mut record = (proxy.access_log != AccessLogFormat::Off)
        .then(|| Box::new(AccessRecord::start(proxy.access_log, started, &request, client_addr, peer.tls.unwrap_or(""))));
    let local = Exchange::default();
    let (exchange, log) = match record.as_deref_mut() {
        Some(record) => (&record.exchange, Some(&mut record.host)),
        None => (&local, None),
    };
    let outcome = match &runtime {
        Some(runtime) => {
            let request_ctx = RequestContext {
                client,
                nonces: &proxy.nonces,
                client_addr,
                https: peer.tls.is_some(),
                https_port: proxy.https_redirect_port,
                request_id: &request_id,
                exchange,
                log,
                trace: &trace,
                websocket_idle: proxy.websocket_idle,
            };
            serve(runtime, request, request_ctx).await
        }
        None => Err(GatewayError::NotReady.into()),
    };
    let exchange = record.as_deref().map_or(&local, |record| &record.exchange);
    let (mut response, code) = match outcome {
        Ok(response) => (response, None),
        Err(Failure { error, route }) => {
            let code = error.code();
            // The client saw `error`; the detail (addresses, OS error text) is only here.
            let (id, backend, detail) = (request_id.to_str().unwrap_or(""), error.backend(), error.detail());
            let route = route.as_deref();
            if error.status().is_server_error() {
                tracing::warn!(request_id = id, code, route, backend, detail, %error, "gateway error");
            } else {
                tracing::debug!(request_id = id, code, route, backend, detail, %error, "gateway error");
            }
            (error.into_response_for(grpc), Some(code))
        }
    };
    let status = response.status().as_u16();
    proxy.metrics.observe(runtime.as_deref().map(|rt| (&rt.counters, &rt.snapshot.routes[..])), exchange, status, code, started.elapsed());
    let span =
        span.map(|s| s.answered(Outcome { runtime: runtime.as_deref(), exchange, status, error_code: code, request_id: &request_id }));
    if let Some(record) = &mut record {
        record.request_id = request_id.clone();
        record.status = status;
        record.error_code = code;
        record.names = runtime.map(|rt| rt as Arc<dyn crate::access_log::LineNames>);
    }
    response.headers_mut().insert(X_CA_REQUEST_ID, request_id);
    response.map(|body| ClientBody::new(body, record).with_span(span))
}

/// What `serve` needs besides the runtime and the request.
struct RequestContext<'a> {
    client: &'a UpstreamClient,
    nonces: &'a NonceStore,
    client_addr: SocketAddr,
    /// Whether the request came over TLS (`X-Forwarded-Proto`, a route's `protocols`).
    https: bool,
    /// The port the https URL of a 308 names (443 is left out).
    https_port: u16,
    request_id: &'a HeaderValue,
    /// The request's record, which the phases fill in.
    exchange: &'a Exchange,
    /// With the access log on, where its line's host goes (the client body's bytes are
    /// then counted into `exchange` too).
    log: Option<&'a mut Option<HeaderValue>>,
    /// Sent upstream as `traceparent`/`tracestate`.
    trace: &'a TraceContext,
    websocket_idle: std::time::Duration,
}

async fn serve(runtime: &Runtime, request: Request<Incoming>, rc: RequestContext<'_>) -> Result<Response<ResponseBody>, Failure> {
    let RequestContext { client, nonces, client_addr, https, https_port, request_id, exchange, log, trace, websocket_idle } = rc;
    check_limits(&request)?;
    let (parts, body) = request.into_parts();
    let client_host = one_host(&parts)?;
    // With the access log on, its line names this host and counts the body's bytes.
    let tally = match log {
        Some(host) => {
            host.clone_from(&client_host);
            true
        }
        None => false,
    };
    // Routing, auth and the backend all see the normalized path (`request_path`).
    let normalized_path = match request_path::normalize(parts.uri.path()) {
        Ok(Cow::Borrowed(_)) => None,
        Ok(Cow::Owned(normal)) => Some(normal),
        Err(refusal) => return Err(GatewayError::PathRefused(refusal.message()).into()),
    };
    // Origin form only (`OPTIONS *` aside): an authority-form target (CONNECT) has no
    // path and would otherwise meet the catch-all route.
    let path = normalized_path.as_deref().unwrap_or(parts.uri.path());
    let origin_form = path.starts_with('/') || (path == "*" && parts.method == http::Method::OPTIONS);
    if !origin_form {
        return Err(GatewayError::BadRequest("the request target must be a path".into()).into());
    }
    let matched = {
        let host = strip_port(client_host.as_ref().and_then(|h| h.to_str().ok()).unwrap_or(""));
        // `shop.example.com.` is `shop.example.com` (the root label): it must meet the same
        // routes and owner, not slip past both to the routes without hosts.
        let host = host.strip_suffix('.').unwrap_or(host);
        let path = normalized_path.as_deref().unwrap_or(parts.uri.path());
        let view = RequestView { host, method: &parts.method, path, query: parts.uri.query(), headers: &parts.headers };
        runtime.router.find(&view).map_err(|why| no_match(why, &view))?
    };
    exchange.matched(matched.route);
    let route = &runtime.routes[matched.route];
    // From here on a failure names its route in the log (an Arc clone, on errors only).
    let failed = |error: GatewayError| Failure { error, route: Some(route.id.clone()) };
    if let Some(refusal) = wrong_protocol(route.protocols, https, &parts, client_host.as_ref(), https_port) {
        return Err(failed(refusal));
    }
    // The deadline starts before auth: a body read for a signature counts against it.
    let deadline = Instant::now() + route.timeout;
    let limits = BodyLimits { size: route.body_limit, deadline, budget: route.timeout };
    let body = route.auth.authenticate(&parts, body, limits, nonces).await.map_err(failed)?;
    let body = if tally { body.tallied(exchange) } else { body };
    let target = route.pick();
    exchange.chose(target.backend);
    let event_params = target.event.then_some(&*route.param_names);
    let input = ShapeInput {
        route,
        host: &target.host,
        normalized_path,
        client_host,
        params: &matched.params,
        client_addr,
        https,
        request_id,
        event_params,
    };
    let shaped = shape(parts, body, input).map_err(failed)?;
    let backend = &runtime.backends[target.backend];
    if shaped.upgrade.is_some() && !backend.takes_upgrades() {
        let id = runtime.snapshot.backends[target.backend].id.clone();
        return Err(failed(GatewayError::UpgradeRefused { backend: id }));
    }
    let ctx = CallContext {
        client,
        dial: &runtime.dial,
        budget: route.timeout,
        deadline,
        route_retries: route.retries.as_ref(),
        route: &route.id,
        exchange,
        trace,
        websocket_idle,
    };
    // Shed before calling a backend that already has its limit in flight; the place is
    // held until the backend answers (response headers) or fails.
    let admission = &runtime.admissions[target.backend];
    let Some(_admitted) = admission.admit() else {
        let backend = runtime.snapshot.backends[target.backend].id.clone();
        return Err(failed(GatewayError::BackendOverloaded { backend, limit: admission.limit() }));
    };
    backend.serve(shaped, &ctx).await.map_err(failed)
}

/// A gateway error and, once a route matched, the route (for the log line).
struct Failure {
    error: GatewayError,
    route: Option<std::sync::Arc<str>>,
}

impl From<GatewayError> for Failure {
    fn from(error: GatewayError) -> Self {
        Self { error, route: None }
    }
}

fn check_limits(request: &Request<Incoming>) -> Result<(), GatewayError> {
    let uri = request.uri();
    let mut size = uri.path_and_query().map_or(0, |p| p.as_str().len()) + uri.authority().map_or(0, |a| a.as_str().len());
    for (name, value) in request.headers() {
        size += name.as_str().len() + value.len() + 4;
    }
    if size > MAX_HEADER_BYTES {
        return Err(GatewayError::HeadersTooLarge { size, limit: MAX_HEADER_BYTES });
    }
    Ok(())
}

/// The request's one host: its authority (HTTP/2 `:authority`, an HTTP/1.1 absolute-form
/// target), else its Host header. A Host header that disagrees with the authority, or a
/// second Host header, is refused: routing, `passHostHeader` and `X-Forwarded-Host` must
/// all see the same host.
fn one_host(parts: &http::request::Parts) -> Result<Option<HeaderValue>, GatewayError> {
    let mut headers = parts.headers.get_all(HOST).iter();
    let header = headers.next();
    if headers.next().is_some() {
        return Err(GatewayError::BadRequest("more than one Host header".into()));
    }
    if header.is_some_and(|h| !well_formed_host(h.as_bytes())) {
        return Err(GatewayError::BadRequest("the Host header is not a host name or IP address with an optional port".into()));
    }
    let Some(authority) = parts.uri.authority() else { return Ok(header.cloned()) };
    if !well_formed_host(authority.as_str().as_bytes()) {
        return Err(GatewayError::BadRequest("the request's authority is not a host name or IP address with an optional port".into()));
    }
    match header {
        Some(host) if !same_authority(authority.as_str(), host.as_bytes(), parts.uri.scheme_str()) => Err(GatewayError::HostMismatch {
            host: String::from_utf8_lossy(host.as_bytes()).into_owned(),
            authority: authority.to_string(),
        }),
        _ => HeaderValue::from_str(authority.as_str())
            .map(Some)
            .map_err(|_| GatewayError::BadRequest("the request's authority is not valid".into())),
    }
}

/// `name[:port]`, `v4[:port]` or `[v6][:port]`, and nothing else: no user information,
/// no escapes, no brackets around a name. Routing strips the port and a forwarded Host is
/// copied as it is, so both must read the same host out of it. Empty is allowed (an
/// HTTP/1.1 request for a server without a name).
fn well_formed_host(value: &[u8]) -> bool {
    let (host, port) = if value.first() == Some(&b'[') {
        let Some(end) = value.iter().position(|&b| b == b']') else { return false };
        let inner = std::str::from_utf8(&value[1..end]).ok();
        if inner.and_then(|v6| v6.parse::<std::net::Ipv6Addr>().ok()).is_none() {
            return false;
        }
        (&value[..=end], &value[end + 1..])
    } else {
        let split = value.iter().rposition(|&b| b == b':').unwrap_or(value.len());
        let (name, port) = value.split_at(split);
        if !name.iter().all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_')) {
            return false;
        }
        (name, port)
    };
    let port_ok = match port {
        [] => true,
        [b':', digits @ ..] => (1..=5).contains(&digits.len()) && digits.iter().all(u8::is_ascii_digit),
        _ => false,
    };
    port_ok && (!host.is_empty() || value.is_empty())
}

/// Equal ignoring case, and a default port written on one side only.
fn same_authority(authority: &str, host: &[u8], scheme: Option<&str>) -> bool {
    let default_port: &[u8] = if scheme == Some("https") { b":443" } else { b":80" };
    let trim = |s: &[u8]| -> Vec<u8> { s.strip_suffix(default_port).unwrap_or(s).to_ascii_lowercase() };
    trim(authority.as_bytes()) == trim(host)
}

/// A request on a connection its route does not serve: plain HTTP to an HTTPS-only route
/// is sent to the https URL (308 keeps the method and body), HTTPS to an HTTP-only route is
/// refused (421). Nothing is read or sent upstream first.
fn wrong_protocol(
    protocols: Protocols,
    https: bool,
    parts: &http::request::Parts,
    host: Option<&HeaderValue>,
    https_port: u16,
) -> Option<GatewayError> {
    match (protocols, https) {
        (Protocols::HttpsOnly, false) => Some(https_location(parts, host, https_port)),
        (Protocols::HttpOnly, true) => Some(GatewayError::HttpOnly),
        _ => None,
    }
}

/// The https URL of the request: its host (already checked well-formed) without the port,
/// then `https_port` unless 443, then the target as the client sent it.
fn https_location(parts: &http::request::Parts, host: Option<&HeaderValue>, https_port: u16) -> GatewayError {
    let Some(host) = host.and_then(|h| h.to_str().ok()) else {
        return GatewayError::BadRequest("this API is served over HTTPS only, and the request names no host to redirect to".into());
    };
    let host = match host.strip_prefix('[') {
        Some(rest) => &host[..rest.find(']').map_or(host.len(), |end| end + 2)],
        None => host.rsplit_once(':').map_or(host, |(h, _)| h),
    };
    let target = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let location = if https_port == 443 { format!("https://{host}{target}") } else { format!("https://{host}:{https_port}{target}") };
    GatewayError::HttpsRequired { location }
}

fn strip_port(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    host.rsplit_once(':').map_or(host, |(h, port)| if port.bytes().all(|b| b.is_ascii_digit()) { h } else { host })
}

fn no_match(why: NoMatch, view: &RequestView<'_>) -> GatewayError {
    match why {
        NoMatch::NotFound => {
            GatewayError::RouteNotFound { method: view.method.to_string(), host: view.host.to_owned(), path: view.path.to_owned() }
        }
        NoMatch::MethodNotAllowed(allowed) => {
            GatewayError::MethodNotAllowed { method: view.method.to_string(), path: view.path.to_owned(), allow: allowed.header_value() }
        }
    }
}

pin_project! {
    /// What the client receives: the response body and, when the access log is on, the
    /// request's record, counting the bytes that pass; its line is written when this is
    /// dropped (hyper drops a body once it has sent its end, or when the client left).
    pub struct ClientBody {
        #[pin]
        inner: ResponseBody,
        log: Option<Box<AccessRecord>>,
        // The request's recorded span, which ends (is exported) when this is dropped.
        span: Option<Box<OpenSpan>>,
    }
}

impl ClientBody {
    pub fn new(inner: ResponseBody, log: Option<Box<AccessRecord>>) -> Self {
        Self { inner, log, span: None }
    }

    /// The same body ending `span` when done.
    pub fn with_span(mut self, span: Option<Box<OpenSpan>>) -> Self {
        self.span = span;
        self
    }
}

impl Body for ClientBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        if let (Some(log), Poll::Ready(Some(Ok(frame)))) = (this.log, &polled) {
            log.bytes_out += frame.data_ref().map_or(0, |d| d.len() as u64);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use std::marker::PhantomData;

    use http::Request;
    use hyper::body::Incoming;

    use super::{Arc, CallContext, Peer, RequestContext, Runtime, Worker};
    use crate::backends::{self, Backend, BackendRuntime, ShapedRequest};
    use crate::future_size::of;

    /// The futures of one proxied request, outermost first, in bytes.
    fn request_path_futures<'a>(_: PhantomData<&'a ()>) -> Vec<(&'static str, usize)> {
        vec![
            ("handle", of(|(w, r, peer): (Arc<Worker>, Request<Incoming>, Peer)| super::handle(w, r, peer))),
            ("serve", of(|(rt, r, rc): (&'a Runtime, Request<Incoming>, RequestContext<'a>)| super::serve(rt, r, rc))),
            ("BackendRuntime::serve", of(|(b, r, ctx): (&'a BackendRuntime, ShapedRequest, &'a CallContext<'a>)| b.serve(r, ctx))),
            ("http", of(|(b, r, ctx): (&'a backends::HttpBackend, ShapedRequest, &'a CallContext<'a>)| b.serve(r, ctx))),
            ("gateway", of(|(b, r, ctx): (&'a backends::GatewayBackend, ShapedRequest, &'a CallContext<'a>)| b.serve(r, ctx))),
            ("event function", of(|(b, r, ctx): (&'a backends::EventFunction, ShapedRequest, &'a CallContext<'a>)| b.serve(r, ctx))),
            ("model", of(|(b, r, ctx): (&'a backends::ModelBackend, ShapedRequest, &'a CallContext<'a>)| b.serve(r, ctx))),
            ("event bus", of(|(b, r, ctx): (&'a backends::EventBusBackend, ShapedRequest, &'a CallContext<'a>)| b.serve(r, ctx))),
            ("data service", of(|(b, r, ctx): (&'a backends::DataServiceBackend, ShapedRequest, &'a CallContext<'a>)| b.serve(r, ctx))),
            ("mock", of(|(b, r, ctx): (&'a backends::MockBackend, ShapedRequest, &'a CallContext<'a>)| b.serve(r, ctx))),
        ]
    }

    /// The dispatch future holds only the `http` kind's future inline: the rarer kinds are
    /// boxed, so a larger one (gateway, event function, model) does not grow every request.
    #[test]
    fn request_path_future_sizes() {
        let sizes = request_path_futures(PhantomData);
        for (name, size) in &sizes {
            eprintln!("{name}: {size} bytes");
        }
        let size = |name: &str| sizes.iter().find(|(n, _)| *n == name).map(|(_, s)| *s).unwrap();
        let dispatch = size("BackendRuntime::serve");
        assert!(
            dispatch <= size("http") + 64,
            "the dispatch future ({dispatch} bytes) holds more than the http kind's: is a rare kind inlined?"
        );
    }

    #[test]
    fn an_https_redirect_keeps_the_host_and_target_and_names_a_port_other_than_443() {
        use super::{GatewayError, HeaderValue, https_location};
        let location = |host: &str, target: &str, port: u16| {
            let (parts, ()) = http::Request::get(target).body(()).unwrap().into_parts();
            match https_location(&parts, Some(&HeaderValue::from_str(host).unwrap()), port) {
                GatewayError::HttpsRequired { location } => location,
                other => panic!("{other:?}"),
            }
        };
        assert_eq!(location("api.example.com:8080", "/a?b=1", 443), "https://api.example.com/a?b=1");
        assert_eq!(location("api.example.com", "/a", 8443), "https://api.example.com:8443/a");
        assert_eq!(location("[::1]:8080", "/", 8443), "https://[::1]:8443/");
        assert_eq!(location("[::1]", "/", 443), "https://[::1]/");
        let (parts, ()) = http::Request::get("/a").body(()).unwrap().into_parts();
        assert!(matches!(https_location(&parts, None, 443), GatewayError::BadRequest(_)), "no host, no redirect");
    }

    #[test]
    fn ports_are_stripped_from_hosts_including_ipv6_literals() {
        assert_eq!(super::strip_port("api.example.com:8080"), "api.example.com");
        assert_eq!(super::strip_port("api.example.com"), "api.example.com");
        assert_eq!(super::strip_port("[::1]:8080"), "::1");
        assert_eq!(super::strip_port("127.0.0.1"), "127.0.0.1");
    }

    #[test]
    fn only_names_and_addresses_with_an_optional_port_are_hosts() {
        for good in ["api.example.com", "api.example.com:8080", "10.0.0.1:80", "[::1]:8080", "[fe80::1]", "a_b.internal", ""] {
            assert!(super::well_formed_host(good.as_bytes()), "{good}");
        }
        for bad in [
            "[shop.example.com]:80@evil.com",
            "a@b",
            "a:b:c",
            "shop.example.com:",
            "shop.example.com:123456",
            "[::1",
            "a%2eb",
            "a b",
            ":80",
        ] {
            assert!(!super::well_formed_host(bad.as_bytes()), "{bad}");
        }
    }

    #[test]
    fn an_authority_and_a_host_agree_ignoring_case_and_a_default_port() {
        assert!(super::same_authority("API.example.com", b"api.example.com", Some("http")));
        assert!(super::same_authority("api.example.com:80", b"api.example.com", Some("http")));
        assert!(super::same_authority("api.example.com", b"api.example.com:443", Some("https")));
        assert!(!super::same_authority("public.example.com", b"admin.example.com", Some("http")));
        assert!(!super::same_authority("api.example.com:8080", b"api.example.com", Some("http")));
        assert!(!super::same_authority("api.example.com", b"api.example.com:443", Some("http")));
    }
}
