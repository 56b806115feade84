//! The proxy's live state: the current runtime (swapped atomically, read lock-free)
//! and the metrics. Upstream connection pools belong to the worker threads.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwapOption;
use switchyard_compile::snapshot::Snapshot;

use crate::access_log::AccessLogFormat;
use crate::auth::nonce::NonceStore;
use crate::certificates::ServerCertificates;
use crate::egress::EgressConfig;
use crate::metrics::ProxyMetrics;
use crate::runtime::Runtime;
use crate::trace::Tracing;

pub struct Proxy {
    live: ArcSwapOption<Runtime>,
    /// The version last applied: it moves on when a snapshot with the same content but
    /// another number arrives (another controller replica), without a rebuild.
    version: AtomicU64,
    /// When the live version was applied (wall clock, for `/status`).
    applied_at: std::sync::Mutex<Option<std::time::SystemTime>>,
    egress: EgressConfig,
    pub metrics: ProxyMetrics,
    /// Signature nonces, shared by every worker and kept across snapshots.
    pub nonces: NonceStore,
    /// `--access-log` (off unless the caller asks).
    pub access_log: AccessLogFormat,
    /// Trace context propagation, and span export when configured.
    pub tracing: Tracing,
    /// What the proxy listener tolerates from clients (timeouts, connection cap).
    pub connection_limits: switchyard_http::ConnectionLimits,
    /// `--websocket-idle-timeout`: a WebSocket tunnel with no byte either way this long is closed.
    pub websocket_idle: std::time::Duration,
    /// The HTTPS listener's certificates, from the live snapshot.
    pub certificates: Arc<ServerCertificates>,
    /// The port the 308 of an HTTPS-only route names (443: none in the URL).
    pub https_redirect_port: u16,
}

impl Proxy {
    pub fn new(registry: &mut prometheus_client::registry::Registry, egress: EgressConfig) -> Self {
        Self {
            live: ArcSwapOption::empty(),
            version: AtomicU64::new(NO_VERSION),
            applied_at: std::sync::Mutex::new(None),
            egress,
            metrics: ProxyMetrics::register(registry),
            nonces: NonceStore::default(),
            access_log: AccessLogFormat::Off,
            tracing: Tracing::default(),
            connection_limits: switchyard_http::ConnectionLimits::default(),
            websocket_idle: crate::websocket::DEFAULT_IDLE_TIMEOUT,
            certificates: Arc::new(ServerCertificates::new(None)),
            https_redirect_port: 443,
        }
    }

    /// The same proxy serving its listener with these limits. A connection over the
    /// cap is answered 503 `A503CL` before it is closed.
    pub fn with_connection_limits(mut self, mut limits: switchyard_http::ConnectionLimits) -> Self {
        let refusal = crate::error::GatewayError::TooManyConnections { limit: limits.max_connections_per_worker };
        limits.refusal = Some(refusal.http1_bytes());
        self.connection_limits = limits;
        self
    }

    /// The same proxy closing WebSocket tunnels idle for `idle`.
    pub fn with_websocket_idle_timeout(mut self, idle: std::time::Duration) -> Self {
        self.websocket_idle = idle;
        self
    }

    /// The same proxy answering TLS handshakes that no certificate's names cover with
    /// the certificate of Secret `id` (`namespace/name`, `--default-certificate`).
    pub fn with_default_certificate(mut self, id: Option<String>) -> Self {
        self.certificates = Arc::new(ServerCertificates::new(id));
        self
    }

    /// The same proxy sending plain HTTP requests for HTTPS-only routes to `port`.
    pub fn with_https_redirect_port(mut self, port: u16) -> Self {
        self.https_redirect_port = port;
        self
    }

    /// The same proxy writing an access log line per request in `format`.
    pub fn with_access_log(mut self, format: AccessLogFormat) -> Self {
        self.access_log = format;
        self
    }

    /// The same proxy recording spans as `tracing` says (default: propagation only).
    pub fn with_tracing(mut self, tracing: Tracing) -> Self {
        self.tracing = tracing;
        self
    }

