//! `http`: plain HTTP upstreams, an endpoint picked by the backend's load-balancing
//! policy, per-attempt timeout and retries (to another endpoint) on the failures the
//! policy names.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Uri, Version};
use http_body::Body as _;
use http_body_util::BodyExt;
use switchyard_compile::snapshot::{Backend as BackendSpec, BackendKind, Endpoint, RetryPolicy, UpstreamVersion};

use super::DEFAULT_TIMEOUT;
use super::{Backend, BuildContext, CallContext, ShapedRequest};
use crate::balance::{Balancer, PickInput};
use crate::body::ResponseBody;
use crate::client::{Lease, Upstream, UpstreamBody};
use crate::egress::Granted;
use crate::error::GatewayError;
use crate::headers::strip_hop_by_hop;
use crate::health::{self, ActiveHealth, ProbeTargets};
use crate::outlier::Outlier;
use crate::request_body::{BodyWatch, RequestBody, is_body_too_large, is_client_body_error};
use crate::retry_budget::RetryBudget;
use crate::websocket::{ClientUpgrade, TunnelMetrics};
use switchyard_http::tls::{Alpn, UpstreamTls};

/// Bodies up to this size are buffered when a retry may need to send them again;
/// larger ones stream and are not retried.
const MAX_REPLAY_BODY: u64 = 64 * 1024;

pub struct HttpBackend {
    id: String,
    endpoints: Vec<HttpEndpoint>,
    balancer: Balancer,
    /// A vpc backend's grant: where it may dial (see `egress`).
    dial_grant: Option<Granted>,
    /// Passive health, when configured.
    outlier: Option<Outlier>,
    /// Caps retries in flight against this backend.
    retry_budget: RetryBudget,
    /// Active health checks, when configured (probed by a task of their own).
    active_health: Option<Arc<ActiveHealth>>,
    timeout: Duration,
    retries: RetryPolicy,
    /// Endpoints are spoken to in HTTP/2 (`protocol: H2C | H2`): gRPC may pass.
    http2: bool,
    /// Where WebSocket tunnels count, for backends that take upgrades (the `http`, `vpc`
    /// and `registry` kinds over HTTP/1.1; not functions, not gateways).
    tunnels: Option<TunnelMetrics>,
    /// `switchyard_proxy_upstream_connections_{opened,reused}_total` of this backend.
    opened: prometheus_client::metrics::counter::Counter,
    reused: prometheus_client::metrics::counter::Counter,
}

struct HttpEndpoint {
    upstream: Upstream,
    host: HeaderValue,
    base_path: String,
}

/// How one attempt ended, when it did not produce the final response.
enum AttemptError {
    /// Worth another attempt; the last of these is the answer when attempts run out.
    Retryable(Failure),
    Final(GatewayError),
}

/// A failed attempt: the gateway's error, or the upstream's own answer (a 502, 503 or
/// 504 that a retry may replace), kept so it passes through as it came when it is the last.
enum Failure {
    Error(GatewayError),
    /// Boxed: rare, and large next to the common outcome.
    Response(Box<(Response<UpstreamBody>, Lease)>),
}

/// What a kind built on `http` does to each attempt's request just before it is sent
/// (the `gateway` kind signs it there, so a retry is signed afresh with its own nonce).
pub(super) trait Outbound: Sync {
    fn finish(&self, request: &mut Request<RequestBody>) -> Result<(), GatewayError>;
}

/// Plain `http`: requests go out as shaped.
struct AsShaped;

impl Outbound for AsShaped {
    fn finish(&self, _: &mut Request<RequestBody>) -> Result<(), GatewayError> {
        Ok(())
    }
}

/// Methods a retry may send again after the upstream may have processed them.
fn is_idempotent(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE)
}

