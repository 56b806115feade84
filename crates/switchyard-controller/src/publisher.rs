//! Publishes compiled snapshots: numbers them, hands them to every subscriber (the
//! in-process proxy, the snapshot server's long-polls), keeps the deltas between the last
//! few (what a proxy that holds one of them is sent) and serializes a whole snapshot once,
//! when the first proxy that needs all of it asks.

use std::collections::VecDeque;
use std::hash::{BuildHasher, Hasher};
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use switchyard_compile::snapshot::Snapshot;
use switchyard_compile::snapshot::delta::SnapshotDelta;
use tokio::sync::watch;

/// How many deltas are kept: a proxy more versions behind than this gets the whole
/// snapshot. The items they carry are bounded too ([`Publisher::publish`]).
const KEPT_DELTAS: usize = 32;

/// One published snapshot and its wire form.
#[derive(Debug)]
pub struct Published {
    pub snapshot: Arc<Snapshot>,
    /// JSON, serialized once and shared by every proxy that pulls it; see [`Self::json`].
    json: OnceLock<Bytes>,
}

impl Published {
    fn new(snapshot: Snapshot) -> Self {
        Self { snapshot: Arc::new(snapshot), json: OnceLock::new() }
    }

    /// The JSON if it is made already (see [`Self::json`]): an async reader that finds
    /// it missing waits off its runtime's threads.
    pub fn json_if_made(&self) -> Option<&Bytes> {
        self.json.get()
    }

    /// The snapshot as JSON, made by the first reader that needs it (45-65 ms at 100,000
    /// routes, docs/benchmarks.md): proxies that hold a recent version are sent a delta,
    /// so a change need not pay for it. A second reader waits for that one
    /// serialization, never starts another.
    pub fn json(&self) -> &Bytes {
        self.json.get_or_init(|| {
            let mut json = serde_json::to_vec(&*self.snapshot).expect("snapshots always serialize");
            // The buffer grew by doubling; it lives as long as the snapshot does.
            json.shrink_to_fit();
            Bytes::from(json)
        })
    }
}

pub struct Publisher {
    tx: watch::Sender<Option<Arc<Published>>>,
    /// This publisher's stream (see [`Self::stream`]).
    stream: String,
    /// The next version, and the deltas that led to the current one (oldest first, each
    /// step's `base` the previous step's `version`). Locked for the whole of a publish, so
    /// versions, deltas and the current snapshot move together.
    history: Mutex<History>,
}

struct History {
    next_version: u64,
    deltas: VecDeque<Arc<SnapshotDelta>>,
}

impl Default for Publisher {
    fn default() -> Self {
        Self::new()
    }
}

impl Publisher {
    /// Versions start at the wall clock in milliseconds, so a restarted controller
    /// keeps counting upwards from where a proxy's cached version likely is.
    pub fn new() -> Self {
        let start = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_millis() as u64);
        Self::starting_at(start)
    }

    pub fn starting_at(version: u64) -> Self {
        let (tx, _) = watch::channel(None);
        let history = History { next_version: version, deltas: VecDeque::new() };
        Self { tx, stream: new_stream_id(), history: Mutex::new(history) }
    }

    /// A random name for this publisher's run of versions. Version numbers alone do not
    /// say which content they are: another controller replica, or this controller after
    /// a restart, numbers its own snapshots. A delta is sent only to a proxy that names
    /// this stream, so it is never applied to another stream's snapshot of that number.
    pub fn stream(&self) -> &str {
        &self.stream
    }

    /// Publishes the snapshot unless its content equals the current one. Returns the
    /// new version, or None when nothing changed.
    pub fn publish(&self, mut snapshot: Snapshot) -> Option<u64> {
        let mut history = self.history.lock().unwrap_or_else(|e| e.into_inner());
        snapshot.version = history.next_version;
        let current = self.tx.borrow().clone();
        let delta = match &current {
            Some(current) => Some(SnapshotDelta::between(&current.snapshot, &snapshot)?),
            None => None,
        };
        history.next_version += 1;
        match delta {
            Some(delta) => history.keep(delta, items(&snapshot)),
            None => history.deltas.clear(),
        }
        let version = snapshot.version;
        self.tx.send_replace(Some(Arc::new(Published::new(snapshot))));
        Some(version)
    }

    pub fn current(&self) -> Option<Arc<Published>> {
        self.tx.borrow().clone()
    }

    pub fn subscribe(&self) -> watch::Receiver<Option<Arc<Published>>> {
        self.tx.subscribe()
    }

    /// The deltas from version `from` to version `to`, in order; `None` when they are no
    /// longer (or never were) all kept.
    pub fn deltas(&self, from: u64, to: u64) -> Option<Vec<Arc<SnapshotDelta>>> {
        let history = self.history.lock().unwrap_or_else(|e| e.into_inner());
        let start = history.deltas.iter().position(|d| d.base == from)?;
        let mut steps = Vec::new();
        for step in history.deltas.range(start..) {
            steps.push(step.clone());
            if step.version == to {
                return Some(steps);
            }
        }
        None
    }
}

