//! The watch against a real Nacos-compatible server (rnacos): registrations, state
//! changes, outages and logins show up in the watch's output.

use std::time::{Duration, SystemTime};

use switchyard_compile::{Credentials, Discovered, Instance, InstanceScheme, NacosWatch, SyncState};
use switchyard_nacos::testing::{AUTH_TOKEN_TTL, NacosServer};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

const GROUP: &str = "DEFAULT_GROUP";
const LOCALHOST: &str = "127.0.0.1";
/// Pushes arrive within a second; rnacos notices a closed port within ~10 s (a 5 s probe
/// interval and a 3 s retry), hence the margin.
const TIMEOUT: Duration = Duration::from_secs(20);

/// Starts a watch; aborted when the returned handle is dropped.
struct Watching {
    rx: watch::Receiver<Discovered>,
    task: JoinHandle<()>,
}

impl Drop for Watching {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn start_watch(spec: NacosWatch) -> Watching {
    let (tx, rx) = watch::channel(Discovered::default());
    let task = tokio::spawn(switchyard_nacos::watch(spec, tx));
    Watching { rx, task }
}

impl Watching {
    /// Waits until `done` holds for the output, or fails showing the last output.
    async fn until(&mut self, what: &str, done: impl Fn(&Discovered) -> bool) -> Discovered {
        let waited = tokio::time::timeout(TIMEOUT, self.rx.wait_for(|d| done(d))).await.map(|r| r.map(|view| view.clone()));
        match waited {
            Ok(Ok(view)) => view,
            _ => panic!("timed out waiting until {what}; last output: {:#?}", *self.rx.borrow()),
        }
    }

