//! Publishes compiled snapshots: numbers them, serializes each once, and hands them to
//! every subscriber (the in-process proxy, the snapshot server's long-polls).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use switchyard_compile::snapshot::Snapshot;
use tokio::sync::watch;

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

    /// The snapshot as JSON. [`Publisher::publish`] serializes it right after handing
    /// the snapshot to its subscribers, so an in-process proxy does not wait for the
    /// JSON (45 ms at 100,000 routes, docs/benchmarks.md); a reader that comes before
    /// that is done waits for the one serialization, never starts a second.
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
    next_version: AtomicU64,
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
        Self { tx, next_version: AtomicU64::new(version) }
    }

    /// Publishes the snapshot unless its content equals the current one. Returns the
    /// new version, or None when nothing changed.
    pub fn publish(&self, mut snapshot: Snapshot) -> Option<u64> {
        if let Some(current) = self.tx.borrow().as_ref()
            && current.snapshot.same_content(&snapshot)
        {
            return None;
        }
        snapshot.version = self.next_version.fetch_add(1, Ordering::Relaxed);
        let version = snapshot.version;
        let published = Arc::new(Published::new(snapshot));
        self.tx.send_replace(Some(published.clone()));
        published.json();
        Some(version)
    }

    pub fn current(&self) -> Option<Arc<Published>> {
        self.tx.borrow().clone()
    }

    pub fn subscribe(&self) -> watch::Receiver<Option<Arc<Published>>> {
        self.tx.subscribe()
    }
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
}
