//! WebSocket pass-through (RFC 6455 over HTTP/1.1). The opening handshake is an ordinary
//! request on the request path (route match, auth, every request-path check) with its
//! `Upgrade: websocket` kept; when the backend answers `101 Switching Protocols`, both
//! connections are handed over from hyper and the bytes are copied both ways until
//! either side closes or nothing passes for the idle timeout. Frames are not parsed: the
//! gateway is a tunnel once the backend agreed.
//!
//! Only `http`, `vpc` and `registry` backends over HTTP/1 take upgrades; any other
//! request asking for one is refused (`A400WS`) rather than answered by a backend that
//! would not understand it. HTTP/2's extended CONNECT (RFC 8441) is not offered.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use http::header::{CONNECTION, UPGRADE};
use http::{HeaderMap, HeaderValue, Method, Version};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Idle time after which a tunnel is closed when `--websocket-idle-timeout` is not set.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(300);

/// The client's side of a WebSocket handshake in progress: hyper hands its connection
/// over once the `101` has been sent.
pub struct ClientUpgrade(OnUpgrade);

/// Whether `parts` is a WebSocket opening handshake (`GET`, HTTP/1.1, `Connection:
/// upgrade`, `Upgrade: websocket`), taking hyper's handle on the connection if so. Any
/// other upgrade (h2c, TLS, a made-up protocol) is left to be stripped with the other
/// hop-by-hop headers: it never reaches a backend.
pub fn take_client_upgrade(parts: &mut http::request::Parts) -> Option<ClientUpgrade> {
    if parts.version != Version::HTTP_11 || parts.method != Method::GET || !asks_for_websocket(&parts.headers) {
        return None;
    }
    parts.extensions.remove::<OnUpgrade>().map(ClientUpgrade)
}

fn asks_for_websocket(headers: &HeaderMap) -> bool {
    let mut upgrade = headers.get_all(UPGRADE).iter();
    let websocket = upgrade.next().is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket")) && upgrade.next().is_none();
    let connection_upgrade = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|token| token.trim().eq_ignore_ascii_case("upgrade"));
    websocket && connection_upgrade
}

/// What the upstream request carries for the handshake (hop-by-hop, so shaping dropped it).
pub fn set_upgrade_headers(headers: &mut HeaderMap) {
    headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
}

/// The series one backend's tunnels count into.
#[derive(Clone)]
pub struct TunnelMetrics {
    /// `switchyard_proxy_websocket_upgrades_total`
    pub upgrades: Counter,
    /// `switchyard_proxy_websocket_open`
    pub open: Gauge,
}

/// Copies between the client's and the upstream's upgraded connections on a task of its
/// own (the response `101` goes to the client meanwhile, which is what completes the
/// client's side).
pub fn spawn_tunnel(client: ClientUpgrade, upstream: OnUpgrade, idle: Duration, metrics: TunnelMetrics, backend: Arc<str>) {
    metrics.upgrades.inc();
    tokio::spawn(async move {
        let (client, upstream) = match tokio::join!(client.0, upstream) {
            (Ok(client), Ok(upstream)) => (client, upstream),
            (client, upstream) => {
                let error = client.err().or(upstream.err()).map(|e| e.to_string());
                tracing::debug!(backend = &*backend, error, "a WebSocket upgrade did not complete");
                return;
            }
        };
        metrics.open.inc();
        let outcome = relay(TokioIo::new(client), TokioIo::new(upstream), idle).await;
        metrics.open.dec();
        match outcome {
            Relay::Closed => tracing::debug!(backend = &*backend, "WebSocket closed"),
            Relay::Idle => tracing::debug!(backend = &*backend, idle_ms = idle.as_millis() as u64, "WebSocket idle; closed"),
            Relay::Failed(e) => tracing::debug!(backend = &*backend, error = %e, "WebSocket ended with an error"),
        }
    });
}

enum Relay {
    /// Both directions ended (a close from either side ends the other too).
    Closed,
    /// Nothing passed either way for the idle timeout.
    Idle,
    Failed(std::io::Error),
}

