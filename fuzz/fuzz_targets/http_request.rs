//! The request path end to end: fuzzed bytes on a TCP connection to an in-process gateway
//! (the real HTTP server loop and proxy service, one worker) in front of an in-process
//! upstream. Whatever the client sends:
//! - every answer is a well-formed HTTP/1.x status line;
//! - the gateway never answers 5xx (the upstream is healthy: a malformed request is the
//!   client's fault, never blamed on the backend);
//! - every 4xx the gateway makes carries `x-ca-error-code` (hyper's own answers to a
//!   head it cannot parse too: switchyard-http adds the code under hyper);
//! - the upstream received as many requests as the client got answers from it, or one
//!   more (the last one, cut by the client's half-close): no request smuggled through.
//!
//! Each input connects from its own loopback address (127.1.x.y), and the upstream counts
//! requests by the last X-Forwarded-For entry (the gateway appends the peer it saw): a
//! request cut off by the half-close can reach the upstream after the gateway closed the
//! client's connection, and it must not be counted against the next input
//! (crates/switchyard-proxy/tests/fuzz_replays.rs).
#![no_main]

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use libfuzzer_sys::fuzz_target;

struct Harness {
    gateway: SocketAddr,
    /// Requests the upstream received, by the client address the gateway forwarded.
    upstream_hits: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

/// Inputs run so far: input `n` connects from the `n`th address of 127.1.0.0/16.
static INPUTS: AtomicU32 = AtomicU32::new(0);

static HARNESS: OnceLock<Harness> = OnceLock::new();

/// Header fields the upstream reads (see `serve_upstream`).
const UPSTREAM_MAX_HEADERS: usize = 1024;

fuzz_target!(|data: &[u8]| {
    let harness = HARNESS.get_or_init(start);
    let client = IpAddr::V4(Ipv4Addr::from(0x7f01_0000 + INPUTS.fetch_add(1, Ordering::Relaxed) % 0xfffe + 1));
    // The address was last used 65,534 inputs ago: a request of that input which reached
    // the upstream after its count was read is still counted under it. Not this input's.
    harness.upstream_hits.lock().unwrap().remove(&client);
    let answer = exchange(client, harness.gateway, data);
    // The HTTP/2 preface (h2c with prior knowledge, served on the same port): the answer is
    // HTTP/2 frames, not status lines.
    if data.starts_with(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n") {
        return;
    }
    // One char per byte (non-ASCII as `?`), so byte lengths from the framing still hold.
    let text: String = answer.iter().map(|&b| if b.is_ascii() { char::from(b) } else { '?' }).collect();
    let mut from_upstream = 0;
    let mut cut_bodies = 0;
    for response in responses(&text) {
        let status_line = response.lines().next().unwrap_or_default();
        let status: u16 = status_line
            .strip_prefix("HTTP/1.1 ")
            .or_else(|| status_line.strip_prefix("HTTP/1.0 "))
            .and_then(|rest| rest.get(..3))
            .and_then(|code| code.parse().ok())
            .unwrap_or_else(|| panic!("not a status line: {status_line:?} in {text:?}"));
        let head = response.split("\r\n\r\n").next().unwrap_or_default().to_ascii_lowercase();
        if head.contains("\r\nx-fuzz-upstream: 1") {
            from_upstream += 1;
            continue;
        }
        assert!(status < 500, "the gateway answered {status} to {:?}:\n{text}", String::from_utf8_lossy(data));
        if status >= 400 {
            assert!(head.contains("\r\nx-ca-error-code: "), "a 4xx without an error code:\n{text}");
        }
        // A body that goes bad (or stalls) after its first bytes: bodies stream, so the
        // head may already have reached the upstream, whose request is then cut off.
        if head.contains("\r\nx-ca-error-code: a400mb") || head.contains("\r\nx-ca-error-code: a408bt") {
            cut_bodies += 1;
        }
    }
    // The upstream counts a request before it answers, so every request answered is
    // counted by now. The harness half-closes after writing, and hyper closes a connection
    // that reads EOF while a request is in flight (no half-close support), so the last
    // request may reach the upstream without its answer coming back (possibly after the
    // close, then counted under this input's address, never the next one's): one more,
    // plus one per body cut off.
    let hits = harness.upstream_hits.lock().unwrap().remove(&client).unwrap_or(0);
    assert!(
        (from_upstream..=from_upstream + 1 + cut_bodies).contains(&hits),
        "the upstream saw {hits} requests, the client got {from_upstream} of its answers:\n{text}"
    );
});

/// From `client`, writes the bytes, half-closes, reads until the gateway closes (or 3 s pass).
fn exchange(client: IpAddr, addr: SocketAddr, data: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::from(connect_from(client, addr));
    stream.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let _ = stream.write_all(data);
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    answer
}

/// A connection to `addr` from `client`. libFuzzer's timer signal can interrupt a blocking
/// connect (EINTR, seen after ~139,000 inputs); the half-made socket is dropped and the
/// connect made again on a new one.
fn connect_from(client: IpAddr, addr: SocketAddr) -> socket2::Socket {
    let mut attempts = 0;
    loop {
        let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        socket.bind(&SocketAddr::new(client, 0).into()).expect("bind a loopback address");
        match socket.connect(&addr.into()) {
            Ok(()) => return socket,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted && attempts < 10 => attempts += 1,
            Err(e) => panic!("connect to the gateway: {e:?}"),
        }
    }
}

/// The response heads and bodies in what the gateway wrote, read one after the other by
/// their framing (a HEAD answer announces a length but has no body: the next status line
/// follows at once).
fn responses(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let Some(head_end) = rest.find("\r\n\r\n").map(|i| i + 4) else {
            out.push(rest);
            break;
        };
        let head = rest[..head_end].to_ascii_lowercase();
        let after = &rest[head_end..];
        let body_len = if after.starts_with("HTTP/1.") {
            0
        } else if head.contains("\r\ntransfer-encoding: chunked") {
            after.find("\r\n0\r\n\r\n").map_or(after.len(), |i| i + 7).min(after.len())
        } else {
            head.split("\r\ncontent-length: ")
                .nth(1)
                .and_then(|v| v.split("\r\n").next())
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0usize)
        };
        let end = (head_end + body_len).min(rest.len());
        out.push(&rest[..end]);
        rest = &rest[end..];
    }
    out
}

