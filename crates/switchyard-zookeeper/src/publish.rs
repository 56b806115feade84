//! Turns reads and connection trouble into updates of the watch's [`Discovered`].

use std::collections::HashSet;
use std::time::SystemTime;

use switchyard_compile::{Discovered, Instance, Skipped, SyncState};
use tokio::sync::watch;

/// One full read of the instances znode.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub instances: Vec<Instance>,
    pub skipped: Vec<Skipped>,
    /// Identities (full child name and why) of the malformed entries, to count only the
    /// ones not seen in the previous read.
    pub malformed: HashSet<(String, String)>,
}

/// Publishes to the watch's channel; lives as long as the watch (across sessions), so a
/// malformed entry is counted once however often it is re-read or the session renewed.
pub struct Publisher<'a> {
    out: &'a watch::Sender<Discovered>,
    malformed_last_read: HashSet<(String, String)>,
}

impl<'a> Publisher<'a> {
    pub fn new(out: &'a watch::Sender<Discovered>) -> Self {
        Self { out, malformed_last_read: HashSet::new() }
    }

    /// After a successful full read: the instances become exactly what was read.
    pub fn synced(&mut self, snapshot: Snapshot) {
        let Snapshot { mut instances, mut skipped, malformed } = snapshot;
        let newly_malformed = malformed.difference(&self.malformed_last_read).count() as u64;
        self.malformed_last_read = malformed;
        sort_and_dedup(&mut instances);
        skipped.sort();
        skipped.dedup();
        self.out.send_modify(|discovered| {
            discovered.instances = instances;
            discovered.skipped = skipped;
            discovered.sync = SyncState::Synced { at: SystemTime::now() };
            discovered.malformed_total += newly_malformed;
        });
    }

    /// The registry does not answer: keep the last instances (a registry outage must not
    /// take the backends down) and say since when they are known.
    pub fn unreachable(&self, error: &str) {
        self.out.send_if_modified(|discovered| {
            let sync = SyncState::Unreachable { error: error.to_owned(), last_sync: discovered.sync.last_sync() };
            let changed = discovered.sync != sync;
            discovered.sync = sync;
            changed
        });
    }
}

/// Sorted, one entry per address: the same `host:port` registered twice (two ids, or a
/// re-registration racing the old ephemeral node) is one endpoint, at the larger weight.
fn sort_and_dedup(instances: &mut Vec<Instance>) {
    instances.sort_by(|a, b| {
        (a.scheme, &a.host, a.port, std::cmp::Reverse(a.weight)).cmp(&(b.scheme, &b.host, b.port, std::cmp::Reverse(b.weight)))
    });
    instances.dedup_by(|later, kept| (later.scheme, &later.host, later.port) == (kept.scheme, &kept.host, kept.port));
}

#[cfg(test)]
mod tests {
    use switchyard_compile::InstanceScheme;

    use super::*;

    fn instance(host: &str, port: u16, weight: u32) -> Instance {
        Instance { scheme: InstanceScheme::Http, host: host.to_owned(), port, weight }
    }

    fn malformed(child: &str) -> (String, String) {
        (child.to_owned(), "bad".to_owned())
    }

    #[test]
    fn instances_are_sorted_and_one_per_address_at_the_larger_weight() {
        let mut instances = vec![instance("b", 1, 1), instance("a", 2, 1), instance("a", 2, 9), instance("a", 1, 3)];
        sort_and_dedup(&mut instances);
        assert_eq!(instances, vec![instance("a", 1, 3), instance("a", 2, 9), instance("b", 1, 1)]);
    }

    #[test]
    fn malformed_entries_are_counted_when_first_seen() {
        let (out, receiver) = watch::channel(Discovered::default());
        let mut publisher = Publisher::new(&out);
        let read = |names: &[&str]| Snapshot { malformed: names.iter().map(|n| malformed(n)).collect(), ..Snapshot::default() };
        publisher.synced(read(&["x", "y"]));
        publisher.synced(read(&["x", "y"]));
        assert_eq!(receiver.borrow().malformed_total, 2);
        publisher.synced(read(&["y", "z"]));
        assert_eq!(receiver.borrow().malformed_total, 3);
        // Gone and back: a new registration, counted again.
        publisher.synced(read(&[]));
        publisher.synced(read(&["x"]));
        assert_eq!(receiver.borrow().malformed_total, 4);
    }

    #[test]
    fn unreachable_keeps_instances_and_the_last_sync() {
        let (out, mut receiver) = watch::channel(Discovered::default());
        let mut publisher = Publisher::new(&out);
        publisher.unreachable("refused");
        assert_eq!(receiver.borrow_and_update().sync, SyncState::Unreachable { error: "refused".into(), last_sync: None });
        publisher.synced(Snapshot { instances: vec![instance("a", 1, 1)], ..Snapshot::default() });
        let at = receiver.borrow_and_update().sync.last_sync();
        publisher.unreachable("lost");
        let seen = receiver.borrow_and_update().clone();
        assert_eq!(seen.instances, vec![instance("a", 1, 1)]);
        assert_eq!(seen.sync, SyncState::Unreachable { error: "lost".into(), last_sync: at });
        // The same trouble again is not a change.
        publisher.unreachable("lost");
        assert!(!receiver.has_changed().unwrap());
    }
}
