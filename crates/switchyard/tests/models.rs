//! `model` backends end to end: the real binary (standalone, logging at `debug` with its
//! stdout and stderr captured) in front of real upstreams on loopback:
//!
//! - an OpenAI-compatible server (examples/models/openai_upstream.py, Python's standard
//!   library) called through the gateway by the official `openai` SDK
//!   (tests/support/openai_client.py, in the venv `scripts/test.sh` makes and names in
//!   `SWITCHYARD_TEST_PYTHON`), streaming and not, with the token metrics matching the
//!   upstream's usage exactly;
//! - the same server streaming server-sent events slowly: the first event reaches the client
//!   long before the last; a stall past `idleTimeout` cuts the stream at the idle time;
//! - the token reaching the upstream in place of the client's `Authorization`, and absent
//!   from `/config_dump`, `/status`, `/metrics` and every log line;
//! - KServe v2 against the echo upstream: a valid `infer` passes, invalid ones are 400
//!   `A400IR` that never reach it, other paths 404 `A404MP`.
//!
//! The ignored `streaming_bench` is the `make bench` streaming line (bench/streaming.sh).

mod support;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use support::upstream::Upstream;
use support::{ConfigDir, Reply, get, send};

const API: &str = "apiVersion: switchyard.dev/v1alpha1";
/// The model's token: it must reach the upstream and nothing else.
const TOKEN: &str = "eas-T0KEN-5f3c9a7e1d";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// examples/models/openai_upstream.py on an ephemeral loopback port.
struct OpenAiUpstream {
    child: Child,
    addr: SocketAddr,
}

impl OpenAiUpstream {
    fn start() -> Self {
        let script = root().join("examples/models/openai_upstream.py");
        let mut child = Command::new("python3")
            .arg(script)
            .args(["--port", "0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 runs the example upstream");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let addr = line.trim().strip_prefix("listening on ").unwrap_or_else(|| panic!("upstream said {line:?}")).parse().unwrap();
        Self { child, addr }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// What the upstream received: method, path, and its Authorization values.
    async fn seen(&self) -> Vec<serde_json::Value> {
        get(&format!("{}/_seen", self.url())).await.unwrap().json().as_array().unwrap().clone()
    }
}

impl Drop for OpenAiUpstream {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `switchyard standalone` logging at `debug`, with every line of stdout (the access log)
/// and stderr kept.
struct Gateway {
    child: Child,
    addrs: HashMap<String, SocketAddr>,
    log: Arc<Mutex<Vec<String>>>,
}

impl Gateway {
    async fn start(config: &ConfigDir) -> Self {
        Self::start_with(config, env!("CARGO_BIN_EXE_switchyard"), "debug").await
    }

    async fn start_with(config: &ConfigDir, binary: &str, level: &str) -> Self {
        let dir = config.path().to_str().unwrap();
        let mut child = Command::new(binary)
            .args(["standalone", "--config-dir", dir, "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
            .env("SWITCHYARD_LOG", level)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn switchyard");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        for stream in [Box::new(child.stderr.take().unwrap()) as Box<dyn std::io::Read + Send>, Box::new(child.stdout.take().unwrap())] {
            let (sink, tx) = (log.clone(), tx.clone());
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    if let Some((role, addr)) = line.strip_prefix("switchyard: listening role=").and_then(|r| r.split_once(" addr=")) {
                        let _ = tx.send((role.to_owned(), addr.parse::<SocketAddr>().unwrap()));
                    }
                    sink.lock().unwrap().push(line);
                }
            });
        }
        let mut addrs = HashMap::new();
        while addrs.len() < 2 {
            let (role, addr) = rx.recv_timeout(Duration::from_secs(20)).expect("switchyard announces its listeners");
            addrs.insert(role, addr);
        }
        let gateway = Self { child, addrs, log };
        let ready = gateway.admin("/readyz");
        support::wait_until("ready", Duration::from_secs(10), || async { get(&ready).await.is_ok_and(|r| r.status == 200) }).await;
        gateway
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addrs["proxy"])
    }

    fn admin(&self, path: &str) -> String {
        format!("http://{}{path}", self.addrs["admin"])
    }

    fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// `switchyard_model_tokens_total` of `route` for `kind` (0 when the series is absent).
    async fn tokens(&self, route: &str, kind: &str) -> u64 {
        let metrics = get(&self.admin("/metrics")).await.unwrap().text();
        let series = format!("switchyard_model_tokens_total{{route=\"{route}\",kind=\"{kind}\"}} ");
        metrics.lines().find_map(|l| l.strip_prefix(&series)).map_or(0, |v| v.trim().parse().unwrap())
    }

