//! gRPC and HTTP/2 upstreams: a real gRPC server and client (Python grpcio, generic
//! handlers, tests/support/grpc_peer.py, in the venv `scripts/test.sh` makes and names in
//! `SWITCHYARD_TEST_PYTHON`) through the gateway. Backends with `protocol: H2C` (prior
//! knowledge) and `H2` (TLS, ALPN h2) carry unary and streaming calls with their status,
//! initial metadata and trailers intact; an upstream's error status passes through; a dead
//! backend, an unknown method and a gRPC call to an HTTP/1 backend get trailers-only
//! answers with a non-OK `grpc-status` and the gateway's `x-ca-error-code`.

mod support;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use serde_json::Value;
use support::pki::TestCa;
use support::{ConfigDir, Switchyard};

const API: &str = "apiVersion: switchyard.dev/v1alpha1";

fn peer_script() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/grpc_peer.py")
}

/// grpc_peer.py's server on a free loopback port, killed (by PID) when dropped.
struct GrpcServer {
    child: Child,
    port: u16,
}

impl GrpcServer {
    fn start(tls: Option<(&Path, &Path)>) -> Self {
        let mut command = Command::new(support::test_python("grpcio"));
        command.arg(peer_script()).arg("server");
        if let Some((cert, key)) = tls {
            command.arg("--tls").arg(cert).arg(key);
        }
        let mut child = command.stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().expect("python runs grpc_peer.py");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let port = line.trim().strip_prefix("PORT ").unwrap_or_else(|| panic!("grpc server said {line:?}")).parse().unwrap();
        Self { child, port }
    }
}

