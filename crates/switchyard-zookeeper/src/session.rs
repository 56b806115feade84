//! The watch loop: one ZooKeeper session at a time, a read on every change, and a new
//! session (after a backoff) when one ends.

use std::convert::Infallible;
use std::time::Duration;

use futures::FutureExt;
use futures::stream::{FuturesUnordered, StreamExt};
use switchyard_api::ZooKeeperLayout;
use switchyard_compile::{Discovered, ZooKeeperWatch};
use tokio::sync::watch;
use tracing::{debug, info, warn};
use zookeeper_client::{AddWatchMode, Client, Error, EventType, PersistentWatcher, SessionState, StateWatcher};

use crate::backoff::Backoff;
use crate::layout;
use crate::publish::Publisher;
use crate::read::{self, Watching};

/// Requested session timeout. The server clamps it to 2-20 ticks (4-40 s by default). A
/// closed connection is noticed at once regardless; this bounds how long a silent one
/// (a partition) takes: the client gives up on a connection after 2/5 of it.
const SESSION_TIMEOUT: Duration = Duration::from_secs(8);

/// A disconnection the client repairs within this (another server of the ensemble, a
/// restart) is not reported: it would flap the backends' Ready condition for nothing.
const DISCONNECT_GRACE: Duration = Duration::from_secs(1);

/// Events arriving this close together are one read (a deploy registers many instances).
const COALESCE_DELAY: Duration = Duration::from_millis(5);

/// Which watches to use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Strategy {
    /// A persistent recursive watch, falling back to one-shot watches when the server does
    /// not implement it (before 3.6).
    PreferPersistent,
    /// One-shot child and data watches only.
    Oneshot,
}

/// Watches until every receiver of `out` is dropped.
pub async fn run(spec: ZooKeeperWatch, out: watch::Sender<Discovered>, strategy: Strategy) {
    tokio::select! {
        () = out.closed() => debug!(path = %spec.path, "no one reads the ZooKeeper watch any more"),
        () = watch_forever(&spec, &out, strategy) => {}
    }
}

async fn watch_forever(spec: &ZooKeeperWatch, out: &watch::Sender<Discovered>, mut strategy: Strategy) {
    let mut publisher = Publisher::new(out);
    let mut backoff = Backoff::default();
    let mut last_why = String::new();
    loop {
        let why = run_session(spec, &mut publisher, &mut strategy, &mut backoff).await;
        // Once per distinct trouble: a server down for an hour is not 720 warnings.
        if why != last_why {
            warn!(path = %spec.path, error = %why, "ZooKeeper watch interrupted; retrying with a new session");
        } else {
            debug!(path = %spec.path, error = %why, "ZooKeeper still unavailable");
        }
        publisher.unreachable(&why);
        last_why = why;
        tokio::time::sleep(backoff.next_delay()).await;
    }
}

/// One session: connect, watch, read on every change. Returns why it ended.
async fn run_session(spec: &ZooKeeperWatch, publisher: &mut Publisher<'_>, strategy: &mut Strategy, backoff: &mut Backoff) -> String {
    let client = match connect(spec).await {
        Ok(client) => client,
        Err(error) => return format!("cannot connect to ZooKeeper at {}: {error}", spec.servers.join(",")),
    };
    let Err(why) = serve(Session::new(client, spec), publisher, strategy, backoff).await;
    why
}

/// Reads on every change until the session is over (`Err`: why).
async fn serve(
    mut session: Session,
    publisher: &mut Publisher<'_>,
    strategy: &mut Strategy,
    backoff: &mut Backoff,
) -> Result<Infallible, String> {
    session.add_persistent_watch(strategy).await.map_err(|error| session.describe(&error))?;
    loop {
        match session.read(publisher).await {
            Ok(()) => backoff.reset(),
            Err(Error::ConnectionLoss) => {
                session.reconnected(publisher).await?;
                continue;
            }
            Err(error) => return Err(session.describe(&error)),
        }
        match session.next_wake().await {
            Wake::Changed => session.coalesce().await?,
            Wake::Disconnected => session.reconnected(publisher).await?,
            Wake::Reconnected => session.restore_persistent_watch(publisher).await?,
            Wake::Ended(state) => return Err(session_ended(state)),
        }
    }
}

/// A connected client and the watches it holds on the instances directory.
struct Session {
    client: Client,
    layout: ZooKeeperLayout,
    dir: String,
    states: StateWatcher,
    persistent: Option<PersistentWatcher>,
    /// The one-shot watches the last read set; replaced only once the next read has set
    /// new ones, so server-side watches never lapse.
    oneshots: OneshotEvents,
}

