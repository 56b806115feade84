//! The runner bookkeeping, with a starter that records sources instead of dialling
//! registries (the clients are tested against real servers in their crates and end to
//! end in `crates/switchyard/tests/registries.rs`).

use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use switchyard_compile::{Instance, InstanceScheme, SecretData};

use super::*;

#[derive(Default)]
struct Recorder {
    started: Mutex<Vec<(RegistrySource, watch::Sender<Discovered>)>>,
}

fn recording() -> (Arc<Recorder>, StartWatch) {
    let recorder = Arc::new(Recorder::default());
    let r = recorder.clone();
    let start: StartWatch = Arc::new(move |source, out| {
        r.started.lock().unwrap().push((source, out));
        tokio::spawn(std::future::pending())
    });
    (recorder, start)
}

fn resources(yaml: &str) -> Resources {
    let mut resources = Resources::default();
    switchyard_compile::manifest::add_yaml(&mut resources, "t", yaml);
    assert!(resources.invalid.is_empty(), "{:?}", resources.invalid);
    resources
}

fn zk_backend(name: &str, path: &str) -> String {
    format!(
        "apiVersion: switchyard.dev/v1alpha1\nkind: BackendService\nmetadata: {{name: {name}, namespace: shop}}\n\
         spec: {{registry: {{zookeeper: {{servers: [\"127.0.0.1:2181\"], path: {path}, layout: Plain}}}}}}\n---\n"
    )
}

#[tokio::test]
async fn backends_naming_one_source_share_one_watch_and_a_changed_source_replaces_it() {
    let (recorder, start) = recording();
    let mut discovery = Discovery::new(start);
    let both = resources(&(zk_backend("a", "/services/orders") + &zk_backend("b", "/services/orders")));
    assert!(discovery.reconcile(&both));
    assert_eq!(discovery.watch_count(), 1, "one watch per source, not per BackendService");
    assert!(!discovery.reconcile(&both), "nothing to start or stop");

    let moved = resources(&(zk_backend("a", "/services/orders") + &zk_backend("b", "/services/payments")));
    assert!(discovery.reconcile(&moved));
    assert_eq!(discovery.watch_count(), 2);
    let only_b = resources(&zk_backend("b", "/services/payments"));
    assert!(discovery.reconcile(&only_b));
    assert_eq!(discovery.watch_count(), 1, "the watch nobody uses stops");
    let (first, out) = recorder.started.lock().unwrap().remove(0);
    assert!(matches!(first, RegistrySource::ZooKeeper(z) if z.path == "/services/orders"));
    let closed = tokio::time::timeout(Duration::from_secs(2), out.closed()).await;
    assert!(closed.is_ok(), "a stopped watch's channel closes, so its client ends");
    assert!(discovery.reconcile(&Resources::default()));
    assert_eq!(discovery.watch_count(), 0);
}

#[tokio::test]
async fn a_publication_pokes_the_owner_and_reaches_every_backend_using_the_source() {
    let (recorder, start) = recording();
    let mut discovery = Discovery::new(start);
    discovery.reconcile(&resources(&(zk_backend("a", "/services/orders") + &zk_backend("b", "/services/orders"))));
    let instance = Instance { scheme: InstanceScheme::Http, host: "127.0.0.1".into(), port: 8080, weight: 1 };
    let found = Discovered { instances: vec![instance], sync: SyncState::Synced { at: SystemTime::now() }, ..Discovered::default() };
    recorder.started.lock().unwrap()[0].1.send_replace(found.clone());
    tokio::time::timeout(Duration::from_secs(2), discovery.changed.notified()).await.expect("the owner is poked");
    let results = discovery.results();
    assert_eq!(results.get(&("shop".to_owned(), "a".to_owned())), Some(&found));
    assert_eq!(results.get(&("shop".to_owned(), "b".to_owned())), Some(&found));
}

