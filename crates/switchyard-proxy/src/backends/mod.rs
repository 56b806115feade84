//! Backend kinds: a closed set, one module each, all behind [`Backend`].
//!
//! A backend receives a request the earlier phases already matched, authenticated and
//! shaped (path, query, headers, Host policy) and answers it, or says why it could not
//! with a [`GatewayError`].

mod data_service;
mod event_bus;
mod function;
mod gateway;
mod http;
mod mock;
mod model;
mod unavailable;
mod unimplemented;

#[cfg(feature = "fuzzing")]
pub use self::function::parse_response as parse_function_response;

use std::future::Future;
use std::time::{Duration, Instant};

use ::http::{HeaderMap, HeaderValue, Method, Response};
use switchyard_compile::snapshot::{Backend as BackendSpec, BackendKind, FunctionInvocation, RetryPolicy};

use crate::body::ResponseBody;
use crate::client::UpstreamClient;
use crate::error::GatewayError;
use crate::request_body::RequestBody;

pub use self::data_service::DataServiceBackend;
pub use self::event_bus::EventBusBackend;
pub use self::function::{EventFunction, EventSource};
pub use self::gateway::GatewayBackend;
pub use self::http::HttpBackend;
pub use self::mock::MockBackend;
pub use self::model::ModelBackend;
pub use self::unavailable::Unavailable;
pub use self::unimplemented::Unimplemented;

/// Total budget of a request when neither the route nor the backend sets one.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// A request ready for its backend.
pub struct ShapedRequest {
    pub method: Method,
    /// Client headers minus hop-by-hop ones, plus the route's constants and forwarding
    /// headers. No Host: the backend sets it from `host`.
    pub headers: HeaderMap,
    /// Backend path (rewritten) and query (with constant parameters).
    pub path_and_query: String,
    pub body: RequestBody,
    /// Host header to send; None means the endpoint's own host.
    pub host: Option<HeaderValue>,
    /// The client's address (consistent hashing on the source IP).
    pub client_ip: std::net::IpAddr,
    /// The client's path and named path parameters, for an event function's event only
    /// (None, and nothing allocated, for every other backend).
    pub event: Option<Box<EventSource>>,
    /// A WebSocket handshake: the client's connection, handed over on a `101`.
    pub upgrade: Option<crate::websocket::ClientUpgrade>,
}

/// What a backend may use besides the request.
pub struct CallContext<'a> {
    pub client: &'a UpstreamClient,
    /// Where this snapshot lets the proxy dial.
    pub dial: &'a crate::egress::DialPolicy,
    /// The route's total budget ends here.
    pub deadline: Instant,
    /// The route's total budget (for messages).
    pub budget: std::time::Duration,
    /// The route's retry policy, which overrides the backend's.
    pub route_retries: Option<&'a RetryPolicy>,
    /// The route's `namespace/name` (metrics labels).
    pub route: &'a std::sync::Arc<str>,
    /// The request's record: kinds that call upstreams note each attempt's endpoint and
    /// the time spent there.
    pub exchange: &'a crate::exchange::Exchange,
    /// The request's trace context: every upstream request carries it (`traceparent`
    /// with the gateway's span as parent, and the caller's `tracestate`).
    pub trace: &'a crate::trace_context::TraceContext,
    /// A WebSocket tunnel is closed after this long without a byte either way.
    pub websocket_idle: std::time::Duration,
}

/// One backend kind.
pub trait Backend {
    /// Serves one request.
    fn serve(
        &self,
        request: ShapedRequest,
        ctx: &CallContext<'_>,
    ) -> impl Future<Output = Result<Response<ResponseBody>, GatewayError>> + Send;
}

/// What backends are built with, besides their own spec.
pub struct BuildContext {
    /// The snapshot's egress policy (health probes dial through it too).
    pub dial: std::sync::Arc<crate::egress::DialPolicy>,
    /// Where health checkers and model token counting report.
    pub metrics: crate::metrics::BackendMetrics,
}

/// The runtime of one BackendService, per kind.
pub enum BackendRuntime {
    Http(HttpBackend),
    Gateway(GatewayBackend),
    /// `function` with `invocation: Event` (an `Http` one is served as `Http`).
    EventFunction(EventFunction),
    Model(ModelBackend),
    EventBus(EventBusBackend),
    DataService(DataServiceBackend),
    Mock(MockBackend),
    Unimplemented(Unimplemented),
    Unavailable(Unavailable),
}

