//! The codec against real TCP peers on 127.0.0.1: a listener in the test reads each
//! request and writes scripted raw response bytes.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request};
use http_body::Body as _;
use http_body_util::BodyExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::client::{ClientError, Lease, Upstream, UpstreamBody, UpstreamClient, upstream_client};
use crate::egress::{DialPolicy, EgressConfig};
use crate::request_body::RequestBody;

/// What the peer does after reading a request.
#[derive(Clone, Copy)]
enum Reply {
    /// Writes these bytes and waits for the next request on the connection.
    Keep(&'static [u8]),
    /// Writes these bytes and closes.
    Close(&'static [u8]),
    /// Writes the first part, waits a little, writes the second, and waits for the next request.
    Split(&'static [u8], &'static [u8]),
}

/// A backend answering requests, in the order they come over all connections, with
/// `replies` (the last one repeated).
struct Peer {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    requests: Arc<Mutex<Vec<Vec<u8>>>>,
    /// `Split` replies written to their end.
    split_done: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Peer {
    async fn start(replies: &[Reply]) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (accepted, requests) = (Arc::new(AtomicUsize::new(0)), Arc::new(Mutex::new(Vec::new())));
        let replies: Arc<Vec<Reply>> = Arc::new(replies.to_vec());
        let served = Arc::new(AtomicUsize::new(0));
        let split_done = Arc::new(AtomicUsize::new(0));
        let (a, r, d) = (accepted.clone(), requests.clone(), split_done.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { return };
                a.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(serve(stream, replies.clone(), served.clone(), r.clone(), d.clone()));
            }
        });
        Self { addr, accepted, requests, split_done, task }
    }

