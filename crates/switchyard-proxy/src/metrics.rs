//! Proxy metrics. Label values are resolved to counters once at start, so the request
//! path only increments atomics.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClassLabels {
    class: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CodeLabels {
    code: &'static str,
}

/// `switchyard_model_tokens_total` labels: the ApiRoute (`namespace/name`) and
/// `prompt` or `completion`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TokenLabels {
    pub route: std::sync::Arc<str>,
    pub kind: &'static str,
}

/// What backends of the live runtime report: endpoint health (from the health checkers),
/// model token usage and event bus publishes.
#[derive(Clone)]
pub struct BackendMetrics {
    /// Endpoints out of rotation after failing active health checks, now.
    pub unhealthy_endpoints: Gauge,
    /// Ejections by passive outlier detection.
    pub outlier_ejections: Counter,
    /// Tokens an OpenAI-protocol model reported in `usage`, by route and kind.
    pub model_tokens: Family<TokenLabels, Counter>,
    /// `eventBus` events by backend and outcome (`accepted`, `failed`).
    pub events: Family<EventLabels, Counter>,
    /// `eventBus` time from request to the bus's acknowledgement (or failure), by backend.
    pub publish_duration: Family<BackendLabels, Histogram, fn() -> Histogram>,
}

impl Default for BackendMetrics {
    fn default() -> Self {
        Self {
            unhealthy_endpoints: Gauge::default(),
            outlier_ejections: Counter::default(),
            model_tokens: Family::default(),
            events: Family::default(),
            publish_duration: Family::new_with_constructor(publish_histogram),
        }
    }
}

fn publish_histogram() -> Histogram {
    Histogram::new([0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0])
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EventLabels {
    pub backend: std::sync::Arc<str>,
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BackendLabels {
    pub backend: std::sync::Arc<str>,
}

/// One `eventBus` backend's counters, resolved once when it is built.
pub struct EventBusCounters {
    accepted: Counter,
    failed: Counter,
    duration: Histogram,
}

impl EventBusCounters {
    pub fn observe(&self, accepted: bool, elapsed: Duration) {
        if accepted { &self.accepted } else { &self.failed }.inc();
        self.duration.observe(elapsed.as_secs_f64());
    }
}

impl BackendMetrics {
    pub fn event_bus(&self, backend: &str) -> EventBusCounters {
        let backend: std::sync::Arc<str> = backend.into();
        let counter = |outcome| self.events.get_or_create(&EventLabels { backend: backend.clone(), outcome }).clone();
        EventBusCounters {
            accepted: counter("accepted"),
            failed: counter("failed"),
            duration: self.publish_duration.get_or_create(&BackendLabels { backend: backend.clone() }).clone(),
        }
    }
}

/// Counters and gauges of one proxy.
pub struct ProxyMetrics {
    /// Responses by status class: 1xx..5xx.
    by_class: [Counter; 5],
    gateway_errors: Family<CodeLabels, Counter>,
    duration: Histogram,
    pub snapshot_version: Gauge,
    pub snapshot_swaps: Counter,
    pub snapshot_rejected: Counter,
    /// Seconds since the last pull that got an answer (proxy mode).
    snapshot_pull_age: Gauge,
    /// When that was (since the proxy started, until the first answer).
    last_pull: std::sync::Mutex<std::time::Instant>,
    pub backends: BackendMetrics,
}

impl ProxyMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let requests = Family::<ClassLabels, Counter>::default();
        let by_class = ["1xx", "2xx", "3xx", "4xx", "5xx"].map(|class| requests.get_or_create(&ClassLabels { class }).clone());
        let metrics = Self {
            by_class,
            gateway_errors: Family::default(),
            duration: Histogram::new([0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]),
            snapshot_version: Gauge::default(),
            snapshot_swaps: Counter::default(),
            snapshot_rejected: Counter::default(),
            snapshot_pull_age: Gauge::default(),
            last_pull: std::sync::Mutex::new(std::time::Instant::now()),
            backends: BackendMetrics::default(),
        };
        let proxy = registry.sub_registry_with_prefix("switchyard_proxy");
        proxy.register("requests", "Responses sent, by status class", requests);
        proxy.register("gateway_errors", "Responses made by the gateway, by X-Ca-Error-Code", metrics.gateway_errors.clone());
        proxy.register("request_duration_seconds", "Time from request to response headers", metrics.duration.clone());
        proxy.register("snapshot_version", "Version of the live routing snapshot", metrics.snapshot_version.clone());
        proxy.register("snapshot_swaps", "Snapshots swapped in", metrics.snapshot_swaps.clone());
        proxy.register("snapshot_rejected", "Snapshots refused as inconsistent", metrics.snapshot_rejected.clone());
        proxy.register(
            "snapshot_pull_age_seconds",
            "Seconds since the last snapshot pull the controller answered (proxy mode)",
            metrics.snapshot_pull_age.clone(),
        );
        proxy.register(
            "unhealthy_endpoints",
            "Endpoints out of rotation after failing active health checks",
            metrics.backends.unhealthy_endpoints.clone(),
        );
        proxy.register("outlier_ejections", "Endpoints ejected by passive outlier detection", metrics.backends.outlier_ejections.clone());
        // Named by the spec without the proxy prefix: `switchyard_model_tokens_total`.
        registry.sub_registry_with_prefix("switchyard").register(
            "model_tokens",
            "Tokens reported in the usage of OpenAI-protocol model responses, by route and kind (prompt, completion)",
            metrics.backends.model_tokens.clone(),
        );
        let switchyard = registry.sub_registry_with_prefix("switchyard");
        switchyard.register(
            "eventbus_events",
            "eventBus events by backend and outcome (accepted, failed)",
            metrics.backends.events.clone(),
        );
        switchyard.register(
            "eventbus_publish_duration_seconds",
            "eventBus time from request to the bus's acknowledgement (or failure)",
            metrics.backends.publish_duration.clone(),
        );
        metrics
    }

    /// A pull got an answer now.
    pub fn pulled_now(&self) {
        *self.last_pull.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = std::time::Instant::now();
        self.snapshot_pull_age.set(0);
    }

    /// Time since the last answered pull (since the proxy started, before the first).
    pub fn pull_age(&self) -> std::time::Duration {
        self.last_pull.lock().unwrap_or_else(std::sync::PoisonError::into_inner).elapsed()
    }

    /// Sets the pull age gauge from the last answered pull.
    pub fn refresh_pull_age(&self) {
        self.snapshot_pull_age.set(i64::try_from(self.pull_age().as_secs()).unwrap_or(i64::MAX));
    }

    pub fn observe(&self, status: u16, error_code: Option<&'static str>, elapsed: Duration) {
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        self.by_class[class].inc();
        if let Some(code) = error_code {
            self.gateway_errors.get_or_create(&CodeLabels { code }).inc();
        }
        self.duration.observe(elapsed.as_secs_f64());
    }
}