impl HttpBackend {
    pub fn build(spec: &BackendSpec, endpoints: &[Endpoint], ctx: &BuildContext) -> Result<Self, String> {
        let trust = spec.tls.clone().map_or_else(Default::default, |t| switchyard_http::tls::Trust {
            ca_certificates: t.ca_certificates,
            insecure_skip_verify: t.insecure_skip_verify,
        });
        let weights: Vec<u32> = endpoints.iter().map(|e| e.weight).collect();
        let http2 = spec.upstream_version == UpstreamVersion::Http2;
        let alpn = if http2 { Alpn::H2 } else { Alpn::Http1 };
        let endpoints = endpoints
            .iter()
            .map(|e| {
                let tls = match &e.tls_server_name {
                    Some(name) => Some(Arc::new(UpstreamTls::with_alpn(&trust, name, alpn)?)),
                    None => None,
                };
                let upstream = Upstream::new(
                    Scheme::try_from(e.scheme.as_str()).map_err(|e| e.to_string())?,
                    Authority::try_from(e.authority.as_str()).map_err(|e| e.to_string())?,
                    tls,
                )
                .with_http2(http2);
                Ok(HttpEndpoint {
                    upstream,
                    host: HeaderValue::from_str(&e.host).map_err(|e| e.to_string())?,
                    base_path: e.base_path.clone(),
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        let names: Vec<String> = endpoints.iter().map(|e| e.upstream.authority.to_string()).collect();
        let labels = crate::metrics::BackendLabels { backend: Arc::from(spec.id.as_str()) };
        let active_health = spec.active_health.clone().map(|policy| {
            let gauges = [ctx.metrics.unhealthy_endpoints.clone(), ctx.metrics.traffic.unhealthy_by_backend.get_or_create(&labels).clone()];
            Arc::new(ActiveHealth::new(policy, endpoints.len(), gauges))
        });
        if let Some(health) = &active_health {
            let targets = ProbeTargets {
                upstreams: endpoints.iter().map(|e| e.upstream.clone()).collect(),
                host_headers: endpoints.iter().map(|e| e.host.to_str().unwrap_or_default().to_owned()).collect(),
                dial: ctx.dial.clone(),
                grant: spec.dial_grant.clone().map(Granted::new),
            };
            health::spawn(health, targets);
        }
        Ok(Self {
            id: spec.id.clone(),
            endpoints,
            balancer: Balancer::build(&spec.load_balancer, &names, &weights),
            dial_grant: spec.dial_grant.clone().map(Granted::new),
            outlier: spec.outlier.clone().map(|policy| Outlier::new(policy, names.len(), ctx.metrics.outlier_ejections.clone())),
            retry_budget: RetryBudget::default(),
            active_health,
            timeout: spec.timeout_ms.map_or(DEFAULT_TIMEOUT, Duration::from_millis),
            retries: spec.retries.clone(),
            http2,
            tunnels: (matches!(spec.kind, BackendKind::Http { .. }) && !http2).then(|| TunnelMetrics {
                upgrades: ctx.metrics.traffic.websocket_upgrades.get_or_create(&labels).clone(),
                open: ctx.metrics.traffic.websocket_open.get_or_create(&labels).clone(),
            }),
            opened: ctx.metrics.traffic.connections_opened.get_or_create(&labels).clone(),
            reused: ctx.metrics.traffic.connections_reused.get_or_create(&labels).clone(),
        })
    }

    /// Each endpoint's standing, when this backend checks health (active or passive).
    pub fn health_report(&self) -> Option<serde_json::Value> {
        if self.active_health.is_none() && self.outlier.is_none() {
            return None;
        }
        let endpoints: Vec<serde_json::Value> = self
            .endpoints
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let healthy = self.active_health.as_ref().is_none_or(|h| h.is_healthy(i));
                let ejected = self.outlier.as_ref().is_some_and(|o| o.is_ejected(i));
                serde_json::json!({"endpoint": e.upstream.authority.as_str(), "healthy": healthy, "ejected": ejected, "inRotation": healthy && !ejected})
            })
            .collect();
        Some(serde_json::json!({"backend": self.id, "endpoints": endpoints}))
    }

    /// Whether a WebSocket handshake may come here.
    pub fn takes_upgrades(&self) -> bool {
        self.tunnels.is_some()
    }

    /// The answer to a handshake that the upstream accepted (`101`): both connections
    /// go to a tunnel, the client gets the upstream's `101` with its `Upgrade` and
    /// `Connection`. A `101` nobody asked for is the backend's fault, never passed on:
    /// the client's connection would be left in a protocol it did not choose.
    fn switch_protocols(
        &self,
        mut response: Response<UpstreamBody>,
        upgrade: Option<ClientUpgrade>,
        ctx: &CallContext<'_>,
    ) -> Result<Response<ResponseBody>, GatewayError> {
        let (Some(client), Some(tunnels)) = (upgrade, &self.tunnels) else {
            let kind = "answered 101 Switching Protocols to a request that asked for no upgrade".into();
            return Err(GatewayError::BackendFailed { backend: self.id.clone(), kind, detail: String::new() });
        };
        let upstream = hyper::upgrade::on(&mut response);
        crate::websocket::spawn_tunnel(client, upstream, ctx.websocket_idle, tunnels.clone(), Arc::from(self.id.as_str()));
        let (mut parts, _) = response.into_parts();
        let (connection, upgrade) = (parts.headers.remove(http::header::CONNECTION), parts.headers.remove(http::header::UPGRADE));
        strip_hop_by_hop(&mut parts.headers);
        crate::websocket::set_upgrade_headers(&mut parts.headers);
        // The upstream's own tokens when it sent them (the same, in its spelling).
        if let (Some(connection), Some(upgrade)) = (connection, upgrade) {
            parts.headers.insert(http::header::CONNECTION, connection);
            parts.headers.insert(http::header::UPGRADE, upgrade);
        }
        parts.version = Version::HTTP_11;
        Ok(Response::from_parts(parts, ResponseBody::full(Bytes::new())))
    }

    /// Endpoint `i`'s authority (`host:port`).
    pub fn endpoint_name(&self, i: usize) -> Option<&str> {
        self.endpoints.get(i).map(|e| e.upstream.authority.as_str())
    }

    /// `previous`: the endpoint the last attempt went to, which a retry avoids.
    fn pick(&self, request: &ShapedRequest, headers: &HeaderMap, attempt: u32, previous: Option<usize>) -> usize {
        let input = PickInput { headers, client_ip: request.client_ip, attempt };
        let picked = self.balancer.pick(self.endpoints.len(), &input);
        in_rotation(self.endpoints.len(), picked, previous, |i| self.usable(i))
    }

    fn usable(&self, i: usize) -> bool {
        self.active_health.as_ref().is_none_or(|h| h.is_healthy(i)) && self.outlier.as_ref().is_none_or(|o| !o.is_ejected(i))
    }

    /// `target`: the shaped path and query (`ShapedRequest::path_and_query`), as bytes the
    /// URI keeps without a copy.
    fn build_request(
        &self,
        endpoint: &HttpEndpoint,
        request: &ShapedRequest,
        target: Bytes,
        headers: HeaderMap,
        body: RequestBody,
    ) -> Result<Request<RequestBody>, GatewayError> {
        let path_and_query = if endpoint.base_path.is_empty() {
            // A request the gateway makes itself (an event to a sink at `http://host/`)
            // may have no path of its own: the root is the endpoint's whole URL then.
            if target.is_empty() { Ok(PathAndQuery::from_static("/")) } else { PathAndQuery::from_maybe_shared(target) }
        } else {
            PathAndQuery::from_maybe_shared(Bytes::from([endpoint.base_path.as_bytes(), &target[..]].concat()))
        }
        .map_err(|e| GatewayError::BadRequest(format!("backend path: {e}")))?;
        let mut upstream = Request::new(body);
        *upstream.method_mut() = request.method.clone();
        *upstream.headers_mut() = headers;
        let host = request.host.clone().unwrap_or_else(|| endpoint.host.clone());
        if !self.http2 {
            // Origin form: the connection already goes to the endpoint.
            *upstream.uri_mut() = Uri::from(path_and_query);
            *upstream.version_mut() = Version::HTTP_11;
            upstream.headers_mut().insert(http::header::HOST, host);
            return Ok(upstream);
        }
        // HTTP/2 takes `:scheme` and `:authority` from the URI: the Host policy's host
        // goes there instead of a Host header.
        let authority = Authority::try_from(host.as_bytes()).map_err(|e| GatewayError::BadRequest(format!("backend authority: {e}")))?;
        let uri = Uri::builder().scheme(endpoint.upstream.scheme.clone()).authority(authority).path_and_query(path_and_query).build();
        *upstream.uri_mut() = uri.map_err(|e| GatewayError::BadRequest(format!("backend URI: {e}")))?;
        *upstream.version_mut() = Version::HTTP_2;
        if crate::grpc::is_grpc(upstream.headers()) {
            // The one `te` HTTP/2 allows; gRPC servers require it (it was dropped with
            // the other hop-by-hop headers).
            upstream.headers_mut().insert(http::header::TE, HeaderValue::from_static("trailers"));
        }
        Ok(upstream)
    }

    /// One attempt. `resend` says whether a failure after the request may have reached
    /// the upstream (a reset, a 502/503/504) may be retried: idempotent methods, or a
    /// policy saying `nonIdempotent`. `watch` tells, at a timeout, whether the gateway
    /// was waiting on the client's body rather than on the upstream.
    async fn attempt(
        &self,
        endpoint: &HttpEndpoint,
        request: Request<RequestBody>,
        ctx: &CallContext<'_>,
        retry: Retry<'_>,
        watch: Option<&BodyWatch>,
        budget: Duration,
    ) -> Result<(Response<UpstreamBody>, Lease), AttemptError> {
        let Retry { policy, resend } = retry;
        let timeout_ms = budget.as_millis() as u64;
        // The dial shares the attempt's deadline: a blackholed endpoint is a connect
        // failure (retryable to another endpoint), not the attempt's timeout.
        let deadline = tokio::time::Instant::now() + budget;
        let call = ctx.client.request(&endpoint.upstream, request, ctx.dial, self.dial_grant.as_ref(), deadline);
        let outcome = tokio::time::timeout_at(deadline, call).await;
        if let Ok(Ok((_, lease))) = &outcome {
            if lease.reused() { &self.reused } else { &self.opened }.inc();
        }
        let id = || self.id.clone();
        // For the log only: the endpoint and the whole error chain.
        let detail = |e: &crate::client::ClientError| format!("{}: {}", endpoint.upstream.authority, error_chain(e));
        match outcome {
            Err(_) if watch.is_some_and(BodyWatch::waiting_on_client) => Err(AttemptError::Final(GatewayError::BodyTimeout { timeout_ms })),
            Err(_) => Err(AttemptError::Final(GatewayError::BackendTimeout { backend: id(), timeout_ms })),
            Ok(Ok((response, lease))) if resend && policy.on_gateway_error && is_gateway_error(response.status()) => {
                Err(AttemptError::Retryable(Failure::Response(Box::new((response, lease)))))
            }
            Ok(Ok(response)) => Ok(response),
            Ok(Err(e)) if is_client_body_error(&e) => Err(AttemptError::Final(GatewayError::MalformedBody { detail: detail(&e) })),
            Ok(Err(e)) if is_body_too_large(&e) => {
                let limit = source_limit(&e);
                Err(AttemptError::Final(GatewayError::BodyTooLarge { limit }))
            }
            Ok(Err(e)) if e.denied().is_some() => {
                let why = e.kind();
                Err(AttemptError::Final(GatewayError::EgressDenied { backend: id(), why, detail: detail(&e) }))
            }
            Ok(Err(e)) if e.is_connect() => {
                let (kind, detail) = (e.kind(), detail(&e));
                let error = if e.is_tls() {
                    GatewayError::BackendTls { backend: id(), kind, detail }
                } else {
                    GatewayError::BackendConnect { backend: id(), kind, detail }
                };
                // Nothing was sent: another endpoint may take it, whatever the method.
                Err(if policy.on_connect_failure { AttemptError::Retryable(Failure::Error(error)) } else { AttemptError::Final(error) })
            }
            Ok(Err(e)) => {
                let error = GatewayError::BackendFailed { backend: id(), kind: e.kind(), detail: detail(&e) };
                Err(if resend && policy.on_reset { AttemptError::Retryable(Failure::Error(error)) } else { AttemptError::Final(error) })
            }
        }
    }
}

/// `preferred` if it is in rotation and not `avoid`, else the next one that is (wrapping).
/// A retry avoids the endpoint that just failed: a weighted schedule holds runs of a heavy
/// endpoint's slots, and least request may still rate it the least loaded. When nothing
/// else is in rotation, `avoid` is taken if it is; when nothing is, `preferred` anyway:
/// better a doubtful endpoint than a certain error.
fn in_rotation(len: usize, preferred: usize, avoid: Option<usize>, usable: impl Fn(usize) -> bool) -> usize {
    let walk = || (0..len).map(|k| (preferred + k) % len);
    walk().find(|&i| Some(i) != avoid && usable(i)).or_else(|| avoid.filter(|&i| usable(i))).unwrap_or(preferred)
}

/// What decides whether a failed attempt is retried.
#[derive(Clone, Copy)]
struct Retry<'a> {
    policy: &'a RetryPolicy,
    /// A request that may have reached the upstream may be sent again.
    resend: bool,
}

impl Retry<'_> {
    /// Whether any failure could lead to another attempt (so the body is worth buffering).
    fn possible(&self) -> bool {
        self.policy.attempts > 0
            && (self.policy.on_connect_failure || (self.resend && (self.policy.on_reset || self.policy.on_gateway_error)))
    }
}

