//! Tracing end to end: the real binary (standalone) exporting spans over OTLP/HTTP to a
//! real receiver in this test, which decodes each export with the `opentelemetry-proto`
//! types (prost), and real upstreams that show the `traceparent`/`tracestate` they
//! received. Checked: an incoming trace is continued (same trace id, the caller's span
//! as parent, `tracestate` unchanged) and the upstream's parent id is the exported span's
//! id; a request without one, or with a malformed one, starts a new trace (never a 4xx)
//! and the client's value never reaches the upstream; the span's attributes (route,
//! backend, method, status, error code, upstream address) and kind and status; every
//! backend kind that makes an upstream HTTP request propagates; sampling 0 exports
//! nothing but still propagates (and a sampled caller is still honoured); without an
//! endpoint the context still propagates; a dead collector fails no request.

mod support;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::trace::v1::{Span, span::SpanKind, status::StatusCode};
use prost::Message as _;
use support::upstream::Upstream;
use support::{ConfigDir, Reply, Switchyard, get, send, wait_until};

const API: &str = "apiVersion: switchyard.dev/v1alpha1";
const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER: &str = "00f067aa0ba902b7";
const EXPORTED: Duration = Duration::from_secs(10);

/// A small HTTP server on loopback, handing every request to `answer`; stops on drop.
struct Server {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    async fn start<F>(answer: F) -> Self
    where
        F: Fn(http::request::Parts, Bytes) -> Response<Full<Bytes>> + Send + Sync + 'static,
    {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let answer = Arc::new(answer);
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let answer = answer.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |request: Request<Incoming>| {
                        let answer = answer.clone();
                        async move {
                            let (parts, body) = request.into_parts();
                            let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                            Ok::<_, std::convert::Infallible>(answer(parts, body))
                        }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self { addr, task }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A span as the receiver decoded it, with its resource's `service.name`.
#[derive(Clone, Debug)]
struct Received {
    service: String,
    span: Span,
}

impl Received {
    fn trace_id(&self) -> String {
        hex(&self.span.trace_id)
    }

    fn span_id(&self) -> String {
        hex(&self.span.span_id)
    }

    fn parent_id(&self) -> String {
        hex(&self.span.parent_span_id)
    }

    fn attr(&self, key: &str) -> Option<String> {
        let kv = self.span.attributes.iter().find(|kv| kv.key == key)?;
        match kv.value.as_ref()?.value.as_ref()? {
            AnyValue::StringValue(s) => Some(s.clone()),
            AnyValue::IntValue(i) => Some(i.to_string()),
            other => Some(format!("{other:?}")),
        }
    }
}

/// An OTLP/HTTP receiver: `POST /v1/traces` with a protobuf `ExportTraceServiceRequest`.
struct Collector {
    server: Server,
    spans: Arc<Mutex<Vec<Received>>>,
}

impl Collector {
    async fn start() -> Self {
        let spans = Arc::new(Mutex::new(Vec::new()));
        let kept = spans.clone();
        let server = Server::start(move |parts, body| {
            assert_eq!((parts.method.as_str(), parts.uri.path()), ("POST", "/v1/traces"));
            assert_eq!(parts.headers["content-type"], "application/x-protobuf");
            let export = ExportTraceServiceRequest::decode(body).expect("an OTLP protobuf export");
            for resource in export.resource_spans {
                let service = resource
                    .resource
                    .iter()
                    .flat_map(|r| &r.attributes)
                    .find(|kv| kv.key == "service.name")
                    .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
                        AnyValue::StringValue(s) => Some(s.clone()),
                        _ => None,
                    })
                    .unwrap_or_default();
                for scope in resource.scope_spans {
                    for span in scope.spans {
                        kept.lock().unwrap().push(Received { service: service.clone(), span });
                    }
                }
            }
            Response::new(Full::new(Bytes::new()))
        })
        .await;
        Self { server, spans }
    }

    fn endpoint(&self) -> String {
        self.server.url()
    }

    fn all(&self) -> Vec<Received> {
        self.spans.lock().unwrap().clone()
    }

    /// The span of the request whose response carried `request_id`.
    async fn span_of(&self, request_id: &str) -> Received {
        let find = || self.all().into_iter().find(|s| s.attr("switchyard.request_id").as_deref() == Some(request_id));
        wait_until(&format!("the span of {request_id} is exported"), EXPORTED, || async { find().is_some() }).await;
        find().unwrap()
    }
}

/// What an upstream received: `traceparent` and `tracestate` per path.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<(String, Headers)>>>);

/// The trace headers of one request, by name.
type Headers = HashMap<String, String>;

impl Seen {
    fn headers(&self, path_prefix: &str) -> Vec<Headers> {
        self.0.lock().unwrap().iter().filter(|(p, _)| p.starts_with(path_prefix)).map(|(_, h)| h.clone()).collect()
    }
}

/// An upstream answering every request as a function platform would (the response JSON
/// an event function returns, which any other caller takes as a 200 body), recording
/// what it received.
async fn recorder() -> (Server, Seen) {
    let seen = Seen::default();
    let kept = seen.clone();
    let server = Server::start(move |parts, _| {
        let headers = ["traceparent", "tracestate"]
            .iter()
            .filter_map(|n| Some((n.to_string(), parts.headers.get(*n)?.to_str().ok()?.to_owned())))
            .collect();
        kept.0.lock().unwrap().push((parts.uri.path().to_owned(), headers));
        let mut response = Response::new(Full::new(Bytes::from_static(br#"{"statusCode": 200, "body": "ok"}"#)));
        response.headers_mut().insert("content-type", http::HeaderValue::from_static("application/json"));
        response
    })
    .await;
    (server, seen)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `00-TRACE-PARENT-FLAGS` split, checked well-formed.
fn traceparent(value: &str) -> (String, String, String) {
    let parts: Vec<&str> = value.split('-').collect();
    assert_eq!(parts.len(), 4, "{value}");
    assert_eq!((parts[0], parts[1].len(), parts[2].len(), parts[3].len()), ("00", 32, 16, 2), "{value}");
    assert!(value.bytes().all(|b| b == b'-' || b.is_ascii_digit() || (b'a'..=b'f').contains(&b)), "{value}");
    assert_ne!(parts[1], "0".repeat(32));
    assert_ne!(parts[2], "0".repeat(16));
    (parts[1].to_owned(), parts[2].to_owned(), parts[3].to_owned())
}

/// What the echo upstream says it received as `name`.
fn echoed(reply: &Reply, name: &str) -> Option<String> {
    reply.json()["headers"][name].as_str().map(str::to_owned)
}

fn routes(echo: &Upstream, recorder: &Server) -> ConfigDir {
    let up = echo.url();
    let rec = recorder.url();
    let backend = |name: &str, spec: &str| format!("{API}\nkind: BackendService\nmetadata: {{name: {name}}}\nspec: {{{spec}}}\n---\n");
    let route = |name: &str, path: &str| {
        format!(
            "{API}\nkind: ApiRoute\nmetadata: {{name: {name}}}\nspec: {{match: {{path: {path}, pathType: Prefix}}, backendRefs: [{{name: {name}}}]}}\n---\n"
        )
    };
    let mut text = String::new();
    for (name, path, spec) in [
        ("echo", "/echo", format!("http: {{urls: [\"{up}\"]}}")),
        ("dead", "/dead", "http: {urls: [\"http://127.0.0.1:9\"]}".to_owned()),
        ("fn", "/fn", format!("function: {{url: \"{rec}/fn\", invocation: Event}}")),
        ("model", "/model", format!("model: {{url: \"{rec}/model\", protocol: Raw}}")),
        ("gw", "/gw", format!("gateway: {{url: \"{rec}/gw\"}}")),
        ("bus", "/bus", format!("eventBus: {{http: {{url: \"{rec}/bus\", mode: Binary}}, source: /shop, type: com.example.test}}")),
        ("mock", "/mock", "mock: {statusCode: 200, body: hi}".to_owned()),
    ] {
        text.push_str(&backend(name, &spec));
        text.push_str(&route(name, path));
    }
    ConfigDir::with(&[("routes.yaml", &text)])
}

struct Setup {
    gateway: Switchyard,
    collector: Collector,
    echo: Upstream,
    seen: Seen,
    _recorder: Server,
    _config: ConfigDir,
}

async fn setup(extra: &[&str]) -> Setup {
    let collector = Collector::start().await;
    let echo = Upstream::start("echo").await;
    let (recorder, seen) = recorder().await;
    let config = routes(&echo, &recorder);
    let endpoint = collector.endpoint();
    let mut args = vec!["--access-log", "off", "--workers", "2"];
    if !extra.contains(&"no-endpoint") {
        args.extend(["--otlp-endpoint", &endpoint]);
    }
    args.extend(extra.iter().filter(|a| **a != "no-endpoint"));
    let gateway = Switchyard::standalone(config.path(), &args);
    gateway.wait_ready().await;
    wait_until("the routes are served", Duration::from_secs(10), || async {
        get(&gateway.proxy_url("/mock")).await.is_ok_and(|r| r.status == 200)
    })
    .await;
    Setup { gateway, collector, echo, seen, _recorder: recorder, _config: config }
}

async fn call(gateway: &Switchyard, path: &str, headers: &[(&str, &str)]) -> Reply {
    send(Method::GET, &gateway.proxy_url(path), headers, Bytes::new()).await.unwrap()
}

fn request_id(reply: &Reply) -> String {
    reply.header("x-ca-request-id").unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incoming_trace_is_continued_exported_and_the_upstreams_parent_is_the_exported_span() {
    let s = setup(&[]).await;
    let incoming = format!("00-{TRACE}-{CALLER}-01");
    let reply =
        call(&s.gateway, "/echo/a?secret=1", &[("traceparent", &incoming), ("tracestate", "congo=t61rcWkgMzE,rojo=00f067aa")]).await;
    assert_eq!(reply.status, 200);
    let sent = echoed(&reply, "traceparent").expect("the upstream got a traceparent");
    let (trace, parent, flags) = traceparent(&sent);
    assert_eq!((trace.as_str(), flags.as_str()), (TRACE, "01"));
    assert_ne!(parent, CALLER, "the gateway's own span, not the caller's");
    assert_eq!(echoed(&reply, "tracestate").as_deref(), Some("congo=t61rcWkgMzE,rojo=00f067aa"));

    let span = s.collector.span_of(&request_id(&reply)).await;
    assert_eq!((span.trace_id(), span.span_id(), span.parent_id()), (TRACE.to_owned(), parent, CALLER.to_owned()));
    assert_eq!(span.service, "switchyard");
    assert_eq!(span.span.kind, SpanKind::Server as i32);
    assert_eq!(span.span.name, "GET default/echo");
    assert_eq!(span.span.trace_state, "congo=t61rcWkgMzE,rojo=00f067aa");
    assert!(span.span.end_time_unix_nano >= span.span.start_time_unix_nano && span.span.start_time_unix_nano > 0);
    assert_ne!(span.span.status.as_ref().map_or(0, |s| s.code), StatusCode::Error as i32);
    for (key, value) in [
        ("http.request.method", "GET".to_owned()),
        ("http.response.status_code", "200".to_owned()),
        ("url.path", "/echo/a".to_owned()),
        ("switchyard.route", "default/echo".to_owned()),
        ("switchyard.backend", "default/echo".to_owned()),
        ("switchyard.upstream.address", s.echo.addr.to_string()),
    ] {
        assert_eq!(span.attr(key).as_deref(), Some(value.as_str()), "{key}");
    }
    assert_eq!(span.attr("switchyard.error_code"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_traceparent_the_gateway_starts_a_trace_that_the_upstream_continues() {
    let s = setup(&[]).await;
    let reply = call(&s.gateway, "/echo", &[("tracestate", "orphan=1")]).await;
    assert_eq!(reply.status, 200);
    let (trace, parent, flags) = traceparent(&echoed(&reply, "traceparent").unwrap());
    assert_eq!(flags, "01", "sampling 1.0 (the default)");
    assert_eq!(echoed(&reply, "tracestate"), None, "no tracestate without a valid traceparent");
    let span = s.collector.span_of(&request_id(&reply)).await;
    assert_eq!((span.trace_id(), span.span_id(), span.parent_id()), (trace, parent, String::new()));
    assert_eq!(span.span.trace_state, "");

    let again = call(&s.gateway, "/echo", &[]).await;
    let (other, _, _) = traceparent(&echoed(&again, "traceparent").unwrap());
    assert_ne!(other, span.trace_id(), "a new trace per request");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_traceparent_starts_a_new_trace_is_never_a_4xx_and_never_reaches_the_upstream() {
    let s = setup(&[]).await;
    let zero_trace = format!("00-{}-{CALLER}-01", "0".repeat(32));
    let zero_parent = format!("00-{TRACE}-{}-01", "0".repeat(16));
    let upper = format!("00-{}-{CALLER}-01", TRACE.to_uppercase());
    let long = format!("00-{TRACE}-{CALLER}-01-extra");
    let ff = format!("ff-{TRACE}-{CALLER}-01");
    for bad in ["garbage", zero_trace.as_str(), zero_parent.as_str(), upper.as_str(), long.as_str(), ff.as_str()] {
        let reply = call(&s.gateway, "/echo", &[("traceparent", bad), ("tracestate", "evil=1")]).await;
        assert_eq!(reply.status, 200, "{bad}");
        let sent = echoed(&reply, "traceparent").unwrap();
        assert_ne!(sent, bad);
        let (trace, parent, _) = traceparent(&sent);
        assert_ne!(trace, TRACE, "{bad}: a new trace");
        assert_eq!(echoed(&reply, "tracestate"), None, "{bad}");
        let span = s.collector.span_of(&request_id(&reply)).await;
        assert_eq!((span.trace_id(), span.span_id(), span.parent_id()), (trace, parent, String::new()), "{bad}");
    }
    // Two traceparent lines are malformed too.
    let incoming = format!("00-{TRACE}-{CALLER}-01");
    let reply = call(&s.gateway, "/echo", &[("traceparent", &incoming), ("traceparent", &incoming)]).await;
    assert_ne!(traceparent(&echoed(&reply, "traceparent").unwrap()).0, TRACE);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_error_is_an_error_span_with_its_code_and_the_upstream_address() {
    let s = setup(&[]).await;
    let reply = call(&s.gateway, "/dead", &[("traceparent", &format!("00-{TRACE}-{CALLER}-01"))]).await;
    assert_eq!(reply.status, 502);
    let code = reply.error_code().unwrap().to_owned();
    let span = s.collector.span_of(&request_id(&reply)).await;
    let status = span.span.status.clone().unwrap();
    assert_eq!((status.code, status.message.as_str()), (StatusCode::Error as i32, code.as_str()));
    assert_eq!(span.attr("switchyard.error_code").as_deref(), Some(code.as_str()));
    assert_eq!(span.attr("http.response.status_code").as_deref(), Some("502"));
    assert_eq!(span.attr("switchyard.upstream.address").as_deref(), Some("127.0.0.1:9"));
    assert_eq!(span.attr("switchyard.backend").as_deref(), Some("default/dead"));

    // A 404 (no route) is a span too, not an error, with no route or backend.
    let reply = call(&s.gateway, "/nowhere", &[]).await;
    assert_eq!(reply.status, 404);
    let span = s.collector.span_of(&request_id(&reply)).await;
    assert_ne!(span.span.status.as_ref().map_or(0, |s| s.code), StatusCode::Error as i32);
    assert_eq!((span.attr("switchyard.route"), span.span.name.as_str()), (None, "GET"));
    assert_eq!(span.attr("switchyard.error_code").as_deref(), Some("A404NF"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_backend_kind_that_calls_an_upstream_sends_the_trace_context() {
    let s = setup(&[]).await;
    for path in ["/fn", "/model", "/gw", "/bus"] {
        let incoming = format!("00-{TRACE}-{CALLER}-01");
        let reply =
            send(Method::POST, &s.gateway.proxy_url(path), &[("traceparent", &incoming), ("tracestate", "k=v")], "{}").await.unwrap();
        assert!(reply.status.is_success(), "{path}: {} {}", reply.status, reply.text());
        let seen = s.seen.headers(path);
        assert_eq!(seen.len(), 1, "{path}: one upstream request");
        let (trace, parent, flags) = traceparent(&seen[0]["traceparent"]);
        assert_eq!((trace.as_str(), flags.as_str()), (TRACE, "01"), "{path}");
        assert_eq!(seen[0].get("tracestate").map(String::as_str), Some("k=v"), "{path}");
        let span = s.collector.span_of(&request_id(&reply)).await;
        assert_eq!((span.span_id(), span.parent_id()), (parent, CALLER.to_owned()), "{path}");
    }
    // A mock calls nothing, and still has its span.
    let reply = call(&s.gateway, "/mock", &[]).await;
    let span = s.collector.span_of(&request_id(&reply)).await;
    assert_eq!((span.attr("switchyard.backend").as_deref(), span.attr("switchyard.upstream.address")), (Some("default/mock"), None));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sampling_zero_exports_no_new_trace_but_propagates_and_a_sampled_caller_is_still_exported() {
    let s = setup(&["--trace-sampling", "0"]).await;
    let mut unsampled = Vec::new();
    for _ in 0..20 {
        let reply = call(&s.gateway, "/echo", &[]).await;
        let (_, _, flags) = traceparent(&echoed(&reply, "traceparent").unwrap());
        assert_eq!(flags, "00", "not sampled, said so upstream");
        unsampled.push(request_id(&reply));
    }
    let incoming = format!("00-{TRACE}-{CALLER}-00");
    let reply = call(&s.gateway, "/echo", &[("traceparent", &incoming)]).await;
    let (trace, _, flags) = traceparent(&echoed(&reply, "traceparent").unwrap());
    assert_eq!((trace.as_str(), flags.as_str()), (TRACE, "00"));
    unsampled.push(request_id(&reply));
    // Parent-based: a caller that sampled is followed even at ratio 0; its span comes
    // after the others were queued, so once it is in, they would be too.
    let sampled = call(&s.gateway, "/echo", &[("traceparent", &format!("00-{TRACE}-{CALLER}-01"))]).await;
    assert_eq!(traceparent(&echoed(&sampled, "traceparent").unwrap()).2, "01");
    s.collector.span_of(&request_id(&sampled)).await;
    let exported: Vec<String> = s.collector.all().iter().filter_map(|s| s.attr("switchyard.request_id")).collect();
    assert_eq!(exported, [request_id(&sampled)], "only the sampled caller's span");
    assert!(unsampled.iter().all(|id| !exported.contains(id)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_endpoint_the_trace_context_is_still_propagated() {
    let s = setup(&["no-endpoint"]).await;
    let reply = call(&s.gateway, "/echo", &[("traceparent", &format!("00-{TRACE}-{CALLER}-01")), ("tracestate", "a=1")]).await;
    let (trace, parent, flags) = traceparent(&echoed(&reply, "traceparent").unwrap());
    assert_eq!((trace.as_str(), flags.as_str()), (TRACE, "01"), "the caller's flag passes on");
    assert_ne!(parent, CALLER);
    assert_eq!(echoed(&reply, "tracestate").as_deref(), Some("a=1"));
    let new = call(&s.gateway, "/echo", &[]).await;
    assert_eq!(traceparent(&echoed(&new, "traceparent").unwrap()).2, "00", "a new trace is not sampled when nothing records it");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(s.collector.all().is_empty());
    let metrics = get(&s.gateway.url("admin", "/metrics")).await.unwrap().text();
    assert!(!metrics.contains("switchyard_proxy_trace_"), "no exporter, no export metrics");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_collector_fails_and_slows_no_request_and_the_failures_are_counted() {
    // A port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let endpoint = format!("http://{closed}");
    let s = setup(&["no-endpoint", "--otlp-endpoint", &endpoint]).await;
    let started = Instant::now();
    for _ in 0..200 {
        assert_eq!(call(&s.gateway, "/echo", &[]).await.status, 200);
    }
    assert!(started.elapsed() < Duration::from_secs(10), "{:?} for 200 requests", started.elapsed());
    let url = s.gateway.url("admin", "/metrics");
    let failures = || async {
        let text = get(&url).await.unwrap().text();
        let value = |name: &str| {
            text.lines().find(|l| l.starts_with(name)).and_then(|l| l.split_whitespace().nth(1)).and_then(|v| v.parse::<f64>().ok())
        };
        value("switchyard_proxy_trace_export_failures_total").unwrap_or(0.0) >= 1.0
            && value("switchyard_proxy_trace_spans_dropped_total").unwrap_or(0.0) >= 1.0
    };
    wait_until("the failed export is counted", Duration::from_secs(30), failures).await;
    assert_eq!(call(&s.gateway, "/echo", &[]).await.status, 200);
}
