//! A set of monitors, one per distinct source that BackendServices name (a NATS target
//! and subject, a database connection), started and stopped as the sources come and go.
//! Each monitor publishes its state on a watch channel; the owner's loop recompiles with
//! [`Monitors::results`] as input, so `Ready` follows the source through the same compile
//! path as everything else. [`crate::buses`] and [`crate::databases`] say what a source
//! and its state are.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::Hash;
use std::sync::Arc;

use switchyard_api::BackendService;
use switchyard_compile::Resources;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

/// A BackendService, by namespace and name.
pub type Key = (String, String);

/// Starts the monitor of one source, publishing on the sender until it is closed.
pub type StartMonitor<S, T> = Arc<dyn Fn(S, watch::Sender<T>) -> JoinHandle<()> + Send + Sync>;

/// What a kind of monitor watches.
pub trait Source: Clone + Eq + Hash {
    /// What its monitor publishes (`Default`: not known yet).
    type State: Clone + Default + Send + Sync + 'static;

    /// The source `backend` names, when it needs a monitor.
    fn of(backend: &BackendService, resources: &Resources) -> Option<Self>;

    /// Logs that its monitor starts, never with credentials.
    fn log_start(&self);
}

pub struct Monitors<S: Source> {
    start: StartMonitor<S, S::State>,
    running: HashMap<S, Running<S::State>>,
    users: BTreeMap<Key, S>,
}

struct Running<T> {
    latest: watch::Receiver<T>,
    tasks: [JoinHandle<()>; 2],
}

impl<T> Drop for Running<T> {
    fn drop(&mut self) {
        self.tasks.iter().for_each(JoinHandle::abort);
    }
}

impl<S: Source> Monitors<S> {
    pub fn new(start: StartMonitor<S, S::State>) -> Self {
        Self { start, running: HashMap::new(), users: BTreeMap::new() }
    }

    /// Starts the monitors these resources need and stops the others; `changed` is poked
    /// whenever a monitor publishes. True when the set of monitors changed.
    pub fn reconcile(&mut self, resources: &Resources, changed: &Arc<Notify>) -> bool {
        self.users = resources.backend_services.iter().filter_map(|b| Some((key(b), S::of(b, resources)?))).collect();
        let before = self.running.len();
        let needed: HashSet<&S> = self.users.values().collect();
        self.running.retain(|source, _| needed.contains(source));
        let mut grew = false;
        for source in needed {
            if self.running.contains_key(source) {
                continue;
            }
            source.log_start();
            let (tx, latest) = watch::channel(S::State::default());
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

    /// The latest state of every monitored BackendService's source (compile input).
    pub fn results(&self) -> BTreeMap<Key, S::State> {
        self.users
            .iter()
            .filter_map(|(backend, source)| Some((backend.clone(), self.running.get(source)?.latest.borrow().clone())))
            .collect()
    }

    pub fn monitor_count(&self) -> usize {
        self.running.len()
    }
}

fn key(backend: &BackendService) -> Key {
    (backend.metadata.namespace.clone().unwrap_or_else(|| "default".into()), backend.metadata.name.clone().unwrap_or_default())
}
