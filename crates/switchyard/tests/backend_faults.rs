//! Faults on the backend call path, through the real binary on loopback: client body
//! faults are the client's (4xx, never held against an endpoint), retries never send a
//! non-idempotent request twice after it reached an upstream, the last upstream answer
//! passes through when attempts run out, and error messages disclose no internals.
//! Resets and malformed bodies are made with raw TCP sockets.

mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Method;
use support::upstream::Upstream;
use support::{ConfigDir, Switchyard, get, send};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const API: &str = "apiVersion: switchyard.dev/v1alpha1";

fn backend(name: &str, urls: &[String], extra: &str) -> String {
    let urls: Vec<String> = urls.iter().map(|u| format!("\"{u}\"")).collect();
    format!("{API}\nkind: BackendService\nmetadata: {{name: {name}}}\nspec:\n  http: {{urls: [{}]}}\n{extra}", urls.join(", "))
}

fn route(name: &str, path: &str, backend: &str, extra: &str) -> String {
    format!(
        "{API}\nkind: ApiRoute\nmetadata: {{name: {name}}}\nspec:\n  match: {{path: {path}}}\n  backendRefs: [{{name: {backend}}}]\n{extra}"
    )
}

async fn gateway(manifests: &[String]) -> (ConfigDir, Switchyard) {
    let config = ConfigDir::with(&[("all.yaml", &manifests.join("---\n"))]);
    let gw = Switchyard::standalone(config.path(), &[]);
    gw.wait_ready().await;
    (config, gw)
}

/// A response read off a raw socket.
#[derive(Debug)]
struct RawReply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl RawReply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// Writes `bytes` to the proxy and reads one response, keeping the connection open (a
/// slow uploader never finishes its body). Panics after 5 s without a whole response.
async fn raw_request(proxy: SocketAddr, bytes: &[u8]) -> RawReply {
    let mut stream = TcpStream::connect(proxy).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), read_response(&mut stream)).await.expect("a response within 5 s")
}

async fn read_response(stream: &mut TcpStream) -> RawReply {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buffer[..end]).into_owned();
            let mut lines = head.split("\r\n");
            let status = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
            let headers: Vec<(String, String)> =
                lines.filter_map(|l| l.split_once(':')).map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned())).collect();
            let length: usize =
                headers.iter().find(|(n, _)| n.eq_ignore_ascii_case("content-length")).map_or(0, |(_, v)| v.parse().unwrap());
            while buffer.len() < end + 4 + length {
                let n = stream.read(&mut chunk).await.unwrap();
                assert!(n > 0, "the connection closed inside the body");
                buffer.extend_from_slice(&chunk[..n]);
            }
            let body = String::from_utf8_lossy(&buffer[end + 4..end + 4 + length]).into_owned();
            return RawReply { status, headers, body };
        }
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(n > 0, "the connection closed before a response: {:?}", String::from_utf8_lossy(&buffer));
        buffer.extend_from_slice(&chunk[..n]);
    }
}

/// What a raw upstream does once it has read a whole request.
#[derive(Clone)]
enum Then {
    /// Resets the connection (RST): the request reached it, no response came back.
    Reset,
    /// Answers these exact bytes and closes.
    Answer(&'static str),
}

/// An upstream on a raw socket that counts the requests it read in full.
struct RawUpstream {
    addr: SocketAddr,
    requests: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl RawUpstream {
    async fn start(then: Then, order: Option<(Arc<Mutex<Vec<usize>>>, usize)>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(AtomicUsize::new(0));
        let counter = requests.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else { continue };
                let (counter, then, order) = (counter.clone(), then.clone(), order.clone());
                tokio::spawn(async move {
                    if !read_request(&mut stream).await {
                        return;
                    }
                    counter.fetch_add(1, Ordering::SeqCst);
                    if let Some((order, me)) = order {
                        order.lock().unwrap().push(me);
                    }
                    match then {
                        Then::Reset => {
                            // A zero linger makes the close a reset; it never blocks.
                            #[allow(deprecated)]
                            stream.set_linger(Some(Duration::ZERO)).unwrap();
                            drop(stream);
                        }
                        Then::Answer(bytes) => {
                            let _ = stream.write_all(bytes.as_bytes()).await;
                            let _ = stream.shutdown().await;
                        }
                    }
                });
            }
        });
        Self { addr, requests, task }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

impl Drop for RawUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Reads one request (head and a Content-Length body); false if the connection ended first.
async fn read_request(stream: &mut TcpStream) -> bool {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buffer[..end]).to_ascii_lowercase();
            let length: usize = head.lines().find_map(|l| l.strip_prefix("content-length:")).map_or(0, |v| v.trim().parse().unwrap_or(0));
            while buffer.len() < end + 4 + length {
                match stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => return false,
                    Ok(n) => buffer.extend_from_slice(&chunk[..n]),
                }
            }
            return true;
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
        }
    }
}