impl Session {
    fn new(client: Client, spec: &ZooKeeperWatch) -> Self {
        Self {
            states: client.state_watcher(),
            client,
            layout: spec.layout,
            dir: layout::instances_dir(spec.layout, &spec.path),
            persistent: None,
            oneshots: FuturesUnordered::new(),
        }
    }

    /// The persistent recursive watch on the directory, unless one-shot watches are to be
    /// used: asked for, or the server predates 3.6 (it answers `UNIMPLEMENTED`; the choice
    /// is kept for later sessions).
    async fn add_persistent_watch(&mut self, strategy: &mut Strategy) -> Result<(), Error> {
        if *strategy == Strategy::Oneshot {
            return Ok(());
        }
        match self.client.watch(&self.dir, AddWatchMode::PersistentRecursive).await {
            Ok(watcher) => self.persistent = Some(watcher),
            Err(Error::Unimplemented) => {
                info!(path = self.dir, "ZooKeeper has no persistent watches (before 3.6); using child and data watches");
                *strategy = Strategy::Oneshot;
            }
            Err(error) => return Err(error),
        }
        Ok(())
    }

    fn watching(&self) -> Watching {
        if self.persistent.is_some() { Watching::Persistent } else { Watching::Oneshot }
    }

    async fn read(&mut self, publisher: &mut Publisher<'_>) -> Result<(), Error> {
        let read = read::read_instances(&self.client, self.layout, &self.dir, self.watching()).await?;
        publisher.synced(read.snapshot);
        self.oneshots = read.watchers.into_iter().map(|watcher| watcher.changed().boxed()).collect();
        Ok(())
    }

    async fn next_wake(&mut self) -> Wake {
        let persistent_event = async {
            match self.persistent.as_mut() {
                Some(watcher) => next_node_event(watcher).await,
                None => std::future::pending().await,
            }
        };
        let oneshot_event = async {
            if self.oneshots.is_empty() {
                return std::future::pending().await;
            }
            self.oneshots.next().await
        };
        tokio::select! {
            state = self.states.changed() => wake_for_state(state),
            event = persistent_event => match event {
                Ok(()) => Wake::Changed,
                Err(state) => Wake::Ended(state),
            },
            Some(event) = oneshot_event => match event.event_type {
                EventType::Session => wake_for_state(event.session_state),
                _ => Wake::Changed,
            },
        }
    }

    /// Waits a moment and drops the events that arrived meanwhile: the next read sees them.
    async fn coalesce(&mut self) -> Result<(), String> {
        tokio::time::sleep(COALESCE_DELAY).await;
        let Some(watcher) = self.persistent.as_mut() else { return Ok(()) };
        while let Some(event) = watcher.changed().now_or_never() {
            if event.event_type == EventType::Session && event.session_state.is_terminated() {
                return Err(session_ended(event.session_state));
            }
        }
        Ok(())
    }

    /// After a disconnection: waits until the client has reconnected (same session) and
    /// the persistent watch is back.
    async fn reconnected(&mut self, publisher: &Publisher<'_>) -> Result<(), String> {
        ride_out_disconnection(&mut self.states, publisher).await.map_err(session_ended)?;
        self.restore_persistent_watch(publisher).await
    }

    /// Adds the persistent watch again after a reconnection: zookeeper-client 0.11.2
    /// restores only one-shot watches (its SetWatches request leaves persistent ones out).
    /// The new watcher is in place before the old one is dropped, so the client does not
    /// ask the server to remove the watch.
    async fn restore_persistent_watch(&mut self, publisher: &Publisher<'_>) -> Result<(), String> {
        while self.persistent.is_some() {
            match self.client.watch(&self.dir, AddWatchMode::PersistentRecursive).await {
                Ok(watcher) => {
                    self.persistent = Some(watcher);
                    return Ok(());
                }
                Err(Error::ConnectionLoss) => ride_out_disconnection(&mut self.states, publisher).await.map_err(session_ended)?,
                Err(error) => return Err(self.describe(&error)),
            }
        }
        Ok(())
    }

    fn describe(&self, error: &Error) -> String {
        match error {
            Error::NoAuth => format!("not authorized to read {} (check the digest credentials)", self.dir),
            Error::AuthFailed => "ZooKeeper authentication failed".to_owned(),
            error => format!("reading {} from ZooKeeper failed: {error}", self.dir),
        }
    }
}