impl Backend for HttpBackend {
    /// `serve_with`'s own future: an `async fn` awaiting it would copy it once more per
    /// request.
    fn serve(
        &self,
        request: ShapedRequest,
        ctx: &CallContext<'_>,
    ) -> impl std::future::Future<Output = Result<Response<ResponseBody>, GatewayError>> + Send {
        self.serve_with(request, ctx, &AsShaped)
    }
}

impl HttpBackend {
    /// Serves one request, `outbound` finishing each attempt's request.
    pub(super) async fn serve_with(
        &self,
        mut request: ShapedRequest,
        ctx: &CallContext<'_>,
        outbound: &impl Outbound,
    ) -> Result<Response<ResponseBody>, GatewayError> {
        if self.endpoints.is_empty() {
            return Err(GatewayError::NoEndpoints { backend: self.id.clone() });
        }
        if !self.http2 && crate::grpc::is_grpc(&request.headers) {
            // Over HTTP/1.1 the trailers that carry gRPC's status would be lost.
            return Err(GatewayError::GrpcNeedsHttp2 { backend: self.id.clone() });
        }
        let policy = ctx.route_retries.unwrap_or(&self.retries);
        let retry = Retry { policy, resend: policy.non_idempotent || is_idempotent(&request.method) };
        let body = std::mem::replace(&mut request.body, RequestBody::full(Bytes::new()));
        let (mut body, replay) = replayable(body, retry.possible(), ctx).await?;
        let attempts = if replay.is_some() { 1 + policy.attempts } else { 1 };
        // Only a body still streaming from the client can keep an attempt waiting on it.
        let watch = if replay.is_none() { body.watch() } else { None };
        let mut upgrade = request.upgrade.take();
        let mut headers = Some(std::mem::take(&mut request.headers));
        // Whole (shaping allocates it at its length), so the last attempt's URI takes it as it is.
        let mut target = Bytes::from(std::mem::take(&mut request.path_and_query));
        let mut last_failure = None;
        let _in_flight = self.retry_budget.request();
        let mut _retry = None;
        let mut previous = None;
        let _timer = ctx.exchange.time_upstream();
        for attempt in 0..attempts {
            let remaining = ctx.deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                break;
            }
            if attempt > 0 {
                // Over budget: fail with what we have rather than pile on.
                let Some(retry) = self.retry_budget.try_retry() else { break };
                _retry = Some(retry);
            }
            let index = self.pick(&request, headers.as_ref().expect("headers stay until the last attempt"), attempt, previous);
            previous = Some(index);
            ctx.exchange.attempt(index);
            let endpoint = &self.endpoints[index];
            // Counted until the response headers arrive (least-request's notion of load).
            let _in_flight = self.balancer.start(index);
            let last = attempt + 1 == attempts;
            let attempt_headers = if last { headers.take().unwrap_or_default() } else { headers.clone().unwrap_or_default() };
            let attempt_body = match &replay {
                Some(bytes) => RequestBody::full(bytes.clone()),
                None => std::mem::replace(&mut body, RequestBody::full(Bytes::new())),
            };
            let attempt_target = if last { std::mem::take(&mut target) } else { target.clone() };
            let mut upstream = self.build_request(endpoint, &request, attempt_target, attempt_headers, attempt_body)?;
            if upgrade.is_some() {
                crate::websocket::set_upgrade_headers(upstream.headers_mut());
                // Through hyper's client, which hands the connection over on a `101`.
                upstream.extensions_mut().insert(crate::client::Upgrade);
            }
            // Every upstream request (any kind served through here) continues the trace.
            ctx.trace.propagate(upstream.headers_mut());
            outbound.finish(&mut upstream)?;
            // The previous failure is only kept to answer with when no attempt follows.
            drop(last_failure.take());
            let outcome = self.attempt(endpoint, upstream, ctx, retry, watch.as_deref(), self.timeout.min(remaining)).await;
            if let (Some(outlier), Some(healthy)) = (&self.outlier, endpoint_health(&outcome)) {
                outlier.record(index, healthy);
            }
            match outcome {
                Ok((response, _)) if response.status() == StatusCode::SWITCHING_PROTOCOLS => {
                    return self.switch_protocols(response, upgrade.take(), ctx);
                }
                Ok((response, lease)) => return Ok(passthrough(response, lease)),
                Err(AttemptError::Final(e)) => return Err(e),
                Err(AttemptError::Retryable(failure)) => last_failure = Some(failure),
            }
        }
        // No attempt left: the last failure as it came (an upstream's answer passes
        // through), or the route's budget ran out.
        match last_failure {
            Some(Failure::Response(answer)) => {
                let (response, lease) = *answer;
                Ok(passthrough(response, lease))
            }
            Some(Failure::Error(e)) => Err(e),
            None => Err(GatewayError::BackendTimeout { backend: self.id.clone(), timeout_ms: ctx.budget.as_millis() as u64 }),
        }
    }
}

