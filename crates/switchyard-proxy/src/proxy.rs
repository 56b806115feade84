//! The proxy's live state: the current runtime (swapped atomically, read lock-free)
//! and the metrics. Upstream connection pools belong to the worker threads.

use std::sync::Arc;

use arc_swap::ArcSwapOption;
use switchyard_compile::snapshot::Snapshot;

use crate::egress::EgressConfig;
use crate::metrics::ProxyMetrics;
use crate::runtime::Runtime;

pub struct Proxy {
    live: ArcSwapOption<Runtime>,
    egress: EgressConfig,
    pub metrics: ProxyMetrics,
}

impl Proxy {
    pub fn new(registry: &mut prometheus_client::registry::Registry, egress: EgressConfig) -> Self {
        Self { live: ArcSwapOption::empty(), egress, metrics: ProxyMetrics::register(registry) }
    }

    /// The runtime in force now; requests hold it until they finish.
    pub fn runtime(&self) -> Option<Arc<Runtime>> {
        self.live.load_full()
    }

    /// Version of the live snapshot, if any.
    pub fn version(&self) -> Option<u64> {
        self.live.load().as_ref().map(|rt| rt.snapshot.version)
    }

    /// Endpoint health of the live runtime's backends that check it.
    pub fn endpoint_health(&self) -> Vec<serde_json::Value> {
        self.live.load().as_ref().map(|rt| rt.endpoint_health()).unwrap_or_default()
    }

    /// Builds a runtime from the snapshot and swaps it in. An inconsistent snapshot is
    /// refused and the current one stays.
    pub fn apply(&self, snapshot: Arc<Snapshot>) -> Result<(), String> {
        let version = snapshot.version;
        match Runtime::build(snapshot, &self.egress, &self.metrics.health) {
            Ok(runtime) => {
                self.live.store(Some(Arc::new(runtime)));
                self.metrics.snapshot_version.set(version as i64);
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
}
