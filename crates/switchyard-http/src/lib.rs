//! The HTTP server loop shared by every Switchyard listener: HTTP/1.1 and h2c on one
//! port (h2 and HTTP/1.1 by ALPN over TLS, see [`https`]), one task per connection,
//! graceful drain on shutdown.
#![forbid(unsafe_code)]

pub mod https;
mod parse_errors;
pub mod resolver;
pub mod tls;

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use http::{Request, Response};
use http_body::Body;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::net::TcpListener;

/// HTTP/2 limits per client connection. Header lists past 64 KiB are refused (the
/// request path's own limit is 8 KiB, checked later with an error code).
pub const H2_MAX_HEADER_LIST: u32 = 64 * 1024;
/// Streams one client connection may have open at once (the SETTINGS it is sent).
pub const H2_MAX_CONCURRENT_STREAMS: u32 = 256;
/// Rapid reset (CVE-2023-44487): streams a client opened and reset before they were
/// served, queued at once; past this the connection is closed with GOAWAY.
pub const H2_MAX_PENDING_RESETS: usize = 20;
/// Streams the server itself had to reset for a client's protocol errors; past this the
/// connection is closed (a client provoking resets in a loop, CVE-2019-9514 and kin).
pub const H2_MAX_LOCAL_ERROR_RESETS: usize = 256;

/// How long open connections may take to finish after shutdown is asked for.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// What one listener tolerates from its clients (the same for each of its workers).
#[derive(Clone, Debug)]
pub struct ConnectionLimits {
    /// The longest an HTTP/1 request head may take, counted from the moment the
    /// connection is ready for one: from accept, and on a kept-alive connection from the
    /// end of the previous response. So it cuts off a slowloris client (one header byte a
    /// second) and closes a kept-alive connection that stays idle as long.
    pub header_read_timeout: Duration,
    /// The most connections one worker keeps open; 0 for no cap. A connection over the
    /// cap is answered [`refusal`](Self::refusal) (when set) and closed at once, so a
    /// flood of idle connections cannot take a worker's memory and file descriptors.
    pub max_connections_per_worker: usize,
    /// A complete HTTP/1.1 response written to a connection refused over the cap.
    pub refusal: Option<bytes::Bytes>,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self { header_read_timeout: Duration::from_secs(30), max_connections_per_worker: 0, refusal: None }
    }
}

/// How long a refused connection gets to take its refusal before it is dropped.
const REFUSAL_WRITE_TIMEOUT: Duration = Duration::from_secs(1);

/// Accepts connections until `shutdown` resolves, then drains them, with the default
/// [`ConnectionLimits`].
///
/// `handler` gets each request and the client's address and always answers: errors
/// are the handler's to turn into responses.
pub async fn serve<H, F, B>(listener: TcpListener, handler: H, shutdown: impl Future<Output = ()>)
where
    H: Fn(Request<Incoming>, SocketAddr) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<B>> + Send + 'static,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    serve_with(listener, &ConnectionLimits::default(), handler, shutdown).await;
}

/// [`serve`] with these limits.
pub async fn serve_with<H, F, B>(listener: TcpListener, limits: &ConnectionLimits, handler: H, shutdown: impl Future<Output = ()>)
where
    H: Fn(Request<Incoming>, SocketAddr) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<B>> + Send + 'static,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    serve_peers(listener, limits, None, move |request, peer: Peer| handler(request, peer.addr), shutdown).await;
}

/// Who sent a request, and over what.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Peer {
    pub addr: SocketAddr,
    /// The negotiated TLS version (`TLSv1.3`, `TLSv1.2`); None on a plain-text listener.
    pub tls: Option<&'static str>,
}

