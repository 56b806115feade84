//! Discovery runners: one watch per distinct registry source (a Nacos service, a
//! ZooKeeper path), started, replaced and stopped as `registry` BackendServices come, change
//! and go. Several BackendServices naming the same source share its watch.
//!
//! Each watch publishes its latest [`Discovered`] on a `watch` channel and pokes
//! [`Discovery::changed`]; the owner's loop then recompiles with [`Discovery::results`] as
//! input (`Resources::registry`), so what a registry says reaches statuses and snapshots by
//! the same compile path as everything else. The registry clients live in their own
//! crates (`switchyard-nacos`, `switchyard-zookeeper`).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use switchyard_compile::{Discovered, RegistrySource, Resources, SyncState, describe_registry, registry_source};
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use crate::metrics::RegistryMetrics;

type Key = (String, String);

/// How long a starting controller waits for the registries' first reads before its first
/// publish (a registry that does not answer must not hold up everything else for long).
pub const FIRST_READ_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

/// Starts the watch of one source, publishing on the sender until it is closed.
pub type StartWatch = Arc<dyn Fn(RegistrySource, watch::Sender<Discovered>) -> JoinHandle<()> + Send + Sync>;

/// The real registry clients.
pub fn registry_clients() -> StartWatch {
    Arc::new(|source, out| match source {
        RegistrySource::Nacos(nacos) => tokio::spawn(switchyard_nacos::watch(nacos, out)),
        RegistrySource::ZooKeeper(zk) => tokio::spawn(switchyard_zookeeper::watch(zk, out)),
    })
}

/// Every running watch and which BackendServices use it.
pub struct Discovery {
    start: StartWatch,
    running: HashMap<RegistrySource, Running>,
    /// The source each `registry` BackendService uses.
    users: BTreeMap<Key, RegistrySource>,
    /// Poked whenever a watch publishes.
    pub changed: Arc<Notify>,
    metrics: Option<Arc<RegistryMetrics>>,
    report: RegistryReport,
    /// What each BackendService was last given: while the watch of its changed source (new
    /// credentials, another server list) has not read yet, the old view keeps serving
    /// instead of dropping its endpoints.
    last_given: BTreeMap<Key, Discovered>,
    /// The `eventBus` monitors: I/O feeding compile like the registry watches, woken on
    /// the same `changed`.
    buses: crate::buses::BusMonitors,
    /// The `dataService` database monitors, likewise.
    databases: crate::databases::DatabaseMonitors,
}

/// What every watch last saw, for `/config_dump` (updated on every [`Discovery::results`]).
#[derive(Clone, Default)]
pub struct RegistryReport(Arc<std::sync::Mutex<Vec<serde_json::Value>>>);

impl RegistryReport {
    pub fn get(&self) -> Vec<serde_json::Value> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    fn set(&self, report: Vec<serde_json::Value>) {
        *self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = report;
    }
}

struct Running {
    latest: watch::Receiver<Discovered>,
    /// The client task and the task that turns its publications into `changed` pokes.
    tasks: [JoinHandle<()>; 2],
    /// Malformed entries already added to the metric.
    malformed_counted: u64,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.tasks.iter().for_each(JoinHandle::abort);
    }
}

impl Discovery {
    pub fn new(start: StartWatch) -> Self {
        Self {
            start,
            running: HashMap::new(),
            users: BTreeMap::new(),
            changed: Arc::new(Notify::new()),
            metrics: None,
            report: RegistryReport::default(),
            last_given: BTreeMap::new(),
            buses: crate::buses::BusMonitors::new(crate::buses::nats_monitors()),
            databases: crate::databases::DatabaseMonitors::new(crate::databases::sql_monitors()),
        }
    }

    /// Uses `start` for the event bus monitors (tests).
    pub fn with_bus_monitors(self, start: crate::buses::StartMonitor) -> Self {
        Self { buses: crate::buses::BusMonitors::new(start), ..self }
    }

    /// The latest state of every NATS `eventBus` BackendService's bus (compile input
    /// `Resources::buses`).
    pub fn bus_results(&self) -> BTreeMap<Key, switchyard_compile::bus::BusState> {
        self.buses.results()
    }

    /// Uses `start` for the database monitors (tests).
    pub fn with_database_monitors(self, start: crate::databases::StartMonitor) -> Self {
        Self { databases: crate::databases::DatabaseMonitors::new(start), ..self }
    }

    /// The latest ping result of every monitored `dataService` BackendService's database
    /// (compile input `Resources::databases`).
    pub fn database_results(&self) -> BTreeMap<Key, switchyard_compile::database::DatabaseState> {
        self.databases.results()
    }

    /// Reports watch state, sync times, instances and malformed entries here.
    pub fn with_metrics(self, metrics: Arc<RegistryMetrics>) -> Self {
        Self { metrics: Some(metrics), ..self }
    }

