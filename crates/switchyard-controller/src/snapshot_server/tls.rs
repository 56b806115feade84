//! The snapshot listener over TLS (rustls on ring, as `switchyard_http::tls` is for
//! upstreams). The snapshot holds every app's credentials, so it is never served in the
//! clear unless `--snapshot-insecure-http` asks for it.
//!
//! The certificate and key are PEM files, re-read when they change (cert-manager and the
//! chart renew them in place), checked with a `stat` per handshake; a pair that does not
//! load keeps the previous one in force.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::crypto::{CryptoProvider, ring};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::{ClientHello, ResolvesServerCert};
use tokio_rustls::rustls::sign::CertifiedKey;

use super::SnapshotServer;

/// A client that has not finished its handshake by then is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The server configuration for `--snapshot-tls-cert` / `--snapshot-tls-key`. Fails when
/// the files do not hold a certificate chain and its matching private key.
pub fn server_config(cert: &Path, key: &Path) -> anyhow::Result<Arc<ServerConfig>> {
    let provider = Arc::new(ring::default_provider());
    let resolver = ReloadingCert::load(cert, key, provider.clone())?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(resolver));
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// How the snapshot listener talks.
#[derive(Clone)]
pub enum Transport {
    Tls(Arc<ServerConfig>),
    /// `--snapshot-insecure-http`: local development only.
    PlainHttp,
}

impl Transport {
    /// From the flags: TLS with both files, plain HTTP only when asked for, else an error
    /// that says what to give.
    pub fn from_flags(cert: Option<&Path>, key: Option<&Path>, insecure_http: bool) -> anyhow::Result<Self> {
        match (cert, key, insecure_http) {
            (Some(cert), Some(key), false) => Ok(Self::Tls(server_config(cert, key)?)),
            (None, None, true) => {
                tracing::warn!(
                    "--snapshot-insecure-http: snapshots (app credentials included) are served in plain text; local development only"
                );
                Ok(Self::PlainHttp)
            }
            (_, _, true) => bail!("--snapshot-insecure-http cannot be combined with --snapshot-tls-cert/--snapshot-tls-key"),
            _ => bail!(
                "the snapshot listener serves every app credential and needs TLS: give --snapshot-tls-cert FILE and \
                 --snapshot-tls-key FILE (or --snapshot-insecure-http for local development only)"
            ),
        }
    }
}

/// Serves the snapshot endpoint on `listener` until the task is dropped.
pub async fn serve_on(listener: TcpListener, transport: Transport, server: Arc<SnapshotServer>) {
    match transport {
        Transport::Tls(config) => serve(listener, config, server).await,
        Transport::PlainHttp => {
            let handler = move |request, _client| {
                let server = server.clone();
                async move { server.respond(request).await }
            };
            switchyard_http::serve(listener, handler, std::future::pending()).await;
        }
    }
}

/// Serves the snapshot endpoint over TLS (HTTP/1.1) until the task is dropped.
pub async fn serve(listener: TcpListener, config: Arc<ServerConfig>, server: Arc<SnapshotServer>) {
    let acceptor = TlsAcceptor::from(config);
    loop {
        let (stream, client) = switchyard_http::accept(&listener).await;
        let (acceptor, server) = (acceptor.clone(), server.clone());
        tokio::spawn(async move {
            let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(stream)) => stream,
                Ok(Err(e)) => return tracing::debug!(%client, error = %e, "snapshot listener: TLS handshake failed"),
                Err(_) => return tracing::debug!(%client, "snapshot listener: no TLS handshake in time"),
            };
            let service = service_fn(move |request| {
                let server = server.clone();
                async move { Ok::<_, std::convert::Infallible>(server.respond(request).await) }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(30))
                .serve_connection(TokioIo::new(stream), service);
            if let Err(e) = connection.await {
                tracing::debug!(%client, error = %e, "snapshot connection ended with an error");
            }
        });
    }
}

/// The serving certificate, reloaded when either file changes.
#[derive(Debug)]
struct ReloadingCert {
    cert: PathBuf,
    key: PathBuf,
    provider: Arc<CryptoProvider>,
    current: Mutex<(Option<Stamp>, Arc<CertifiedKey>)>,
}

type Stamp = [Option<std::time::SystemTime>; 2];

fn stamp(cert: &Path, key: &Path) -> Stamp {
    [cert, key].map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
}

impl ReloadingCert {
    fn load(cert: &Path, key: &Path, provider: Arc<CryptoProvider>) -> anyhow::Result<Self> {
        let stamp = stamp(cert, key);
        let certified = certified_key(cert, key, &provider)?;
        Ok(Self { cert: cert.to_owned(), key: key.to_owned(), provider, current: Mutex::new((Some(stamp), Arc::new(certified))) })
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        let now = stamp(&self.cert, &self.key);
        if current.0 != Some(now) {
            match certified_key(&self.cert, &self.key, &self.provider) {
                Ok(certified) => {
                    tracing::info!(cert = %self.cert.display(), "snapshot TLS certificate reloaded");
                    *current = (Some(now), Arc::new(certified));
                }
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), "snapshot TLS certificate not reloaded; keeping the previous one");
                    current.0 = Some(now);
                }
            }
        }
        Some(current.1.clone())
    }
}

fn certified_key(cert: &Path, key: &Path, provider: &CryptoProvider) -> anyhow::Result<CertifiedKey> {
    let chain = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("reading --snapshot-tls-cert {}", cert.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("--snapshot-tls-cert {}: not PEM certificates", cert.display()))?;
    if chain.is_empty() {
        bail!("--snapshot-tls-cert {} holds no certificate", cert.display());
    }
    let private = PrivateKeyDer::from_pem_file(key).with_context(|| format!("--snapshot-tls-key {}: no PEM private key", key.display()))?;
    CertifiedKey::from_der(chain, private, provider)
        .with_context(|| format!("--snapshot-tls-key {} does not fit --snapshot-tls-cert {}", key.display(), cert.display()))
}