/// When retries are possible and the body is small (or empty), buffers it so every
/// attempt can send it; otherwise returns the stream untouched. Buffering counts against
/// the route's deadline: a client that stalls here gets a 408.
async fn replayable(
    body: RequestBody,
    retries_possible: bool,
    ctx: &CallContext<'_>,
) -> Result<(RequestBody, Option<Bytes>), GatewayError> {
    let small = body.size_hint().upper().is_some_and(|n| n <= MAX_REPLAY_BODY);
    if !retries_possible || !small {
        return Ok((body, None));
    }
    let bytes = collect(body, ctx).await?;
    Ok((RequestBody::full(bytes.clone()), Some(bytes)))
}

/// The whole body (within its limit), read before the route's deadline: a client that
/// stalls gets a 408, one over the limit a 413.
pub(super) async fn collect(body: RequestBody, ctx: &CallContext<'_>) -> Result<Bytes, GatewayError> {
    if body.is_end_stream() {
        return Ok(Bytes::new());
    }
    match tokio::time::timeout_at(ctx.deadline.into(), body.collect()).await {
        Err(_) => Err(GatewayError::BodyTimeout { timeout_ms: ctx.budget.as_millis() as u64 }),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) if is_body_too_large(&*e) => Err(GatewayError::BodyTooLarge { limit: source_limit(&*e) }),
        Ok(Err(e)) => Err(GatewayError::MalformedBody { detail: error_chain(&*e) }),
    }
}