    fn upstream(&self) -> Upstream {
        Upstream::new(http::uri::Scheme::HTTP, self.addr.to_string().parse().unwrap(), None)
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    fn request(&self, i: usize) -> String {
        String::from_utf8_lossy(&self.requests.lock().unwrap()[i]).into_owned()
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(
    mut stream: TcpStream,
    replies: Arc<Vec<Reply>>,
    served: Arc<AtomicUsize>,
    requests: Arc<Mutex<Vec<Vec<u8>>>>,
    split_done: Arc<AtomicUsize>,
) {
    loop {
        let Some(request) = read_request(&mut stream).await else { return };
        requests.lock().unwrap().push(request);
        let n = served.fetch_add(1, Ordering::SeqCst);
        match replies[n.min(replies.len() - 1)] {
            Reply::Keep(bytes) => {
                if stream.write_all(bytes).await.is_err() {
                    return;
                }
            }
            Reply::Close(bytes) => {
                let _ = stream.write_all(bytes).await;
                return;
            }
            Reply::Split(first, second) => {
                let _ = stream.write_all(first).await;
                tokio::time::sleep(Duration::from_millis(30)).await;
                let _ = stream.write_all(second).await;
                split_done.fetch_add(1, Ordering::SeqCst);
            }
        }
    }
}

/// One request: its head and its body (by content-length, or chunked to the last chunk).
async fn read_request(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let length = head.lines().find_map(|l| l.strip_prefix("content-length: ")).map_or(0, |v| v.trim().parse().unwrap());
    let chunked = head.contains("transfer-encoding: chunked");
    loop {
        let body = &buf[head_end..];
        if (chunked && body.ends_with(b"0\r\n\r\n")) || (!chunked && body.len() >= length) {
            return Some(buf);
        }
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn policy() -> DialPolicy {
    DialPolicy::build(&EgressConfig::default(), &switchyard_compile::snapshot::Snapshot::default())
}

fn get(method: Method, body: RequestBody) -> Request<RequestBody> {
    let mut request = Request::new(body);
    *request.method_mut() = method;
    *request.uri_mut() = "/things?x=1".parse().unwrap();
    request.headers_mut().insert(http::header::HOST, "backend.test".parse().unwrap());
    request
}

async fn send(
    client: &UpstreamClient,
    peer: &Peer,
    request: Request<RequestBody>,
) -> Result<(http::Response<UpstreamBody>, Lease), ClientError> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    tokio::time::timeout(Duration::from_secs(5), client.request(&peer.upstream(), request, &policy(), None, deadline))
        .await
        .expect("an answer within 5 s")
}

/// A whole exchange: status, body, trailers, and whether the connection was a pooled one.
async fn exchange(client: &UpstreamClient, peer: &Peer, method: Method) -> (u16, String, Option<HeaderMap>, bool) {
    let (response, lease) = send(client, peer, get(method, RequestBody::full(Bytes::new()))).await.expect("a response");
    let status = response.status().as_u16();
    let collected = tokio::time::timeout(Duration::from_secs(5), response.into_body().collect()).await.unwrap().expect("the whole body");
    let trailers = collected.trailers().cloned();
    (status, String::from_utf8(collected.to_bytes().to_vec()).unwrap(), trailers, lease.reused())
}

/// The kind a client would see for a request that failed before a response.
async fn refusal(replies: &[Reply]) -> (String, String) {
    let peer = Peer::start(replies).await;
    let client = upstream_client();
    let error = send(&client, &peer, get(Method::GET, RequestBody::full(Bytes::new()))).await.err().expect("refused");
    assert!(!error.is_connect(), "the backend was reached: {error:?}");
    (error.kind().into_owned(), crate::request_body::find_in_chain::<super::Error>(&error).map(|e| e.to_string()).unwrap_or_default())
}

/// The error a response body fails with.
async fn body_error(replies: &[Reply]) -> String {
    let peer = Peer::start(replies).await;
    let client = upstream_client();
    let (response, _lease) = send(&client, &peer, get(Method::GET, RequestBody::full(Bytes::new()))).await.expect("a head");
    let error = tokio::time::timeout(Duration::from_secs(5), response.into_body().collect()).await.unwrap().expect_err("the body fails");
    error.to_string()
}

const OK: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";

#[tokio::test]
async fn two_requests_share_one_kept_alive_connection() {
    let peer = Peer::start(&[Reply::Keep(OK)]).await;
    let client = upstream_client();
    assert_eq!(exchange(&client, &peer, Method::GET).await, (200, "ok".into(), None, false));
    assert_eq!(exchange(&client, &peer, Method::GET).await, (200, "ok".into(), None, true));
    assert_eq!(peer.accepted(), 1);
    assert_eq!(peer.request(0), "GET /things?x=1 HTTP/1.1\r\nhost: backend.test\r\n\r\n");
}

#[tokio::test]
async fn a_body_that_comes_after_its_head_is_read_from_the_connection_and_the_connection_reused() {
    let peer = Peer::start(&[Reply::Split(b"HTTP/1.1 200 OK\r\ncontent-length: 11\r\n\r\nhello", b" world")]).await;
    let client = upstream_client();
    assert_eq!(exchange(&client, &peer, Method::GET).await, (200, "hello world".into(), None, false));
    assert_eq!(exchange(&client, &peer, Method::GET).await, (200, "hello world".into(), None, true));
    assert_eq!(peer.accepted(), 1);
}

#[tokio::test]
async fn connection_close_and_http_1_0_without_keep_alive_are_not_reused() {
    for reply in [
        &b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok"[..],
        b"HTTP/1.1 200 OK\r\nconnection: keep-alive, Close\r\ncontent-length: 2\r\n\r\nok",
        b"HTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\nok",
    ] {
        let peer = Peer::start(&[Reply::Keep(reply)]).await;
        let client = upstream_client();
        for _ in 0..2 {
            assert_eq!(exchange(&client, &peer, Method::GET).await, (200, "ok".into(), None, false));
        }
        assert_eq!(peer.accepted(), 2, "{}", String::from_utf8_lossy(reply));
    }
    let peer = Peer::start(&[Reply::Keep(b"HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\ncontent-length: 2\r\n\r\nok")]).await;
    let client = upstream_client();
    exchange(&client, &peer, Method::GET).await;
    assert!(exchange(&client, &peer, Method::GET).await.3, "HTTP/1.0 with keep-alive is kept");
    assert_eq!(peer.accepted(), 1);
}

#[tokio::test]
async fn a_chunked_body_is_decoded_with_its_extensions_skipped_and_its_trailers_passed_on() {
    let reply = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nx-sum: 7\r\n\r\n";
    let peer = Peer::start(&[Reply::Split(&reply[..40], &reply[40..])]).await;
    let client = upstream_client();
    let (status, body, trailers, _) = exchange(&client, &peer, Method::GET).await;
    assert_eq!((status, body.as_str()), (200, "hello world"));
    assert_eq!(trailers.expect("trailers")["x-sum"], "7");
    assert!(exchange(&client, &peer, Method::GET).await.3, "reused after the last chunk");
    assert_eq!(peer.accepted(), 1);
}

#[tokio::test]
async fn ambiguous_or_malformed_heads_are_invalid_responses() {
    let cases: [(&[u8], &str); 9] = [
        (
            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
            "both content-length and transfer-encoding",
        ),
        (b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 3\r\n\r\nok", "differing content-length values"),
        (b"HTTP/1.1 200 OK\r\ncontent-length: 2, 3\r\n\r\nok", "differing content-length values"),
        (b"HTTP/1.1 200 OK\r\ncontent-length: +2\r\n\r\nok", "invalid content-length"),
        (b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked, gzip\r\n\r\nok", "transfer-encoding whose last coding is not chunked"),
        (b"HTTP/1.0 200 OK\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n", "transfer-encoding in an HTTP/1.0 response"),
        (b"HTTP/1.1 200 OK\r\nx-folded: a\r\n b\r\ncontent-length: 2\r\n\r\nok", "obsolete line folding"),
        (b"HTTP/1.1 2000 OK\r\ncontent-length: 2\r\n\r\nok", "invalid status line"),
        (b"HTTP/2.0 200 OK\r\ncontent-length: 2\r\n\r\nok", "invalid HTTP version"),
    ];
    for (reply, why) in cases {
        let (kind, detail) = refusal(&[Reply::Close(reply)]).await;
        assert_eq!(kind, "invalid HTTP response", "{}", String::from_utf8_lossy(reply));
        assert!(detail.contains(why), "{detail:?} should say {why:?}");
    }
    let (kind, _) = refusal(&[Reply::Close(b"HTTP/1.1 099 Odd\r\n\r\n")]).await;
    assert_eq!(kind, "invalid HTTP response", "a status under 100");
    let (kind, _) = refusal(&[Reply::Close(b"SMTP ready\r\n\r\n")]).await;
    assert_eq!(kind, "invalid HTTP response", "not HTTP at all");
}

#[tokio::test]
async fn heads_over_hypers_limits_are_refused() {
    let mut many = b"HTTP/1.1 200 OK\r\n".to_vec();
    for i in 0..101 {
        many.extend_from_slice(format!("x-{i}: v\r\n").as_bytes());
    }
    many.extend_from_slice(b"content-length: 0\r\n\r\n");
    let (kind, detail) = refusal(&[Reply::Close(many.leak())]).await;
    assert_eq!((kind.as_str(), detail.contains("head over")), ("invalid HTTP response", true), "101 fields: {detail}");
    let mut huge = b"HTTP/1.1 200 OK\r\n".to_vec();
    while huge.len() <= super::head::MAX_HEAD {
        huge.extend_from_slice(format!("x-long: {}\r\n", "v".repeat(4000)).as_bytes());
    }
    let (kind, detail) = refusal(&[Reply::Keep(huge.leak())]).await;
    assert_eq!((kind.as_str(), detail.contains("head over")), ("invalid HTTP response", true), "{detail}");
    // Just under the limit (and 100 fields) is a response.
    let mut fits = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n".to_vec();
    for i in 0..99 {
        fits.extend_from_slice(format!("x-{i}: {}\r\n", "v".repeat(4000)).as_bytes());
    }
    fits.extend_from_slice(b"\r\nok");
    let peer = Peer::start(&[Reply::Keep(fits.leak())]).await;
    let (status, body, ..) = exchange(&upstream_client(), &peer, Method::GET).await;
    assert_eq!((status, body.as_str()), (200, "ok"));
}

#[tokio::test]
async fn bad_or_overflowing_chunk_sizes_fail_the_body() {
    let head = "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n";
    let bad: &'static [u8] = format!("{head}2\r\nok\r\nzz\r\nmore\r\n0\r\n\r\n").leak().as_bytes();
    assert!(body_error(&[Reply::Close(bad)]).await.contains("chunk size without a digit"));
    let overflow: &'static [u8] = format!("{head}1ffffffffffffffff\r\nok\r\n0\r\n\r\n").leak().as_bytes();
    assert!(body_error(&[Reply::Close(overflow)]).await.contains("chunk size overflows"));
}

#[tokio::test]
async fn a_backend_closing_inside_the_body_fails_the_body() {
    let error = body_error(&[Reply::Close(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc")]).await;
    assert!(error.contains("before the end of the response body"), "{error}");
    let error = body_error(&[Reply::Close(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nab")]).await;
    assert!(error.contains("before the end of the response body"), "{error}");
}

#[tokio::test]
async fn a_backend_closing_before_or_inside_the_head_is_closed_before_a_response() {
    for reply in [&b""[..], b"HTTP/1.1 200 OK\r\ncontent-"] {
        let (kind, _) = refusal(&[Reply::Close(reply)]).await;
        assert_eq!(kind, "connection closed before a response");
    }
}

#[tokio::test]
async fn informational_heads_are_skipped() {
    let reply = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: </style.css>; rel=preload\r\n\r\nHTTP/1.1 201 Created\r\ncontent-length: 4\r\n\r\ndone";
    let peer = Peer::start(&[Reply::Split(&reply[..30], &reply[30..])]).await;
    let client = upstream_client();
    let (response, _) = send(&client, &peer, get(Method::POST, RequestBody::full(Bytes::from_static(b"data")))).await.unwrap();
    assert_eq!(response.status(), 201);
    assert!(response.headers().get("link").is_none(), "the 103's fields are not the response's");
    assert_eq!(response.into_body().collect().await.unwrap().to_bytes(), "done");
}

#[tokio::test]
async fn head_204_and_304_have_no_body_whatever_their_fields_say() {
    let peer = Peer::start(&[
        Reply::Keep(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n"),
        Reply::Keep(b"HTTP/1.1 204 No Content\r\ncontent-length: 5\r\n\r\n"),
        Reply::Keep(b"HTTP/1.1 304 Not Modified\r\ntransfer-encoding: chunked\r\n\r\n"),
        Reply::Keep(OK),
    ])
    .await;
    let client = upstream_client();
    assert_eq!(exchange(&client, &peer, Method::HEAD).await, (200, String::new(), None, false));
    assert_eq!(exchange(&client, &peer, Method::GET).await, (204, String::new(), None, true));
    assert_eq!(exchange(&client, &peer, Method::GET).await, (304, String::new(), None, true));
    assert_eq!(exchange(&client, &peer, Method::GET).await, (200, "ok".into(), None, true), "nothing was read as a body");
    assert_eq!(peer.accepted(), 1);
}

#[tokio::test]
async fn a_body_without_length_runs_until_the_backend_closes_and_the_connection_is_not_reused() {
    let peer = Peer::start(&[Reply::Close(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nuntil the end")]).await;
    let client = upstream_client();
    let (response, _) = send(&client, &peer, get(Method::GET, RequestBody::full(Bytes::new()))).await.unwrap();
    assert_eq!(response.body().size_hint().exact(), None);
    assert_eq!(response.into_body().collect().await.unwrap().to_bytes(), "until the end");
    exchange(&client, &peer, Method::GET).await;
    assert_eq!(peer.accepted(), 2);
}

#[tokio::test]
async fn a_pooled_connection_the_backend_closed_while_idle_is_replaced_by_a_fresh_dial() {
    // The backend answers as if it kept the connection, then closes it.
    let peer = Peer::start(&[Reply::Close(OK)]).await;
    let client = upstream_client();
    assert_eq!(exchange(&client, &peer, Method::GET).await, (200, "ok".into(), None, false));
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(exchange(&client, &peer, Method::GET).await, (200, "ok".into(), None, false), "not the dead one");
    assert_eq!(peer.accepted(), 2);
}

#[tokio::test]
async fn a_pooled_connection_with_stray_bytes_from_the_backend_is_not_reused() {
    let peer = Peer::start(&[Reply::Split(OK, b"HTTP/1.1 200 OK\r\n\r\n")]).await;
    let client = upstream_client();
    exchange(&client, &peer, Method::GET).await;
    // The stray bytes come after the response, while the connection is idle in the pool.
    while peer.split_done.load(Ordering::SeqCst) == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(!exchange(&client, &peer, Method::GET).await.3, "dialled afresh");
    assert_eq!(peer.accepted(), 2);
}

#[tokio::test]
async fn a_body_dropped_before_its_end_closes_the_connection() {
    let peer = Peer::start(&[Reply::Split(b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nab", b"cd")]).await;
    let client = upstream_client();
    let (response, lease) = send(&client, &peer, get(Method::GET, RequestBody::full(Bytes::new()))).await.unwrap();
    drop((response, lease));
    assert!(!exchange(&client, &peer, Method::GET).await.3);
    assert_eq!(peer.accepted(), 2);
}

#[tokio::test]
async fn a_buffered_request_body_goes_with_its_length() {
    let peer = Peer::start(&[Reply::Keep(OK)]).await;
    let client = upstream_client();
    let mut request = get(Method::POST, RequestBody::full(Bytes::from_static(b"hello")));
    request.headers_mut().insert(http::header::CONTENT_LENGTH, "999".parse().unwrap());
    request.headers_mut().insert(http::header::TRANSFER_ENCODING, "chunked".parse().unwrap());
    let (response, _) = send(&client, &peer, request).await.unwrap();
    response.into_body().collect().await.unwrap();
    assert_eq!(
        peer.request(0),
        "POST /things?x=1 HTTP/1.1\r\nhost: backend.test\r\ncontent-length: 5\r\n\r\nhello",
        "one framing, the body's"
    );
}

/// Streams a client's body, as hyper's server reads it from `raw` (written in small
/// pieces), through the codec to `peer`: how the exchange ended (Err: whether the error
/// was the client body's).
async fn stream_through(raw: &'static [u8], peer: &Peer) -> Result<(), bool> {
    use hyper::service::service_fn;
    let client = Arc::new(upstream_client());
    let upstream = peer.upstream();
    let (to_server, server) = tokio::io::duplex(1 << 16);
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let service = service_fn(move |request: http::Request<hyper::body::Incoming>| {
        let (client, upstream, tx) = (client.clone(), upstream.clone(), tx.clone());
        async move {
            let (parts, incoming) = request.into_parts();
            let mut outgoing = Request::new(RequestBody::streaming(incoming, 1 << 20));
            *outgoing.method_mut() = parts.method;
            *outgoing.uri_mut() = parts.uri;
            *outgoing.headers_mut() = parts.headers;
            let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
            let outcome = match client.request(&upstream, outgoing, &policy(), None, deadline).await {
                Ok((response, _lease)) => response.into_body().collect().await.map(drop).map_err(|_| false),
                Err(e) => Err(crate::request_body::is_client_body_error(&e)),
            };
            let _ = tx.send(outcome);
            Ok::<_, std::convert::Infallible>(http::Response::new(http_body_util::Full::new(Bytes::from_static(b"done"))))
        }
    });
    tokio::spawn(hyper::server::conn::http1::Builder::new().serve_connection(hyper_util::rt::TokioIo::new(server), service));
    let mut to_server = to_server;
    for piece in raw.chunks(7) {
        to_server.write_all(piece).await.unwrap();
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let mut rx = rx;
    tokio::time::timeout(Duration::from_secs(5), rx.recv()).await.unwrap().unwrap()
}

#[tokio::test]
async fn a_request_body_that_fails_at_once_is_the_clients_fault_and_its_head_never_reaches_the_backend() {
    let peer = Peer::start(&[Reply::Keep(OK)]).await;
    let client = upstream_client();
    let raw = b"POST /up HTTP/1.1\r\nhost: backend.test\r\ntransfer-encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n";
    // In one piece, as a client sends it: the bad chunk is there before the head is written.
    let (to_server, server) = tokio::io::duplex(1 << 16);
    let upstream = peer.upstream();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let tx = Mutex::new(Some(tx));
    let client = Arc::new(client);
    let service = hyper::service::service_fn(move |request: http::Request<hyper::body::Incoming>| {
        let (client, upstream, tx) = (client.clone(), upstream.clone(), tx.lock().unwrap().take());
        async move {
            let (parts, incoming) = request.into_parts();
            let mut outgoing = Request::new(RequestBody::streaming(incoming, 1 << 20));
            *outgoing.method_mut() = parts.method;
            *outgoing.uri_mut() = parts.uri;
            let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
            let error = client.request(&upstream, outgoing, &policy(), None, deadline).await.err();
            let _ = tx.unwrap().send(error.map(|e| (crate::request_body::is_client_body_error(&e), e.is_connect())));
            Ok::<_, std::convert::Infallible>(http::Response::new(http_body_util::Full::new(Bytes::new())))
        }
    });
    tokio::spawn(hyper::server::conn::http1::Builder::new().serve_connection(hyper_util::rt::TokioIo::new(server), service));
    let mut to_server = to_server;
    to_server.write_all(raw).await.unwrap();
    let error = tokio::time::timeout(Duration::from_secs(5), rx).await.unwrap().unwrap();
    assert_eq!(error, Some((true, false)), "failed, as the client's body");
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(peer.requests.lock().unwrap().is_empty(), "nothing reached the backend");
}

#[tokio::test]
async fn a_streamed_request_body_goes_with_its_content_length_or_chunked() {
    let peer = Peer::start(&[Reply::Keep(OK)]).await;
    let raw = b"PUT /up HTTP/1.1\r\nhost: backend.test\r\ncontent-length: 26\r\n\r\nabcdefghijklmnopqrstuvwxyz";
    stream_through(raw, &peer).await.unwrap();
    assert_eq!(peer.request(0), "PUT /up HTTP/1.1\r\nhost: backend.test\r\ncontent-length: 26\r\n\r\nabcdefghijklmnopqrstuvwxyz");
    let peer = Peer::start(&[Reply::Keep(OK)]).await;
    let raw =
        b"POST /up HTTP/1.1\r\nhost: backend.test\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n14\r\ndefghijklmnopqrstuvw\r\n0\r\n\r\n";
    stream_through(raw, &peer).await.unwrap();
    let sent = peer.request(0);
    let (head, body) = sent.split_once("\r\n\r\n").unwrap();
    assert_eq!(head, "POST /up HTTP/1.1\r\nhost: backend.test\r\ntransfer-encoding: chunked");
    let mut decoder = super::chunked::Decoder::new();
    let mut buf = bytes::BytesMut::from(body.as_bytes());
    let mut data = Vec::new();
    while let super::chunked::Decoded::Data(d) = decoder.decode(&mut buf).unwrap() {
        data.extend_from_slice(&d);
    }
    assert_eq!(data, b"abcdefghijklmnopqrstuvw");
}

#[tokio::test]
async fn a_reason_phrase_of_its_own_is_kept() {
    let peer = Peer::start(&[Reply::Keep(b"HTTP/1.1 200 Fine Thanks\r\ncontent-length: 0\r\n\r\n")]).await;
    let (response, _) = send(&upstream_client(), &peer, get(Method::GET, RequestBody::full(Bytes::new()))).await.unwrap();
    assert_eq!(response.extensions().get::<hyper::ext::ReasonPhrase>().map(|r| r.as_bytes()), Some(&b"Fine Thanks"[..]));
}

#[tokio::test]
async fn a_backend_sending_informational_heads_without_end_is_refused() {
    let hints = "HTTP/1.1 103 Early Hints\r\nlink: </a.css>; rel=preload\r\n\r\n";
    let within: &'static [u8] =
        format!("{}{}", hints.repeat(super::head::MAX_INFORMATIONAL), "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").leak().as_bytes();
    let peer = Peer::start(&[Reply::Keep(within)]).await;
    assert_eq!(exchange(&upstream_client(), &peer, Method::GET).await, (200, "ok".into(), None, false), "16 hints, then the answer");
    let endless: &'static [u8] = hints.repeat(super::head::MAX_INFORMATIONAL + 1).leak().as_bytes();
    let (kind, error) = refusal(&[Reply::Keep(endless)]).await;
    assert_eq!(kind, "invalid HTTP response");
    assert!(error.contains("over 16 informational responses"), "{error}");
}

#[tokio::test]
async fn a_trailer_section_with_a_bare_lf_fails_the_body() {
    let head = "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n";
    for trailers in ["a: 1\n\r\nX\r\n\r\n", "\n"] {
        let reply: &'static [u8] = format!("{head}{trailers}").leak().as_bytes();
        let error = body_error(&[Reply::Close(reply)]).await;
        assert!(error.contains("bare LF"), "{trailers:?}: {error}");
    }
}

#[tokio::test]
async fn an_idle_connection_lets_go_of_the_buffers_a_large_message_grew() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let tcp = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
    let mut conn = super::Connection::new(super::super::connect::Stream::Tcp(tcp));
    conn.read.reserve(400 * 1024);
    conn.write.reserve(64 * 1024);
    conn.release_large_buffers();
    assert!(conn.read.capacity() <= super::IDLE_BUFFER_KEEP && conn.write.capacity() <= super::IDLE_BUFFER_KEEP);
    conn.read.reserve(8 * 1024);
    conn.release_large_buffers();
    assert!(conn.read.capacity() >= 8 * 1024, "a buffer of the usual size is kept for the next exchange");
}