#[tokio::test]
async fn new_credentials_are_a_new_watch_and_a_missing_secret_none() {
    let (recorder, start) = recording();
    let mut discovery = Discovery::new(start);
    let yaml = "apiVersion: switchyard.dev/v1alpha1\nkind: BackendService\nmetadata: {name: n, namespace: shop}\n\
                spec: {registry: {nacos: {serverAddr: \"127.0.0.1:8848\", service: orders, credentialsSecretRef: {name: login}}}}\n";
    let mut with_secret = resources(yaml);
    discovery.reconcile(&with_secret);
    assert_eq!(discovery.watch_count(), 0, "no watch until its credentials resolve");
    let login = |password: &str| SecretData([("username".to_owned(), "u".to_owned()), ("password".to_owned(), password.to_owned())].into());
    with_secret.secrets.insert(("shop".into(), "login".into()), login("one"));
    discovery.reconcile(&with_secret);
    with_secret.secrets.insert(("shop".into(), "login".into()), login("two"));
    assert!(discovery.reconcile(&with_secret), "a rotated password restarts the watch with it");
    let started = recorder.started.lock().unwrap();
    let passwords: Vec<String> = started
        .iter()
        .map(|(s, _)| match s {
            RegistrySource::Nacos(n) => n.credentials.as_ref().unwrap().password.clone(),
            RegistrySource::ZooKeeper(_) => unreachable!(),
        })
        .collect();
    assert_eq!(passwords, ["one", "two"]);
    assert_eq!(discovery.watch_count(), 1);
}

#[tokio::test]
async fn a_resync_that_finds_the_same_instances_publishes_no_new_version() {
    let mut resources = resources(&zk_backend("a", "/services/orders"));
    let instance = Instance { scheme: InstanceScheme::Http, host: "127.0.0.1".into(), port: 8080, weight: 1 };
    let view = |at: SystemTime| Discovered { instances: vec![instance.clone()], sync: SyncState::Synced { at }, ..Discovered::default() };
    let (publisher, book) = (crate::publisher::Publisher::starting_at(1), crate::status::StatusBook::default());
    resources.registry.insert(("shop".into(), "a".into()), view(SystemTime::now()));
    let first = crate::compile_and_publish(&resources, &publisher, &book, "t1");
    resources.registry.insert(("shop".into(), "a".into()), view(SystemTime::now() + Duration::from_secs(30)));
    let again = crate::compile_and_publish(&resources, &publisher, &book, "t2");
    assert!(first.version.is_some());
    assert_eq!(again.version, None, "same endpoints, later sync: no new snapshot");
    assert!(again.changes.is_empty(), "and no condition changed");
    let moved = Instance { port: 8081, ..instance.clone() };
    resources.registry.get_mut(&("shop".to_owned(), "a".to_owned())).unwrap().instances = vec![moved];
    assert!(crate::compile_and_publish(&resources, &publisher, &book, "t3").version.is_some(), "a changed endpoint set is published");
}

#[tokio::test]
async fn a_changed_source_keeps_the_old_view_until_its_new_watch_has_read() {
    let (recorder, start) = recording();
    let mut discovery = Discovery::new(start);
    discovery.reconcile(&resources(&zk_backend("a", "/services/orders")));
    let instance = Instance { scheme: InstanceScheme::Http, host: "127.0.0.1".into(), port: 8080, weight: 1 };
    let old = Discovered { instances: vec![instance], sync: SyncState::Synced { at: SystemTime::now() }, ..Discovered::default() };
    recorder.started.lock().unwrap()[0].1.send_replace(old.clone());
    let key = ("shop".to_owned(), "a".to_owned());
    assert_eq!(discovery.results().get(&key), Some(&old));

    discovery.reconcile(&resources(&zk_backend("a", "/services/orders-v2")));
    assert_eq!(discovery.results().get(&key), Some(&old), "no endpoint drop while the new watch has not read");
    let new = Discovered { sync: SyncState::Synced { at: SystemTime::now() }, ..Discovered::default() };
    recorder.started.lock().unwrap()[1].1.send_replace(new.clone());
    assert_eq!(discovery.results().get(&key), Some(&new), "the new source's first read is the truth");
}

#[tokio::test]
async fn the_first_publish_waits_for_first_reads_but_not_forever() {
    let (recorder, start) = recording();
    let mut discovery = Discovery::new(start);
    discovery.reconcile(&resources(&(zk_backend("a", "/services/orders") + &zk_backend("b", "/services/payments"))));
    let started = std::time::Instant::now();
    discovery.first_reads(Duration::from_millis(300)).await;
    assert!(started.elapsed() >= Duration::from_millis(300), "nothing read: waited the limit");

    for (_, out) in recorder.started.lock().unwrap().iter() {
        out.send_replace(Discovered { sync: SyncState::Unreachable { error: "refused".into(), last_sync: None }, ..Discovered::default() });
    }
    let started = std::time::Instant::now();
    discovery.first_reads(Duration::from_secs(5)).await;
    assert!(started.elapsed() < Duration::from_secs(1), "every watch has an answer (even a failure): no wait");
}
