//! Proxy metrics. Label values come from configuration only (route and backend ids of
//! the snapshot, never request data) and are resolved to counters once per runtime
//! ([`RuntimeCounters`]): a backend's when the runtime is built, a route's at its first
//! answer (a series set is ~2 KB, and most routes of a 100,000-route table may see no
//! traffic), so the request path only increments atomics. Requests no route matched count
//! under `route=""`. The one exception is a gateway error's code: a family lookup, on
//! error responses only.

use std::sync::{Arc, OnceLock};

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::exchange::Exchange;

/// `switchyard_proxy_requests_total`: status class first, so the series read as before
/// with the route and backend added.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    class: &'static str,
    route: Arc<str>,
    backend: Arc<str>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: Arc<str>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    code: &'static str,
    route: Arc<str>,
}

const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

fn duration_histogram() -> Histogram {
    Histogram::new([0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0])
}

/// The families of per-route and per-backend traffic, shared by every runtime (clones
/// share the series).
#[derive(Clone)]
pub struct TrafficFamilies {
    requests: Family<RequestLabels, Counter>,
    duration: Family<RouteLabels, Histogram, fn() -> Histogram>,
    errors: Family<ErrorLabels, Counter>,
    upstream_duration: Family<BackendLabels, Histogram, fn() -> Histogram>,
    retries: Family<BackendLabels, Counter>,
    /// Upstream connections dialled, and pooled ones reused, by backend.
    pub connections_opened: Family<BackendLabels, Counter>,
    pub connections_reused: Family<BackendLabels, Counter>,
    /// Endpoints failing active health checks now, by backend.
    pub unhealthy_by_backend: Family<BackendLabels, Gauge>,
    /// WebSocket handshakes the backend accepted (`101`), and tunnels open now.
    pub websocket_upgrades: Family<BackendLabels, Counter>,
    pub websocket_open: Family<BackendLabels, Gauge>,
}

impl Default for TrafficFamilies {
    fn default() -> Self {
        Self {
            requests: Family::default(),
            duration: Family::new_with_constructor(duration_histogram),
            errors: Family::default(),
            upstream_duration: Family::new_with_constructor(duration_histogram),
            retries: Family::default(),
            connections_opened: Family::default(),
            connections_reused: Family::default(),
            unhealthy_by_backend: Family::default(),
            websocket_upgrades: Family::default(),
            websocket_open: Family::default(),
        }
    }
}

/// One route's label and, from its first answer in this runtime on, its series.
struct RouteCounters {
    id: Arc<str>,
    series: OnceLock<Box<RouteSeries>>,
}

/// One route's series.
struct RouteSeries {
    /// Per backend the route may choose (index into the runtime's backends), by class.
    by_backend: Vec<(usize, [Counter; 5])>,
    /// Matched, but no backend chosen (refused by auth, shaping).
    no_backend: [Counter; 5],
    duration: Histogram,
}

/// One backend's series.
struct BackendCounters {
    upstream_duration: Histogram,
    retries: Counter,
}

/// Every series a runtime's requests count into, resolved once per snapshot build.
#[derive(Default)]
pub struct RuntimeCounters {
    routes: Vec<RouteCounters>,
    backends: Vec<BackendCounters>,
    /// The `backend` label of each of the runtime's backends (by index).
    backend_ids: Vec<Arc<str>>,
}

impl TrafficFamilies {
    fn classes(&self, route: &Arc<str>, backend: &Arc<str>) -> [Counter; 5] {
        CLASSES.map(|class| self.requests.get_or_create(&RequestLabels { class, route: route.clone(), backend: backend.clone() }).clone())
    }

