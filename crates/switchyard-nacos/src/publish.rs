//! Updates of the watch's output, each waking receivers only when something changed.

use std::collections::BTreeSet;
use std::time::SystemTime;

use switchyard_compile::{Discovered, SyncState};
use tokio::sync::watch;

use crate::select::Selection;

/// A full read or an accepted push: the instances are now `selection`. Malformed entries
/// that were not in the previous view are added to `malformed_total`, so an entry that
/// stays malformed is counted once, not on every re-sync.
pub fn synced(out: &watch::Sender<Discovered>, selection: Selection) {
    let at = SystemTime::now();
    out.send_modify(|view| {
        let newly_malformed = {
            let known: BTreeSet<&str> = view.skipped.iter().filter(|s| s.malformed).map(|s| s.entry.as_str()).collect();
            selection.skipped.iter().filter(|s| s.malformed && !known.contains(s.entry.as_str())).count()
        };
        view.malformed_total += newly_malformed as u64;
        view.instances = selection.instances;
        view.skipped = selection.skipped;
        view.sync = SyncState::Synced { at };
    });
}

/// The registry does not answer: the instances stay, the state says since when. Returns
/// whether that is news (not the same error as before).
pub fn unreachable(out: &watch::Sender<Discovered>, error: String) -> bool {
    out.send_if_modified(|view| {
        let next = SyncState::Unreachable { error, last_sync: view.sync.last_sync() };
        let changed = view.sync != next;
        view.sync = next;
        changed
    })
}

#[cfg(test)]
mod tests {
    use switchyard_compile::Skipped;

    use super::*;

    fn bad(entry: &str) -> Skipped {
        Skipped { entry: entry.to_owned(), why: "bad".to_owned(), malformed: true }
    }

    #[test]
    fn a_malformed_entry_is_counted_once_while_it_stays() {
        let (out, _rx) = watch::channel(Discovered::default());
        let read = |skipped: Vec<Skipped>| Selection { instances: vec![], skipped };
        synced(&out, read(vec![bad("a:1")]));
        synced(&out, read(vec![bad("a:1"), bad("b:2")]));
        synced(&out, read(vec![bad("b:2")]));
        synced(&out, read(vec![bad("a:1"), bad("b:2")]));
        assert_eq!(out.borrow().malformed_total, 3);
    }

    #[test]
    fn unreachable_keeps_instances_and_the_last_sync_and_wakes_once() {
        let (out, mut rx) = watch::channel(Discovered::default());
        synced(&out, Selection::default());
        let at = out.borrow().sync.last_sync();
        rx.mark_unchanged();
        assert!(unreachable(&out, "down".to_owned()));
        assert!(rx.has_changed().unwrap());
        rx.mark_unchanged();
        assert!(!unreachable(&out, "down".to_owned()));
        assert!(!rx.has_changed().unwrap(), "the same error again is no news");
        assert_eq!(out.borrow().sync, SyncState::Unreachable { error: "down".to_owned(), last_sync: at });
    }
}
