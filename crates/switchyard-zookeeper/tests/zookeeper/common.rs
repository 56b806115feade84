use std::time::Duration;

use switchyard_compile::{Discovered, Instance, InstanceScheme, SyncState, ZooKeeperWatch};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use zookeeper_client::{Acls, Client, CreateMode};

/// How long a pushed change may take to show (it takes milliseconds; this is slack for a
/// loaded machine).
pub const CHANGE_DEADLINE: Duration = Duration::from_secs(3);

/// A running watch; aborted on drop.
pub struct Watch {
    pub seen: watch::Receiver<Discovered>,
    task: JoinHandle<()>,
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub fn start_watch(spec: ZooKeeperWatch) -> Watch {
    let (out, seen) = watch::channel(Discovered::default());
    Watch { seen, task: tokio::spawn(switchyard_zookeeper::watch(spec, out)) }
}

pub fn start_oneshot_watch(spec: ZooKeeperWatch) -> Watch {
    let (out, seen) = watch::channel(Discovered::default());
    Watch { seen, task: tokio::spawn(switchyard_zookeeper::testing::watch_with_oneshot_watches(spec, out)) }
}

impl Watch {
    /// Waits until `what` holds, or panics showing the last state.
    pub async fn until(&mut self, what: &str, within: Duration, holds: impl FnMut(&Discovered) -> bool) -> Discovered {
        let found = tokio::time::timeout(within, self.seen.wait_for(holds)).await.map(|seen| seen.map(|seen| seen.clone()));
        match found {
            Ok(Ok(seen)) => seen,
            _ => panic!("not within {within:?}: {what}; last seen {:#?}", *self.seen.borrow()),
        }
    }

    /// Waits until a full read found exactly `instances` (in order).
    pub async fn until_synced_with(&mut self, instances: &[Instance]) -> Discovered {
        let what = format!("synced with {instances:?}");
        self.until(&what, CHANGE_DEADLINE, |seen| is_synced(seen) && seen.instances == instances).await
    }
}

pub fn is_synced(seen: &Discovered) -> bool {
    matches!(seen.sync, SyncState::Synced { .. })
}

pub fn http(host: &str, port: u16, weight: u32) -> Instance {
    Instance { scheme: InstanceScheme::Http, host: host.to_owned(), port, weight }
}

pub fn https(host: &str, port: u16, weight: u32) -> Instance {
    Instance { scheme: InstanceScheme::Https, host: host.to_owned(), port, weight }
}

/// Creates an ephemeral node with `data`, its parents persistent.
pub async fn create_ephemeral(client: &Client, path: &str, data: &[u8]) {
    let parent = &path[..path.rfind('/').unwrap()];
    client.mkdir(parent, &CreateMode::Persistent.with_acls(Acls::anyone_all())).await.unwrap();
    client.create(path, data, &CreateMode::Ephemeral.with_acls(Acls::anyone_all())).await.unwrap();
}
