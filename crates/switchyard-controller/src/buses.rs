//! Bus monitors: one per distinct NATS target and subject that `eventBus` BackendServices
//! name, started and stopped as they come and go. Each publishes its [`BusState`]; the
//! owner's loop recompiles with [`BusMonitors::results`] as input (`Resources::buses`), so
//! `Ready` follows the connection through the same compile path as everything else. The
//! client is in `switchyard-nats`. Monitors run on every controller replica, like the
//! registry watches: each replica compiles the same statuses.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use switchyard_compile::Resources;
use switchyard_compile::bus::{BusSource, BusState, bus_source};
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

type Key = (String, String);

/// Starts the monitor of one source, publishing on the sender until it is closed.
pub type StartMonitor = Arc<dyn Fn(BusSource, watch::Sender<BusState>) -> JoinHandle<()> + Send + Sync>;

/// The real NATS monitor.
pub fn nats_monitors() -> StartMonitor {
    Arc::new(|source, out| tokio::spawn(switchyard_nats::monitor(source, out)))
}

pub struct BusMonitors {
    start: StartMonitor,
    running: HashMap<BusSource, Running>,
    users: BTreeMap<Key, BusSource>,
}

struct Running {
    latest: watch::Receiver<BusState>,
    tasks: [JoinHandle<()>; 2],
}

impl Drop for Running {
    fn drop(&mut self) {
        self.tasks.iter().for_each(JoinHandle::abort);
    }
}

impl BusMonitors {
    pub fn new(start: StartMonitor) -> Self {
        Self { start, running: HashMap::new(), users: BTreeMap::new() }
    }

    /// Starts the monitors these resources need and stops the others; `changed` is poked
    /// whenever a monitor publishes. True when the set of monitors changed.
    pub fn reconcile(&mut self, resources: &Resources, changed: &Arc<Notify>) -> bool {
        self.users = resources.backend_services.iter().filter_map(|b| Some((key(b), bus_source(b, resources)?))).collect();
        let before = self.running.len();
        let needed: std::collections::HashSet<&BusSource> = self.users.values().collect();
        self.running.retain(|source, _| needed.contains(source));
        let mut grew = false;
        for source in needed {
            if self.running.contains_key(source) {
                continue;
            }
            tracing::info!(servers = %source.target.servers.join(","), subject = %source.subject, "starting event bus monitor");
            let (tx, latest) = watch::channel(BusState::default());
            let mut updates = latest.clone();
            let changed = changed.clone();
            let poke = tokio::spawn(async move {
                while updates.changed().await.is_ok() {
                    changed.notify_one();
                }
            });
            let monitor = (self.start)(source.clone(), tx);
            self.running.insert(source.clone(), Running { latest, tasks: [monitor, poke] });
            grew = true;
        }
        grew || self.running.len() != before
    }

    /// The latest state of every NATS `eventBus` BackendService's bus (compile input).
    pub fn results(&self) -> BTreeMap<Key, BusState> {
        self.users
            .iter()
            .filter_map(|(backend, source)| Some((backend.clone(), self.running.get(source)?.latest.borrow().clone())))
            .collect()
    }

    pub fn monitor_count(&self) -> usize {
        self.running.len()
    }
}

fn key(backend: &switchyard_api::BackendService) -> Key {
    (backend.metadata.namespace.clone().unwrap_or_else(|| "default".into()), backend.metadata.name.clone().unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bus(name: &str, subject: &str) -> String {
        format!(
            "apiVersion: switchyard.dev/v1alpha1\nkind: BackendService\nmetadata: {{name: {name}, namespace: shop}}\nspec: {{eventBus: {{nats: {{url: \"nats://127.0.0.1:4222\", subject: {subject}}}, source: /s, type: t}}}}\n"
        )
    }

    /// A monitor that says Ready with the subject as the stream name, at once.
    fn fake() -> (StartMonitor, Arc<std::sync::atomic::AtomicUsize>) {
        let started = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = started.clone();
        let start: StartMonitor = Arc::new(move |source: BusSource, out: watch::Sender<BusState>| {
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::spawn(async move {
                out.send_replace(BusState::Ready { server: "s".into(), stream: source.subject.clone() });
                out.closed().await;
            })
        });
        (start, started)
    }

    #[tokio::test]
    async fn backends_on_the_same_bus_share_a_monitor_and_a_gone_one_stops() {
        let (start, started) = fake();
        let mut monitors = BusMonitors::new(start);
        let changed = Arc::new(Notify::new());
        let mut resources = Resources::default();
        let yaml = [bus("a", "orders.created"), bus("b", "orders.created"), bus("c", "orders.paid")].join("---\n");
        switchyard_compile::manifest::add_yaml(&mut resources, "t", &yaml);
        assert!(monitors.reconcile(&resources, &changed));
        assert_eq!((monitors.monitor_count(), started.load(std::sync::atomic::Ordering::SeqCst)), (2, 2));
        tokio::time::timeout(std::time::Duration::from_secs(2), changed.notified()).await.expect("a publish pokes the loop");
        tokio::task::yield_now().await;
        let results = monitors.results();
        assert_eq!(results.len(), 3);
        assert!(matches!(&results[&("shop".into(), "c".into())], BusState::Ready { stream, .. } if stream == "orders.paid"));
        let mut fewer = Resources::default();
        switchyard_compile::manifest::add_yaml(&mut fewer, "t", &bus("a", "orders.created"));
        assert!(monitors.reconcile(&fewer, &changed));
        assert_eq!((monitors.monitor_count(), monitors.results().len()), (1, 1));
        assert!(!monitors.reconcile(&fewer, &changed), "nothing to change");
    }
}
