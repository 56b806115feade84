//! Observability through the real binary: the access log of real requests (a success,
//! each kind of gateway error, a retried one) read from the gateway's stdout with every
//! field checked, the per-route metrics after known traffic, `--access-log off|text`, and
//! `--log-format json`.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::Method;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use support::upstream::Upstream;
use support::{ConfigDir, Switchyard, get, send, wait_until};

const API: &str = "apiVersion: switchyard.dev/v1alpha1";

fn backend(name: &str, spec: &str) -> String {
    format!("{API}\nkind: BackendService\nmetadata: {{name: {name}}}\nspec:\n{spec}\n")
}

fn route(name: &str, path: &str, backend: &str, extra: &str) -> String {
    format!(
        "{API}\nkind: ApiRoute\nmetadata: {{name: {name}}}\nspec:\n  match: {{path: {path}, pathType: Prefix}}\n  backendRefs: [{{name: {backend}}}]\n{extra}"
    )
}

/// An upstream that answers its first request 503 and every later one 200 `ok`.
async fn flaky() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(AtomicUsize::new(0));
    let counter = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let counter = counter.clone();
            tokio::spawn(async move {
                let service = service_fn(move |_request| {
                    let first = counter.fetch_add(1, Ordering::SeqCst) == 0;
                    let status = if first { 503 } else { 200 };
                    let body = if first { "busy" } else { "ok" };
                    async move {
                        Ok::<_, std::convert::Infallible>(
                            http::Response::builder().status(status).body(Full::new(Bytes::from(body))).unwrap(),
                        )
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
            });
        }
    });
    (addr, seen)
}

/// A loopback port nothing listens on.
fn closed_port() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

struct World {
    _config: ConfigDir,
    gw: Switchyard,
    orders: Upstream,
    slow: Upstream,
    dead: SocketAddr,
    flaky: SocketAddr,
}

async fn world(flags: &[&str]) -> World {
    let orders = Upstream::start("orders").await;
    let slow = Upstream::start_slow("slow", 2_000).await;
    let dead = closed_port();
    let (flaky, _) = flaky().await;
    let manifests = [
        backend("orders", &format!("  http: {{urls: ['{}']}}", orders.url())),
        route("orders", "/orders", "orders", ""),
        backend("dead", &format!("  http: {{urls: ['http://{dead}']}}")),
        route("dead", "/dead", "dead", ""),
        backend("slow", &format!("  http: {{urls: ['{}']}}\n  timeout: 200ms", slow.url())),
        route("slow", "/slow", "slow", ""),
        backend("nowhere", "  vpc: {authorizationRef: missing, port: 80}"),
        route("nowhere", "/nowhere", "nowhere", ""),
        backend("flaky", &format!("  http: {{urls: ['http://{flaky}']}}\n  retries: {{attempts: 2, retryOn: [gateway-error]}}")),
        route("flaky", "/flaky", "flaky", ""),
    ];
    let config = ConfigDir::with(&[("all.yaml", &manifests.join("---\n"))]);
    let gw = Switchyard::standalone(config.path(), flags);
    gw.wait_ready().await;
    World { _config: config, gw, orders, slow, dead, flaky }
}

/// The access log line of the request with `id`, waited for (lines are flushed in batches).
async fn line_of(gw: &Switchyard, id: &str) -> Value {
    let needle = format!("\"request_id\":\"{id}\"");
    wait_until(&format!("the access log line of {id}"), Duration::from_secs(5), || async {
        gw.access_log().iter().any(|l| l.contains(&needle))
    })
    .await;
    let line = gw.access_log().into_iter().find(|l| l.contains(&needle)).unwrap();
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("not one JSON object ({e}): {line}"))
}

/// Sends a request with request id `id` and returns the reply's status, error code, body
/// length and the access log line.
async fn exchange(gw: &Switchyard, method: Method, path: &str, id: &str, body: &'static str) -> (u16, Option<String>, usize, Value) {
    let headers = [("x-ca-request-id", id), ("authorization", "Bearer sekret-token"), ("x-ca-appcode", "app-code-value")];
    let reply = send(method, &gw.proxy_url(path), &headers, body).await.unwrap();
    assert_eq!(reply.header("x-ca-request-id"), Some(id));
    let line = line_of(gw, id).await;
    (reply.status.as_u16(), reply.error_code().map(str::to_owned), reply.body.len(), line)
}

