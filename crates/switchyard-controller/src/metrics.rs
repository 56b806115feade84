//! Controller metrics: compiles, snapshot version and size, status writes.

use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
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
        };
        let r = registry.sub_registry_with_prefix("switchyard_controller");
        r.register("compiles", "Compile passes (reconciles of the whole resource set)", metrics.compiles.clone());
        r.register("compile_duration_seconds", "Time to copy, compile and publish", metrics.compile_seconds.clone());
        r.register("snapshot_version", "Version of the published snapshot", metrics.snapshot_version.clone());
        r.register("snapshot_bytes", "Size of the published snapshot as JSON", metrics.snapshot_bytes.clone());
        r.register("status_writes", "Status patches applied", metrics.status_writes.clone());
        r.register("status_write_failures", "Status patches the API server refused", metrics.status_write_failures.clone());
        metrics
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
