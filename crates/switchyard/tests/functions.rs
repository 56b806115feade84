//! `function` backends with real processes: the example event function
//! (`examples/functions/event_function.py`, Python standard library) behind a real
//! `switchyard standalone`, and an `invocation: Http` function on a real HTTP server.
//!
//! Event: every request shape reaches the function as the spec's event (the client's path,
//! decoded query with a repeated key's first value, template path parameters, UTF-8 and
//! binary bodies, repeated headers joined, AppCode credentials removed); every malformed
//! response is a 502 with its own code and a message naming the problem; the function's
//! own 4xx/5xx and a platform failure pass through; a body over maxRequestSize is refused
//! before the call (the function counts what it receives); a response over
//! maxResponseSize is D502FL. Http: forwarded as `http` forwards (rewrite, base path,
//! query, no event limits, a streamed response).

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Method;
use support::upstream::Upstream;
use support::{ConfigDir, Reply, Switchyard, get, send};

const API: &str = "apiVersion: switchyard.dev/v1alpha1";
/// The binary body the example function answers `/binary` with.
const BINARY: &[u8] = &[0x00, 0xff, 0x10, 0x80, 0xfe, b'p', b'n', b'g', b'?'];

/// The example event function, killed when dropped.
struct EventFunction {
    child: Child,
    port: u16,
}