/// Both directions until both end; a side's end (EOF) is passed on as a write shutdown,
/// so a close from either side reaches the other. Dropping the streams at the end (or at
/// the idle timeout) closes both connections.
async fn relay<A, B>(client: A, upstream: B, idle: Duration) -> Relay
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let clock = Arc::new(Activity::default());
    let (mut client, mut upstream) =
        (Watched { inner: client, activity: clock.clone() }, Watched { inner: upstream, activity: clock.clone() });
    let idle_ms = idle.as_millis() as u64;
    let watchdog = async {
        loop {
            let quiet = clock.quiet_ms();
            if quiet >= idle_ms {
                return;
            }
            tokio::time::sleep(Duration::from_millis(idle_ms - quiet)).await;
        }
    };
    tokio::select! {
        copied = tokio::io::copy_bidirectional(&mut client, &mut upstream) => match copied {
            Ok(_) => Relay::Closed,
            Err(e) => Relay::Failed(e),
        },
        () = watchdog => Relay::Idle,
    }
}

/// When bytes last moved through a tunnel, in milliseconds since it started.
struct Activity {
    started: tokio::time::Instant,
    last_ms: AtomicU64,
}

impl Default for Activity {
    fn default() -> Self {
        Self { started: tokio::time::Instant::now(), last_ms: AtomicU64::new(0) }
    }
}

impl Activity {
    fn touch(&self) {
        self.last_ms.store(self.started.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    fn quiet_ms(&self) -> u64 {
        (self.started.elapsed().as_millis() as u64).saturating_sub(self.last_ms.load(Ordering::Relaxed))
    }
}

/// A stream that notes every read that brought bytes.
struct Watched<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, data)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(method: Method, headers: &[(&str, &str)]) -> http::request::Parts {
        let mut builder = http::Request::builder().method(method).uri("/ws");
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let (mut parts, ()) = builder.body(()).unwrap().into_parts();
        parts.extensions.insert(hyper::upgrade::on(http::Request::new(())));
        parts
    }

    #[test]
    fn only_a_get_asking_for_websocket_with_connection_upgrade_is_a_handshake() {
        let handshake = [("connection", "keep-alive, Upgrade"), ("upgrade", "WebSocket")];
        assert!(take_client_upgrade(&mut request(Method::GET, &handshake)).is_some());
        assert!(take_client_upgrade(&mut request(Method::POST, &handshake)).is_none(), "RFC 6455 needs GET");
        assert!(take_client_upgrade(&mut request(Method::GET, &[("upgrade", "websocket")])).is_none(), "no Connection: upgrade");
        assert!(take_client_upgrade(&mut request(Method::GET, &[("connection", "upgrade"), ("upgrade", "h2c")])).is_none());
        let two = [("connection", "upgrade"), ("upgrade", "websocket"), ("upgrade", "h2c")];
        assert!(take_client_upgrade(&mut request(Method::GET, &two)).is_none(), "one protocol, not a list to pick from");
    }

    #[tokio::test]
    async fn a_quiet_tunnel_is_closed_after_the_idle_timeout_and_traffic_keeps_it_open() {
        use tokio::io::AsyncWriteExt;
        let (client, mut client_peer) = tokio::io::duplex(64);
        let (upstream, _upstream_peer) = tokio::io::duplex(64);
        let started = tokio::time::Instant::now();
        let relay = tokio::spawn(relay(client, upstream, Duration::from_millis(300)));
        for _ in 0..4 {
            tokio::time::sleep(Duration::from_millis(150)).await;
            client_peer.write_all(b"x").await.unwrap();
        }
        assert!(matches!(relay.await.unwrap(), Relay::Idle));
        let elapsed = started.elapsed();
        assert!(elapsed >= Duration::from_millis(850), "traffic every 150 ms kept it open: {elapsed:?}");
    }

    #[tokio::test]
    async fn bytes_pass_both_ways_and_a_close_reaches_the_other_side() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (client, mut client_peer) = tokio::io::duplex(64);
        let (upstream, mut upstream_peer) = tokio::io::duplex(64);
        let relay = tokio::spawn(relay(client, upstream, Duration::from_secs(30)));
        client_peer.write_all(b"ping").await.unwrap();
        let mut buf = [0u8; 4];
        upstream_peer.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"ping");
        upstream_peer.write_all(b"pong").await.unwrap();
        client_peer.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"pong");
        drop(upstream_peer);
        assert_eq!(client_peer.read(&mut buf).await.unwrap(), 0, "the upstream's close reaches the client");
        drop(client_peer);
        assert!(matches!(relay.await.unwrap(), Relay::Closed));
    }
}