impl Drop for GrpcServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One call with grpc_peer.py's client; its JSON report. `extra`: `--ca`, `--authority`,
/// `--metadata` pairs.
async fn call(target: &str, method: &str, payload: &str, extra: &[&str]) -> Value {
    let mut command = Command::new(support::test_python("grpcio"));
    command.arg(peer_script()).args(["call", target, method, payload]).args(extra);
    let output = tokio::task::spawn_blocking(move || command.output()).await.unwrap().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "grpc client failed:\n{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

/// Metadata a client saw, initial and trailing together (a trailers-only answer puts its
/// headers in the trailing metadata).
fn metadata(report: &Value, key: &str) -> Option<String> {
    report["trailing"][key].as_str().or(report["initial"][key].as_str()).map(str::to_owned)
}

/// A BackendService (its `http:` fields given) and a Prefix route `/test.Echo` to it, on
/// host `host` so several backends share one gateway.
fn backend_and_route(name: &str, host: &str, http: &str) -> String {
    format!(
        "{API}\nkind: BackendService\nmetadata: {{name: {name}}}\nspec:\n  http:\n{http}\n---\n\
         {API}\nkind: ApiRoute\nmetadata: {{name: {name}}}\nspec: {{hosts: [{host}], match: {{path: /test.Echo, pathType: Prefix}}, backendRefs: [{{name: {name}}}]}}\n"
    )
}

fn gateway(files: &[(&str, String)]) -> (ConfigDir, Switchyard) {
    let files: Vec<(&str, &str)> = files.iter().map(|(f, y)| (*f, y.as_str())).collect();
    let config = ConfigDir::with(&files);
    let gw = Switchyard::standalone(config.path(), &[]);
    (config, gw)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_calls_pass_through_an_h2c_backend_with_status_and_trailers_and_gateway_errors_are_grpc_statuses() {
    let server = GrpcServer::start(None);
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let files = [
        ("h2c.yaml", backend_and_route("h2c", "h2c.test", &format!("    urls: ['http://127.0.0.1:{}']\n    protocol: H2C", server.port))),
        ("dead.yaml", backend_and_route("dead", "dead.test", &format!("    urls: ['http://127.0.0.1:{dead}']\n    protocol: H2C"))),
        ("http1.yaml", backend_and_route("http1", "http1.test", &format!("    urls: ['http://127.0.0.1:{}']", server.port))),
        // H2 is HTTP/2 over TLS: an http:// URL contradicts it.
        ("bad.yaml", backend_and_route("bad", "bad.test", &format!("    urls: ['http://127.0.0.1:{}']\n    protocol: H2", server.port))),
    ];
    let (_config, gw) = gateway(&files);
    gw.wait_ready().await;
    let target = gw.addrs["proxy"].to_string();
    let on = |host: &'static str| ["--authority", host];

    let ok = call(&target, "/test.Echo/Unary", "hello", &on("h2c.test")).await;
    assert_eq!(ok["code"], "OK", "{ok}");
    assert_eq!(ok["response"], "echo:hello");
    assert_eq!(ok["initial"]["x-initial"], "yes", "initial metadata passes: {ok}");
    assert_eq!(ok["trailing"]["x-trailer"], "kept", "custom trailing metadata passes: {ok}");
    assert_eq!(ok["trailing"]["x-trace-bin"], "0001fe", "binary trailing metadata passes intact: {ok}");

    let failed = call(&target, "/test.Echo/Fail", "x", &on("h2c.test")).await;
    assert_eq!(failed["code"], "NOT_FOUND", "the upstream's status passes through: {failed}");
    assert_eq!(failed["details"], "no such order");
    assert_eq!(failed["trailing"]["x-why"], "because");
    assert_eq!(metadata(&failed, "x-ca-error-code"), None, "an upstream's error is not the gateway's: {failed}");

    let streamed = call(&target, "/test.Echo/Stream", "s", &on("h2c.test")).await;
    assert_eq!(streamed["code"], "OK", "{streamed}");
    assert_eq!(streamed["responses"], serde_json::json!(["part-0:s", "part-1:s", "part-2:s"]));
    assert_eq!(streamed["trailing"]["x-count"], "3", "trailers after a stream of messages: {streamed}");

    // Many calls, one connection per worker: multiplexed on the pooled HTTP/2 connection.
    for i in 0..5 {
        let again = call(&target, "/test.Echo/Unary", &format!("n{i}"), &on("h2c.test")).await;
        assert_eq!(again["response"], format!("echo:n{i}"));
    }

    let dead = call(&target, "/test.Echo/Unary", "x", &on("dead.test")).await;
    assert_eq!(dead["code"], "UNAVAILABLE", "a dead backend: {dead}");
    assert_eq!(metadata(&dead, "x-ca-error-code").as_deref(), Some("D502CF"), "{dead}");
    assert!(dead["details"].as_str().unwrap().contains("connection refused"), "{dead}");

    let http1 = call(&target, "/test.Echo/Unary", "x", &on("http1.test")).await;
    assert_eq!(http1["code"], "UNIMPLEMENTED", "gRPC to an HTTP/1 backend is refused: {http1}");
    assert_eq!(metadata(&http1, "x-ca-error-code").as_deref(), Some("D502GP"), "{http1}");
    assert!(http1["details"].as_str().unwrap().contains("H2C or H2"), "{http1}");

    let unrouted = call(&target, "/other.Service/Call", "x", &on("h2c.test")).await;
    assert_eq!(unrouted["code"], "UNIMPLEMENTED", "no route: {unrouted}");
    assert_eq!(metadata(&unrouted, "x-ca-error-code").as_deref(), Some("A404NF"));

    let accepted = gw.condition("BackendService", "bad", "Accepted").await;
    assert_eq!(accepted, Some(("False".to_owned(), "InvalidSpec".to_owned())), "H2 over an http:// URL is refused");

    // The HTTP/2 connection was reused: one opened, the rest reused.
    let metrics = support::get(&gw.url("admin", "/metrics")).await.unwrap().text();
    let counter = |name: &str| -> f64 {
        metrics
            .lines()
            .find(|l| l.starts_with(name) && l.contains("backend=\"default/h2c\""))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
            .unwrap_or(0.0)
    };
    let opened = counter("switchyard_proxy_upstream_connections_opened_total");
    let reused = counter("switchyard_proxy_upstream_connections_reused_total");
    assert!((1.0..=2.0).contains(&opened), "one HTTP/2 connection per worker at most: opened {opened}\n{metrics}");
    assert!(reused >= 6.0, "the rest multiplexed on it: reused {reused}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_h2_backend_is_reached_over_tls_with_alpn_h2() {
    let ca = TestCa::new("grpc ca");
    let (cert, key) = ca.server_pem(&["grpc.internal"]);
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    let (cert_file, key_file, ca_file) = (dir.join("cert.pem"), dir.join("key.pem"), dir.join("ca.pem"));
    std::fs::write(&cert_file, cert).unwrap();
    std::fs::write(&key_file, key).unwrap();
    std::fs::write(&ca_file, ca.pem()).unwrap();
    let server = GrpcServer::start(Some((&cert_file, &key_file)));
    let pem: String = ca.pem().lines().map(|l| format!("        {l}\n")).collect();
    let tls = format!("    tls:\n      sni: grpc.internal\n      caCertificate: |\n{pem}");
    let files = [(
        "h2.yaml",
        backend_and_route("h2", "h2.test", &format!("    urls: ['https://127.0.0.1:{}']\n    protocol: H2\n{tls}", server.port)),
    )];
    let (_config, gw) = gateway(&files);
    gw.wait_ready().await;
    let target = gw.addrs["proxy"].to_string();
    let ok = call(&target, "/test.Echo/Unary", "over-tls", &["--authority", "h2.test"]).await;
    assert_eq!(ok["code"], "OK", "{ok}");
    assert_eq!(ok["response"], "echo:over-tls");
    assert_eq!(ok["trailing"]["x-trailer"], "kept", "{ok}");
    let failed = call(&target, "/test.Echo/Fail", "x", &["--authority", "h2.test"]).await;
    assert_eq!(failed["code"], "NOT_FOUND", "{failed}");
}

// ------------------------------------------------------------------ bench ---

/// One unary gRPC answer: the message (gRPC framing: flag, length, bytes), then the
/// trailers with `grpc-status: 0`.
struct UnaryReply {
    message: Option<bytes::Bytes>,
    trailers: Option<http::HeaderMap>,
}

impl http_body::Body for UnaryReply {
    type Data = bytes::Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, Self::Error>>> {
        let frame = match self.message.take() {
            Some(message) => Some(http_body::Frame::data(message)),
            None => self.trailers.take().map(http_body::Frame::trailers),
        };
        std::task::Poll::Ready(frame.map(Ok))
    }
}

fn grpc_frame(message: &[u8]) -> bytes::Bytes {
    let mut framed = Vec::with_capacity(5 + message.len());
    framed.push(0);
    framed.extend_from_slice(&(message.len() as u32).to_be_bytes());
    framed.extend_from_slice(message);
    framed.into()
}

/// A minimal gRPC unary server on hyper's HTTP/2 server (prior knowledge): every call is
/// answered with a 5-byte message and `grpc-status: 0` in the trailers. Python's grpcio
/// server tops out near 4,000 calls/s on this machine, which would measure the server.
async fn bench_server() -> std::net::SocketAddr {
    use hyper::service::service_fn;
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { return };
            let _ = stream.set_nodelay(true);
            let service = service_fn(|request: http::Request<hyper::body::Incoming>| async move {
                use http_body_util::BodyExt;
                let _ = request.into_body().collect().await;
                let mut trailers = http::HeaderMap::new();
                trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
                let reply = UnaryReply { message: Some(grpc_frame(b"pong!")), trailers: Some(trailers) };
                let mut response = http::Response::new(reply);
                response.headers_mut().insert("content-type", http::HeaderValue::from_static("application/grpc"));
                Ok::<_, std::convert::Infallible>(response)
            });
            tokio::spawn(hyper::server::conn::http2::Builder::new(TokioExecutor::new()).serve_connection(TokioIo::new(stream), service));
        }
    });
    addr
}