    /// The token appears in none of `/config_dump`, `/status`, `/metrics`, or the logs.
    async fn assert_token_hidden(&self) {
        for path in ["/config_dump", "/status", "/metrics"] {
            let body = get(&self.admin(path)).await.unwrap().text();
            assert!(!body.contains(TOKEN), "{path} shows the token: {body}");
        }
        let log = self.log_text();
        assert!(log.lines().count() > 5, "the debug log is being captured: {log}");
        assert!(!log.contains(TOKEN), "the log shows the token:\n{log}");
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A Secret with the token, a model backend (`model` holds the rest of its spec) and a
/// catch-all route `default/llm` to it.
fn model_config(model: &str, backend_extra: &str) -> ConfigDir {
    ConfigDir::with(&[(
        "model.yaml",
        &format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: eas}}\nstringData: {{token: \"{TOKEN}\\n\"}}\n---\n\
             {API}\nkind: BackendService\nmetadata: {{name: llm}}\nspec: {{model: {{tokenSecretRef: {{name: eas, key: token}}, {model}}}{backend_extra}}}\n---\n\
             {API}\nkind: ApiRoute\nmetadata: {{name: llm}}\nspec: {{match: {{path: /, pathType: Prefix}}, backendRefs: [{{name: llm}}]}}\n"
        ),
    )])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openai_sdk_through_the_gateway_streams_and_its_tokens_are_counted_exactly() {
    let python = support::test_python("the openai SDK");
    let upstream = OpenAiUpstream::start();
    let config = model_config(&format!("url: \"{}\", protocol: OpenAI", upstream.url()), "");
    let gateway = Gateway::start(&config).await;
    let base = gateway.url("/v1");
    let client = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/openai_client.py");
    let run = tokio::task::spawn_blocking(move || Command::new(python).arg(client).args([&base, "sk-client-key"]).output());
    let output = run.await.unwrap().expect("the SDK client runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "openai_client.py failed:\n{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    let out: serde_json::Value = serde_json::from_str(&stdout).unwrap();

    // What the SDK got is what the upstream sent, through the gateway.
    assert_eq!(out["chat"]["content"], "Switchyard streams every token as");
    assert_eq!(out["stream"]["content"], "Switchyard streams every token as", "every streamed delta arrived");
    assert_eq!(out["stream"]["chunks"], 7, "5 words, the finish chunk, the usage chunk");
    assert_eq!(out["models"], serde_json::json!(["tiny-chat"]));
    assert_eq!(out["embeddings"]["vectors"], 2);

    // The metric is the sum of the usage the upstream reported, exactly.
    let usage = |call: &str, kind: &str| out[call]["usage"][kind].as_u64().unwrap_or(0);
    let prompt = usage("chat", "prompt_tokens") + usage("stream", "prompt_tokens") + usage("embeddings", "prompt_tokens");
    let completion = usage("chat", "completion_tokens") + usage("stream", "completion_tokens");
    assert!(prompt > 0 && completion > 0 && out["embeddings"]["usage"]["completion_tokens"].is_null(), "{out}");
    assert_eq!(gateway.tokens("default/llm", "prompt").await, prompt, "prompt tokens: {out}");
    assert_eq!(gateway.tokens("default/llm", "completion").await, completion, "completion tokens: {out}");

    // Every call reached the upstream with the model's token, never the SDK's key.
    let seen = upstream.seen().await;
    assert_eq!(seen.len(), 5, "{seen:?}");
    for call in &seen {
        assert_eq!(call["authorization"], serde_json::json!([TOKEN]), "{call}");
    }
    gateway.assert_token_hidden().await;
    assert!(!gateway.log_text().contains("sk-client-key"), "nor the client's key");
}

/// A POST of `body` to the gateway, read frame by frame: when each frame came (since the
/// request was sent) and the text, or the error that cut the body.
async fn stream_frames(url: &str, headers: &[(&str, &str)], body: &str) -> (Vec<(Duration, String)>, Option<String>, Duration) {
    let client: Client<HttpConnector, Full<Bytes>> = Client::builder(TokioExecutor::new()).build(HttpConnector::new());
    let mut request = Request::builder().method(Method::POST).uri(url).header("content-type", "application/json");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let started = Instant::now();
    let response = client.request(request.body(Full::new(Bytes::from(body.to_owned()))).unwrap()).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut body = response.into_body();
    let (mut frames, mut error) = (Vec::new(), None);
    loop {
        match tokio::time::timeout(Duration::from_secs(30), body.frame()).await.expect("the stream moves or ends") {
            None => break,
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    frames.push((started.elapsed(), String::from_utf8_lossy(&data).into_owned()));
                }
            }
            Some(Err(e)) => {
                error = Some(format!("{e:?}"));
                break;
            }
        }
    }
    (frames, error, started.elapsed())
}

const STREAM_REQUEST: &str = r#"{"model": "tiny-chat", "stream": true, "messages": [{"role": "user", "content": "hello"}], "stream_options": {"include_usage": true}}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_event_reaches_the_client_long_before_the_upstream_finishes() {
    let upstream = OpenAiUpstream::start();
    let gateway = Gateway::start(&model_config(&format!("url: \"{}\", protocol: OpenAI", upstream.url()), "")).await;
    let headers = [("x-upstream-chunks", "5"), ("x-upstream-interval-ms", "300")];
    let (frames, error, total) = stream_frames(&gateway.url("/v1/chat/completions"), &headers, STREAM_REQUEST).await;
    assert_eq!(error, None);
    let text: String = frames.iter().map(|(_, t)| t.as_str()).collect();
    assert!(text.ends_with("data: [DONE]\n\n") && text.matches("\"delta\"").count() == 6, "{text}");
    let first_event = frames.iter().find(|(_, t)| t.contains("data: ")).expect("an event").0;
    assert!(total >= Duration::from_millis(1100), "the upstream takes 4 x 300 ms: {total:?}");
    assert!(first_event < total / 3, "first event at {first_event:?} of {total:?}: streamed, not buffered");
    // The words came spread out as the upstream sent them (300 ms apart), not in one piece.
    let words: Vec<Duration> = frames.iter().filter(|(_, t)| t.contains("\"content\"")).map(|(at, _)| *at).collect();
    assert!(words.len() >= 3, "{frames:?}");
    assert!(words[words.len() - 1] - words[0] >= Duration::from_millis(900), "{words:?}");
    assert_eq!(gateway.tokens("default/llm", "completion").await, 5, "the stream's usage chunk was counted");
    gateway.assert_token_hidden().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_that_stalls_past_the_idle_timeout_is_cut_at_the_idle_time() {
    let upstream = OpenAiUpstream::start();
    let config = model_config(&format!("url: \"{}\", protocol: OpenAI, idleTimeout: 500ms", upstream.url()), "");
    let gateway = Gateway::start(&config).await;
    let headers = [("x-upstream-stall-ms", "6000"), ("x-upstream-interval-ms", "10"), ("x-ca-request-id", "stall-1")];
    let (frames, error, total) = stream_frames(&gateway.url("/v1/chat/completions"), &headers, STREAM_REQUEST).await;
    assert!(frames.iter().any(|(_, t)| t.contains("Switchyard")), "the first chunk came: {frames:?}");
    assert!(!frames.iter().any(|(_, t)| t.contains("[DONE]")), "{frames:?}");
    assert!(error.is_some(), "the client sees the stream cut, not a clean end: {frames:?}");
    assert!(total < Duration::from_secs(3), "cut at the 500 ms idle time, not after the stall or the 5 min timeout: {total:?}");
    // The gateway logs the cut as it happens; its log reaches the test through a pipe.
    let warned = |log: &str| {
        log.lines().any(|l| l.contains("WARN") && l.contains("idle timeout") && l.contains("stall-1") && l.contains("default/llm"))
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    while !warned(&gateway.log_text()) && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let log = gateway.log_text();
    assert!(warned(&log), "a warning names the request id and the backend:\n{log}");
    // A stream that keeps moving is never cut, however long it runs in total.
    let steady = [("x-upstream-chunks", "8"), ("x-upstream-interval-ms", "250")];
    let (frames, error, total) = stream_frames(&gateway.url("/v1/chat/completions"), &steady, STREAM_REQUEST).await;
    assert_eq!(error, None, "{frames:?}");
    assert!(total > Duration::from_millis(1500), "{total:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_replaces_the_clients_authorization_and_no_other_openai_path_is_reachable() {
    let upstream = OpenAiUpstream::start();
    let gateway = Gateway::start(&model_config(&format!("url: \"{}\", protocol: OpenAI", upstream.url()), "")).await;
    let body = r#"{"model": "m", "input": "a b c"}"#;
    let reply = send(Method::POST, &gateway.url("/v1/embeddings"), &[("authorization", "Bearer client-own-key")], body).await.unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());
    for (method, path) in [(Method::GET, "/_seen"), (Method::POST, "/v1/files"), (Method::GET, "/v1/chat/completions")] {
        let reply = send(method.clone(), &gateway.url(path), &[], "{}").await.unwrap();
        assert_eq!((reply.status.as_u16(), reply.error_code()), (404, Some("A404MP")), "{method} {path}: {}", reply.text());
        let message = reply.header("x-ca-error-message").unwrap_or_default();
        assert!(message.contains("/v1/chat/completions") && message.contains("default/llm"), "names what it serves: {message}");
    }
    let seen = upstream.seen().await;
    assert_eq!(seen.len(), 1, "refused paths never reach the upstream: {seen:?}");
    assert_eq!(seen[0]["authorization"], serde_json::json!([TOKEN]), "the client's own Authorization was replaced");
    assert_eq!(gateway.tokens("default/llm", "prompt").await, 3);
    gateway.assert_token_hidden().await;
    assert!(!gateway.log_text().contains("client-own-key"));
}

fn kserve_reply_check(reply: &Reply, code: &str, field: &str) {
    assert_eq!((reply.status.as_u16(), reply.error_code()), (400, Some(code)), "{}", reply.text());
    let message = reply.header("x-ca-error-message").unwrap_or_default();
    assert!(message.contains(field), "the message names {field}: {message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kserve_v2_checks_inference_requests_before_they_reach_the_model() {
    let upstream = Upstream::start("triton").await;
    let config = model_config(&format!("url: \"{}/api/predict\", protocol: KServeV2", upstream.url()), "");
    let gateway = Gateway::start(&config).await;
    let infer = gateway.url("/v2/models/bert/infer");
    let good = r#"{"inputs": [{"name": "input0", "shape": [1, 2], "datatype": "FP32", "data": [0.5, 1.5]}]}"#;
    let reply = send(Method::POST, &infer, &[("authorization", "Bearer mine")], good).await.unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());
    let echo = reply.json();
    assert_eq!(echo["path"], "/api/predict/v2/models/bert/infer", "the url is the base; the path is appended");
    assert_eq!(echo["body"], good, "the body passes as it came");
    assert_eq!(echo["headers"]["authorization"], TOKEN);
    for path in ["/v2/models/bert/ready", "/v2/models/bert/versions/2", "/v2/health/ready"] {
        assert_eq!(get(&gateway.url(path)).await.unwrap().status, 200, "{path}");
    }
    let hits = upstream.hits();
    for (body, field) in [
        ("{\"inputs\": 5", "not JSON"),
        (r#"{"outputs": []}"#, "inputs"),
        (r#"{"inputs": []}"#, "inputs"),
        (r#"{"inputs": [{"name": "a", "shape": [1], "datatype": "FP32"}, {"shape": [1], "datatype": "FP32"}]}"#, "inputs[1].name"),
        (r#"{"inputs": [{"name": "a", "shape": [-1], "datatype": "FP32"}]}"#, "inputs[0].shape"),
        (r#"{"inputs": [{"name": "a", "shape": [1], "datatype": "float"}]}"#, "inputs[0].datatype"),
    ] {
        kserve_reply_check(&send(Method::POST, &infer, &[], body).await.unwrap(), "A400IR", field);
    }
    for (method, path) in [(Method::POST, "/v2/repository/index"), (Method::GET, "/v2/models/bert/infer"), (Method::GET, "/metrics")] {
        let reply = send(method.clone(), &gateway.url(path), &[], Bytes::new()).await.unwrap();
        assert_eq!((reply.status.as_u16(), reply.error_code()), (404, Some("A404MP")), "{method} {path}");
    }
    assert_eq!(upstream.hits(), hits, "refused requests never reached the model");
    gateway.assert_token_hidden().await;
}

#[test]
fn the_model_example_validates_cleanly() {
    let dir = root().join("examples/models");
    let out = Command::new(env!("CARGO_BIN_EXE_switchyard")).args(["validate", "-f", dir.to_str().unwrap()]).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{text}");
    assert!(text.contains("1 route(s) programmed"), "{text}");
}

// ------------------------------------------------------------------ benchmark ---

/// The streaming line of `make bench` (bench/streaming.sh; method in docs/benchmarks.md):
/// an SSE upstream in this process, read directly and through the gateway (the binary this
/// test was built with, a `model` backend with `protocol: OpenAI`, so the token meter runs)
/// in the same run:
///
/// - throughput: the upstream sends `STREAM_BENCH_CHUNKS` (default 200,000) 64-byte events
///   as fast as the connection takes them; chunks per second from the request to the last byte;
/// - latency: `STREAM_BENCH_PACED` (default 400) events, one every `STREAM_BENCH_INTERVAL_MS`
///   (default 5) ms, each carrying the time it was sent; its latency is when the client read
///   it minus that (one clock: the same process), and the gateway's added latency is its
///   percentile minus the direct one.
///
/// `STREAM_BENCH_ROUNDS` (default 5) rounds alternate the two; each figure is the median over
/// the rounds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: make bench (bench/streaming.sh)"]
async fn streaming_bench() {
    let env = |name: &str, default: u64| std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default);
    let (chunks, paced, interval_ms) =
        (env("STREAM_BENCH_CHUNKS", 200_000), env("STREAM_BENCH_PACED", 400), env("STREAM_BENCH_INTERVAL_MS", 5));
    let rounds = env("STREAM_BENCH_ROUNDS", 5);
    let upstream = bench::start().await;
    let config = model_config(&format!("url: \"http://{upstream}\", protocol: OpenAI"), "");
    let gateway = Gateway::start_with(&config, env!("CARGO_BIN_EXE_switchyard"), "warn").await;
    let targets = [("direct", format!("http://{upstream}/v1/chat/completions")), ("switchyard", gateway.url("/v1/chat/completions"))];
    let client: Client<HttpConnector, Full<Bytes>> = Client::builder(TokioExecutor::new()).build(HttpConnector::new());
    // Warm-up: connections, the gateway's pool.
    for (_, url) in &targets {
        bench::burst(&client, url, 1_000).await;
    }
    // Per round and target: chunks/s, latency p50, p99. Rounds alternate the targets, and
    // each figure is the median over rounds, so one stall of the shared machine does not
    // decide it.
    let mut runs: HashMap<&str, Vec<(f64, u64, u64)>> = HashMap::new();
    for _ in 0..rounds {
        for (name, url) in &targets {
            let rate = bench::burst(&client, url, chunks).await;
            let mut latencies = bench::paced(&client, url, paced, interval_ms).await;
            latencies.sort_unstable();
            let pct = |p: f64| latencies[((latencies.len() - 1) as f64 * p).round() as usize];
            runs.entry(*name).or_default().push((rate, pct(0.5), pct(0.99)));
        }
    }
    let median = |name: &str, pick: fn(&(f64, u64, u64)) -> f64| {
        let mut v: Vec<f64> = runs[name].iter().map(pick).collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (rate, p50, p99) = (|r: &(f64, u64, u64)| r.0, |r: &(f64, u64, u64)| r.1 as f64, |r: &(f64, u64, u64)| r.2 as f64);
    println!(
        "# streaming through a model backend (SSE, 64-byte events): median of {rounds} rounds; {chunks} events per burst, {paced} paced events at {interval_ms} ms"
    );
    println!("{:<12} {:>12} {:>12} {:>12}", "target", "chunks/s", "p50 us", "p99 us");
    for (name, _) in &targets {
        println!("{:<12} {:>12.0} {:>12} {:>12}", name, median(name, rate), median(name, p50), median(name, p99));
    }
    println!("streaming chunks/s switchyard/direct: {:.2}", median("switchyard", rate) / median("direct", rate));
    println!(
        "streaming added latency per chunk: p50 {} us, p99 {} us",
        median("switchyard", p50) - median("direct", p50),
        median("switchyard", p99) - median("direct", p99)
    );
}

mod bench {
    use std::net::SocketAddr;
    use std::pin::Pin;
    use std::sync::OnceLock;
    use std::task::{Context, Poll};
    use std::time::{Duration, Instant};

    use bytes::Bytes;
    use http::{Method, Request, Response};
    use http_body::{Body, Frame};
    use http_body_util::{BodyExt, Full};
    use hyper::service::service_fn;
    use hyper_util::client::legacy::Client;
    use hyper_util::client::legacy::connect::HttpConnector;
    use hyper_util::rt::TokioIo;

    /// One 64-byte event (what the throughput run sends).
    const EVENT: &[u8; 64] = b"data: {\"choices\":[{\"delta\":{\"content\":\"token\"}}],\"usage\":null}\n\n";
    const _: () = assert!(EVENT.len() == 64);

    /// The clock both the upstream and the client read (one process).
    fn epoch() -> Instant {
        static EPOCH: OnceLock<Instant> = OnceLock::new();
        *EPOCH.get_or_init(Instant::now)
    }

    fn micros() -> u64 {
        epoch().elapsed().as_micros() as u64
    }

    /// `count` events as fast as they are polled.
    struct Burst(u64);

    impl Body for Burst {
        type Data = Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            if self.0 == 0 {
                return Poll::Ready(None);
            }
            self.0 -= 1;
            Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(EVENT)))))
        }
    }

    /// `left` events, one per tick, each with the time it was sent: `data: {"t":MICROS}`.
    struct Paced {
        tick: tokio::time::Interval,
        left: u64,
    }

    impl Body for Paced {
        type Data = Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            if self.left == 0 {
                return Poll::Ready(None);
            }
            std::task::ready!(self.tick.poll_tick(cx));
            self.left -= 1;
            Poll::Ready(Some(Ok(Frame::data(Bytes::from(format!("data: {{\"t\":{}}}\n\n", micros()))))))
        }
    }

    enum Stream {
        Burst(Burst),
        Paced(Paced),
    }

    impl Body for Stream {
        type Data = Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            match self.get_mut() {
                Stream::Burst(b) => Pin::new(b).poll_frame(cx),
                Stream::Paced(p) => Pin::new(p).poll_frame(cx),
            }
        }
    }

    /// The SSE upstream: `x-bench-chunks` events, paced every `x-bench-interval-ms` if given.
    pub async fn start() -> SocketAddr {
        epoch();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let _ = stream.set_nodelay(true);
                tokio::spawn(async move {
                    let service = service_fn(|request: Request<hyper::body::Incoming>| async move {
                        let header = |n: &str| request.headers().get(n).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
                        let count = header("x-bench-chunks").unwrap_or(1);
                        let body = match header("x-bench-interval-ms") {
                            None => Stream::Burst(Burst(count)),
                            Some(ms) => {
                                let mut tick = tokio::time::interval(Duration::from_millis(ms));
                                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                                Stream::Paced(Paced { tick, left: count })
                            }
                        };
                        let _ = request.into_body().collect().await;
                        let mut response = Response::new(body);
                        response.headers_mut().insert("content-type", http::HeaderValue::from_static("text/event-stream"));
                        Ok::<_, std::convert::Infallible>(response)
                    });
                    let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
                });
            }
        });
        addr
    }

    async fn open(client: &Client<HttpConnector, Full<Bytes>>, url: &str, headers: &[(&str, String)]) -> hyper::body::Incoming {
        let mut request = Request::builder().method(Method::POST).uri(url).header("content-type", "application/json");
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        let body = Full::new(Bytes::from_static(br#"{"model":"bench","stream":true,"messages":[]}"#));
        let response = client.request(request.body(body).unwrap()).await.unwrap();
        assert_eq!(response.status(), 200);
        response.into_body()
    }

    /// Chunks per second of a burst of `count` events.
    pub async fn burst(client: &Client<HttpConnector, Full<Bytes>>, url: &str, count: u64) -> f64 {
        let started = Instant::now();
        let mut body = open(client, url, &[("x-bench-chunks", count.to_string())]).await;
        let mut bytes = 0u64;
        while let Some(frame) = body.frame().await {
            bytes += frame.unwrap().into_data().map_or(0, |d| d.len() as u64);
        }
        assert_eq!(bytes, count * EVENT.len() as u64, "every event arrived");
        count as f64 / started.elapsed().as_secs_f64()
    }

    /// Each paced event's latency in microseconds (read time minus send time).
    pub async fn paced(client: &Client<HttpConnector, Full<Bytes>>, url: &str, count: u64, interval_ms: u64) -> Vec<u64> {
        let headers = [("x-bench-chunks", count.to_string()), ("x-bench-interval-ms", interval_ms.to_string())];
        let mut body = open(client, url, &headers).await;
        let (mut latencies, mut partial) = (Vec::new(), Vec::new());
        while let Some(frame) = body.frame().await {
            let Ok(data) = frame.unwrap().into_data() else { continue };
            let now = micros();
            partial.extend_from_slice(&data);
            while let Some(end) = partial.windows(2).position(|w| w == b"\n\n") {
                let event = String::from_utf8(partial.drain(..end + 2).collect()).unwrap();
                let sent: u64 = event.trim().trim_start_matches("data: {\"t\":").trim_end_matches('}').parse().unwrap();
                latencies.push(now.saturating_sub(sent));
            }
        }
        assert_eq!(latencies.len() as u64, count);
        latencies
    }
}
