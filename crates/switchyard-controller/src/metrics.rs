//! Controller metrics: compiles, snapshot version and size, status writes, and the state of
//! every registry watch.

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::kubernetes::writer::WriteReport;

pub struct ControllerMetrics {
    compiles: Counter,
    compile_seconds: Histogram,
    snapshot_version: Gauge,
    snapshot_bytes: Gauge,
    status_writes: Counter,
    status_write_failures: Counter,
    leader: Gauge,
}

impl ControllerMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            compiles: Counter::default(),
            compile_seconds: Histogram::new([0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0]),
            snapshot_version: Gauge::default(),
            snapshot_bytes: Gauge::default(),
            status_writes: Counter::default(),
            status_write_failures: Counter::default(),
            leader: Gauge::default(),
        };
        let r = registry.sub_registry_with_prefix("switchyard_controller");
        r.register("compiles", "Compile passes (reconciles of the whole resource set)", metrics.compiles.clone());
        r.register("compile_duration_seconds", "Time to copy, compile and publish", metrics.compile_seconds.clone());
        r.register("snapshot_version", "Version of the published snapshot", metrics.snapshot_version.clone());
        r.register("snapshot_bytes", "Size of the published snapshot as JSON", metrics.snapshot_bytes.clone());
        r.register("status_writes", "Status patches applied", metrics.status_writes.clone());
        r.register("status_write_failures", "Status patches the API server refused", metrics.status_write_failures.clone());
        r.register("leader", "1 while this replica holds the leader Lease (writes status and Events)", metrics.leader.clone());
        metrics
    }

    /// Whether this replica leads now.
    pub fn set_leader(&self, leading: bool) {
        self.leader.set(i64::from(leading));
    }

    pub fn observe_compile(&self, took: Duration, version: Option<u64>, bytes: Option<usize>) {
        self.compiles.inc();
        self.compile_seconds.observe(took.as_secs_f64());
        if let Some(v) = version {
            self.snapshot_version.set(v as i64);
        }
        if let Some(b) = bytes {
            self.snapshot_bytes.set(b as i64);
        }
    }

    pub fn observe_status_writes(&self, report: &WriteReport) {
        self.status_writes.inc_by(report.written as u64);
        self.status_write_failures.inc_by(report.failed as u64);
    }
}

/// Labels of one registry watch: its kind and its source, described without credentials.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RegistryLabels {
    pub registry: &'static str,
    pub source: String,
}

impl RegistryLabels {
    fn of(source: &switchyard_compile::RegistrySource) -> Self {
        let registry = match source {
            switchyard_compile::RegistrySource::Nacos(_) => "nacos",
            switchyard_compile::RegistrySource::ZooKeeper(_) => "zookeeper",
        };
        Self { registry, source: switchyard_compile::describe_registry(source) }
    }
}

/// Per-watch metrics (`switchyard_registry_*`).
#[derive(Default)]
pub struct RegistryMetrics {
    /// 1 while the last read or push succeeded, 0 while pending or unreachable.
    up: Family<RegistryLabels, Gauge>,
    last_sync: Family<RegistryLabels, Gauge>,
    instances: Family<RegistryLabels, Gauge>,
    malformed: Family<RegistryLabels, Counter>,
    /// The label sets in use (a Family cannot list them).
    known: Mutex<HashSet<RegistryLabels>>,
}

impl RegistryMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        let r = registry.sub_registry_with_prefix("switchyard_registry");
        r.register("watch_up", "1 while the registry answers the watch, 0 while pending or unreachable", metrics.up.clone());
        r.register("last_sync_timestamp_seconds", "When the last full read of the source completed", metrics.last_sync.clone());
        r.register("instances", "Serving instances the source lists", metrics.instances.clone());
        r.register("malformed_instances", "Registry entries skipped as malformed", metrics.malformed.clone());
        metrics
    }

    pub fn observe(&self, source: &switchyard_compile::RegistrySource, latest: &switchyard_compile::Discovered, new_malformed: u64) {
        let labels = RegistryLabels::of(source);
        self.known.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(labels.clone());
        let up = matches!(latest.sync, switchyard_compile::SyncState::Synced { .. });
        self.up.get_or_create(&labels).set(i64::from(up));
        if let Some(at) = latest.sync.last_sync().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok()) {
            self.last_sync.get_or_create(&labels).set(at.as_secs() as i64);
        }
        self.instances.get_or_create(&labels).set(latest.instances.len() as i64);
        self.malformed.get_or_create(&labels).inc_by(new_malformed);
    }

    /// Drops the series of watches that stopped.
    pub fn forget_except<'a>(&self, running: impl Iterator<Item = &'a switchyard_compile::RegistrySource>) {
        let keep: HashSet<RegistryLabels> = running.map(RegistryLabels::of).collect();
        let mut known = self.known.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        for gone in known.difference(&keep) {
            self.up.remove(gone);
            self.last_sync.remove(gone);
            self.instances.remove(gone);
            self.malformed.remove(gone);
        }
        *known = keep;
    }
}

#[cfg(test)]
mod leader_tests {
    #[test]
    fn the_leader_gauge_says_whether_this_replica_leads() {
        let mut registry = prometheus_client::registry::Registry::default();
        let metrics = super::ControllerMetrics::register(&mut registry);
        let scrape = |registry: &prometheus_client::registry::Registry| {
            let mut text = String::new();
            prometheus_client::encoding::text::encode(&mut text, registry).unwrap();
            text
        };
        assert!(scrape(&registry).contains("switchyard_controller_leader 0\n"));
        metrics.set_leader(true);
        assert!(scrape(&registry).contains("switchyard_controller_leader 1\n"));
        metrics.set_leader(false);
        assert!(scrape(&registry).contains("switchyard_controller_leader 0\n"));
    }
}