    async fn until_serving(&mut self, expected: &[Instance]) -> Discovered {
        self.until(&format!("serving {expected:?}"), |d| is_synced(d) && d.instances == expected).await
    }
}

fn is_synced(view: &Discovered) -> bool {
    matches!(view.sync, SyncState::Synced { .. })
}

fn http(port: u16, weight: u32) -> Instance {
    Instance { scheme: InstanceScheme::Http, host: LOCALHOST.to_owned(), port, weight }
}

fn https(port: u16, weight: u32) -> Instance {
    Instance { scheme: InstanceScheme::Https, ..http(port, weight) }
}

/// A port where a TCP listener runs (rnacos probes persistent instances), closed on drop.
struct Backend {
    port: u16,
    task: JoinHandle<()>,
}

impl Backend {
    async fn start() -> Self {
        let listener = TcpListener::bind((LOCALHOST, 0)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            while let Ok((connection, _)) = listener.accept().await {
                drop(connection);
            }
        });
        Self { port, task }
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn sorted(mut instances: Vec<Instance>) -> Vec<Instance> {
    instances.sort();
    instances
}

#[tokio::test]
async fn instances_follow_registrations_state_and_clusters() {
    let server = NacosServer::start().await;
    let service = "orders";
    let (a, b, c) = (Backend::start().await, Backend::start().await, Backend::start().await);
    let mut watching = start_watch(server.watch_spec(service));
    // rnacos does not push the results of its health probes; re-syncs pick them up.
    let mut resyncing = start_watch(NacosWatch { resync_interval_ms: 1000, ..server.watch_spec(service) });
    watching.until("the first read", is_synced).await;
    assert!(watching.rx.borrow().instances.is_empty());

    server.register(GROUP, service, LOCALHOST, a.port, 1.5, r#"{"secure":"true"}"#, "").await;
    server.register(GROUP, service, LOCALHOST, b.port, 0.333, "{}", "").await;
    server.register(GROUP, service, LOCALHOST, c.port, 2.0, r#"{"secure":"false"}"#, "east").await;
    let all = sorted(vec![https(a.port, 150), http(b.port, 33), http(c.port, 200)]);
    watching.until_serving(&all).await;

    let east_only = NacosWatch { clusters: vec!["east".to_owned()], ..server.watch_spec(service) };
    start_watch(east_only).until_serving(&[http(c.port, 200)]).await;

    server.set_enabled(GROUP, service, LOCALHOST, b.port, false).await;
    watching.until_serving(&sorted(vec![https(a.port, 150), http(c.port, 200)])).await;
    server.set_enabled(GROUP, service, LOCALHOST, b.port, true).await;
    watching.until_serving(&all).await;

    server.deregister(GROUP, service, LOCALHOST, a.port).await;
    watching.until_serving(&sorted(vec![http(b.port, 33), http(c.port, 200)])).await;

    drop(c);
    let view = resyncing.until_serving(&[http(b.port, 33)]).await;
    assert!(view.skipped.is_empty() && view.malformed_total == 0, "{view:#?}");

    // Not an IP address to the gateway, yet one rnacos' probe reaches (glibc reads the
    // zero-padded octets), so the instance stays healthy there and reaches the watch.
    let padded = "127.000.000.001";
    server.register(GROUP, service, padded, b.port, 1.0, "{}", "").await;
    let entry = format!("{padded}:{}", b.port);
    let view = watching.until("the malformed instance is reported", |d| d.skipped.iter().any(|s| s.entry == entry)).await;
    assert_eq!((view.instances, view.malformed_total), (vec![http(b.port, 33)], 1));
    assert!(view.skipped[0].malformed && view.skipped[0].why.contains("not an IP address"), "{:?}", view.skipped);
    server.deregister(GROUP, service, padded, b.port).await;
    let view = watching.until("the malformed instance is gone", |d| d.skipped.is_empty()).await;
    assert_eq!(view.malformed_total, 1, "the count is cumulative");
}

#[tokio::test]
async fn a_killed_server_is_unreachable_and_a_restarted_one_converges() {
    let mut server = NacosServer::start().await;
    let service = "payments";
    let (a, b) = (Backend::start().await, Backend::start().await);
    server.register(GROUP, service, LOCALHOST, a.port, 1.0, "{}", "").await;
    // A dead server first: the watch moves on to the next one in turn.
    let dead = format!("{LOCALHOST}:1");
    let mut watching = start_watch(NacosWatch { servers: vec![dead, server.http_addr()], ..server.watch_spec(service) });
    let synced = watching.until_serving(&[http(a.port, 100)]).await;
    let synced_at = synced.sync.last_sync();

    server.kill();
    let killed_at = SystemTime::now();
    let down = watching.until("unreachable", |d| matches!(d.sync, SyncState::Unreachable { .. })).await;
    assert!(killed_at.elapsed().unwrap() < Duration::from_secs(5), "noticed after {:?}", killed_at.elapsed());
    assert_eq!(down.sync.last_sync(), synced_at, "the last sync is kept");
    assert_eq!(down.instances, vec![http(a.port, 100)], "the last instances are kept");

    server.restart().await;
    // What the restarted server knows is the truth, whether or not it kept its data.
    server.register(GROUP, service, LOCALHOST, b.port, 1.0, "{}", "").await;
    server.deregister(GROUP, service, LOCALHOST, a.port).await;
    let back = watching.until_serving(&[http(b.port, 100)]).await;
    assert!(back.sync.last_sync() > synced_at);
}

#[tokio::test]
async fn a_hung_server_is_unreachable_within_seconds() {
    let server = NacosServer::start().await;
    let mut watching = start_watch(server.watch_spec("inventory"));
    watching.until("the first read", is_synced).await;

    server.pause();
    let paused_at = SystemTime::now();
    let down = watching.until("unreachable", |d| matches!(d.sync, SyncState::Unreachable { .. })).await;
    // Health checks every 3 s, each given 3 s.
    assert!(paused_at.elapsed().unwrap() < Duration::from_secs(8), "noticed after {:?}", paused_at.elapsed());
    assert!(format!("{:?}", down.sync).contains("health check failed"), "{down:#?}");

    server.resume();
    watching.until("synced again", is_synced).await;
}

#[tokio::test]
async fn logins_are_required_and_failures_hide_the_password() {
    let server = NacosServer::start_with_auth("admin", "s3cret-admin").await;
    let service = "accounts";
    let a = Backend::start().await;
    server.register(GROUP, service, LOCALHOST, a.port, 3.0, "{}", "").await;

    let wrong = Credentials { username: "admin".to_owned(), password: "wrong-p4ss".to_owned() };
    let mut refused = start_watch(NacosWatch { credentials: Some(wrong), ..server.watch_spec(service) });
    let view = refused.until("unreachable", |d| matches!(d.sync, SyncState::Unreachable { .. })).await;
    let SyncState::Unreachable { error, last_sync: None } = &view.sync else { panic!("{view:#?}") };
    assert!(error.contains("login failed"), "{error}");
    assert!(!error.contains("wrong-p4ss"), "{error}");

    let mut anonymous = start_watch(server.watch_spec(service));
    let view = anonymous.until("unreachable", |d| matches!(d.sync, SyncState::Unreachable { .. })).await;
    assert!(format!("{:?}", view.sync).contains("access denied"), "{view:#?}");

    let right = Credentials { username: "admin".to_owned(), password: "s3cret-admin".to_owned() };
    let mut watching = start_watch(NacosWatch { credentials: Some(right), resync_interval_ms: 1000, ..server.watch_spec(service) });
    let first = watching.until_serving(&[http(a.port, 300)]).await;
    // Re-syncs (every second here) refresh the sync time with the same instances.
    let first_at = first.sync.last_sync();
    let later = watching.until("a re-sync", |d| is_synced(d) && d.sync.last_sync() > first_at).await;
    assert_eq!(later.instances, vec![http(a.port, 300)]);

    // Past the token's life, re-syncs still work: the watch logged in again in time.
    let outlived = first.sync.last_sync().unwrap() + AUTH_TOKEN_TTL + Duration::from_secs(3);
    let view = watching.until("the token's life is over", |d| !is_synced(d) || d.sync.last_sync().unwrap() > outlived).await;
    assert!(is_synced(&view), "{view:#?}");
}