/// What an attempt says about the endpoint's health; None when it says nothing (the
/// client was at fault: its body was too large, malformed or too slow; or the policy
/// refused the dial).
fn endpoint_health(outcome: &Result<(Response<UpstreamBody>, Lease), AttemptError>) -> Option<bool> {
    match outcome {
        Ok((response, _)) => Some(!response.status().is_server_error()),
        Err(AttemptError::Retryable(_)) => Some(false),
        Err(AttemptError::Final(error)) => {
            (!is_client_fault(error) && !matches!(error, GatewayError::EgressDenied { .. })).then_some(false)
        }
    }
}

/// Errors the client caused: never held against an endpoint.
fn is_client_fault(error: &GatewayError) -> bool {
    matches!(
        error,
        GatewayError::BodyTooLarge { .. }
            | GatewayError::MalformedBody { .. }
            | GatewayError::BodyTimeout { .. }
            | GatewayError::BadRequest(_)
    )
}

fn is_gateway_error(status: StatusCode) -> bool {
    matches!(status, StatusCode::BAD_GATEWAY | StatusCode::SERVICE_UNAVAILABLE | StatusCode::GATEWAY_TIMEOUT)
}

fn passthrough(response: Response<UpstreamBody>, lease: Lease) -> Response<ResponseBody> {
    let (mut parts, body) = response.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    // The client's connection has its own version: an HTTP/1.0 upstream must not turn
    // a keep-alive HTTP/1.1 client connection into HTTP/1.0.
    parts.version = Version::HTTP_11;
    Response::from_parts(parts, ResponseBody::upstream(body, lease))
}