/// [`serve_with`], with TLS when `tls` is given: each connection's handshake runs on its
/// own task within [`https::HANDSHAKE_TIMEOUT`] (a client that sends nothing cannot hold
/// the socket), then HTTP/1.1 or h2 (as ALPN and the preface say) over it. `handler`
/// learns the negotiated TLS version with the client's address.
pub async fn serve_peers<H, F, B>(
    listener: TcpListener,
    limits: &ConnectionLimits,
    tls: Option<https::Acceptor>,
    handler: H,
    shutdown: impl Future<Output = ()>,
) where
    H: Fn(Request<Incoming>, Peer) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<B>> + Send + 'static,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(limits.header_read_timeout).max_buf_size(64 * 1024).keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(H2_MAX_HEADER_LIST)
        .max_concurrent_streams(H2_MAX_CONCURRENT_STREAMS)
        .max_pending_accept_reset_streams(H2_MAX_PENDING_RESETS)
        .max_local_error_reset_streams(H2_MAX_LOCAL_ERROR_RESETS);
    let graceful = GracefulShutdown::new();
    let open = OpenConnections::default();
    tokio::pin!(shutdown);
    loop {
        let (stream, client) = tokio::select! {
            accepted = accept(&listener) => accepted,
            () = &mut shutdown => break,
        };
        if limits.max_connections_per_worker > 0 && open.get() >= limits.max_connections_per_worker {
            tracing::debug!(%client, cap = limits.max_connections_per_worker, "connection refused: the worker is at its connection cap");
            // Over TLS a plain-text answer would be garbage to the client: just closed.
            let refusal = if tls.is_none() { limits.refusal.clone() } else { None };
            tokio::spawn(refuse(stream, refusal));
            continue;
        }
        let counted = open.count();
        let (handler, builder, watcher, tls) = (handler.clone(), builder.clone(), graceful.watcher(), tls.clone());
        tokio::spawn(async move {
            let _counted = counted;
            let Some(tls) = tls else {
                let peer = Peer { addr: client, tls: None };
                return serve_connection(&builder, watcher, stream, peer, handler).await;
            };
            let Some((stream, version)) = tls.handshake(stream, client).await else { return };
            let peer = Peer { addr: client, tls: Some(version) };
            serve_connection(&builder, watcher, stream, peer, handler).await;
        });
    }
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(DRAIN_TIMEOUT) => tracing::warn!("connections still open after the drain timeout"),
    }
}

/// HTTP/1.1 or h2 over one connection (plain or TLS), until it ends or a drain ends it.
/// hyper's own bare 400/431 answers get their error codes (`parse_errors`).
async fn serve_connection<S, H, F, B>(builder: &auto::Builder<TokioExecutor>, watcher: Watcher, stream: S, peer: Peer, handler: H)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    H: Fn(Request<Incoming>, Peer) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<B>> + Send + 'static,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let in_flight = parse_errors::InFlight::default();
    let stream = parse_errors::CodedParseErrors::new(stream, in_flight.clone());
    let service = service_fn(move |request| parse_errors::CountedResponse::new(in_flight.enter(), handler(request, peer)));
    let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service).into_owned();
    if let Err(e) = watcher.watch(connection).await {
        tracing::debug!(error = %e, client = %peer.addr, "connection ended with an error");
    }
}

/// How many connections a worker has open: one counter per worker (a `serve` loop),
/// touched on accept and close only.
#[derive(Clone, Default)]
struct OpenConnections(std::sync::Arc<std::sync::atomic::AtomicUsize>);