    /// The series of `snapshot`'s backends, and its routes' labels (their series come at
    /// their first answer, [`Self::route_series`]).
    pub fn resolve(&self, snapshot: &switchyard_compile::snapshot::Snapshot) -> RuntimeCounters {
        let backend_ids: Vec<Arc<str>> = snapshot.backends.iter().map(|b| Arc::from(b.id.as_str())).collect();
        let routes =
            snapshot.routes.iter().map(|route| RouteCounters { id: Arc::from(route.id.as_str()), series: OnceLock::new() }).collect();
        let backends = backend_ids
            .iter()
            .map(|backend| {
                let labels = BackendLabels { backend: backend.clone() };
                BackendCounters {
                    upstream_duration: self.upstream_duration.get_or_create(&labels).clone(),
                    retries: self.retries.get_or_create(&labels).clone(),
                }
            })
            .collect();
        RuntimeCounters { routes, backends, backend_ids }
    }

    /// A route's series (each backend it may choose, by class; none chosen; its duration).
    fn route_series(&self, route: &switchyard_compile::snapshot::Route, id: &Arc<str>, backend_ids: &[Arc<str>]) -> RouteSeries {
        let mut by_backend: Vec<(usize, [Counter; 5])> = Vec::with_capacity(route.backends.len());
        for b in &route.backends {
            if let Some(backend) = backend_ids.get(b.backend).filter(|_| by_backend.iter().all(|(i, _)| *i != b.backend)) {
                by_backend.push((b.backend, self.classes(id, backend)));
            }
        }
        RouteSeries {
            no_backend: self.classes(id, &Arc::from("")),
            duration: self.duration.get_or_create(&RouteLabels { route: id.clone() }).clone(),
            by_backend,
        }
    }
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
    /// Per route and per backend traffic.
    pub traffic: TrafficFamilies,
}