impl EventFunction {
    fn start() -> Self {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/functions/event_function.py");
        let mut child = Command::new("python3")
            .args([script, "0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 on PATH runs the example function");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let port = line.trim().strip_prefix("listening ").and_then(|p| p.parse().ok());
        let Some(port) = port else {
            let _ = child.kill();
            panic!("the function did not announce its port: {line:?}");
        };
        Self { child, port }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/invoke", self.port)
    }

    /// Events the function has received so far (asked directly, not through the gateway).
    async fn events(&self) -> u64 {
        let reply = get(&format!("http://127.0.0.1:{}/_count", self.port)).await.unwrap();
        reply.json()["events"].as_u64().unwrap()
    }
}

impl Drop for EventFunction {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The event function (64 KiB requests, 1 MiB responses) on a template route that
/// rewrites and adds constants, on a catch-all prefix, and behind AppCode; an Http
/// function (base path `/base`) on `/http-fn`, rewritten to `/echo`.
fn config(function: &EventFunction, http_function: &str) -> ConfigDir {
    let event = format!(
        "{API}\nkind: BackendService\nmetadata: {{name: fn}}\nspec:\n  function: {{url: \"{}\", invocation: Event, maxRequestSize: 64Ki, maxResponseSize: 1Mi}}\n  timeout: 10s\n",
        function.url()
    );
    let http = format!("{API}\nkind: BackendService\nmetadata: {{name: http-fn}}\nspec:\n  function: {{url: \"{http_function}/base\"}}\n");
    let routes = format!(
        "{API}\nkind: ApiRoute\nmetadata: {{name: users}}\nspec:\n  match: {{path: \"/users/{{id}}/orders/{{order}}\", pathType: Template}}\n  backendRefs: [{{name: fn}}]\n  rewrite: {{path: \"/v1/{{order}}\"}}\n  parameters:\n    - {{in: query, name: source, value: gateway}}\n    - {{in: header, name: x-env, value: test}}\n---\n\
         {API}\nkind: ApiRoute\nmetadata: {{name: fn}}\nspec: {{match: {{path: /fn, pathType: Prefix}}, backendRefs: [{{name: fn}}]}}\n---\n\
         {API}\nkind: ApiRoute\nmetadata: {{name: secure}}\nspec: {{match: {{path: /secure, pathType: Prefix}}, backendRefs: [{{name: fn}}], auth: {{type: AppCode, apps: [partner]}}}}\n---\n\
         {API}\nkind: ApiRoute\nmetadata: {{name: http-fn}}\nspec: {{match: {{path: /http-fn, pathType: Prefix}}, backendRefs: [{{name: http-fn}}], rewrite: {{path: /echo}}}}\n---\n\
         apiVersion: v1\nkind: Secret\nmetadata: {{name: partner, labels: {{switchyard.dev/app: \"true\"}}}}\nstringData: {{appKey: \"204000001\", appSecret: s3cr3t, appCode: c0de-fn}}\n"
    );
    ConfigDir::with(&[("event.yaml", &event), ("http.yaml", &http), ("routes.yaml", &routes)])
}

/// The function, an echo upstream as the Http function, and the gateway in front.
async fn setup() -> (EventFunction, Upstream, Switchyard, ConfigDir) {
    let function = EventFunction::start();
    let upstream = Upstream::start("http-fn").await;
    let config = config(&function, &upstream.url());
    let gw = Switchyard::standalone(config.path(), &[]);
    gw.wait_ready().await;
    (function, upstream, gw, config)
}

async fn call(gw: &Switchyard, method: Method, path: &str, headers: &[(&str, &str)], body: impl Into<Bytes>) -> Reply {
    send(method, &gw.proxy_url(path), headers, body).await.unwrap()
}

/// The event the function echoed back (its response body is the event as JSON).
fn echoed(reply: &Reply) -> serde_json::Value {
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.header("x-function"), Some("event_function.py"), "the function's own headers pass: {reply:?}");
    reply.json()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_carries_the_clients_path_query_path_parameters_headers_and_a_utf8_body() {
    let (_function, _upstream, gw, _config) = setup().await;
    let headers = [("x-multi", "one"), ("x-multi", "two"), ("connection", "x-hop"), ("x-hop", "secret"), ("content-type", "text/plain")];
    let reply = call(&gw, Method::PUT, "/users/42/orders/a%20b?tag=first&tag=second&q=x+y&enc=%E2%9C%93", &headers, "héllo ✓").await;
    let event = echoed(&reply);
    assert_eq!(event["path"], "/users/42/orders/a%20b", "the client's path, not the rewritten /v1/...: {event}");
    assert_eq!(event["httpMethod"], "PUT");
    assert_eq!(event["pathParameters"], serde_json::json!({"id": "42", "order": "a b"}), "{event}");
    assert_eq!(
        event["queryParameters"],
        serde_json::json!({"tag": "first", "q": "x y", "enc": "✓", "source": "gateway"}),
        "decoded, first value of a repeated key, the route's constant added: {event}"
    );
    let seen = &event["headers"];
    assert_eq!(seen["x-multi"], "one, two", "repeated headers joined: {seen}");
    assert_eq!(seen["x-env"], "test", "the route's constant header: {seen}");
    assert_eq!(seen["x-forwarded-for"], "127.0.0.1");
    assert_eq!(seen["x-ca-request-id"].as_str(), reply.header("x-ca-request-id"), "one request id");
    assert!(seen.get("x-hop").is_none() && seen.get("connection").is_none(), "hop-by-hop headers are stripped: {seen}");
    assert!(seen.as_object().unwrap().keys().all(|k| *k == k.to_lowercase()), "names are lowercase: {seen}");
    assert_eq!((event["body"].as_str(), event["isBase64Encoded"].as_bool()), (Some("héllo ✓"), Some(false)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_bodies_travel_base64_both_ways() {
    let (_function, _upstream, gw, _config) = setup().await;
    let reply =
        call(&gw, Method::POST, "/fn/upload", &[("content-type", "application/octet-stream")], vec![0xffu8, 0x00, 0xfe, b'a']).await;
    let event = echoed(&reply);
    assert_eq!((event["body"].as_str(), event["isBase64Encoded"].as_bool()), (Some("/wD+YQ=="), Some(true)), "{event}");
    assert_eq!((event["path"].as_str(), &event["pathParameters"]), (Some("/fn/upload"), &serde_json::json!({})));

    let reply = call(&gw, Method::GET, "/fn/binary", &[], "").await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(&reply.body[..], BINARY, "the function's base64 body is decoded");
    assert_eq!(reply.header("content-type"), Some("image/png"));
    assert_eq!(reply.header("content-length"), Some(BINARY.len().to_string().as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_code_credentials_never_reach_the_function() {
    let (_function, _upstream, gw, _config) = setup().await;
    let reply = call(&gw, Method::GET, "/secure/x?AppCode=c0de-fn&keep=1", &[("authorization", "APPCODE c0de-fn")], "").await;
    let event = echoed(&reply);
    assert_eq!(event["queryParameters"], serde_json::json!({"keep": "1"}), "{event}");
    assert!(event["headers"].get("authorization").is_none(), "{event}");
    assert!(!event.to_string().contains("c0de-fn"), "the code appears nowhere in the event: {event}");
    let refused = call(&gw, Method::GET, "/secure/x", &[], "").await;
    assert_eq!(refused.status, 401, "the route does authenticate");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_malformed_response_is_a_502_with_its_own_code_and_a_message_naming_the_problem() {
    let (_function, _upstream, gw, _config) = setup().await;
    let cases = [
        ("not-json", "D502FJ", "expected value at line 1 column 1"),
        ("no-status", "D502FN", "without a statusCode"),
        ("status-700", "D502FS", "statusCode 700"),
        ("bad-base64", "D502FB", "not valid base64"),
        ("oversized", "D502FL", "more than 1048576 bytes"),
        ("oversized-stream", "D502FL", "more than 1048576 bytes"),
        ("headers-not-object", "D502FI", "headers must be an object"),
        ("header-crlf", "D502FI", "header x-a holds a character that cannot be sent"),
        ("header-hop-by-hop", "D502FI", "header connection is the gateway's to set"),
        ("body-not-string", "D502FI", "body must be a string"),
    ];
    for (case, code, needle) in cases {
        let reply = call(&gw, Method::GET, &format!("/fn/malformed/{case}"), &[], "").await;
        assert_eq!((reply.status.as_u16(), reply.error_code()), (502, Some(code)), "{case}: {reply:?}");
        let message = reply.header("x-ca-error-message").unwrap_or_default();
        assert!(message.contains(needle) && message.contains("default/fn"), "{case}: {message}");
        assert_eq!(reply.json()["code"], code, "the JSON body says it too");
        assert!(reply.header("set-cookie").is_none(), "{case}: nothing of the function's response leaks");
    }
    assert!(!gw.log_text().contains("panic"), "{}", gw.log_text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_functions_own_4xx_and_5xx_and_a_failing_platform_pass_through() {
    let (_function, _upstream, gw, _config) = setup().await;
    for status in [404u16, 500] {
        let reply = call(&gw, Method::GET, &format!("/fn/status/{status}"), &[], "").await;
        assert_eq!(reply.status.as_u16(), status, "{reply:?}");
        assert_eq!(reply.error_code(), None, "the function's answer, not a gateway error");
        assert_eq!(reply.header("x-function"), Some("event_function.py"));
        assert_eq!(reply.json()["error"], "chosen by the function");
    }
    let reply = call(&gw, Method::GET, "/fn/platform-error", &[], "").await;
    assert_eq!((reply.status.as_u16(), reply.error_code()), (503, None), "{reply:?}");
    assert_eq!(reply.text(), "function platform overloaded", "a non-2xx platform answer passes as it came");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_over_max_request_size_is_refused_with_413_before_the_call() {
    let (function, _upstream, gw, _config) = setup().await;
    let within = call(&gw, Method::POST, "/fn/ok", &[], vec![b'a'; 64 * 1024]).await;
    assert_eq!(echoed(&within)["body"].as_str().map(str::len), Some(64 * 1024), "exactly the limit is fine");
    let before = function.events().await;

    let declared = call(&gw, Method::POST, "/fn/big", &[], vec![b'a'; 64 * 1024 + 1]).await;
    assert_eq!((declared.status.as_u16(), declared.error_code()), (413, Some("A413BL")), "{declared:?}");
    assert!(declared.header("x-ca-error-message").unwrap().contains("65536"), "{declared:?}");

    // Chunked, so no length is declared: refused while reading, still before the call.
    let chunked = raw_chunked_post(&gw, "/fn/big", 128 * 1024);
    assert!(chunked.starts_with("HTTP/1.1 413"), "{chunked}");
    assert!(chunked.to_ascii_lowercase().contains("x-ca-error-code: a413bl"), "{chunked}");
    assert_eq!(function.events().await, before, "the function saw neither request");
}

/// A POST with a chunked body of `size` bytes over a raw connection; the response head.
fn raw_chunked_post(gw: &Switchyard, path: &str, size: usize) -> String {
    let mut stream = std::net::TcpStream::connect(gw.addrs["proxy"]).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let head = format!("POST {path} HTTP/1.1\r\nhost: fn.test\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n");
    stream.write_all(head.as_bytes()).unwrap();
    let chunk = vec![b'z'; 8192];
    for _ in 0..size / chunk.len() {
        // The gateway may answer and close before it has read everything.
        if stream.write_all(format!("{:x}\r\n", chunk.len()).as_bytes()).is_err()
            || stream.write_all(&chunk).is_err()
            || stream.write_all(b"\r\n").is_err()
        {
            break;
        }
    }
    let _ = stream.write_all(b"0\r\n\r\n");
    let mut out = Vec::new();
    let _ = stream.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_function_is_forwarded_as_http_is() {
    let (_function, upstream, gw, _config) = setup().await;
    let reply = call(&gw, Method::GET, "/http-fn/items/7?x=1&x=2", &[("x-multi", "a")], "").await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let seen = reply.json();
    assert_eq!(seen["path"], "/base/echo/items/7", "base path of the URL, then the rewritten path: {seen}");
    assert_eq!(seen["query"], "x=1&x=2", "the query as the client sent it");
    assert_eq!(seen["method"], "GET", "not an event POST");
    assert_eq!(seen["headers"]["x-multi"], "a");
    assert_eq!(reply.header("x-upstream"), Some("http-fn"));
    // No event limits: 1 MiB goes through (the event function's maxRequestSize is 64 KiB).
    let big = call(&gw, Method::POST, "/http-fn/upload", &[], vec![b'b'; 1 << 20]).await;
    assert_eq!((big.status.as_u16(), big.json()["bodyLength"].as_u64()), (200, Some(1 << 20)), "{:?}", big.error_code());
    assert_eq!(upstream.hits(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_functions_response_streams_to_the_client() {
    let function = EventFunction::start();
    let streaming = SlowStream::start();
    let config = config(&function, &streaming.url());
    let gw = Switchyard::standalone(config.path(), &[]);
    gw.wait_ready().await;
    let started = Instant::now();
    let mut stream = std::net::TcpStream::connect(gw.addrs["proxy"]).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    stream.write_all(b"GET /http-fn/s HTTP/1.1\r\nhost: fn.test\r\nconnection: close\r\n\r\n").unwrap();
    let mut seen = Vec::new();
    let mut first_at = None;
    let mut buf = [0u8; 4096];
    loop {
        let n = stream.read(&mut buf).unwrap_or(0);
        if n == 0 {
            break;
        }
        seen.extend_from_slice(&buf[..n]);
        if first_at.is_none() && String::from_utf8_lossy(&seen).contains("first-part") {
            first_at = Some(started.elapsed());
        }
    }
    let total = started.elapsed();
    let text = String::from_utf8_lossy(&seen);
    assert!(text.contains("first-part") && text.contains("second-part"), "{text}");
    let first = first_at.unwrap();
    assert!(total >= Duration::from_millis(800), "the upstream waits 800 ms before the second part: {total:?}");
    assert!(first < Duration::from_millis(500), "the first part arrived before the upstream finished: {first:?} of {total:?}");
}

/// An upstream that sends `first-part`, waits 800 ms, then `second-part` (chunked).
struct SlowStream {
    addr: std::net::SocketAddr,
    _thread: std::thread::JoinHandle<()>,
}

impl SlowStream {
    fn start() -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let thread = std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                std::thread::spawn(move || {
                    let mut head = Vec::new();
                    let mut byte = [0u8; 1];
                    while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap_or(0) == 1 {
                        head.push(byte[0]);
                    }
                    let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-type: text/plain\r\n\r\n");
                    let _ = stream.write_all(b"a\r\nfirst-part\r\n");
                    let _ = stream.flush();
                    std::thread::sleep(Duration::from_millis(800));
                    let _ = stream.write_all(b"b\r\nsecond-part\r\n0\r\n\r\n");
                });
            }
        });
        Self { addr, _thread: thread }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

#[test]
fn the_shipped_function_examples_validate_cleanly() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/functions");
    let out = Command::new(env!("CARGO_BIN_EXE_switchyard")).args(["validate", "-f", dir]).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("3 route(s) programmed"), "{text}");
}