/// The fields every line has, whatever the request: the time (RFC 3339 UTC, just now),
/// the client, the host, the protocol, and the timing and retry fields' types.
fn check_common(line: &Value, gw: &Switchyard) {
    let time = line["time"].as_str().unwrap();
    assert!(time.len() == 24 && time.ends_with('Z') && &time[10..11] == "T", "RFC 3339 UTC with milliseconds: {time}");
    let today = httpdate_today();
    assert_eq!(&time[..10], today, "the request's date");
    let client: SocketAddr = line["client"].as_str().unwrap().parse().unwrap();
    assert!(client.ip().is_loopback() && client.port() != 0, "{line}");
    assert_eq!(line["host"], gw.addrs["proxy"].to_string());
    assert_eq!(line["protocol"], "HTTP/1.1");
    assert!(line["total_ms"].as_f64().unwrap() >= 0.0);
    assert_eq!(line["tls"], "", "no TLS listener yet");
    let text = line.to_string();
    for secret in ["sekret-token", "app-code-value", "q=", "token=", "hunter2"] {
        assert!(!text.contains(secret), "{secret} leaked: {text}");
    }
}

/// Today in UTC as `YYYY-MM-DD`, from the system's `date`.
fn httpdate_today() -> String {
    let out = std::process::Command::new("date").args(["-u", "+%Y-%m-%d"]).output().unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_gets_one_json_access_log_line_with_every_field_and_no_secrets() {
    let w = world(&[]).await;
    let gw = &w.gw;

    // A success with a body each way; the query string never reaches the log.
    let (status, code, out, line) = exchange(gw, Method::POST, "/orders/7?q=hunter2&token=abc", "ok-1", "hello world").await;
    assert_eq!((status, code), (200, None));
    check_common(&line, gw);
    assert_eq!(line["method"], "POST");
    assert_eq!(line["path"], "/orders/7", "no query: {line}");
    assert_eq!(line["route"], "default/orders");
    assert_eq!(line["backend"], "default/orders");
    assert_eq!(line["upstream"], w.orders.addr.to_string(), "the endpoint dialled");
    assert_eq!(line["status"], 200);
    assert_eq!(line["error_code"], "");
    assert_eq!(line["bytes_in"], 11, "the request body");
    assert_eq!(line["bytes_out"], out as u64, "the response body the client read");
    let (upstream_ms, total_ms) = (line["upstream_ms"].as_f64().unwrap(), line["total_ms"].as_f64().unwrap());
    assert!(upstream_ms > 0.0 && total_ms >= upstream_ms, "{line}");
    assert_eq!(line["retries"], 0);

    // 404: no route matched, so no route, backend or upstream, and no upstream time.
    let (status, code, out, line) = exchange(gw, Method::GET, "/missing?q=hunter2", "nf-1", "").await;
    assert_eq!((status, code.as_deref()), (404, Some("A404NF")));
    check_common(&line, gw);
    assert_eq!((&line["route"], &line["backend"], &line["upstream"]), (&Value::from(""), &Value::from(""), &Value::from("")));
    assert_eq!((&line["status"], &line["error_code"]), (&Value::from(404), &Value::from("A404NF")));
    assert_eq!(line["path"], "/missing");
    assert_eq!(line["bytes_out"], out as u64, "the gateway's error body");
    assert_eq!(line["upstream_ms"], Value::Null);

    // 502: the endpoint refuses the connection; the line names the endpoint it dialled.
    let (status, code, _, line) = exchange(gw, Method::GET, "/dead", "dead-1", "").await;
    assert_eq!((status, code.as_deref()), (502, Some("D502CF")));
    check_common(&line, gw);
    assert_eq!((&line["route"], &line["backend"]), (&Value::from("default/dead"), &Value::from("default/dead")));
    assert_eq!(line["upstream"], w.dead.to_string());
    assert_eq!((&line["status"], &line["error_code"], &line["retries"]), (&Value::from(502), &Value::from("D502CF"), &Value::from(0)));
    assert!(line["upstream_ms"].as_f64().is_some(), "an upstream was tried: {line}");

    // 503: the backend cannot serve (its authorization does not exist): no upstream.
    let (status, code, _, line) = exchange(gw, Method::GET, "/nowhere", "bu-1", "").await;
    assert_eq!((status, code.as_deref()), (503, Some("D503BU")));
    check_common(&line, gw);
    assert_eq!(
        (&line["route"], &line["backend"], &line["upstream"]),
        (&Value::from("default/nowhere"), &Value::from("default/nowhere"), &Value::from(""))
    );
    assert_eq!((&line["status"], &line["error_code"]), (&Value::from(503), &Value::from("D503BU")));
    assert_eq!(line["upstream_ms"], Value::Null, "no upstream called");

    // 504: the endpoint answers after 2 s, the attempt may take 200 ms.
    let (status, code, _, line) = exchange(gw, Method::GET, "/slow", "slow-1", "").await;
    assert_eq!((status, code.as_deref()), (504, Some("D504TO")));
    check_common(&line, gw);
    assert_eq!((&line["route"], &line["upstream"]), (&Value::from("default/slow"), &Value::from(w.slow.addr.to_string())));
    assert_eq!((&line["status"], &line["error_code"]), (&Value::from(504), &Value::from("D504TO")));
    let upstream_ms = line["upstream_ms"].as_f64().unwrap();
    assert!((150.0..1_500.0).contains(&upstream_ms), "about the attempt's 200 ms: {line}");

    // Retried: the first attempt gets a 503, the second the answer.
    let (status, code, out, line) = exchange(gw, Method::GET, "/flaky/x", "retry-1", "").await;
    assert_eq!((status, code), (200, None));
    check_common(&line, gw);
    assert_eq!((&line["route"], &line["backend"]), (&Value::from("default/flaky"), &Value::from("default/flaky")));
    assert_eq!(line["upstream"], w.flaky.to_string());
    assert_eq!((&line["status"], &line["error_code"], &line["retries"]), (&Value::from(200), &Value::from(""), &Value::from(1)));
    assert_eq!(line["bytes_out"], out as u64);

    // One line per request, each a whole JSON object.
    wait_until("six lines", Duration::from_secs(5), || async { gw.access_log().len() >= 6 }).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let lines = gw.access_log();
    assert_eq!(lines.len(), 6, "{lines:#?}");
    for l in &lines {
        serde_json::from_str::<Value>(l).unwrap_or_else(|e| panic!("{e}: {l}"));
    }
}

/// The value of the sample `name{labels}` in a scrape (0 when absent).
fn sample(metrics: &str, series: &str) -> f64 {
    metrics.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok()).unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_requests_errors_durations_and_retries_per_route_and_backend() {
    let w = world(&["--access-log", "off"]).await;
    let gw = &w.gw;
    for _ in 0..3 {
        assert_eq!(get(&gw.proxy_url("/orders/1")).await.unwrap().status, 200);
    }
    for _ in 0..2 {
        assert_eq!(get(&gw.proxy_url("/missing")).await.unwrap().status, 404);
    }
    assert_eq!(get(&gw.proxy_url("/dead")).await.unwrap().status, 502);
    assert_eq!(get(&gw.proxy_url("/nowhere")).await.unwrap().status, 503);
    assert_eq!(get(&gw.proxy_url("/flaky")).await.unwrap().status, 200);
    let m = get(&gw.url("admin", "/metrics")).await.unwrap().text();

    let requests = |class: &str, route: &str, backend: &str| {
        sample(&m, &format!("switchyard_proxy_requests_total{{class=\"{class}\",route=\"{route}\",backend=\"{backend}\"}}"))
    };
    assert_eq!(requests("2xx", "default/orders", "default/orders"), 3.0, "{m}");
    assert_eq!(requests("4xx", "", ""), 2.0, "unmatched requests count under route=\"\"");
    assert_eq!(requests("5xx", "default/dead", "default/dead"), 1.0);
    assert_eq!(requests("5xx", "default/nowhere", "default/nowhere"), 1.0);
    assert_eq!(requests("2xx", "default/flaky", "default/flaky"), 1.0);
    assert_eq!(requests("5xx", "default/orders", "default/orders"), 0.0);

    let errors =
        |code: &str, route: &str| sample(&m, &format!("switchyard_proxy_gateway_errors_total{{code=\"{code}\",route=\"{route}\"}}"));
    assert_eq!(errors("A404NF", ""), 2.0);
    assert_eq!(errors("D502CF", "default/dead"), 1.0);
    assert_eq!(errors("D503BU", "default/nowhere"), 1.0);
    assert_eq!(errors("D502CF", "default/orders"), 0.0, "a passed-through answer is no gateway error");

    assert_eq!(sample(&m, "switchyard_proxy_request_duration_seconds_count{route=\"default/orders\"}"), 3.0);
    assert_eq!(sample(&m, "switchyard_proxy_request_duration_seconds_count{route=\"\"}"), 2.0);
    assert_eq!(sample(&m, "switchyard_proxy_upstream_duration_seconds_count{backend=\"default/orders\"}"), 3.0);
    assert_eq!(sample(&m, "switchyard_proxy_upstream_duration_seconds_count{backend=\"default/nowhere\"}"), 0.0, "no upstream");
    assert_eq!(sample(&m, "switchyard_proxy_retries_total{backend=\"default/flaky\"}"), 1.0);
    assert_eq!(sample(&m, "switchyard_proxy_retries_total{backend=\"default/orders\"}"), 0.0);
    let opened = sample(&m, "switchyard_proxy_upstream_connections_opened_total{backend=\"default/orders\"}");
    let reused = sample(&m, "switchyard_proxy_upstream_connections_reused_total{backend=\"default/orders\"}");
    assert!(opened >= 1.0 && opened + reused == 3.0, "every attempt on a new or a pooled connection: {opened} + {reused}");
    assert_eq!(sample(&m, "switchyard_proxy_snapshot_apply_duration_seconds_count"), 1.0, "{m}");
    for line in m.lines().filter(|l| l.contains("route=\"") || l.contains("backend=\"")) {
        assert!(!line.contains("/missing") && !line.contains("/orders/1"), "a label from request data: {line}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_log_off_prints_nothing_and_text_prints_one_line_per_request() {
    let off = world(&["--access-log", "off"]).await;
    for _ in 0..3 {
        get(&off.gw.proxy_url("/orders/1")).await.unwrap();
    }
    get(&off.gw.proxy_url("/missing")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(off.gw.access_log(), Vec::<String>::new());

    let text = world(&["--access-log", "text"]).await;
    let gw = &text.gw;
    send(Method::GET, &gw.proxy_url("/orders/1?token=abc"), &[("x-ca-request-id", "text-1")], "").await.unwrap();
    send(Method::GET, &gw.proxy_url("/missing"), &[("x-ca-request-id", "text-2")], "").await.unwrap();
    wait_until("two text lines", Duration::from_secs(5), || async { gw.access_log().len() >= 2 }).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let lines = gw.access_log();
    assert_eq!(lines.len(), 2, "{lines:#?}");
    let fields = |line: &str| -> Vec<(String, String)> {
        line.split(' ').map(|pair| pair.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())).expect(line)).collect()
    };
    let names: Vec<String> = fields(&lines[0]).into_iter().map(|(k, _)| k).collect();
    let expected = [
        "time",
        "request_id",
        "client",
        "method",
        "host",
        "path",
        "protocol",
        "route",
        "backend",
        "upstream",
        "status",
        "error_code",
        "bytes_in",
        "bytes_out",
        "upstream_ms",
        "total_ms",
        "retries",
        "tls",
    ];
    assert_eq!(names, expected, "the JSON fields, in order");
    // Workers flush their own buffers: lines of requests served by two workers may come in
    // either order.
    let by_id = |id: &str| -> std::collections::HashMap<String, String> {
        let line = lines.iter().find(|l| l.contains(&format!(" request_id={id} "))).expect(id);
        fields(line).into_iter().collect()
    };
    let first = by_id("text-1");
    assert_eq!((first["request_id"].as_str(), first["path"].as_str(), first["route"].as_str()), ("text-1", "/orders/1", "default/orders"));
    assert_eq!(
        (first["status"].as_str(), first["error_code"].as_str(), first["upstream"].clone()),
        ("200", "-", text.orders.addr.to_string())
    );
    let second = by_id("text-2");
    assert_eq!((second["route"].as_str(), second["error_code"].as_str(), second["upstream_ms"].as_str()), ("-", "A404NF", "-"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_format_json_makes_every_stderr_line_a_json_object_and_conditions_name_their_object() {
    let config = ConfigDir::with(&[("bad.yaml", &route("broken", "/b", "absent", ""))]);
    let gw = Switchyard::start_with_env(
        &[
            "standalone",
            "--config-dir",
            config.path().to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--log-format",
            "json",
        ],
        &["proxy", "admin"],
        &[],
    );
    gw.wait_ready().await;
    wait_until("a condition line", Duration::from_secs(5), || async { gw.log_text().contains("condition changed") }).await;
    let lines = gw.log.lock().unwrap().clone();
    let events: Vec<Value> = lines.iter().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"))).collect();
    let change = events
        .iter()
        .find(|e| e["message"] == "condition changed" && e["condition"] == "ResolvedRefs")
        .unwrap_or_else(|| panic!("{lines:#?}"));
    assert_eq!(
        (&change["kind"], &change["namespace"], &change["name"]),
        (&Value::from("ApiRoute"), &Value::from("default"), &Value::from("broken"))
    );
    assert_eq!((&change["status"], &change["reason"]), (&Value::from("False"), &Value::from("BackendNotFound")));
    assert!(events.iter().all(|e| e["level"].is_string() && e["timestamp"].is_string()), "{lines:#?}");
    assert!(events.iter().any(|e| e["message"] == "listening" && e["role"] == "proxy"));
}