fn start() -> Harness {
    let upstream_hits = Arc::new(Mutex::new(HashMap::new()));
    let upstream = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let upstream_addr = upstream.local_addr().unwrap();
    let counter = upstream_hits.clone();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(serve_upstream(upstream, counter));
    });

    let yaml = format!(
        "apiVersion: switchyard.dev/v1alpha1\nkind: BackendService\nmetadata: {{name: up, namespace: fuzz}}\nspec:\n  http: {{urls: [\"http://{upstream_addr}\"]}}\n---\n\
         apiVersion: switchyard.dev/v1alpha1\nkind: BackendService\nmetadata: {{name: canned, namespace: fuzz}}\nspec:\n  mock: {{statusCode: 200, body: canned}}\n---\n\
         apiVersion: switchyard.dev/v1alpha1\nkind: ApiRoute\nmetadata: {{name: items, namespace: fuzz}}\nspec:\n  match: {{path: \"/items/{{id}}\", pathType: Template}}\n  backendRefs: [{{name: up}}]\n  rewrite: {{path: \"/v1/items/{{id}}\"}}\n---\n\
         apiVersion: switchyard.dev/v1alpha1\nkind: ApiRoute\nmetadata: {{name: files, namespace: fuzz}}\nspec:\n  match: {{path: /files, pathType: Prefix}}\n  backendRefs: [{{name: up}}]\n  requestBodyLimit: 1Ki\n---\n\
         apiVersion: switchyard.dev/v1alpha1\nkind: ApiRoute\nmetadata: {{name: mock, namespace: fuzz}}\nspec:\n  match: {{path: /mock, methods: [GET, POST]}}\n  backendRefs: [{{name: canned}}]\n"
    );
    let mut resources = switchyard_compile::Resources::default();
    switchyard_compile::manifest::add_yaml(&mut resources, "fuzz.yaml", &yaml);
    let compiled = switchyard_compile::compile(&resources);
    assert_eq!(compiled.snapshot.routes.len(), 3, "the harness routes compile: {:?}", compiled.statuses);
    let mut registry = prometheus_client::registry::Registry::default();
    let proxy = Arc::new(switchyard_proxy::Proxy::new(&mut registry, Default::default()));
    proxy.apply(Arc::new(compiled.snapshot)).expect("the harness snapshot applies");

    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let listeners = runtime.block_on(switchyard_http::bind_shared("127.0.0.1:0", 1)).unwrap();
    let gateway = listeners[0].local_addr().unwrap();
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    // Both live as long as the process: the workers stop when `stop` is dropped.
    std::mem::forget(stop);
    let workers = switchyard_proxy::serve_workers(listeners, None, proxy, shutdown).unwrap();
    std::mem::forget(workers);
    Harness { gateway, upstream_hits }
}

async fn serve_upstream(listener: std::net::TcpListener, hits: Arc<Mutex<HashMap<IpAddr, usize>>>) {
    use http_body_util::BodyExt;
    listener.set_nonblocking(true).unwrap();
    let listener = tokio::net::TcpListener::from_std(listener).unwrap();
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        let hits = hits.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request: http::Request<hyper::body::Incoming>| {
                *hits.lock().unwrap().entry(forwarded_client(&request)).or_default() += 1;
                async move {
                    let _ = request.into_body().collect().await;
                    let response = http::Response::builder()
                        .header("x-fuzz-upstream", "1")
                        .body(http_body_util::Full::new(bytes::Bytes::from_static(b"ok")));
                    Ok::<_, std::convert::Infallible>(response.unwrap())
                }
            });
            // More headers than the gateway takes from a client (hyper's 100) plus those it
            // adds: a request the gateway forwards always reaches this service, so every
            // answer here carries `x-fuzz-upstream` (hyper's own 431 to a head over its
            // default 100 fields did not, and was taken for the gateway's).
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder.max_headers(UPSTREAM_MAX_HEADERS);
            let _ = builder.serve_connection(hyper_util::rt::TokioIo::new(stream), service).await;
        });
    }
}

/// The client the gateway saw: the last X-Forwarded-For entry (it appends its peer to what
/// the client sent).
fn forwarded_client(request: &http::Request<hyper::body::Incoming>) -> IpAddr {
    let forwarded = request.headers().get_all("x-forwarded-for").iter().next_back().expect("the gateway sets X-Forwarded-For");
    let last = forwarded.as_bytes().rsplit(|&b| b == b',').next().and_then(|ip| std::str::from_utf8(ip).ok());
    last.and_then(|ip| ip.trim().parse().ok()).unwrap_or_else(|| panic!("the last X-Forwarded-For entry is the peer: {forwarded:?}"))
}