impl Default for BackendMetrics {
    fn default() -> Self {
        Self {
            unhealthy_endpoints: Gauge::default(),
            outlier_ejections: Counter::default(),
            model_tokens: Family::default(),
            events: Family::default(),
            publish_duration: Family::new_with_constructor(publish_histogram),
            traffic: TrafficFamilies::default(),
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
    /// Responses no route matched (or with no snapshot yet), by status class.
    unmatched: [Counter; 5],
    unmatched_duration: Histogram,
    /// `route=""`.
    no_route: Arc<str>,
    pub snapshot_version: Gauge,
    pub snapshot_swaps: Counter,
    pub snapshot_rejected: Counter,
    /// Seconds since the last pull that got an answer (proxy mode).
    snapshot_pull_age: Gauge,
    /// When that was (since the proxy started, until the first answer).
    last_pull: std::sync::Mutex<std::time::Instant>,
    /// Bytes of the last snapshot pulled.
    pub snapshot_bytes: Gauge,
    /// Snapshots built from pulled deltas, and deltas that did not fit the live snapshot.
    pub snapshot_deltas: Counter,
    pub snapshot_delta_misfits: Counter,
    /// Runtime builds and swaps.
    pub apply_duration: Histogram,
    pub backends: BackendMetrics,
}

impl ProxyMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let backends = BackendMetrics::default();
        let traffic = &backends.traffic;
        let no_route: Arc<str> = Arc::from("");
        let metrics = Self {
            unmatched: traffic.classes(&no_route, &no_route),
            unmatched_duration: traffic.duration.get_or_create(&RouteLabels { route: no_route.clone() }).clone(),
            no_route,
            snapshot_version: Gauge::default(),
            snapshot_swaps: Counter::default(),
            snapshot_rejected: Counter::default(),
            snapshot_pull_age: Gauge::default(),
            last_pull: std::sync::Mutex::new(std::time::Instant::now()),
            snapshot_bytes: Gauge::default(),
            snapshot_deltas: Counter::default(),
            snapshot_delta_misfits: Counter::default(),
            apply_duration: Histogram::new([0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0]),
            backends: backends.clone(),
        };
        let traffic = &metrics.backends.traffic;
        let proxy = registry.sub_registry_with_prefix("switchyard_proxy");
        proxy.register(
            "requests",
            "Responses sent, by status class, route and backend (\"\" when none matched or none was chosen)",
            traffic.requests.clone(),
        );
        proxy.register("gateway_errors", "Responses made by the gateway, by X-Ca-Error-Code and route", traffic.errors.clone());
        proxy.register("request_duration_seconds", "Time from request to response headers, by route", traffic.duration.clone());
        proxy.register(
            "upstream_duration_seconds",
            "Time from the first upstream attempt to the last one's response headers, by backend",
            traffic.upstream_duration.clone(),
        );
        proxy.register("retries", "Upstream attempts after the first, by backend", traffic.retries.clone());
        proxy.register("upstream_connections_opened", "Upstream connections dialled, by backend", traffic.connections_opened.clone());
        proxy.register(
            "websocket_upgrades",
            "WebSocket handshakes a backend accepted (101), each then tunnelled, by backend",
            traffic.websocket_upgrades.clone(),
        );
        proxy.register("websocket_open", "WebSocket tunnels open now, by backend", traffic.websocket_open.clone());
        proxy.register(
            "upstream_connections_reused",
            "Requests sent on a pooled upstream connection, by backend",
            traffic.connections_reused.clone(),
        );
        proxy.register(
            "backend_unhealthy_endpoints",
            "Endpoints out of rotation after failing active health checks, by backend",
            traffic.unhealthy_by_backend.clone(),
        );
        proxy.register(
            "snapshot_bytes",
            "Size of the last whole snapshot received (proxy mode: as pulled, JSON; deltas do not change it)",
            metrics.snapshot_bytes.clone(),
        );
        proxy.register(
            "snapshot_deltas",
            "Snapshots built from the deltas pulled since the live one instead of pulled whole (proxy mode)",
            metrics.snapshot_deltas.clone(),
        );
        proxy.register(
            "snapshot_delta_misfits",
            "Pulled deltas that did not fit the live snapshot, after which the whole snapshot was fetched (proxy mode)",
            metrics.snapshot_delta_misfits.clone(),
        );
        proxy.register(
            "snapshot_apply_duration_seconds",
            "Time to build a runtime from a snapshot and swap it in",
            metrics.apply_duration.clone(),
        );
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

    /// Counts one response (at its headers): by route, backend and class, the route's
    /// duration, the gateway error, and the backend's upstream time and retries.
    /// `runtime`: the series of the runtime the request ran on and its routes (None when
    /// none was live).
    pub fn observe(
        &self,
        runtime: Option<(&RuntimeCounters, &[switchyard_compile::snapshot::Route])>,
        exchange: &Exchange,
        status: u16,
        error_code: Option<&'static str>,
        elapsed: Duration,
    ) {
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        let counters = runtime.map(|(counters, _)| counters);
        let route =
            runtime.zip(exchange.route()).and_then(|((counters, routes), i)| Some((counters.routes.get(i)?, routes.get(i)?, counters)));
        match route {
            Some((route, spec, counters)) => {
                let series =
                    route.series.get_or_init(|| Box::new(self.backends.traffic.route_series(spec, &route.id, &counters.backend_ids)));
                let backend = exchange.backend().and_then(|b| series.by_backend.iter().find(|(i, _)| *i == b));
                backend.map_or(&series.no_backend, |(_, by_class)| by_class)[class].inc();
                series.duration.observe(elapsed.as_secs_f64());
            }
            None => {
                self.unmatched[class].inc();
                self.unmatched_duration.observe(elapsed.as_secs_f64());
            }
        }
        if let Some(code) = error_code {
            let route = route.map_or(&self.no_route, |(r, ..)| &r.id).clone();
            self.backends.traffic.errors.get_or_create(&ErrorLabels { code, route }).inc();
        }
        if let Some(backend) = counters.zip(exchange.backend()).and_then(|(c, i)| c.backends.get(i)) {
            if let Some(upstream) = exchange.upstream_time() {
                backend.upstream_duration.observe(upstream.as_secs_f64());
            }
            let retries = exchange.retries();
            if retries > 0 {
                backend.retries.inc_by(u64::from(retries));
            }
        }
    }
}