impl OpenConnections {
    fn get(&self) -> usize {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Counts one more until the returned guard is dropped (the connection ended).
    fn count(&self) -> OpenConnection {
        self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        OpenConnection(self.0.clone())
    }
}

struct OpenConnection(std::sync::Arc<std::sync::atomic::AtomicUsize>);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Answers a connection over the cap with `refusal` (bounded in time: a client that
/// does not read cannot hold the task) and closes it.
async fn refuse(mut stream: tokio::net::TcpStream, refusal: Option<bytes::Bytes>) {
    use tokio::io::AsyncWriteExt;
    if let Some(refusal) = refusal {
        let _ = tokio::time::timeout(REFUSAL_WRITE_TIMEOUT, async {
            stream.write_all(&refusal).await?;
            stream.shutdown().await
        })
        .await;
    }
}

/// The next connection, with `TCP_NODELAY` set. A failed accept (out of file
/// descriptors and similar) is logged and retried after a short pause instead of spinning.
pub async fn accept(listener: &TcpListener) -> (tokio::net::TcpStream, SocketAddr) {
    loop {
        match listener.accept().await {
            Ok((stream, client)) => {
                let _ = stream.set_nodelay(true);
                return (stream, client);
            }
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Binds `count` listeners on one address with `SO_REUSEPORT`, so each worker thread
/// accepts on its own socket and the kernel spreads connections between them. With
/// port 0 the first bind picks the port and the others share it.
pub async fn bind_shared(addr: &str, count: usize) -> std::io::Result<Vec<std::net::TcpListener>> {
    let named = |e: std::io::Error| std::io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}"));
    let mut resolved: SocketAddr =
        tokio::net::lookup_host(addr).await.map_err(named)?.next().ok_or_else(|| named(std::io::Error::other("no address")))?;
    if resolved.port() != 0 {
        refuse_if_taken(resolved).map_err(named)?;
    }
    let mut listeners = Vec::with_capacity(count);
    for _ in 0..count.max(1) {
        let socket = if resolved.is_ipv4() { tokio::net::TcpSocket::new_v4() } else { tokio::net::TcpSocket::new_v6() }.map_err(named)?;
        socket.set_reuseaddr(true).map_err(named)?;
        socket.set_reuseport(true).map_err(named)?;
        socket.bind(resolved).map_err(named)?;
        let listener = socket.listen(4096).map_err(named)?;
        resolved = listener.local_addr()?;
        listeners.push(listener.into_std()?);
    }
    Ok(listeners)
}

/// `SO_REUSEPORT` lets any process of the same user join a port and take a share of its
/// connections, so two gateways with different configurations would split traffic in
/// silence. A plain bind (no `SO_REUSEPORT`) first fails when anyone listens there.
fn refuse_if_taken(addr: SocketAddr) -> std::io::Result<()> {
    let probe = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4() } else { tokio::net::TcpSocket::new_v6() }?;
    probe.set_reuseaddr(true)?;
    match probe.bind(addr) {
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
            Err(std::io::Error::new(e.kind(), "another process already listens on this address"))
        }
        other => other,
    }
}

/// Runs one `serve` loop per listener, each on its own thread with a single-threaded
/// runtime: a connection, its request and the upstream connection it uses stay on one
/// thread, as in nginx's worker model, with no cross-thread wakeups on the hot path.
/// `make_handler` runs on each worker thread (so per-thread state such as a client
/// pool stays there). Returns when every worker has drained after `shutdown` is set.
pub fn run_workers<M, H, F, B>(
    listeners: Vec<std::net::TcpListener>,
    make_handler: M,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> std::io::Result<Vec<std::thread::JoinHandle<()>>>
where
    M: Fn() -> H + Send + Sync + 'static,
    H: Fn(Request<Incoming>, SocketAddr) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<B>> + Send + 'static,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let make_handler = move || {
        let handler = make_handler();
        move |request, peer: Peer| handler(request, peer.addr)
    };
    run_workers_with(listeners, None, ConnectionLimits::default(), make_handler, shutdown)
}

/// [`run_workers`] with these limits for each worker; with `https`, worker `i` also
/// serves TLS on `https.listeners[i]` (same limits, its own connection count).
pub fn run_workers_with<M, H, F, B>(
    listeners: Vec<std::net::TcpListener>,
    https: Option<https::Listeners>,
    limits: ConnectionLimits,
    make_handler: M,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> std::io::Result<Vec<std::thread::JoinHandle<()>>>
where
    M: Fn() -> H + Send + Sync + 'static,
    H: Fn(Request<Incoming>, Peer) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<B>> + Send + 'static,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let make_handler = std::sync::Arc::new(make_handler);
    let (mut tls_listeners, acceptor) = match https {
        Some(https) => (https.listeners.into_iter().map(Some).collect(), Some(https.acceptor)),
        None => (Vec::new(), None),
    };
    tls_listeners.resize_with(listeners.len(), || None);
    let mut threads = Vec::with_capacity(listeners.len());
    for (index, (listener, tls_listener)) in listeners.into_iter().zip(tls_listeners).enumerate() {
        let (make_handler, limits, shutdown, acceptor) = (make_handler.clone(), limits.clone(), shutdown.clone(), acceptor.clone());
        let thread = std::thread::Builder::new().name(format!("switchyard-worker-{index}")).spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("worker runtime");
            runtime.block_on(async move {
                let handler = make_handler();
                let plain = serve_peers(registered(listener), &limits, None, handler.clone(), stopped(shutdown.clone()));
                let tls = async {
                    if let (Some(listener), Some(acceptor)) = (tls_listener, acceptor) {
                        serve_peers(registered(listener), &limits, Some(acceptor), handler, stopped(shutdown)).await;
                    }
                };
                tokio::join!(plain, tls);
            });
        })?;
        threads.push(thread);
    }
    Ok(threads)
}

fn registered(listener: std::net::TcpListener) -> TcpListener {
    listener.set_nonblocking(true).expect("nonblocking listener");
    TcpListener::from_std(listener).expect("register listener")
}

async fn stopped(mut shutdown: tokio::sync::watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

/// Binds a listener, with an error that names the address.
pub async fn bind(addr: &str) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await.map_err(|e| std::io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))
}

/// What a passing probe saw.
#[derive(Clone, Copy, Debug)]
pub struct ProbeReport {
    /// Until the TCP connection (and, with TLS, the handshake) was up.
    pub connect_latency: Duration,
    /// The HTTP status, when a path was probed.
    pub status: Option<u16>,
}