    /// The same proxy remembering Signature nonces in `nonces` (default: in memory).
    pub fn with_nonce_store(mut self, nonces: NonceStore) -> Self {
        self.nonces = nonces;
        self
    }

    /// The runtime in force now; requests hold it until they finish.
    pub fn runtime(&self) -> Option<Arc<Runtime>> {
        self.live.load_full()
    }

    /// Version of the live snapshot, if any.
    pub fn version(&self) -> Option<u64> {
        let version = self.version.load(Ordering::Acquire);
        (version != NO_VERSION && self.live.load().is_some()).then_some(version)
    }

    /// Endpoint health of the live runtime's backends that check it.
    pub fn endpoint_health(&self) -> Vec<serde_json::Value> {
        self.live.load().as_ref().map(|rt| rt.endpoint_health()).unwrap_or_default()
    }

    /// Builds a runtime from the snapshot and swaps it in. A snapshot with the content of
    /// the live one (whatever its version) only moves the version on; backends whose
    /// definition did not change keep their runtime, so health, outlier ejections and
    /// balancer state survive unrelated changes. An inconsistent snapshot is refused and
    /// the current one stays.
    pub fn apply(&self, snapshot: Arc<Snapshot>) -> Result<(), String> {
        let version = snapshot.version;
        let previous = self.live.load_full();
        if previous.as_ref().is_some_and(|rt| rt.snapshot.same_content(&snapshot)) {
            self.set_version(version);
            tracing::debug!(version, "routing snapshot has the live content; nothing to rebuild");
            return Ok(());
        }
        let started = std::time::Instant::now();
        let certificates_changed = previous.as_ref().is_none_or(|rt| rt.snapshot.certificates != snapshot.certificates);
        match Runtime::build(snapshot, &self.egress, &self.metrics.backends, previous.as_deref()) {
            Ok(runtime) => {
                if certificates_changed {
                    // Before the routes: a rotated certificate is in force for the next
                    // handshake; open connections keep theirs.
                    self.certificates.update(&runtime.snapshot.certificates);
                }
                self.live.store(Some(Arc::new(runtime)));
                self.metrics.apply_duration.observe(started.elapsed().as_secs_f64());
                self.set_version(version);
                // Only a real swap: another replica's number for the same content is not news.
                *self.applied_at.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(std::time::SystemTime::now());
                self.metrics.snapshot_swaps.inc();
                tracing::info!(version, "routing snapshot swapped in");
                Ok(())
            }
            Err(e) => {
                self.metrics.snapshot_rejected.inc();
                tracing::error!(version, error = %e, "routing snapshot refused; keeping the current one");
                Err(e)
            }
        }
    }

    /// When the live version was applied, if one is.
    pub fn applied_at(&self) -> Option<std::time::SystemTime> {
        *self.applied_at.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn set_version(&self, version: u64) {
        self.version.store(version, Ordering::Release);
        self.metrics.snapshot_version.set(version as i64);
    }
}

/// `version` before any snapshot was applied.
const NO_VERSION: u64 = u64::MAX;

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_compile::snapshot::{Backend, BackendKind};

    fn snapshot(version: u64, status: u16) -> Arc<Snapshot> {
        let backend = Backend::with_defaults(String::from("default/m"), BackendKind::Mock { status, headers: vec![], body: String::new() });
        Arc::new(Snapshot { version, backends: vec![backend], ..Snapshot::default() })
    }

    #[test]
    fn a_snapshot_with_the_live_content_moves_the_version_on_without_a_rebuild() {
        let proxy = Proxy::new(&mut prometheus_client::registry::Registry::default(), EgressConfig::default());
        proxy.apply(snapshot(1, 200)).unwrap();
        let live = proxy.runtime().unwrap();
        proxy.apply(snapshot(7, 200)).unwrap();
        assert!(Arc::ptr_eq(&live, &proxy.runtime().unwrap()), "same content, another replica's version: nothing rebuilt");
        assert_eq!(proxy.version(), Some(7));
        proxy.apply(snapshot(8, 404)).unwrap();
        assert!(!Arc::ptr_eq(&live, &proxy.runtime().unwrap()));
        assert_eq!(proxy.version(), Some(8));
    }
}
