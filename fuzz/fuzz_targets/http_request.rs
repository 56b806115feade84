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
#![no_main]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use libfuzzer_sys::fuzz_target;

struct Harness {
    gateway: SocketAddr,
    upstream_hits: Arc<AtomicUsize>,
}

static HARNESS: OnceLock<Harness> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let harness = HARNESS.get_or_init(start);
    let before = harness.upstream_hits.load(Ordering::SeqCst);
    let answer = exchange(harness.gateway, data);
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
    // The upstream counts a request before it answers, and the client read until the
    // gateway closed, so every request the upstream saw is counted by now. The harness
    // half-closes after writing, and hyper closes a connection that reads EOF while a
    // request is in flight (no half-close support), so the last request may have reached
    // the upstream without its answer coming back: one more, plus one per body cut off.
    let hits = harness.upstream_hits.load(Ordering::SeqCst) - before;
    assert!(
        (from_upstream..=from_upstream + 1 + cut_bodies).contains(&hits),
        "the upstream saw {hits} requests, the client got {from_upstream} of its answers:\n{text}"
    );
});

/// Writes the bytes, half-closes, reads until the gateway closes (or 3 s pass).
fn exchange(addr: SocketAddr, data: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect(addr).expect("connect to the gateway");
    stream.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let _ = stream.write_all(data);
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    answer
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
    let upstream_hits = Arc::new(AtomicUsize::new(0));
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
    let workers = switchyard_proxy::serve_workers(listeners, proxy, shutdown).unwrap();
    std::mem::forget(workers);
    Harness { gateway, upstream_hits }
}

async fn serve_upstream(listener: std::net::TcpListener, hits: Arc<AtomicUsize>) {
    use http_body_util::BodyExt;
    listener.set_nonblocking(true).unwrap();
    let listener = tokio::net::TcpListener::from_std(listener).unwrap();
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        let hits = hits.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request: http::Request<hyper::body::Incoming>| {
                hits.fetch_add(1, Ordering::SeqCst);
                async move {
                    let _ = request.into_body().collect().await;
                    let response = http::Response::builder()
                        .header("x-fuzz-upstream", "1")
                        .body(http_body_util::Full::new(bytes::Bytes::from_static(b"ok")));
                    Ok::<_, std::convert::Infallible>(response.unwrap())
                }
            });
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(hyper_util::rt::TokioIo::new(stream), service).await;
        });
    }
}