impl BackendRuntime {
    /// Builds one backend. One that this proxy cannot build (compile should have refused
    /// it) answers 503 with the reason instead of failing the whole snapshot, so one bad
    /// object never keeps every other change from reaching traffic.
    pub fn build(spec: &BackendSpec, ctx: &BuildContext) -> Self {
        let built = match &spec.kind {
            BackendKind::Http { endpoints } => HttpBackend::build(spec, endpoints, ctx).map(Self::Http),
            BackendKind::Gateway { endpoints, max_hops, signing } => {
                GatewayBackend::build(spec, endpoints, *max_hops, signing.as_ref(), ctx).map(Self::Gateway)
            }
            BackendKind::Function { endpoints, invocation: FunctionInvocation::Http } => {
                HttpBackend::build(spec, endpoints, ctx).map(Self::Http)
            }
            BackendKind::Function { endpoints, invocation: FunctionInvocation::Event { max_request_bytes, max_response_bytes } } => {
                EventFunction::build(spec, endpoints, *max_request_bytes, *max_response_bytes, ctx).map(Self::EventFunction)
            }
            BackendKind::Model { endpoints, protocol, token, idle_timeout_ms } => {
                ModelBackend::build(spec, endpoints, *protocol, token.as_ref(), *idle_timeout_ms, ctx).map(Self::Model)
            }
            BackendKind::Mock { status, headers, body } => MockBackend::build(*status, headers, body).map(Self::Mock),
            BackendKind::EventBus { sink, source, event_type } => {
                EventBusBackend::build(spec, sink, source, event_type, ctx).map(Self::EventBus)
            }
            BackendKind::DataService(service) => DataServiceBackend::build(spec, service).map(Self::DataService),
            BackendKind::Unimplemented { kind } => Ok(Self::Unimplemented(Unimplemented::new(kind, &spec.id))),
            BackendKind::Unavailable { reason, message } => Ok(Self::Unavailable(Unavailable::new(&spec.id, reason, message))),
        };
        built.unwrap_or_else(|why| {
            tracing::warn!(backend = %spec.id, error = %why, "backend cannot be built; its requests answer 503");
            Self::Unavailable(Unavailable::new(&spec.id, "InvalidBackend", &format!("this proxy cannot use it: {why}")))
        })
    }

    /// Dispatches to the kind; a match, not a virtual call. A request's future is as large
    /// as the largest kind it could hold and is copied whole when it is moved, so only
    /// `http`'s future is held inline (as it is, not inside an `async fn` that would copy it
    /// once more); the other kinds' futures (kilobytes for a model or a data service) are
    /// boxed, one allocation on their own requests; mock and error answers are ready at once.
    pub fn serve<'a>(&'a self, request: ShapedRequest, ctx: &'a CallContext<'_>) -> Serving<'a, impl Future<Output = Served> + Send> {
        match self {
            Self::Http(b) => Serving::Http { future: b.serve(request, ctx) },
            Self::Gateway(b) => Serving::Boxed { future: Box::pin(b.serve(request, ctx)) },
            Self::EventFunction(b) => Serving::Boxed { future: Box::pin(b.serve(request, ctx)) },
            Self::Model(b) => Serving::Boxed { future: Box::pin(b.serve(request, ctx)) },
            Self::EventBus(b) => Serving::Boxed { future: Box::pin(b.serve(request, ctx)) },
            Self::DataService(b) => Serving::Boxed { future: Box::pin(b.serve(request, ctx)) },
            Self::Mock(b) => Serving::Ready { answer: Some(b.answer()) },
            Self::Unimplemented(b) => Serving::Ready { answer: Some(b.answer()) },
            Self::Unavailable(b) => Serving::Ready { answer: Some(b.answer()) },
        }
    }
}

/// What a backend answers.
pub type Served = Result<Response<ResponseBody>, GatewayError>;

pin_project_lite::pin_project! {
    /// [`BackendRuntime::serve`]'s future.
    #[project = ServingProj]
    pub enum Serving<'a, H> {
        Http { #[pin] future: H },
        Boxed { future: std::pin::Pin<Box<dyn Future<Output = Served> + Send + 'a>> },
        Ready { answer: Option<Served> },
    }
}

impl<H: Future<Output = Served>> Future for Serving<'_, H> {
    type Output = Served;

    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Served> {
        match self.project() {
            ServingProj::Http { future } => future.poll(cx),
            ServingProj::Boxed { future } => future.as_mut().poll(cx),
            ServingProj::Ready { answer } => {
                std::task::Poll::Ready(answer.take().expect("a backend's future is not polled after it answered"))
            }
        }
    }
}

impl BackendRuntime {
    /// Whether a WebSocket handshake may go to this backend (`http`, `vpc` and
    /// `registry` over HTTP/1.1).
    pub fn takes_upgrades(&self) -> bool {
        matches!(self, Self::Http(b) if b.takes_upgrades())
    }

    /// The authority of endpoint `i`, for kinds that dial endpoints (the access log's
    /// upstream address).
    pub fn endpoint_name(&self, i: usize) -> Option<&str> {
        match self {
            Self::Http(b) => b.endpoint_name(i),
            Self::Gateway(b) => b.endpoint_name(i),
            Self::EventFunction(b) => b.endpoint_name(i),
            Self::Model(b) => b.endpoint_name(i),
            Self::EventBus(_) | Self::DataService(_) | Self::Mock(_) | Self::Unimplemented(_) | Self::Unavailable(_) => None,
        }
    }

    /// Endpoint health for `/config_dump`, for backends that check it.
    pub fn health_report(&self) -> Option<serde_json::Value> {
        match self {
            Self::Http(b) => b.health_report(),
            Self::Gateway(b) => b.health_report(),
            Self::EventFunction(b) => b.health_report(),
            Self::Model(b) => b.health_report(),
            Self::EventBus(b) => b.health_report(),
            Self::DataService(b) => b.health_report(),
            Self::Mock(_) | Self::Unimplemented(_) | Self::Unavailable(_) => None,
        }
    }
}