/// Unary calls per second against `target` (`host:port`, h2c prior knowledge) with
/// `connections` HTTP/2 connections and `concurrency` calls in flight, for `seconds`; a
/// call counts when its trailers say `grpc-status: 0`.
async fn unary_calls_per_second(
    target: std::net::SocketAddr,
    authority: &str,
    connections: usize,
    concurrency: usize,
    seconds: u64,
) -> f64 {
    use http_body_util::{BodyExt, Full};
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let mut senders = Vec::new();
    for _ in 0..connections {
        let stream = tokio::net::TcpStream::connect(target).await.unwrap();
        stream.set_nodelay(true).unwrap();
        let (sender, connection) =
            hyper::client::conn::http2::handshake::<_, _, Full<bytes::Bytes>>(TokioExecutor::new(), TokioIo::new(stream)).await.unwrap();
        tokio::spawn(connection);
        senders.push(sender);
    }
    let uri: http::Uri = format!("http://{authority}/test.Echo/Unary").parse().unwrap();
    let call = |mut sender: hyper::client::conn::http2::SendRequest<Full<bytes::Bytes>>, uri: http::Uri| async move {
        let request = http::Request::post(uri)
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(Full::new(grpc_frame(b"ping!")))
            .unwrap();
        let response = sender.send_request(request).await.ok()?;
        let collected = response.into_body().collect().await.ok()?;
        (collected.trailers()?.get("grpc-status")? == "0").then_some(())
    };
    // Warm up (connections, pools) before the clock starts.
    for sender in &senders {
        call(sender.clone(), uri.clone()).await.expect("a warm-up call succeeds");
    }
    let ok = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let started = std::time::Instant::now();
    let end = started + std::time::Duration::from_secs(seconds);
    let mut workers = Vec::new();
    for i in 0..concurrency {
        let (sender, uri, ok) = (senders[i % connections].clone(), uri.clone(), ok.clone());
        workers.push(tokio::spawn(async move {
            while std::time::Instant::now() < end {
                if call(sender.clone(), uri.clone()).await.is_some() {
                    ok.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
        }));
    }
    for worker in workers {
        worker.await.unwrap();
    }
    ok.load(std::sync::atomic::Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

/// `make bench`'s gRPC line (bench/grpc.sh): unary calls/s directly against the server and
/// through the gateway (an `H2C` backend), same run, same client. Rounds alternate direct
/// and gateway; each figure is the median.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "benchmark: make bench (bench/grpc.sh)"]
async fn grpc_bench() {
    let env = |name: &str, default: u64| std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default);
    let (seconds, rounds) = (env("GRPC_BENCH_SECONDS", 5), env("GRPC_BENCH_ROUNDS", 3));
    let (connections, concurrency) = (env("GRPC_BENCH_CONNECTIONS", 4) as usize, env("GRPC_BENCH_CONCURRENCY", 64) as usize);
    let server = bench_server().await;
    let files = [("grpc.yaml", backend_and_route("grpc", "grpc.bench", &format!("    urls: ['http://{server}']\n    protocol: H2C")))];
    let (_config, gw) = gateway(&files);
    gw.wait_ready().await;
    let proxy = gw.addrs["proxy"];
    let (mut direct, mut through) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        direct.push(unary_calls_per_second(server, &server.to_string(), connections, concurrency, seconds).await);
        through.push(unary_calls_per_second(proxy, "grpc.bench", connections, concurrency, seconds).await);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (direct, through) = (median(&mut direct), median(&mut through));
    println!(
        "# gRPC unary calls/s: {connections} h2c connections, {concurrency} calls in flight, {seconds} s x {rounds} rounds (median), hyper client and server"
    );
    println!("grpc direct: {direct:.0} calls/s");
    println!("grpc switchyard: {through:.0} calls/s ({:.0}% of direct)", 100.0 * through / direct);
}
