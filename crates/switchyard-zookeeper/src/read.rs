//! One full read of the instances znode: its children and, for layouts that keep the
//! instance in the data, each child's data.

use futures::StreamExt;
use switchyard_api::ZooKeeperLayout;
use switchyard_compile::Skipped;
use switchyard_compile::discovered::entry_name;
use zookeeper_client::{Client, Error, OneshotWatcher};

use crate::layout::{self, Entry};
use crate::publish::Snapshot;

/// At most this many children are read (sorted by name); a registry path with more is
/// broken or hostile, and reading it all would take the controller with it.
pub const MAX_CHILDREN: usize = 10_000;

/// Data reads in flight at once (one connection pipelines them).
const READ_CONCURRENCY: usize = 32;

/// How changes reach the watcher.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Watching {
    /// A persistent recursive watch on the directory (ZooKeeper 3.6+) already covers every
    /// change: reads set no watches.
    Persistent,
    /// Older servers: every read sets one-shot watches (children of the directory, data of
    /// each child, or the directory's creation), and the first to fire means re-read.
    Oneshot,
}

/// What a read found, and the one-shot watches it set (none with [`Watching::Persistent`]).
pub struct Read {
    pub snapshot: Snapshot,
    pub watchers: Vec<OneshotWatcher>,
}

/// Reads every instance under `dir`. A missing `dir` is zero instances (the service has
/// not registered yet), not an error.
pub async fn read_instances(client: &Client, layout: ZooKeeperLayout, dir: &str, watching: Watching) -> Result<Read, Error> {
    let (children, mut watchers) = list_children(client, dir, watching).await?;
    let Some(mut children) = children else {
        return Ok(Read { snapshot: Snapshot::default(), watchers });
    };
    children.sort_unstable();
    let overflow = children.len().saturating_sub(MAX_CHILDREN);
    children.truncate(MAX_CHILDREN);
    let mut snapshot = Snapshot::default();
    if overflow > 0 {
        snapshot.skipped.push(Skipped {
            entry: entry_name(dir),
            why: format!("{overflow} more children not read: at most {MAX_CHILDREN} are"),
            malformed: false,
        });
    }
    let entries = if layout::reads_data(layout) {
        read_children_data(client, layout, dir, &children, watching, &mut watchers).await?
    } else {
        children.into_iter().map(|child| (layout::parse_entry(layout, &child, b""), child)).collect()
    };
    add_entries(&mut snapshot, entries);
    Ok(Read { snapshot, watchers })
}

/// The children's names, or `None` when `dir` does not exist.
async fn list_children(client: &Client, dir: &str, watching: Watching) -> Result<(Option<Vec<String>>, Vec<OneshotWatcher>), Error> {
    if watching == Watching::Persistent {
        return match client.list_children(dir).await {
            Ok(children) => Ok((Some(children), Vec::new())),
            Err(Error::NoNode) => Ok((None, Vec::new())),
            Err(error) => Err(error),
        };
    }
    loop {
        match client.list_and_watch_children(dir).await {
            Ok((children, watcher)) => return Ok((Some(children), vec![watcher])),
            Err(Error::NoNode) => {}
            Err(error) => return Err(error),
        }
        // A missing node takes no child watch: watch for its creation instead.
        match client.check_and_watch_stat(dir).await? {
            (None, watcher) => return Ok((None, vec![watcher])),
            // Created between the two calls: list it (with a child watch) after all.
            (Some(_), _) => continue,
        }
    }
}

/// Each child's data, read with bounded concurrency, as entries named by the child. A
/// child deleted between the listing and its read is simply gone.
async fn read_children_data(
    client: &Client,
    layout: ZooKeeperLayout,
    dir: &str,
    children: &[String],
    watching: Watching,
    watchers: &mut Vec<OneshotWatcher>,
) -> Result<Vec<(Entry, String)>, Error> {
    // Owned names: a closure over borrowed ones makes the future lose `Send` (a
    // higher-ranked lifetime rustc cannot prove), and the watch must run in tokio::spawn.
    let reads = futures::stream::iter(children.to_vec()).map(|child| read_child(client, layout, dir, child, watching));
    let mut reads = reads.buffer_unordered(READ_CONCURRENCY);
    let mut entries = Vec::with_capacity(children.len());
    while let Some(read) = reads.next().await {
        let Some((entry, child, watcher)) = read? else { continue };
        entries.push((entry, child));
        watchers.extend(watcher);
    }
    Ok(entries)
}

async fn read_child(
    client: &Client,
    layout: ZooKeeperLayout,
    dir: &str,
    child: String,
    watching: Watching,
) -> Result<Option<(Entry, String, Option<OneshotWatcher>)>, Error> {
    let path = layout::child_path(dir, &child);
    let read = match watching {
        Watching::Persistent => client.get_data(&path).await.map(|(data, _)| (data, None)),
        Watching::Oneshot => client.get_and_watch_data(&path).await.map(|(data, _, watcher)| (data, Some(watcher))),
    };
    match read {
        Ok((data, watcher)) => Ok(Some((layout::parse_entry(layout, &child, &data), child, watcher))),
        Err(Error::NoNode) => Ok(None),
        Err(error) => Err(error),
    }
}

fn add_entries(snapshot: &mut Snapshot, entries: Vec<(Entry, String)>) {
    for (entry, child) in entries {
        match entry {
            Entry::Serves(instance) => snapshot.instances.push(instance),
            Entry::Idle => {}
            Entry::Skipped(skipped) => {
                if skipped.malformed {
                    snapshot.malformed.insert((child, skipped.why.clone()));
                }
                snapshot.skipped.push(skipped);
            }
        }
    }
}
