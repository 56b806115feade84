//! TLS towards clients (`--https-listen`): the rustls server configuration every HTTPS
//! listener shares, and the handshake each accepted connection goes through.
//!
//! - Certificates come from a [`ResolvesServerCert`] the caller gives (the proxy's reads
//!   the live snapshot's certificate set on every handshake), so a rotation needs no new
//!   configuration and open connections are not touched.
//! - TLS 1.3 and 1.2, ring's cipher suites; ALPN `h2` then `http/1.1`.
//! - Resumption: stateless tickets (ring's ticketer, keys rotated by rustls) and a
//!   bounded session-ID cache for TLS 1.2 clients without ticket support.
//! - A handshake must finish within [`HANDSHAKE_TIMEOUT`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::crypto::ring;
use rustls::server::{ResolvesServerCert, ServerSessionMemoryCache};
use rustls::{ProtocolVersion, ServerConfig};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

/// A client must finish the TLS handshake within this; slower ones are dropped.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// TLS 1.2 sessions remembered by ID for resumption (tickets need no server memory).
const SESSION_CACHE: usize = 4096;

/// Accepts TLS on connections, with one shared configuration.
#[derive(Clone)]
pub struct Acceptor {
    acceptor: tokio_rustls::TlsAcceptor,
}

/// The HTTPS listeners of the workers (one each, sharing the address) and their acceptor.
pub struct Listeners {
    pub listeners: Vec<std::net::TcpListener>,
    pub acceptor: Acceptor,
}

impl Acceptor {
    /// The configuration every HTTPS listener uses, taking certificates from `certificates`.
    pub fn new(certificates: Arc<dyn ResolvesServerCert>) -> Result<Self, String> {
        let provider = Arc::new(ring::default_provider());
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| format!("TLS configuration: {e}"))?
            .with_no_client_auth()
            .with_cert_resolver(certificates);
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        config.ticketer = ring::Ticketer::new().map_err(|e| format!("TLS session tickets: {e}"))?;
        config.session_storage = ServerSessionMemoryCache::new(SESSION_CACHE);
        Ok(Self { acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)) })
    }

    /// The handshake on `stream`, with the negotiated version; None (logged at debug:
    /// failed handshakes are the client's business and would flood the log) when it fails
    /// or takes longer than [`HANDSHAKE_TIMEOUT`].
    pub async fn handshake(&self, stream: TcpStream, client: SocketAddr) -> Option<(TlsStream<TcpStream>, &'static str)> {
        match tokio::time::timeout(HANDSHAKE_TIMEOUT, self.acceptor.accept(stream)).await {
            Ok(Ok(stream)) => {
                let version = version_name(stream.get_ref().1.protocol_version());
                Some((stream, version))
            }
            Ok(Err(e)) => {
                tracing::debug!(%client, error = %e, "TLS handshake failed");
                None
            }
            Err(_) => {
                tracing::debug!(%client, timeout = ?HANDSHAKE_TIMEOUT, "TLS handshake not finished in time; connection dropped");
                None
            }
        }
    }
}

/// The access log's name for a version (static: no allocation per request).
fn version_name(version: Option<ProtocolVersion>) -> &'static str {
    match version {
        Some(ProtocolVersion::TLSv1_3) => "TLSv1.3",
        Some(ProtocolVersion::TLSv1_2) => "TLSv1.2",
        _ => "TLS",
    }
}
