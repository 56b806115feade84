//! A real HTTP upstream on loopback that echoes what it received as JSON (with the TLS
//! server name the client sent, `sni`, when it serves TLS).
//!
//! Request headers steer it: `x-test-delay-ms: N` waits before answering,
//! `x-test-status: N` answers with that status.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;

pub struct Upstream {
    pub addr: SocketAddr,
    pub name: String,
    hits: Arc<AtomicUsize>,
    connections: Arc<AtomicUsize>,
    /// The server name of every TLS handshake (None: the client sent no SNI).
    server_names: Arc<std::sync::Mutex<Vec<Option<String>>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Upstream {
    /// Starts on an ephemeral loopback port.
    pub async fn start(name: &str) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::serve(name, listener, 0, None)
    }

    /// An `https` upstream with the certificate of `config`.
    pub async fn start_tls(name: &str, config: Arc<tokio_rustls::rustls::ServerConfig>) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::serve(name, listener, 0, Some(tokio_rustls::TlsAcceptor::from(config)))
    }

    /// An upstream that waits `delay_ms` before every answer (a slow endpoint).
    pub async fn start_slow(name: &str, delay_ms: u64) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::serve(name, listener, delay_ms, None)
    }

    /// Starts on a given address (to bring a stopped upstream back on its port).
    pub async fn start_on(name: &str, addr: SocketAddr) -> Self {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_reuseaddr(true).unwrap();
        socket.bind(addr).unwrap();
        Self::serve(name, socket.listen(1024).unwrap(), 0, None)
    }

    fn serve(name: &str, listener: tokio::net::TcpListener, delay_ms: u64, tls: Option<tokio_rustls::TlsAcceptor>) -> Self {
        let addr = listener.local_addr().unwrap();
        let hits = Arc::new(AtomicUsize::new(0));
        let connections = Arc::new(AtomicUsize::new(0));
        let server_names = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (counter, label, accepted, names) = (hits.clone(), name.to_owned(), connections.clone(), server_names.clone());
        let task = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let (counter, label, tls, accepted, names) = (counter.clone(), label.clone(), tls.clone(), accepted.clone(), names.clone());
                connections.spawn(async move {
                    let serve = |sni: Option<String>| {
                        service_fn(move |request| {
                            counter.fetch_add(1, Ordering::SeqCst);
                            echo(label.clone(), sni.clone(), delay_ms, request)
                        })
                    };
                    let builder = auto::Builder::new(TokioExecutor::new());
                    match tls {
                        None => {
                            accepted.fetch_add(1, Ordering::SeqCst);
                            let _ = builder.serve_connection(TokioIo::new(stream), serve(None)).await;
                        }
                        Some(acceptor) => {
                            // A failed handshake (an untrusting client, a bare TCP
                            // connectivity test) just ends the connection, uncounted.
                            let Ok(stream) = acceptor.accept(stream).await else { return };
                            accepted.fetch_add(1, Ordering::SeqCst);
                            let sni = stream.get_ref().1.server_name().map(str::to_owned);
                            names.lock().unwrap().push(sni.clone());
                            let _ = builder.serve_connection(TokioIo::new(stream), serve(sni)).await;
                        }
                    }
                });
            }
        });
        Self { addr, name: name.to_owned(), hits, connections, server_names, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    /// Connections accepted so far (for TLS: those that completed the handshake).
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// The server names (SNI) of the TLS handshakes so far, in order.
    pub fn server_names(&self) -> Vec<Option<String>> {
        self.server_names.lock().unwrap().clone()
    }

    /// Stops accepting and drops every open connection.
    pub fn stop(&self) {
        self.task.abort();
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn echo(
    name: String,
    sni: Option<String>,
    delay_ms: u64,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, std::convert::Infallible> {
    let (parts, body) = request.into_parts();
    let header = |n: &str| parts.headers.get(n).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    let delay = header("x-test-delay-ms").unwrap_or(delay_ms);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let status = header("x-test-status").unwrap_or(200) as u16;
    let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let headers: serde_json::Map<String, serde_json::Value> = parts
        .headers
        .iter()
        .map(|(k, v)| (k.as_str().to_owned(), serde_json::Value::String(v.to_str().unwrap_or("").to_owned())))
        .collect();
    let json = serde_json::json!({
        "upstream": name,
        "method": parts.method.as_str(),
        "path": parts.uri.path(),
        "query": parts.uri.query(),
        "headers": headers,
        "body": String::from_utf8_lossy(&body),
        "bodyLength": body.len(),
        "sni": sni,
    });
    let mut response = Response::new(Full::new(Bytes::from(json.to_string())));
    *response.status_mut() = http::StatusCode::from_u16(status).unwrap();
    response.headers_mut().insert("content-type", http::HeaderValue::from_static("application/json"));
    response.headers_mut().insert("x-upstream", http::HeaderValue::from_str(&name).unwrap());
    Ok(response)
}