    /// Starts the watches these resources need and stops the ones they no longer do. A
    /// source that changed (another path, new credentials) is a new watch; its old one
    /// stops. True when the set of watches changed.
    pub fn reconcile(&mut self, resources: &Resources) -> bool {
        let buses_changed = self.buses.reconcile(resources, &self.changed);
        let databases_changed = self.databases.reconcile(resources, &self.changed);
        self.reconcile_registries(resources) || buses_changed || databases_changed
    }

    fn reconcile_registries(&mut self, resources: &Resources) -> bool {
        self.users = resources.backend_services.iter().filter_map(|b| Some((key(b), registry_source(b, resources)?))).collect();
        let before = self.running.len();
        let needed: std::collections::HashSet<&RegistrySource> = self.users.values().collect();
        self.running.retain(|source, _| needed.contains(source));
        let mut changed = self.running.len() != before;
        for source in needed {
            if self.running.contains_key(source) {
                continue;
            }
            tracing::info!(source = %describe_registry(source), "starting registry watch");
            self.running.insert(source.clone(), self.spawn(source.clone()));
            changed = true;
        }
        if let Some(metrics) = &self.metrics {
            metrics.forget_except(self.running.keys());
        }
        changed
    }

    fn spawn(&self, source: RegistrySource) -> Running {
        let (tx, latest) = watch::channel(Discovered::default());
        let mut updates = latest.clone();
        let changed = self.changed.clone();
        let poke = tokio::spawn(async move {
            while updates.changed().await.is_ok() {
                changed.notify_one();
            }
        });
        let client = (self.start)(source, tx);
        Running { latest, tasks: [client, poke], malformed_counted: 0 }
    }

    /// A handle on the report of every watch (for the admin views).
    pub fn report_handle(&self) -> RegistryReport {
        self.report.clone()
    }

    /// The latest view of every `registry` BackendService's source (compile input). A
    /// source that has not been read yet gives the backend's previous view, if it had one.
    pub fn results(&mut self) -> BTreeMap<Key, Discovered> {
        self.observe();
        self.report.set(self.report());
        let mut given = BTreeMap::new();
        for (backend, source) in &self.users {
            let Some(running) = self.running.get(source) else { continue };
            let latest = running.latest.borrow();
            let view = match (&latest.sync, self.last_given.remove(backend)) {
                (SyncState::Pending, Some(previous)) => previous,
                _ => latest.clone(),
            };
            given.insert(backend.clone(), view);
        }
        self.last_given = given.clone();
        given
    }

    /// Waits until every watch has read its source once (or failed to), at most `limit`:
    /// a controller that has just started publishes its first snapshot with the registries'
    /// instances in it rather than without (which would be a burst of 503s on every proxy).
    pub async fn first_reads(&self, limit: std::time::Duration) {
        let mut pending: Vec<watch::Receiver<Discovered>> = self.running.values().map(|r| r.latest.clone()).collect();
        let all_read = async {
            for rx in &mut pending {
                let _ = rx.wait_for(|d| d.sync != SyncState::Pending).await;
            }
        };
        let _ = tokio::time::timeout(limit, all_read).await;
    }

    /// Brings the metrics up to date with every watch.
    fn observe(&mut self) {
        let Some(metrics) = &self.metrics else { return };
        for (source, running) in &mut self.running {
            let latest = running.latest.borrow();
            let new_malformed = latest.malformed_total.saturating_sub(running.malformed_counted);
            running.malformed_counted = latest.malformed_total;
            metrics.observe(source, &latest, new_malformed);
        }
    }

    /// How many watches run (for tests and `/status`).
    pub fn watch_count(&self) -> usize {
        self.running.len()
    }

    /// Each running watch, described, with its state and what it discovered, sorted by
    /// source.
    pub fn report(&self) -> Vec<serde_json::Value> {
        let mut watches: Vec<serde_json::Value> = self
            .running
            .iter()
            .map(|(source, running)| {
                let latest = running.latest.borrow();
                let state = match &latest.sync {
                    SyncState::Pending => "Pending",
                    SyncState::Synced { .. } => "Synced",
                    SyncState::Unreachable { .. } => "Unreachable",
                };
                let instances: Vec<String> =
                    latest.instances.iter().map(|i| format!("{}://{}:{} weight {}", i.scheme.as_str(), i.host, i.port, i.weight)).collect();
                let backends: Vec<String> =
                    self.users.iter().filter(|(_, s)| *s == source).map(|((ns, name), _)| format!("{ns}/{name}")).collect();
                serde_json::json!({
                    "source": describe_registry(source),
                    "backends": backends,
                    "state": state,
                    "lastSync": latest.sync.last_sync().map(switchyard_compile::discovered::rfc3339),
                    "instances": instances,
                    "skipped": latest.skipped.iter().map(|s| format!("{}: {}", s.entry, s.why)).collect::<Vec<_>>(),
                })
            })
            .collect();
        watches.sort_by(|a, b| a["source"].as_str().cmp(&b["source"].as_str()));
        watches
    }
}

fn key(backend: &switchyard_api::BackendService) -> Key {
    (backend.metadata.namespace.clone().unwrap_or_else(|| "default".into()), backend.metadata.name.clone().unwrap_or_default())
}

#[cfg(test)]
mod tests;
