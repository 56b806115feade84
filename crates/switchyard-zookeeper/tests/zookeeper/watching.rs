//! How changes reach the watcher, and what it connects with.

use std::time::{Duration, Instant};

use switchyard_api::ZooKeeperLayout;
use switchyard_compile::{Credentials, SyncState};
use switchyard_zookeeper::testing::{ZooKeeperServer, register_dubbo, register_plain, register_spring_cloud};
use zookeeper_client::{Acls, Client, CreateMode};

use crate::common::*;

/// Changes are pushed: each shows up in milliseconds, far below any polling interval.
#[tokio::test]
async fn changes_are_pushed_within_milliseconds() {
    let server = ZooKeeperServer::start();
    let app = server.client().await;
    let mut watch = start_watch(server.watch_spec("/services/orders", ZooKeeperLayout::SpringCloud));
    watch.until("synced with nothing", CHANGE_DEADLINE, |seen| is_synced(seen) && seen.instances.is_empty()).await;

    let mut latencies = Vec::new();
    for (i, port) in [8081, 8082, 8083].into_iter().enumerate() {
        let started = Instant::now();
        register_spring_cloud(&app, "orders", &format!("id-{i}"), "10.0.0.1", port, None, &[]).await.unwrap();
        watch.until("the new instance", CHANGE_DEADLINE, |seen| seen.instances.iter().any(|instance| instance.port == port)).await;
        latencies.push(started.elapsed());
    }
    let started = Instant::now();
    app.delete("/services/orders/id-0", None).await.unwrap();
    watch.until("the instance gone", CHANGE_DEADLINE, |seen| seen.instances.len() == 2).await;
    latencies.push(started.elapsed());
    let slowest = latencies.iter().max().unwrap();
    assert!(*slowest < Duration::from_millis(500), "changes took {latencies:?}");
}

#[tokio::test]
async fn paths_created_after_the_watch_started() {
    let server = ZooKeeperServer::start();
    let app = server.client().await;
    let mut spring = start_watch(server.watch_spec("/services/late", ZooKeeperLayout::SpringCloud));
    let mut dubbo = start_watch(server.watch_spec("/dubbo/com.example.Late", ZooKeeperLayout::Dubbo));
    for watch in [&mut spring, &mut dubbo] {
        let seen = watch.until("synced with nothing", CHANGE_DEADLINE, is_synced).await;
        assert!(seen.instances.is_empty() && seen.skipped.is_empty(), "{seen:?}");
    }
    register_spring_cloud(&app, "late", "x", "10.0.0.1", 8080, None, &[]).await.unwrap();
    spring.until_synced_with(&[http("10.0.0.1", 8080, 1)]).await;
    register_dubbo(&app, "com.example.Late", "tri://10.0.0.2:50051/com.example.Late").await.unwrap();
    dubbo.until_synced_with(&[http("10.0.0.2", 50051, 100)]).await;
}