/// One health probe, shared by the controller's connectivity tests and the proxy's
/// active health checks: a TCP connect (then the TLS handshake, with `tls`), then, when
/// `path` is set, `GET path` whose status must be below 500. Errors name the address and
/// the exact cause.
///
/// A path that is not `/` followed by visible ASCII, or a Host with CR, LF or NUL, is
/// refused before anything is dialled: written as they are, they could end the request
/// line early and smuggle another request onto the connection. Compile refuses such
/// resources already; this is the last line.
pub async fn probe(
    addr: SocketAddr,
    host_header: &str,
    path: Option<&str>,
    timeout: Duration,
    tls: Option<&tls::UpstreamTls>,
) -> Result<ProbeReport, String> {
    if let Some(path) = path {
        check_probe_request(path, host_header).map_err(|e| format!("{addr}: not probed: {e}"))?;
    }
    let started = std::time::Instant::now();
    let stream = tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr))
        .await
        .map_err(|_| format!("{addr}: no connection within {timeout:?}"))?
        .map_err(|e| format!("{addr}: {e}"))?;
    let Some(tls) = tls else {
        return exchange(stream, addr, host_header, path, timeout, started).await;
    };
    let stream = tokio::time::timeout(timeout, tls.connect(stream))
        .await
        .map_err(|_| format!("{addr}: no TLS handshake within {timeout:?}"))?
        .map_err(|e| format!("{addr}: TLS handshake: {e}"))?;
    exchange(stream, addr, host_header, path, timeout, started).await
}

/// Whether `GET path` with `Host: host_header` can be written as one request and
/// nothing more: the path is `/` then visible ASCII (0x21-0x7E), the Host holds no CR,
/// LF or NUL.
pub fn check_probe_request(path: &str, host_header: &str) -> Result<(), String> {
    if !path.starts_with('/') || !path.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
        return Err(format!("the path {path:?} is not / followed by visible ASCII"));
    }
    if host_header.bytes().any(|b| matches!(b, b'\r' | b'\n' | 0)) {
        return Err(format!("the Host {host_header:?} holds a CR, LF or NUL"));
    }
    Ok(())
}

/// The probe's HTTP part on an open stream (plain or TLS).
async fn exchange<S>(
    mut stream: S,
    addr: SocketAddr,
    host_header: &str,
    path: Option<&str>,
    timeout: Duration,
    started: std::time::Instant,
) -> Result<ProbeReport, String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let connect_latency = started.elapsed();
    let Some(path) = path else { return Ok(ProbeReport { connect_latency, status: None }) };
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host_header}\r\nUser-Agent: switchyard-probe\r\nConnection: close\r\n\r\n");
    let exchange = async {
        stream.write_all(request.as_bytes()).await?;
        let mut head = [0u8; 64];
        let n = stream.read(&mut head).await?;
        Ok::<_, std::io::Error>(String::from_utf8_lossy(&head[..n]).into_owned())
    };
    let head = tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| format!("{addr}: GET {path} got no answer within {timeout:?}"))?
        .map_err(|e| format!("{addr}: GET {path}: {e}"))?;
    let status: u16 =
        head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).ok_or_else(|| format!("{addr}: GET {path}: not an HTTP response"))?;
    if status >= 500 {
        return Err(format!("{addr}: GET {path} answered {status}"));
    }
    Ok(ProbeReport { connect_latency, status: Some(status) })
}

/// Compares secrets (tokens, app codes) without an early exit, so response timing does
/// not reveal how much of a guess was right.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_requests_are_checked_for_bytes_that_would_end_the_request_line() {
        assert!(check_probe_request("/healthz?deep=1", "orders.internal:8080").is_ok());
        for path in ["healthz", "/a b", "/a\r\nPOST /admin/delete-all HTTP/1.1", "/a\n", "/a\0", "/caf\u{e9}", "/\x7f"] {
            assert!(check_probe_request(path, "orders.internal").is_err(), "{path:?}");
        }
        assert!(check_probe_request("/", "orders.internal\r\nX-Injected: 1").is_err());
    }

    #[tokio::test]
    async fn a_probe_with_a_smuggling_path_dials_nothing() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let forged = "/healthz HTTP/1.1\r\nHost: a\r\n\r\nPOST /admin/delete-all HTTP/1.1\r\nHost: a\r\n\r\n";
        let refused = probe(addr, "a", Some(forged), Duration::from_secs(1), None).await.unwrap_err();
        assert!(refused.contains("not probed"), "{refused}");
        let accepted = tokio::time::timeout(Duration::from_millis(200), listener.accept()).await;
        assert!(accepted.is_err(), "the probe opened a connection");
    }
}