/// The limit recorded in a [`crate::request_body::BodyTooLarge`] somewhere in the chain.
fn source_limit(error: &(dyn std::error::Error + 'static)) -> u64 {
    let mut current = Some(error);
    while let Some(e) = current {
        if let Some(too_large) = e.downcast_ref::<crate::request_body::BodyTooLarge>() {
            return too_large.limit;
        }
        current = e.source();
    }
    0
}

/// `a: b: c` from an error and its sources: hyper's top-level messages alone
/// ("client error (Connect)") do not tell an operator what happened.
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut out = error.to_string();
    let mut current = error.source();
    while let Some(e) = current {
        out.push_str(": ");
        out.push_str(&e.to_string());
        current = e.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The futures of one attempt, in bytes (`service`'s test has the outer ones).
    fn attempt_futures<'a>(_: std::marker::PhantomData<&'a ()>) -> Vec<(&'static str, usize)> {
        use crate::future_size::of;
        type Args<'b> = (&'b HttpBackend, &'b HttpEndpoint, Request<RequestBody>, &'b CallContext<'b>, Retry<'b>, Option<&'b BodyWatch>);
        vec![
            (
                "serve_with",
                of(|(b, r, ctx, o): (&'a HttpBackend, ShapedRequest, &'a CallContext<'a>, &'a AsShaped)| b.serve_with(r, ctx, o)),
            ),
            ("attempt", of(|(b, e, r, ctx, retry, watch): Args<'a>| b.attempt(e, r, ctx, retry, watch, Duration::ZERO))),
            ("replayable", of(|(body, possible, ctx): (RequestBody, bool, &'a CallContext<'a>)| replayable(body, possible, ctx))),
        ]
    }

    /// A measurement to read with `--ignored --nocapture`, not a check (the dispatch
    /// future's check is `service::tests::request_path_future_sizes`).
    #[test]
    #[ignore = "prints future sizes"]
    fn attempt_future_sizes() {
        for (name, size) in attempt_futures(std::marker::PhantomData) {
            eprintln!("{name}: {size} bytes");
        }
    }

    fn policy(attempts: u32, connect: bool, reset: bool, gateway: bool) -> RetryPolicy {
        RetryPolicy { attempts, on_connect_failure: connect, on_reset: reset, on_gateway_error: gateway, non_idempotent: false }
    }

    #[test]
    fn endpoints_out_of_rotation_are_walked_past() {
        let all = |_: usize| true;
        assert_eq!(in_rotation(4, 2, None, all), 2);
        assert_eq!(in_rotation(4, 2, None, |i| i != 2 && i != 3), 0, "wrapping");
        assert_eq!(in_rotation(4, 2, None, |_| false), 2, "none usable: the pick anyway");
    }

    #[test]
    fn a_retry_moves_off_the_endpoint_that_just_failed() {
        let all = |_: usize| true;
        assert_eq!(in_rotation(3, 1, Some(1), all), 2, "the balancer picked it again");
        assert_eq!(in_rotation(3, 2, Some(0), |i| i != 2), 1, "walking past an unusable one skips it too");
        assert_eq!(in_rotation(3, 0, Some(0), |i| i == 0), 0, "the only one in rotation");
        assert_eq!(in_rotation(1, 0, Some(0), all), 0, "a single endpoint");
        assert_eq!(in_rotation(3, 0, Some(0), |_| false), 0, "none in rotation: the pick anyway");
    }

    #[test]
    fn only_get_head_options_put_and_delete_are_idempotent() {
        for method in [Method::GET, Method::HEAD, Method::OPTIONS, Method::PUT, Method::DELETE] {
            assert!(is_idempotent(&method), "{method}");
        }
        for method in [Method::POST, Method::PATCH, Method::CONNECT, Method::TRACE] {
            assert!(!is_idempotent(&method), "{method}");
        }
    }

    #[test]
    fn a_post_is_buffered_for_a_retry_only_when_one_could_happen() {
        let resets = policy(2, false, true, true);
        assert!(!Retry { policy: &resets, resend: false }.possible(), "a POST may not be resent after a reset or a 5xx");
        assert!(Retry { policy: &resets, resend: true }.possible(), "a GET, or nonIdempotent: true");
        let connect = policy(2, true, false, false);
        assert!(Retry { policy: &connect, resend: false }.possible(), "connect failures are retried for every method");
        assert!(!Retry { policy: &policy(0, true, true, true), resend: true }.possible(), "no attempts, no retry");
    }

    #[test]
    fn client_faults_never_count_against_an_endpoints_health() {
        let verdict = |error: GatewayError| endpoint_health(&Err(AttemptError::Final(error)));
        assert_eq!(verdict(GatewayError::MalformedBody { detail: "invalid chunk size".into() }), None);
        assert_eq!(verdict(GatewayError::BodyTimeout { timeout_ms: 300 }), None);
        assert_eq!(verdict(GatewayError::BodyTooLarge { limit: 1 }), None);
        assert_eq!(verdict(GatewayError::EgressDenied { backend: "b".into(), why: "loopback".into(), detail: String::new() }), None);
        assert_eq!(verdict(GatewayError::BackendTimeout { backend: "b".into(), timeout_ms: 300 }), Some(false));
        let reset = GatewayError::BackendFailed { backend: "b".into(), kind: "connection reset".into(), detail: String::new() };
        assert_eq!(endpoint_health(&Err(AttemptError::Retryable(Failure::Error(reset)))), Some(false));
    }

    #[test]
    fn a_body_error_from_the_client_is_found_through_the_clients_error_chain() {
        // What hyper's client hands back when the body it streams fails: the body's error
        // as the source of its own.
        #[derive(Debug, thiserror::Error)]
        #[error("request error")]
        struct Outer(#[source] crate::request_body::BoxError);
        let too_large = Outer(Box::new(crate::request_body::BodyTooLarge { limit: 7 }));
        assert!(is_body_too_large(&too_large) && !is_client_body_error(&too_large));
        assert_eq!(source_limit(&too_large), 7);
        let other = Outer("connection reset by peer".into());
        assert!(!is_client_body_error(&other) && !is_body_too_large(&other));
    }
}