#[tokio::test]
async fn digest_credentials_read_a_path_only_they_may() {
    let server = ZooKeeperServer::start();
    let owner = server.client().await;
    owner.auth("digest", b"gateway:s3cret").await.unwrap();
    // `creator_all` becomes digest:gateway:<hash>: only that user may read.
    let only_gateway = CreateMode::Persistent.with_acls(Acls::creator_all());
    owner.create("/secure", b"", &only_gateway).await.unwrap();
    owner.create("/secure/web", b"", &only_gateway).await.unwrap();
    let instance = CreateMode::Ephemeral.with_acls(Acls::creator_all());
    owner.create("/secure/web/node", br#"{"host":"10.0.0.1","port":8080}"#, &instance).await.unwrap();

    let spec = |credentials: Option<(&str, &str)>| {
        let mut spec = server.watch_spec("/secure/web", ZooKeeperLayout::Plain);
        spec.credentials = credentials.map(|(username, password)| Credentials { username: username.into(), password: password.into() });
        spec
    };
    let mut authorized = start_watch(spec(Some(("gateway", "s3cret"))));
    authorized.until_synced_with(&[http("10.0.0.1", 8080, 1)]).await;

    for credentials in [None, Some(("gateway", "wrong"))] {
        let mut refused = start_watch(spec(credentials));
        let seen = refused.until("unreachable", CHANGE_DEADLINE, |seen| matches!(seen.sync, SyncState::Unreachable { .. })).await;
        let SyncState::Unreachable { error, last_sync: None } = &seen.sync else { panic!("{seen:?}") };
        assert!(error.contains("not authorized to read /secure/web"), "{error}");
        assert!(seen.instances.is_empty());
    }
}

#[tokio::test]
async fn chroot_prefixes_every_path() {
    let server = ZooKeeperServer::start();
    let app = server.client().await;
    register_plain(&app, "/apps/plain/web", "10.0.0.1:8080", b"").await.unwrap();
    register_plain(&app, "/plain/web", "10.0.0.2:8080", b"").await.unwrap();
    let mut spec = server.watch_spec("/plain/web", ZooKeeperLayout::Plain);
    spec.chroot = Some("/apps".into());
    let mut watch = start_watch(spec);
    watch.until_synced_with(&[http("10.0.0.1", 8080, 1)]).await;
    let rooted = Client::connect(&format!("{}/apps", server.connect_string())).await.unwrap();
    register_plain(&rooted, "/plain/web", "10.0.0.3:8080", b"").await.unwrap();
    watch.until_synced_with(&[http("10.0.0.1", 8080, 1), http("10.0.0.3", 8080, 1)]).await;
}

/// What runs against ZooKeeper before 3.6 (no persistent watches): child, data and
/// existence watches, set again on every read.
#[tokio::test]
async fn oneshot_watches_follow_every_kind_of_change() {
    let server = ZooKeeperServer::start();
    let app = server.client().await;
    let dir = "/plain/old";
    let mut watch = start_oneshot_watch(server.watch_spec(dir, ZooKeeperLayout::Plain));
    watch.until("synced with nothing", CHANGE_DEADLINE, |seen| is_synced(seen) && seen.instances.is_empty()).await;

    // Creation of the path (an existence watch), then of children (a child watch).
    let node = register_plain(&app, dir, "node", br#"{"host":"10.0.0.1","port":8080,"weight":1}"#).await.unwrap();
    watch.until_synced_with(&[http("10.0.0.1", 8080, 1)]).await;
    // Data (a data watch on each child).
    app.set_data(&node, br#"{"host":"10.0.0.1","port":8080,"weight":4}"#, None).await.unwrap();
    watch.until_synced_with(&[http("10.0.0.1", 8080, 4)]).await;
    let other_app = server.client().await;
    register_plain(&other_app, dir, "10.0.0.2:8080", b"").await.unwrap();
    watch.until_synced_with(&[http("10.0.0.1", 8080, 4), http("10.0.0.2", 8080, 1)]).await;
    drop(other_app);
    watch.until_synced_with(&[http("10.0.0.1", 8080, 4)]).await;
    // The path deleted, then created again.
    app.delete(&node, None).await.unwrap();
    app.delete(dir, None).await.unwrap();
    watch.until_synced_with(&[]).await;
    register_plain(&app, dir, "10.0.0.3:8080", b"").await.unwrap();
    watch.until_synced_with(&[http("10.0.0.3", 8080, 1)]).await;
}

/// A path with more children than are read: the first ones by name serve, the rest are
/// one skipped entry.
#[tokio::test]
async fn at_most_ten_thousand_children_are_read() {
    let server = ZooKeeperServer::start();
    let app = server.client().await;
    let dir = "/plain/huge";
    app.mkdir(dir, &CreateMode::Persistent.with_acls(Acls::anyone_all())).await.unwrap();
    let total = switchyard_zookeeper::MAX_CHILDREN + 5;
    let names: Vec<String> = (0..total).map(|i| format!("10.{}.{}.{}:80", i / 65536, (i / 256) % 256, i % 256)).collect();
    let node = CreateMode::Persistent.with_acls(Acls::anyone_all());
    for batch in names.chunks(1000) {
        let mut writer = app.new_multi_writer();
        for name in batch {
            writer.add_create(&format!("{dir}/{name}"), b"", &node).unwrap();
        }
        writer.commit().await.unwrap();
    }
    let mut watch = start_watch(server.watch_spec(dir, ZooKeeperLayout::Plain));
    let seen = watch.until("synced", Duration::from_secs(20), is_synced).await;
    assert_eq!(seen.instances.len(), switchyard_zookeeper::MAX_CHILDREN);
    let [overflow] = seen.skipped.as_slice() else { panic!("{:?}", seen.skipped) };
    assert!(overflow.why.starts_with("5 more children not read"), "{}", overflow.why);
}