/// Which upstreams answer a run of GETs, and whether `/config_dump` shows any endpoint ejected.
async fn rotation(gw: &Switchyard, path: &str, requests: usize) -> (Vec<String>, bool) {
    let mut seen = Vec::new();
    for _ in 0..requests {
        let reply = get(&gw.proxy_url(path)).await.unwrap();
        assert_eq!(reply.status, 200, "{}", reply.text());
        seen.push(reply.header("x-upstream").unwrap().to_owned());
    }
    seen.sort();
    seen.dedup();
    let dump = get(&gw.url("admin", "/config_dump")).await.unwrap().json();
    let endpoints = dump["endpointHealth"][0]["endpoints"].as_array().expect("endpointHealth is reported").clone();
    assert_eq!(endpoints.len(), 2, "{endpoints:?}");
    let ejected = endpoints.iter().any(|e| e["ejected"] != false || e["inRotation"] != true);
    (seen, ejected)
}

const PASSIVE: &str = "  loadBalancing: {policy: RoundRobin}\n  healthCheck: {passive: {consecutiveFailures: 2, ejectionTime: 60s}}\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_chunked_bodies_are_the_clients_400_and_do_not_eject_a_healthy_endpoint() {
    let (a, b) = (Upstream::start("a").await, Upstream::start("b").await);
    let manifests = [backend("pool", &[a.url(), b.url()], PASSIVE), route("upload", "/upload", "pool", "")];
    let (_config, gw) = gateway(&manifests).await;
    let malformed = b"POST /upload HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\nmore\r\n0\r\n\r\n";
    for _ in 0..4 {
        let reply = raw_request(gw.addrs["proxy"], malformed).await;
        assert_eq!((reply.status, reply.header("x-ca-error-code")), (400, Some("A400MB")), "{reply:?}");
        assert!(reply.body.contains("A400MB"), "the JSON body names the code too: {}", reply.body);
    }
    let (seen, ejected) = rotation(&gw, "/upload", 4).await;
    assert_eq!(seen, ["a", "b"], "both endpoints still serve");
    assert!(!ejected, "no endpoint was ejected for the client's malformed bodies");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_too_slow_to_send_its_body_gets_408_whether_it_streams_or_is_buffered_and_no_endpoint_is_ejected() {
    let (a, b) = (Upstream::start("a").await, Upstream::start("b").await);
    let manifests = [
        backend("pool", &[a.url(), b.url()], &format!("{PASSIVE}  timeout: 300ms\n")),
        // No retries: the body streams to the upstream, and the attempt times out waiting on it.
        route("streamed", "/streamed", "pool", ""),
        // Retries: the body is buffered first, within the route's timeout.
        route("buffered", "/buffered", "pool", "  timeout: 500ms\n  retries: {attempts: 1, retryOn: [connect-failure, reset]}\n"),
    ];
    let (_config, gw) = gateway(&manifests).await;
    for path in ["/streamed", "/buffered", "/streamed", "/buffered"] {
        // Ten of the hundred declared bytes, then nothing.
        let head = format!("POST {path} HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n0123456789");
        let started = Instant::now();
        let reply = raw_request(gw.addrs["proxy"], head.as_bytes()).await;
        assert_eq!((reply.status, reply.header("x-ca-error-code")), (408, Some("A408BT")), "{path}: {reply:?}");
        assert!(started.elapsed() < Duration::from_secs(3), "{path} answered after {:?}", started.elapsed());
    }
    let (seen, ejected) = rotation(&gw, "/streamed", 4).await;
    assert_eq!(seen, ["a", "b"], "both endpoints still serve");
    assert!(!ejected, "no endpoint was ejected for the client's slowness");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_that_reached_an_upstream_before_a_reset_is_not_sent_again_unless_the_policy_allows_it() {
    let (r1, r2) = (RawUpstream::start(Then::Reset, None).await, RawUpstream::start(Then::Reset, None).await);
    let total = || r1.requests() + r2.requests();
    let manifests = [
        backend("resets", &[r1.url(), r2.url()], "  retries: {attempts: 1, retryOn: [connect-failure, reset]}\n"),
        route("strict", "/strict", "resets", ""),
        route("lenient", "/lenient", "resets", "  retries: {attempts: 1, retryOn: [reset], nonIdempotent: true}\n"),
    ];
    let (_config, gw) = gateway(&manifests).await;

    let charge = send(Method::POST, &gw.proxy_url("/strict"), &[], "charge 10 EUR").await.unwrap();
    assert_eq!((charge.status.as_u16(), charge.error_code()), (502, Some("D502BF")), "{}", charge.text());
    assert_eq!(total(), 1, "the POST reached one upstream and was not sent to the other");

    let read = get(&gw.proxy_url("/strict")).await.unwrap();
    assert_eq!(read.status.as_u16(), 502);
    assert_eq!(total(), 3, "the GET was retried on the other endpoint");

    let allowed = send(Method::POST, &gw.proxy_url("/lenient"), &[], "idempotent by design").await.unwrap();
    assert_eq!(allowed.status.as_u16(), 502);
    assert_eq!(total(), 5, "with nonIdempotent: true the POST was retried");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_attempts_run_out_the_last_upstream_answer_passes_through_with_its_headers_and_body() {
    const BUSY_1: &str = "HTTP/1.1 503 Service Unavailable\r\nretry-after: 7\r\ncontent-type: text/plain\r\ncontent-length: 6\r\nconnection: close\r\n\r\nbusy-1";
    const BUSY_2: &str = "HTTP/1.1 503 Service Unavailable\r\nretry-after: 7\r\ncontent-type: text/plain\r\ncontent-length: 6\r\nconnection: close\r\n\r\nbusy-2";
    let order: Arc<Mutex<Vec<usize>>> = Arc::default();
    let u1 = RawUpstream::start(Then::Answer(BUSY_1), Some((order.clone(), 1))).await;
    let u2 = RawUpstream::start(Then::Answer(BUSY_2), Some((order.clone(), 2))).await;
    let manifests = [
        backend("busy", &[u1.url(), u2.url()], "  retries: {attempts: 1, retryOn: [gateway-error]}\n"),
        route("busy", "/busy", "busy", ""),
    ];
    let (_config, gw) = gateway(&manifests).await;

    let reply = get(&gw.proxy_url("/busy")).await.unwrap();
    assert_eq!((u1.requests(), u2.requests()), (1, 1), "the 503 was retried on the other endpoint");
    let last = *order.lock().unwrap().last().unwrap();
    assert_eq!(reply.status.as_u16(), 503);
    assert_eq!(reply.header("retry-after"), Some("7"));
    assert_eq!(reply.header("content-type"), Some("text/plain"));
    assert_eq!(reply.text(), format!("busy-{last}"), "the last endpoint's own body");
    assert_eq!(reply.error_code(), None, "the upstream's answer, not a gateway error");

    // A POST is not sent again after a 503 (it may have been processed): the first answer passes through.
    let post = send(Method::POST, &gw.proxy_url("/busy"), &[], Bytes::from_static(b"order")).await.unwrap();
    assert_eq!((post.status.as_u16(), post.header("retry-after")), (503, Some("7")));
    assert_eq!(u1.requests() + u2.requests(), 3, "one more request, no retry");
}

fn closed_port() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_for_a_refused_connection_and_a_reset_name_the_backend_and_the_kind_but_no_address_or_os_error() {
    let refused_at = closed_port();
    let reset = RawUpstream::start(Then::Reset, None).await;
    let manifests = [
        backend("refused", &[format!("http://{refused_at}")], ""),
        route("refused", "/refused", "refused", ""),
        backend("resets", &[reset.url()], ""),
        route("resets", "/resets", "resets", ""),
    ];
    let (_config, gw) = gateway(&manifests).await;

    for (path, code, kind, addr) in
        [("/refused", "D502CF", "connection refused", refused_at), ("/resets", "D502BF", "connection reset", reset.addr)]
    {
        let reply = get(&gw.proxy_url(path)).await.unwrap();
        assert_eq!((reply.status.as_u16(), reply.error_code()), (502, Some(code)), "{path}: {}", reply.text());
        let message = reply.header("x-ca-error-message").unwrap().to_owned();
        let body = reply.json()["message"].as_str().unwrap().to_owned();
        assert_eq!(message, body);
        let backend = &path[1..];
        assert!(message.contains(&format!("default/{backend}")) && message.contains(kind), "{path}: {message}");
        for leak in [addr.to_string(), addr.ip().to_string(), format!(":{}", addr.port()), "os error".to_owned()] {
            assert!(!message.contains(&leak), "{path}: {message:?} discloses {leak:?}");
        }
        // The detail is in the log, with the request id.
        let id = reply.header("x-ca-request-id").unwrap().to_owned();
        support::wait_until("the error is logged", Duration::from_secs(5), || {
            let logged = gw.log_text().lines().any(|l| l.contains(&id) && l.contains(code) && l.contains(&addr.port().to_string()));
            async move { logged }
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_egress_refusal_gives_the_policys_reason_but_not_the_address_the_name_resolved_to() {
    let record = format!(
        "{API}\nkind: DnsRecord\nmetadata: {{name: metadata-internal}}\nspec: {{domain: metadata.internal, type: A, records: [{{address: 169.254.169.254, weight: 100}}]}}\n"
    );
    let manifests = [record, backend("renamed", &["http://metadata.internal".to_owned()], ""), route("renamed", "/renamed", "renamed", "")];
    let (_config, gw) = gateway(&manifests).await;
    let reply = get(&gw.proxy_url("/renamed")).await.unwrap();
    assert_eq!((reply.status.as_u16(), reply.error_code()), (502, Some("D502ED")));
    let message = reply.header("x-ca-error-message").unwrap().to_owned();
    assert!(message.contains("default/renamed") && message.contains("link-local"), "{message}");
    assert!(!message.contains("169.254"), "{message:?} discloses what the name resolved to");
    let id = reply.header("x-ca-request-id").unwrap().to_owned();
    support::wait_until("the refused address is logged", Duration::from_secs(5), || {
        let logged = gw.log_text().lines().any(|l| l.contains(&id) && l.contains("169.254.169.254"));
        async move { logged }
    })
    .await;
}

/// A loopback port whose accept queue is full, so a new connect is never answered (its
/// SYN is dropped): a blackholed endpoint without leaving loopback. Keep the returned
/// values alive for as long as the port must stay blackholed.
async fn blackholed_port() -> (tokio::net::TcpListener, Vec<TcpStream>) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(0).unwrap();
    let addr = listener.local_addr().unwrap();
    let mut fillers = Vec::new();
    for _ in 0..4 {
        if let Ok(Ok(stream)) = tokio::time::timeout(Duration::from_millis(200), TcpStream::connect(addr)).await {
            fillers.push(stream);
        }
    }
    assert!(
        tokio::time::timeout(Duration::from_millis(300), TcpStream::connect(addr)).await.is_err(),
        "the port should not answer connects any more"
    );
    (listener, fillers)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blackholed_endpoint_is_a_connect_failure_within_a_short_attempt_timeout_and_is_retried() {
    let (hole, _fillers) = blackholed_port().await;
    let good = Upstream::start("good").await;
    let urls = [format!("http://{}", hole.local_addr().unwrap()), good.url()];
    let retries = "  timeout: 300ms\n  retries: {attempts: 1, retryOn: [connect-failure]}\n";
    let (_config, gw) = gateway(&[backend("pool", &urls, retries), route("pool", "/x", "pool", "")]).await;
    for i in 0..4 {
        let started = Instant::now();
        let reply = get(&gw.proxy_url("/x")).await.unwrap();
        assert_eq!(reply.status, 200, "request {i}: {:?} {}", reply.error_code(), reply.text());
        assert!(started.elapsed() < Duration::from_secs(3), "request {i} took {:?}", started.elapsed());
    }
    assert_eq!(good.hits(), 4, "the requests that met the blackhole first moved on to the healthy endpoint");
}
