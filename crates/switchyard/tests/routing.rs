//! The real binary in standalone mode, real upstreams on loopback: matching, request
//! shaping, the Host priority, mock responses, retries, timeouts and error codes.

mod support;

use std::time::Duration;

use bytes::Bytes;
use http::Method;
use support::upstream::Upstream;
use support::{ConfigDir, Switchyard, get, send};

const API: &str = "apiVersion: switchyard.dev/v1alpha1";

fn http_backend(name: &str, urls: &[String], extra: &str) -> String {
    let urls: Vec<String> = urls.iter().map(|u| format!("\"{u}\"")).collect();
    format!("{API}\nkind: BackendService\nmetadata: {{name: {name}}}\nspec:\n  http: {{urls: [{}]{extra}}}\n", urls.join(", "))
}

fn route(name: &str, spec: &str) -> String {
    format!("{API}\nkind: ApiRoute\nmetadata: {{name: {name}}}\nspec:\n{spec}")
}

async fn gateway(files: &[(&str, &str)]) -> (ConfigDir, Switchyard) {
    let config = ConfigDir::with(files);
    let gateway = Switchyard::standalone(config.path(), &[]);
    gateway.wait_ready().await;
    (config, gateway)
}

/// Sends with a Host header and returns the echoed request (or the gateway reply).
async fn call(gw: &Switchyard, method: Method, host: &str, path: &str, headers: &[(&str, &str)]) -> support::Reply {
    let mut all = vec![("host", host)];
    all.extend_from_slice(headers);
    send(method, &gw.proxy_url(path), &all, Bytes::new()).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_matcher_selects_its_route() {
    let a = Upstream::start("a").await;
    let b = Upstream::start("b").await;
    let backends = format!("{}---\n{}", http_backend("a", &[a.url()], ""), http_backend("b", &[b.url()], ""));
    let routes = [
        route("exact-host", "  hosts: [api.example.com]\n  match: {path: /h, pathType: Exact}\n  backendRefs: [{name: a}]\n"),
        route("wild-host", "  hosts: ['*.example.com']\n  match: {path: /h, pathType: Exact}\n  backendRefs: [{name: b}]\n"),
        route("prefix", "  match: {path: /files, pathType: Prefix}\n  backendRefs: [{name: a}]\n"),
        route("template", "  match: {path: '/users/{id}', pathType: Template}\n  backendRefs: [{name: b}]\n"),
        route("methods", "  match: {path: /m, methods: [POST]}\n  backendRefs: [{name: a}]\n"),
        route("header", "  match: {path: /hq, headers: [{name: x-env, value: canary}]}\n  backendRefs: [{name: b}]\n"),
        route("query", "  match: {path: /hq, queryParams: [{name: v, value: '2'}]}\n  backendRefs: [{name: a}]\n"),
    ]
    .join("---\n");
    let (_config, gw) = gateway(&[("backends.yaml", &backends), ("routes.yaml", &routes)]).await;
    let upstream_of = |r: &support::Reply| r.header("x-upstream").map(str::to_owned);

    assert_eq!(upstream_of(&call(&gw, Method::GET, "api.example.com", "/h", &[]).await).as_deref(), Some("a"));
    assert_eq!(upstream_of(&call(&gw, Method::GET, "web.example.com", "/h", &[]).await).as_deref(), Some("b"));
    assert_eq!(call(&gw, Method::GET, "other.org", "/h", &[]).await.error_code(), Some("A404NF"));
    assert_eq!(upstream_of(&call(&gw, Method::GET, "x", "/files/a/b.txt", &[]).await).as_deref(), Some("a"));
    assert_eq!(call(&gw, Method::GET, "x", "/filesystem", &[]).await.error_code(), Some("A404NF"));
    assert_eq!(upstream_of(&call(&gw, Method::GET, "x", "/users/42", &[]).await).as_deref(), Some("b"));
    assert_eq!(call(&gw, Method::GET, "x", "/users/42/x", &[]).await.error_code(), Some("A404NF"));
    assert_eq!(upstream_of(&call(&gw, Method::POST, "x", "/m", &[]).await).as_deref(), Some("a"));
    let wrong_method = call(&gw, Method::GET, "x", "/m", &[]).await;
    assert_eq!((wrong_method.status.as_u16(), wrong_method.error_code()), (405, Some("A405MN")));
    assert_eq!(upstream_of(&call(&gw, Method::GET, "x", "/hq", &[("x-env", "canary")]).await).as_deref(), Some("b"));
    assert_eq!(upstream_of(&call(&gw, Method::GET, "x", "/hq?v=2", &[]).await).as_deref(), Some("a"));
    assert_eq!(call(&gw, Method::GET, "x", "/hq?v=3", &[]).await.error_code(), Some("A404NF"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_host_header_follows_the_priority_levels_1_2_4_5_and_6() {
    let up = Upstream::start("up").await;
    let backends =
        format!("{}---\n{}", http_backend("plain", &[up.url()], ""), http_backend("named", &[up.url()], ", hostHeader: backend.internal"));
    let param = "  parameters: [{in: header, name: host, value: param.example}]\n";
    let routes = [
        route("p1", &format!("  match: {{path: /p1}}\n  backendRefs: [{{name: named}}]\n  hostOverride: override.example\n  passHostHeader: true\n{param}")),
        route("p2", &format!("  match: {{path: /p2}}\n  backendRefs: [{{name: named}}]\n  passHostHeader: true\n{param}")),
        route("p4", &format!("  match: {{path: /p4}}\n  backendRefs: [{{name: plain}}]\n  passHostHeader: true\n{param}")),
        route("p5", &format!("  match: {{path: /p5}}\n  backendRefs: [{{name: plain}}]\n{param}")),
        route("p6", "  match: {path: /p6}\n  backendRefs: [{name: plain}]\n"),
    ]
    .join("---\n");
    let (_config, gw) = gateway(&[("b.yaml", &backends), ("r.yaml", &routes)]).await;
    let host_seen = |path: &'static str| {
        let gw = &gw;
        async move { call(gw, Method::GET, "client.example", path, &[]).await.json()["headers"]["host"].as_str().unwrap().to_owned() }
    };
    assert_eq!(host_seen("/p1").await, "override.example", "1: route hostOverride");
    assert_eq!(host_seen("/p2").await, "backend.internal", "2: backend hostHeader");
    assert_eq!(host_seen("/p4").await, "client.example", "4: passHostHeader");
    assert_eq!(host_seen("/p5").await, "param.example", "5: constant host parameter");
    assert_eq!(host_seen("/p6").await, up.addr.to_string(), "6: the backend address");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rewrites_and_constant_parameters_shape_the_backend_request() {
    let up = Upstream::start("up").await;
    let backend = http_backend("orders", &[format!("{}/base", up.url())], "");
    let routes = [
        route(
            "get-order",
            "  match: {path: '/orders/{id}/items/{item}', methods: [GET]}\n  backendRefs: [{name: orders}]\n  rewrite: {path: '/v1/{item}/in/{id}'}\n  parameters:\n    - {in: header, name: x-source, value: gateway}\n    - {in: query, name: source, value: gate way}\n",
        ),
        route("prefix", "  match: {path: /api, pathType: Prefix}\n  backendRefs: [{name: orders}]\n  rewrite: {path: /internal}\n"),
    ]
    .join("---\n");
    let (_config, gw) = gateway(&[("b.yaml", &backend), ("r.yaml", &routes)]).await;

    let echoed = get(&gw.proxy_url("/orders/42/items/7?x=1")).await.unwrap().json();
    assert_eq!(echoed["path"], "/base/v1/7/in/42");
    assert_eq!(echoed["query"], "x=1&source=gate+way");
    assert_eq!(echoed["headers"]["x-source"], "gateway");
    assert_eq!(echoed["headers"]["x-forwarded-for"], "127.0.0.1");
    assert!(echoed["headers"]["x-ca-request-id"].is_string(), "the request id travels to the backend");

    let echoed = get(&gw.proxy_url("/api/users/1")).await.unwrap().json();
    assert_eq!(echoed["path"], "/base/internal/users/1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mock_backend_answers_its_status_headers_and_body() {
    let mock = format!(
        "{API}\nkind: BackendService\nmetadata: {{name: teapot}}\nspec:\n  mock:\n    statusCode: 418\n    headers: [{{name: Content-Type, value: application/json}}, {{name: X-Mock, value: 'yes'}}]\n    body: '{{\"short\":\"stout\"}}'\n"
    );
    let r = route("teapot", "  match: {path: /tea}\n  backendRefs: [{name: teapot}]\n");
    let (_config, gw) = gateway(&[("m.yaml", &format!("{mock}---\n{r}"))]).await;
    let reply = get(&gw.proxy_url("/tea")).await.unwrap();
    assert_eq!(reply.status.as_u16(), 418);
    assert_eq!(reply.header("content-type"), Some("application/json"));
    assert_eq!(reply.header("x-mock"), Some("yes"));
    assert_eq!(reply.json()["short"], "stout");
    assert!(reply.header("x-ca-request-id").is_some());
    assert!(reply.error_code().is_none(), "a mock answer is not a gateway error");
}

/// A port with nothing listening: bind, note the port, close.
fn closed_port_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_failures_are_retried_on_the_next_endpoint() {
    let alive = Upstream::start("alive").await;
    let dead = closed_port_url();
    let retrying = http_backend("retrying", &[dead.clone(), alive.url()], "}\n  retries: {attempts: 1, retryOn: [connect-failure]");
    let single = http_backend("single", &[dead], "");
    let routes = [
        route("retrying", "  match: {path: /retry}\n  backendRefs: [{name: retrying}]\n"),
        route("single", "  match: {path: /single}\n  backendRefs: [{name: single}]\n"),
    ]
    .join("---\n");
    let (_config, gw) = gateway(&[("b.yaml", &format!("{retrying}---\n{single}")), ("r.yaml", &routes)]).await;
    for _ in 0..6 {
        let reply = send(Method::POST, &gw.proxy_url("/retry"), &[], "payload").await.unwrap();
        assert_eq!(reply.status.as_u16(), 200, "{}", reply.text());
        assert_eq!(reply.json()["body"], "payload", "the body is sent again on the retry");
    }
    let failed = get(&gw.proxy_url("/single")).await.unwrap();
    assert_eq!((failed.status.as_u16(), failed.error_code()), (502, Some("D502CF")));
    assert!(failed.header("x-ca-error-message").unwrap().contains("connect"), "{:?}", failed.headers);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_backend_times_out_with_504() {
    let up = Upstream::start("slow").await;
    let backend = http_backend("slow", &[up.url()], "");
    let routes = [
        route("route-timeout", "  match: {path: /route}\n  backendRefs: [{name: slow}]\n  timeout: 200ms\n"),
        route("in-time", "  match: {path: /fast}\n  backendRefs: [{name: slow}]\n  timeout: 5s\n"),
    ]
    .join("---\n");
    let backend_timeout =
        format!("{API}\nkind: BackendService\nmetadata: {{name: strict}}\nspec:\n  http: {{urls: [\"{}\"]}}\n  timeout: 150ms\n", up.url());
    let strict_route = route("backend-timeout", "  match: {path: /backend}\n  backendRefs: [{name: strict}]\n");
    let (_config, gw) =
        gateway(&[("b.yaml", &format!("{backend}---\n{backend_timeout}")), ("r.yaml", &format!("{routes}---\n{strict_route}"))]).await;

    let started = std::time::Instant::now();
    let reply = call(&gw, Method::GET, "x", "/route", &[("x-test-delay-ms", "2000")]).await;
    assert_eq!((reply.status.as_u16(), reply.error_code()), (504, Some("D504TO")));
    assert!(started.elapsed() < Duration::from_millis(1500), "answered after {:?}", started.elapsed());
    let reply = call(&gw, Method::GET, "x", "/backend", &[("x-test-delay-ms", "2000")]).await;
    assert_eq!((reply.status.as_u16(), reply.error_code()), (504, Some("D504TO")));
    let reply = call(&gw, Method::GET, "x", "/fast", &[("x-test-delay-ms", "50")]).await;
    assert_eq!(reply.status.as_u16(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_requests_get_their_own_error_codes() {
    let up = Upstream::start("up").await;
    let backend = http_backend("up", &[up.url()], "");
    let r = route("small", "  match: {path: /upload}\n  backendRefs: [{name: up}]\n  requestBodyLimit: 1Ki\n");
    let (_config, gw) = gateway(&[("b.yaml", &format!("{backend}---\n{r}"))]).await;

    let ok = send(Method::POST, &gw.proxy_url("/upload"), &[], vec![b'x'; 1024]).await.unwrap();
    assert_eq!(ok.json()["bodyLength"], 1024);
    let declared = send(Method::POST, &gw.proxy_url("/upload"), &[], vec![b'x'; 1025]).await.unwrap();
    assert_eq!((declared.status.as_u16(), declared.error_code()), (413, Some("A413BL")));

    let huge_header = "v".repeat(9000);
    let reply = send(Method::GET, &gw.proxy_url("/upload"), &[("x-big", &huge_header)], Bytes::new()).await.unwrap();
    assert_eq!((reply.status.as_u16(), reply.error_code()), (431, Some("A431HL")));
    let long_url = format!("/upload?q={}", "a".repeat(8200));
    let reply = get(&gw.proxy_url(&long_url)).await.unwrap();
    assert_eq!((reply.status.as_u16(), reply.error_code()), (431, Some("A431HL")));
}

/// A chunked request body (no Content-Length) of `count` chunks of `size` bytes.
struct Chunks {
    left: usize,
    size: usize,
}

impl http_body::Body for Chunks {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        if self.left == 0 {
            return std::task::Poll::Ready(None);
        }
        self.left -= 1;
        std::task::Poll::Ready(Some(Ok(http_body::Frame::data(Bytes::from(vec![b'y'; self.size])))))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_body_over_the_limit_is_cut_off_with_413() {
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;

    let up = Upstream::start("up").await;
    let backend = http_backend("up", &[up.url()], "");
    let r = route("small", "  match: {path: /upload}\n  backendRefs: [{name: up}]\n  requestBodyLimit: 1Ki\n");
    let (_config, gw) = gateway(&[("b.yaml", &format!("{backend}---\n{r}"))]).await;

    let client = Client::builder(TokioExecutor::new()).build_http();
    let request = http::Request::post(gw.proxy_url("/upload")).body(Chunks { left: 4, size: 512 }).unwrap();
    let response = client.request(request).await.unwrap();
    assert_eq!(response.status().as_u16(), 413);
    assert_eq!(response.headers()["x-ca-error-code"], "A413BL");
    let request = http::Request::post(gw.proxy_url("/upload")).body(Chunks { left: 2, size: 512 }).unwrap();
    assert_eq!(client.request(request).await.unwrap().status().as_u16(), 200, "exactly the limit passes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_function_that_cannot_be_reached_is_a_502_with_its_code_not_a_panic() {
    let function = format!(
        "{API}\nkind: BackendService\nmetadata: {{name: fn}}\nspec:\n  function: {{url: 'http://127.0.0.1:9/invoke', invocation: Event}}\n"
    );
    let r = route("fn", "  match: {path: /fn}\n  backendRefs: [{name: fn}]\n");
    let (_config, gw) = gateway(&[("f.yaml", &format!("{function}---\n{r}"))]).await;
    let reply = get(&gw.proxy_url("/fn")).await.unwrap();
    // Every kind is served now: nothing answers 501 any more; a dead function is a connect failure.
    assert_eq!((reply.status.as_u16(), reply.error_code()), (502, Some("D502CF")));
    assert_eq!(gw.condition("BackendService", "fn", "Ready").await, Some(("True".into(), "Ready".into())));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_manifests_get_their_own_conditions_and_valid_routes_keep_serving() {
    let input =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/golden/compile/invalid-manifests/in.yaml")).unwrap();
    let (_config, gw) = gateway(&[("all.yaml", &input)]).await;
    assert_eq!(get(&gw.proxy_url("/good")).await.unwrap().status.as_u16(), 204);
    let expect = [
        ("BackendService", "ftp", "Accepted", "False", "InvalidSpec"),
        ("BackendService", "both", "Accepted", "False", "InvalidKind"),
        ("ApiRoute", "missing-backend", "ResolvedRefs", "False", "BackendNotFound"),
        ("ApiRoute", "bad-template", "Accepted", "False", "InvalidPathTemplate"),
        ("ApiRoute", "zz-duplicate", "Accepted", "False", "Conflicted"),
        ("RateLimit", "too-fast", "Accepted", "False", "UnknownKind"),
        ("ApiRoute", "good", "Programmed", "True", "Programmed"),
    ];
    let status = gw.status().await;
    for (kind, name, type_, want_status, want_reason) in expect {
        let resource = status["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| (r["kind"] == kind || r["writtenKind"] == kind) && r["name"] == name)
            .unwrap_or_else(|| panic!("{kind} {name} missing from /status: {status:#}"));
        let c = resource["conditions"].as_array().unwrap().iter().find(|c| c["type"] == type_).unwrap();
        assert_eq!((c["status"].as_str().unwrap(), c["reason"].as_str().unwrap()), (want_status, want_reason), "{kind} {name}");
        assert!(!c["message"].as_str().unwrap().is_empty());
        assert!(c["lastTransitionTime"].is_string());
    }
    for path in ["/missing", "/both", "/w"] {
        assert_eq!(get(&gw.proxy_url(path)).await.unwrap().error_code(), Some("A404NF"), "{path} must not be routed");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_edit_keeps_the_last_good_routes_of_other_files_serving() {
    let mock =
        |body: &str| format!("{API}\nkind: BackendService\nmetadata: {{name: m}}\nspec:\n  mock: {{statusCode: 200, body: {body}}}\n");
    let r = route("m", "  match: {path: /m}\n  backendRefs: [{name: m}]\n");
    let (config, gw) = gateway(&[("m.yaml", &mock("one")), ("r.yaml", &r)]).await;
    assert_eq!(get(&gw.proxy_url("/m")).await.unwrap().text(), "one");
    config.write("other.yaml", "apiVersion: switchyard.dev/v1alpha1\nkind: ApiRoute\nmetadata: {name: broken}\nspec: {match: {path: '/x/{'}, backendRefs: [{name: m}]}\n");
    support::wait_until("broken route reported", Duration::from_secs(5), || async {
        gw.condition("ApiRoute", "broken", "Accepted").await == Some(("False".into(), "InvalidPathTemplate".into()))
    })
    .await;
    assert_eq!(get(&gw.proxy_url("/m")).await.unwrap().text(), "one");
    assert!(
        gw.log_text().contains("switchyard: status ApiRoute default/broken: Accepted=False (InvalidPathTemplate)"),
        "standalone prints the condition that changed:\n{}",
        gw.log_text()
    );
    config.write("m.yaml", &mock("two"));
    support::wait_until("edit applied", Duration::from_secs(5), || async { get(&gw.proxy_url("/m")).await.unwrap().text() == "two" }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_response_carries_a_unique_request_id() {
    let (_config, gw) = gateway(&[("empty.yaml", "")]).await;
    let a = get(&gw.proxy_url("/nothing")).await.unwrap();
    let b = get(&gw.proxy_url("/nothing")).await.unwrap();
    assert_eq!(a.error_code(), Some("A404NF"));
    let (ida, idb) = (a.header("x-ca-request-id").unwrap(), b.header("x-ca-request-id").unwrap());
    assert_ne!(ida, idb);
    assert!(a.header("x-ca-error-message").unwrap().contains("/nothing"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_connections_are_pooled_and_kept_alive() {
    let up = Upstream::start("up").await;
    let backend = http_backend("up", &[up.url()], "");
    let r = route("r", "  match: {path: /, pathType: Prefix}\n  backendRefs: [{name: up}]\n");
    let (_config, gw) = gateway(&[("b.yaml", &format!("{backend}---\n{r}"))]).await;
    for _ in 0..40 {
        assert_eq!(get(&gw.proxy_url("/x")).await.unwrap().status.as_u16(), 200);
    }
    assert_eq!(up.hits(), 40);
    // The test client opens a new connection per request; the gateway must not: each
    // worker thread keeps its own keep-alive pool.
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    assert!(up.connections() <= workers, "{} upstream connections for 40 requests", up.connections());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_clients_are_served_and_their_authority_is_the_host() {
    use hyper_util::rt::{TokioExecutor, TokioIo};

    let up = Upstream::start("up").await;
    let backend = http_backend("up", &[up.url()], "");
    let r = route("r", "  hosts: [api.example.com]\n  match: {path: /h2}\n  backendRefs: [{name: up}]\n  passHostHeader: true\n");
    let (_config, gw) = gateway(&[("b.yaml", &format!("{backend}---\n{r}"))]).await;
    // HTTP/2 with prior knowledge over plain TCP; the :authority names the API host.
    let stream = tokio::net::TcpStream::connect(gw.addrs["proxy"]).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream)).await.unwrap();
    tokio::spawn(connection);
    let request = http::Request::get("http://api.example.com/h2").body(http_body_util::Empty::<Bytes>::new()).unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.version(), http::Version::HTTP_2);
    assert_eq!(response.status().as_u16(), 200);
    let body = http_body_util::BodyExt::collect(response.into_body()).await.unwrap().to_bytes();
    let echoed: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(echoed["headers"]["host"], "api.example.com", "passHostHeader forwards the :authority");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_responses_by_class_and_gateway_errors_by_code() {
    let (_config, gw) = gateway(&[("empty.yaml", "")]).await;
    for _ in 0..3 {
        get(&gw.proxy_url("/missing")).await.unwrap();
    }
    let metrics = get(&gw.url("admin", "/metrics")).await.unwrap().text();
    assert!(metrics.contains("switchyard_proxy_requests_total{class=\"4xx\",route=\"\",backend=\"\"} 3"), "{metrics}");
    assert!(metrics.contains("switchyard_proxy_gateway_errors_total{code=\"A404NF\",route=\"\"} 3"), "{metrics}");
    assert!(metrics.contains("switchyard_proxy_snapshot_version"), "{metrics}");
}