impl History {
    /// Keeps `delta`, dropping the oldest ones beyond [`KEPT_DELTAS`] or beyond as many
    /// items as the snapshot itself has (at least 1,024): what is kept never costs much
    /// more memory than one more snapshot, and a proxy for which the deltas would be
    /// larger than the snapshot is sent the snapshot.
    fn keep(&mut self, delta: SnapshotDelta, snapshot_items: usize) {
        let budget = snapshot_items.max(1024);
        self.deltas.push_back(Arc::new(delta));
        let mut carried: usize = self.deltas.iter().map(|d| d.carried().unwrap_or(0)).sum();
        while self.deltas.len() > KEPT_DELTAS || (carried > budget && self.deltas.len() > 1) {
            let dropped = self.deltas.pop_front().expect("more than one delta");
            carried -= dropped.carried().unwrap_or(0);
        }
    }
}

/// The items of all of a snapshot's lists.
fn items(s: &Snapshot) -> usize {
    s.routes.len()
        + s.backends.len()
        + s.apps.len()
        + s.dns_records.len()
        + s.vpc_authorizations.len()
        + s.host_owners.len()
        + s.certificates.len()
}

/// 64 random bits as hex, from the standard library's per-process random hash keys (no
/// randomness crate for a name that only has to differ between runs).
fn new_stream_id() -> String {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos()));
    hasher.write_u32(std::process::id());
    format!("{:016x}", hasher.finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_compile::snapshot::{Backend, BackendKind};

    fn snapshot(body: &str) -> Snapshot {
        let kind = BackendKind::Mock { status: 200, headers: vec![], body: body.into() };
        Snapshot { backends: vec![Backend::with_defaults("d/b", kind)], ..Snapshot::default() }
    }

    #[test]
    fn an_unchanged_snapshot_is_not_published_again() {
        let publisher = Publisher::starting_at(7);
        assert_eq!(publisher.publish(snapshot("a")), Some(7));
        assert_eq!(publisher.publish(snapshot("a")), None);
        assert_eq!(publisher.publish(snapshot("b")), Some(8));
        let current = publisher.current().unwrap();
        assert_eq!(current.snapshot.version, 8);
        let wire: Snapshot = serde_json::from_slice(current.json()).unwrap();
        assert_eq!(wire, *current.snapshot);
    }

    #[test]
    fn the_json_is_made_once_on_first_use_and_decodes_to_the_snapshot() {
        let published = Published::new(snapshot("a"));
        assert!(published.json_if_made().is_none(), "nothing serialized before it is asked for");
        let json = published.json().clone();
        assert_eq!(published.json_if_made(), Some(&json));
        assert!(std::ptr::eq(published.json().as_ptr(), json.as_ptr()), "the same bytes, not a second serialization");
        let wire: Snapshot = serde_json::from_slice(&json).unwrap();
        assert_eq!(wire, *published.snapshot);
    }

    #[test]
    fn each_publish_keeps_the_delta_from_the_one_before_and_a_chain_spans_them() {
        let publisher = Publisher::starting_at(1);
        publisher.publish(snapshot("a"));
        assert!(publisher.deltas(0, 1).is_none(), "the first snapshot has no delta");
        let first = publisher.current().unwrap().snapshot.clone();
        publisher.publish(snapshot("b"));
        publisher.publish(snapshot("c"));
        let chain = publisher.deltas(1, 3).unwrap();
        assert_eq!(chain.iter().map(|d| (d.base, d.version)).collect::<Vec<_>>(), [(1, 2), (2, 3)]);
        let chain = switchyard_compile::snapshot::delta::DeltaChain {
            stream: publisher.stream().into(),
            steps: chain.iter().map(|d| (**d).clone()).collect(),
        };
        assert_eq!(chain.apply(1, &first).unwrap(), *publisher.current().unwrap().snapshot);
        assert_eq!(publisher.deltas(2, 3).unwrap().len(), 1);
        assert!(publisher.deltas(3, 4).is_none(), "no version 4 yet");
        assert!(publisher.deltas(9, 3).is_none(), "never published");
    }

    #[test]
    fn old_deltas_are_dropped_by_count_and_by_the_items_they_carry() {
        let publisher = Publisher::starting_at(1);
        for i in 0..=KEPT_DELTAS + 5 {
            publisher.publish(snapshot(&i.to_string()));
        }
        let newest = publisher.current().unwrap().snapshot.version;
        assert!(publisher.deltas(newest - KEPT_DELTAS as u64, newest).is_some());
        assert!(publisher.deltas(newest - KEPT_DELTAS as u64 - 1, newest).is_none(), "beyond the kept count");
        // A change of 2,000 backends carries more items than the budget of the snapshot
        // it leads to: it is kept alone, the older deltas go.
        let many = |body: &str| Snapshot {
            backends: (0..2000)
                .map(|i| Backend::with_defaults(format!("d/b{i}"), BackendKind::Mock { status: 200, headers: vec![], body: body.into() }))
                .collect(),
            ..Snapshot::default()
        };
        publisher.publish(many("x"));
        publisher.publish(many("y"));
        let newest = publisher.current().unwrap().snapshot.version;
        assert_eq!(publisher.deltas(newest - 1, newest).unwrap().len(), 1);
        assert!(publisher.deltas(newest - 2, newest).is_none());
    }

    #[test]
    fn every_publisher_names_its_own_stream() {
        let (a, b) = (Publisher::starting_at(1), Publisher::starting_at(1));
        assert_eq!(a.stream().len(), 16);
        assert_ne!(a.stream(), b.stream(), "two controllers numbering from 1 are told apart");
    }
}