async fn connect(spec: &ZooKeeperWatch) -> Result<Client, Error> {
    // Fail eagerly: when no server answers, return and let the backoff pace the retries.
    let mut connector = Client::connector().with_session_timeout(SESSION_TIMEOUT).with_fail_eagerly();
    if let Some(credentials) = &spec.credentials {
        let digest = format!("{}:{}", credentials.username, credentials.password);
        connector = connector.with_auth("digest", digest.as_bytes());
    }
    connector.connect(&connect_string(spec)).await
}

/// `host1:2181,host2:2181/chroot`.
pub fn connect_string(spec: &ZooKeeperWatch) -> String {
    let servers = spec.servers.join(",");
    match spec.chroot.as_deref().map(|chroot| chroot.trim_end_matches('/')) {
        None | Some("") => servers,
        Some(chroot) if chroot.starts_with('/') => format!("{servers}{chroot}"),
        Some(chroot) => format!("{servers}/{chroot}"),
    }
}

enum Wake {
    /// Something under the path changed: read again.
    Changed,
    Disconnected,
    /// Connected again after a disconnection the wait did not see: events meanwhile may be
    /// lost (ZOOKEEPER-4698), so read again.
    Reconnected,
    /// The session is over (expired, closed, authentication failed).
    Ended(SessionState),
}

type OneshotEvents = FuturesUnordered<futures::future::BoxFuture<'static, zookeeper_client::WatchedEvent>>;

fn wake_for_state(state: SessionState) -> Wake {
    match state {
        SessionState::Disconnected => Wake::Disconnected,
        state if state.is_terminated() => Wake::Ended(state),
        _ => Wake::Reconnected,
    }
}

/// The next change under the path. Session events are skipped (the state watcher reports
/// them), except a terminal one: the watcher must not be polled after it.
async fn next_node_event(watcher: &mut PersistentWatcher) -> Result<(), SessionState> {
    loop {
        let event = watcher.changed().await;
        match event.event_type {
            EventType::Session if event.session_state.is_terminated() => return Err(event.session_state),
            EventType::Session => continue,
            _ => return Ok(()),
        }
    }
}

/// The client reconnects by itself (same session, watches restored) until the session
/// expires. Says Unreachable if that takes longer than the grace, and returns once
/// connected again (then everything is read again) or the session is over.
async fn ride_out_disconnection(states: &mut StateWatcher, publisher: &Publisher<'_>) -> Result<(), SessionState> {
    if let Ok(reconnected) = tokio::time::timeout(DISCONNECT_GRACE, wait_connected(states)).await {
        return reconnected;
    }
    warn!("lost the connection to ZooKeeper; reconnecting");
    publisher.unreachable("lost the connection to ZooKeeper (reconnecting)");
    wait_connected(states).await
}

async fn wait_connected(states: &mut StateWatcher) -> Result<(), SessionState> {
    loop {
        match states.state() {
            SessionState::SyncConnected | SessionState::ConnectedReadOnly => return Ok(()),
            state if state.is_terminated() => return Err(state),
            _ => {
                states.changed().await;
            }
        }
    }
}

fn session_ended(state: SessionState) -> String {
    match state {
        SessionState::Expired => "ZooKeeper session expired".to_owned(),
        SessionState::AuthFailed => "ZooKeeper authentication failed".to_owned(),
        state => format!("ZooKeeper session ended ({state})"),
    }
}

#[cfg(test)]
mod tests {
    use switchyard_api::ZooKeeperLayout;

    use super::*;

    fn spec(servers: &[&str], chroot: Option<&str>) -> ZooKeeperWatch {
        ZooKeeperWatch {
            servers: servers.iter().map(|s| s.to_string()).collect(),
            chroot: chroot.map(str::to_owned),
            path: "/services/orders".into(),
            layout: ZooKeeperLayout::SpringCloud,
            credentials: None,
        }
    }

    #[test]
    fn connect_strings_join_servers_and_append_the_chroot() {
        assert_eq!(connect_string(&spec(&["zk1:2181", "zk2:2181"], None)), "zk1:2181,zk2:2181");
        assert_eq!(connect_string(&spec(&["zk1:2181"], Some("/apps"))), "zk1:2181/apps");
        assert_eq!(connect_string(&spec(&["zk1:2181"], Some("/apps/"))), "zk1:2181/apps");
        assert_eq!(connect_string(&spec(&["zk1:2181"], Some("apps"))), "zk1:2181/apps");
        assert_eq!(connect_string(&spec(&["zk1:2181"], Some("/"))), "zk1:2181");
    }
}
