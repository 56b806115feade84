//! ZooKeeper going away and coming back.

use std::time::Duration;

use switchyard_api::ZooKeeperLayout;
use switchyard_compile::{Discovered, SyncState};
use switchyard_zookeeper::testing::{ZooKeeperServer, register_spring_cloud};

use crate::common::*;

/// Noticing a dead server takes the disconnection grace (1 s) plus slack.
const UNREACHABLE_DEADLINE: Duration = Duration::from_secs(4);

/// Reconnecting after a restart follows the client's backoff (a few seconds at most).
const RECONNECT_DEADLINE: Duration = Duration::from_secs(12);

/// The client expires a session it cannot resume after 7/5 of the 8 s session timeout.
const EXPIRY_DEADLINE: Duration = Duration::from_secs(20);

fn unreachable(seen: &Discovered) -> bool {
    matches!(seen.sync, SyncState::Unreachable { .. })
}

#[tokio::test]
async fn a_stopped_server_is_unreachable_with_instances_kept_and_a_restart_converges() {
    let mut server = ZooKeeperServer::start();
    let app = server.client().await;
    register_spring_cloud(&app, "orders", "a1", "10.0.0.1", 8080, None, &[]).await.unwrap();
    let mut watch = start_watch(server.watch_spec("/services/orders", ZooKeeperLayout::SpringCloud));
    let synced = watch.until_synced_with(&[http("10.0.0.1", 8080, 1)]).await;

    server.stop();
    let seen = watch.until("unreachable", UNREACHABLE_DEADLINE, unreachable).await;
    assert_eq!(seen.sync.last_sync(), synced.sync.last_sync(), "{:?}", seen.sync);
    assert_eq!(seen.instances, [http("10.0.0.1", 8080, 1)], "the last instances are kept");

    // Same data directory: the sessions (the app's ephemeral node) survive the restart.
    server.restart();
    let seen = watch.until("synced again", RECONNECT_DEADLINE, is_synced).await;
    assert_eq!(seen.instances, [http("10.0.0.1", 8080, 1)]);
    assert!(seen.sync.last_sync() > synced.sync.last_sync());
    // And the watch works again.
    register_spring_cloud(&app, "orders", "a2", "10.0.0.2", 8080, None, &[]).await.unwrap();
    watch.until_synced_with(&[http("10.0.0.1", 8080, 1), http("10.0.0.2", 8080, 1)]).await;
}

/// A registry that lost its data: the server is behind what the client has seen (it
/// refuses the old session until the client expires it, ~11 s), then the watcher starts
/// a new session and reports what is there now.
#[tokio::test]
async fn a_registry_that_lost_everything_expires_the_session_and_a_new_one_reads_it() {
    let mut server = ZooKeeperServer::start();
    let app = server.client().await;
    register_spring_cloud(&app, "orders", "a1", "10.0.0.1", 8080, None, &[]).await.unwrap();
    let mut watch = start_watch(server.watch_spec("/services/orders", ZooKeeperLayout::SpringCloud));
    watch.until_synced_with(&[http("10.0.0.1", 8080, 1)]).await;

    server.restart_empty();
    let seen = watch.until("unreachable", UNREACHABLE_DEADLINE, unreachable).await;
    assert_eq!(seen.instances, [http("10.0.0.1", 8080, 1)], "the last instances are kept meanwhile");
    let seen = watch.until("synced with nothing", EXPIRY_DEADLINE, |seen| is_synced(seen) && seen.instances.is_empty()).await;
    assert!(seen.skipped.is_empty());
    let new_app = server.client().await;
    register_spring_cloud(&new_app, "orders", "b1", "10.0.0.9", 8080, None, &[]).await.unwrap();
    watch.until_synced_with(&[http("10.0.0.9", 8080, 1)]).await;
}

#[tokio::test]
async fn no_server_at_all_is_unreachable_without_a_last_sync() {
    let mut server = ZooKeeperServer::start();
    let spec = server.watch_spec("/services/orders", ZooKeeperLayout::SpringCloud);
    server.stop();
    let mut watch = start_watch(spec);
    let seen = watch.until("unreachable", UNREACHABLE_DEADLINE, unreachable).await;
    let SyncState::Unreachable { error, last_sync: None } = &seen.sync else { panic!("{seen:?}") };
    assert!(error.contains("cannot connect to ZooKeeper at 127.0.0.1:"), "{error}");
    // It keeps trying: a server that comes up is read.
    server.restart();
    watch.until("synced", RECONNECT_DEADLINE, is_synced).await;
}
