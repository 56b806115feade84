//! Chaos under steady load (issue 18): client loops over keep-alive connections count every
//! request's outcome while a part of the system is killed and brought back: the controller,
//! a proxy (restarted from its disk snapshot while the controller is down), a database, an
//! event bus, a registry. A truncated or corrupted disk snapshot is refused, never served.
//! Each test prints its counts (`--nocapture`); the figures are in docs/reliability.md.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::Method;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use support::scratch::{Scratch, snapshot_url};
use support::upstream::Upstream;
use support::{ConfigDir, Switchyard, get, send, wait_until};
use switchyard_nats::testing::NatsServer;
use switchyard_sql::Driver;
use switchyard_sql::testing::{self, Postgres};
use switchyard_zookeeper::testing::{ZooKeeperServer, register_spring_cloud};

const TOKEN: &str = "chaos-snapshot-token";
/// A change reaching a proxy, or a restarted dependency serving again: a 250 ms folder
/// rescan, a long-poll answer or a reconnect after the pull backoff (at most 5 s), a pool
/// reconnecting.
const CONVERGE: Duration = Duration::from_secs(15);
/// The pause between two requests of one client loop: steady load, not a benchmark.
const PAUSE: Duration = Duration::from_millis(2);

/// What one request got: the status (0: no answer) and the error code
/// (`X-Ca-Error-Code`, or what the client failed with).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Outcome {
    status: u16,
    code: Option<String>,
}

/// The phase of a test, shared by its loads: each request is counted with the phases
/// current when it was sent and when its answer came, so one in flight across a kill or a
/// restart is known to have met it.
#[derive(Clone, Default)]
struct Phase(Arc<AtomicUsize>);

impl Phase {
    fn set(&self, phase: usize) {
        self.0.store(phase, Ordering::SeqCst);
    }

    fn get(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

/// The phases a request was sent and answered in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Span {
    sent: usize,
    answered: usize,
}

impl Span {
    fn overlaps(&self, phases: &std::ops::RangeInclusive<usize>) -> bool {
        self.sent <= *phases.end() && self.answered >= *phases.start()
    }
}

/// The request a load sends, and the status that counts as success.
#[derive(Clone)]
struct Target {
    method: Method,
    url: String,
    body: &'static [u8],
    success: u16,
}

impl Target {
    fn get(url: String) -> Self {
        Self { method: Method::GET, url, body: b"", success: 200 }
    }

    fn post(url: String, body: &'static [u8], success: u16) -> Self {
        Self { method: Method::POST, url, body, success }
    }
}

/// How many requests got one outcome over one span, and the longest one took.
#[derive(Clone, Copy, Default)]
struct Seen {
    count: usize,
    slowest: Duration,
}

type Counts = BTreeMap<(Span, Outcome), Seen>;

/// `concurrency` client loops sending `target` until finished.
struct SteadyLoad {
    name: &'static str,
    success: u16,
    stop: Arc<AtomicBool>,
    counts: Arc<Mutex<Counts>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl SteadyLoad {
    fn start(name: &'static str, target: Target, concurrency: usize, phase: &Phase) -> Self {
        // Keep-alive connections, as real clients hold them: a restart or a swap behind the
        // proxy must not break them either.
        let client: Client<HttpConnector, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
        let stop = Arc::new(AtomicBool::new(false));
        let counts = Arc::new(Mutex::new(Counts::new()));
        let tasks = (0..concurrency)
            .map(|_| {
                let (client, target, phase, stop, counts) = (client.clone(), target.clone(), phase.clone(), stop.clone(), counts.clone());
                tokio::spawn(async move {
                    while !stop.load(Ordering::Relaxed) {
                        let (started, sent) = (std::time::Instant::now(), phase.get());
                        let outcome = one_request(&client, &target).await;
                        let (took, span) = (started.elapsed(), Span { sent, answered: phase.get() });
                        {
                            let mut counts = counts.lock().unwrap();
                            let seen = counts.entry((span, outcome)).or_default();
                            seen.count += 1;
                            seen.slowest = seen.slowest.max(took);
                        }
                        tokio::time::sleep(PAUSE).await;
                    }
                })
            })
            .collect();
        Self { name, success: target.success, stop, counts, tasks }
    }

    /// Stops the loops (each finishes its request in flight) and returns the counts.
    async fn finish(self) -> Tally {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            task.await.unwrap();
        }
        let counts = std::mem::take(&mut *self.counts.lock().unwrap());
        let tally = Tally { name: self.name, success: self.success, counts };
        tally.print();
        tally
    }
}

async fn one_request(client: &Client<HttpConnector, Full<Bytes>>, target: &Target) -> Outcome {
    let request =
        http::Request::builder().method(target.method.clone()).uri(&target.url).body(Full::new(Bytes::from_static(target.body))).unwrap();
    let answered = tokio::time::timeout(Duration::from_secs(10), async {
        let response = client.request(request).await.map_err(|e| format!("client error: {e:?}"))?;
        let status = response.status().as_u16();
        let code = response.headers().get("x-ca-error-code").and_then(|v| v.to_str().ok()).map(str::to_owned);
        response.into_body().collect().await.map_err(|e| format!("body error: {e}"))?;
        Ok::<_, String>(Outcome { status, code })
    })
    .await;
    match answered {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(e)) => Outcome { status: 0, code: Some(e.chars().take(120).collect()) },
        Err(_) => Outcome { status: 0, code: Some("no answer within 10 s".into()) },
    }
}

/// The counts of one load.
struct Tally {
    name: &'static str,
    success: u16,
    counts: Counts,
}

impl Tally {
    fn answered_in(&self, phase: usize) -> impl Iterator<Item = (&Span, &Outcome, Seen)> {
        self.counts.iter().filter(move |((span, _), _)| span.answered == phase).map(|((span, o), seen)| (span, o, *seen))
    }

    fn failed_where(&self, keep: impl Fn(&Span) -> bool) -> BTreeMap<(Span, Outcome), usize> {
        let failed = self.counts.iter().filter(|((span, o), _)| o.status != self.success && keep(span));
        failed.map(|(key, seen)| (key.clone(), seen.count)).collect()
    }

    /// Per phase answered in: requests, failures by outcome, the slowest failure.
    fn print(&self) {
        let phases: std::collections::BTreeSet<usize> = self.counts.keys().map(|(span, _)| span.answered).collect();
        for phase in phases {
            let answered: usize = self.answered_in(phase).map(|(_, _, seen)| seen.count).sum();
            let mut failures: BTreeMap<&Outcome, usize> = BTreeMap::new();
            let mut slowest = Duration::ZERO;
            for (_, outcome, seen) in self.answered_in(phase).filter(|(_, o, _)| o.status != self.success) {
                *failures.entry(outcome).or_default() += seen.count;
                slowest = slowest.max(seen.slowest);
            }
            let failed: usize = failures.values().sum();
            eprintln!("chaos {}: phase {phase}: sent {answered}, failed {failed} {failures:?}, slowest failure {slowest:?}", self.name);
        }
    }

    /// Asserts that no request failed, and that each of `phases` answered some.
    fn assert_none_failed(&self, phases: &[usize]) {
        for &phase in phases {
            let answered: usize = self.answered_in(phase).map(|(_, _, seen)| seen.count).sum();
            assert!(answered >= 5, "{}: only {answered} requests answered in phase {phase}", self.name);
        }
        let failed = self.failed_where(|_| true);
        assert!(failed.is_empty(), "{}: failures: {failed:?}", self.name);
    }

    /// Asserts that every failure answered with `code` came within `bound`.
    fn assert_refused_within(&self, code: &str, bound: Duration) {
        let slow: Vec<_> = self
            .counts
            .iter()
            .filter(|((_, o), seen)| o.code.as_deref() == Some(code) && seen.slowest >= bound)
            .map(|((span, _), seen)| (*span, seen.slowest))
            .collect();
        assert!(slow.is_empty(), "{}: {code} answers slower than {bound:?}: {slow:?}", self.name);
    }

    /// Asserts that requests failed only when in flight during `outage`, each an answer
    /// `status` with one of `codes`, and that some did.
    fn assert_failures_only_during(&self, outage: std::ops::RangeInclusive<usize>, status: u16, codes: &[&str]) {
        let outside = self.failed_where(|span| !span.overlaps(&outage));
        assert!(outside.is_empty(), "{}: failures outside phases {outage:?}: {outside:?}", self.name);
        let during = self.failed_where(|span| span.overlaps(&outage));
        assert!(!during.is_empty(), "{}: no request failed during phases {outage:?}", self.name);
        for (_, outcome) in during.keys() {
            let coded = outcome.status == status && outcome.code.as_deref().is_some_and(|c| codes.contains(&c));
            assert!(coded, "{}: an answer without its documented code during phases {outage:?}: {during:?}", self.name);
        }
    }
}

// ---------------------------------------------------------------- the controller ---

/// A mock at GET /hello answering `version`, and GET /echo to `upstream`.
fn api(upstream: &Upstream, version: &str) -> String {
    format!(
        "apiVersion: switchyard.dev/v1alpha1\nkind: BackendService\nmetadata: {{name: hello}}\n\
         spec: {{mock: {{statusCode: 200, body: \"{version}\"}}}}\n---\n\
         apiVersion: switchyard.dev/v1alpha1\nkind: ApiRoute\nmetadata: {{name: hello}}\n\
         spec: {{match: {{path: /hello}}, backendRefs: [{{name: hello}}]}}\n---\n\
         apiVersion: switchyard.dev/v1alpha1\nkind: BackendService\nmetadata: {{name: echo}}\n\
         spec: {{http: {{urls: [\"{}\"]}}, timeout: 5s}}\n---\n\
         apiVersion: switchyard.dev/v1alpha1\nkind: ApiRoute\nmetadata: {{name: echo}}\n\
         spec: {{match: {{path: /echo}}, backendRefs: [{{name: echo}}]}}\n",
        upstream.url()
    )
}

fn pulling_proxy(scratch: &Scratch, controller_url: &str, cache_dir: &Path) -> Switchyard {
    let token = scratch.dir.path().join("token");
    Switchyard::proxy_with(controller_url, &token, cache_dir, &["--controller-ca", &scratch.path("ca.pem")])
}

async fn body_at(switchyard: &Switchyard, path: &str) -> Option<String> {
    let reply = get(&switchyard.proxy_url(path)).await.ok()?;
    (reply.status == 200).then(|| reply.text())
}

async fn wait_serving(what: &str, switchyard: &Switchyard, path: &str, expected: &str) {
    wait_until(what, CONVERGE, || async { body_at(switchyard, path).await.as_deref() == Some(expected) }).await;
}

async fn readyz(switchyard: &Switchyard) -> u16 {
    get(&switchyard.url("admin", "/readyz")).await.map(|r| r.status.as_u16()).unwrap_or(0)
}

/// Waits until the proxy's disk cache holds the version it serves; returns the file's bytes.
async fn wait_cached(proxy: &Switchyard, cache_dir: &Path) -> Vec<u8> {
    let version = proxy.status().await["snapshot"]["version"].clone();
    let file = cache_dir.join("snapshot.json");
    wait_until("the snapshot cached on disk", CONVERGE, || {
        let (file, version) = (file.clone(), version.clone());
        async move {
            let Ok(bytes) = std::fs::read(&file) else { return false };
            serde_json::from_slice::<serde_json::Value>(&bytes).is_ok_and(|cached| cached["snapshot"]["version"] == version)
        }
    })
    .await;
    std::fs::read(file).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_controller_killed_and_restarted_under_load_fails_no_request_and_a_proxy_restarted_meanwhile_serves_from_disk() {
    let upstream = Upstream::start("echo").await;
    let config = ConfigDir::with(&[("api.yaml", &api(&upstream, "v1"))]);
    let scratch = Scratch::new("chaos test CA");
    let token = scratch.token_file("token", TOKEN);
    let mut controller = scratch.standalone(&config, &token, "127.0.0.1:0");
    let snapshot_addr = controller.addrs["snapshot"].to_string();
    let controller_url = snapshot_url(&controller);
    let (steady_cache, restarted_cache) = (scratch.cache_dir("steady"), scratch.cache_dir("restarted"));
    let steady = pulling_proxy(&scratch, &controller_url, &steady_cache);
    let mut first_run = pulling_proxy(&scratch, &controller_url, &restarted_cache);
    for proxy in [&steady, &first_run] {
        wait_serving("v1 on a proxy", proxy, "/hello", "v1").await;
    }
    wait_cached(&first_run, &restarted_cache).await;

    // 0: all up. 1: the controller killed. 2: a proxy restarted from its disk snapshot while
    // the controller is down. 3: a new controller on the same port, with a change.
    let phase = Phase::default();
    let load = SteadyLoad::start("controller: the proxy running throughout", Target::get(steady.proxy_url("/echo")), 4, &phase);
    tokio::time::sleep(Duration::from_millis(500)).await;

    phase.set(1);
    controller.kill();
    tokio::time::sleep(Duration::from_secs(1)).await;

    phase.set(2);
    first_run.kill();
    let restarted = pulling_proxy(&scratch, &controller_url, &restarted_cache);
    // Ready as soon as its listeners are announced: the cache is loaded before.
    assert_eq!(readyz(&restarted).await, 200, "log:\n{}", restarted.log_text());
    let restarted_load =
        SteadyLoad::start("controller: the proxy restarted from disk", Target::get(restarted.proxy_url("/echo")), 2, &phase);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(body_at(&restarted, "/hello").await.as_deref(), Some("v1"));

    phase.set(3);
    config.write("api.yaml", &api(&upstream, "v2"));
    let _controller = scratch.standalone(&config, &token, &snapshot_addr);
    for proxy in [&steady, &restarted] {
        wait_serving("v2 from the new controller", proxy, "/hello", "v2").await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    let (steady_tally, restarted_tally) = (load.finish().await, restarted_load.finish().await);
    steady_tally.assert_none_failed(&[0, 1, 2, 3]);
    restarted_tally.assert_none_failed(&[2, 3]);
    assert!(restarted.log_text().contains("snapshot pull failed"), "the restarted proxy never saw the controller down");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_or_corrupted_disk_snapshot_is_refused_with_a_log_line_and_never_served() {
    let upstream = Upstream::start("echo").await;
    let config = ConfigDir::with(&[("api.yaml", &api(&upstream, "cached"))]);
    let scratch = Scratch::new("chaos test CA");
    let token = scratch.token_file("token", TOKEN);
    let mut controller = scratch.standalone(&config, &token, "127.0.0.1:0");
    let snapshot_addr = controller.addrs["snapshot"].to_string();
    let controller_url = snapshot_url(&controller);
    let source_cache = scratch.cache_dir("source");
    let mut source = pulling_proxy(&scratch, &controller_url, &source_cache);
    wait_serving("the source proxy serving", &source, "/hello", "cached").await;
    let good = wait_cached(&source, &source_cache).await;
    source.kill();
    controller.kill();

    // A change that still decodes: the mock's body, one byte. Only the digest can tell.
    let flipped = replace_once(&good, b"\"cached\"", b"\"cachef\"");
    assert!(serde_json::from_slice::<serde_json::Value>(&flipped).is_ok(), "the flipped file is still JSON");
    let mut zeroed = good.clone();
    let middle = good.len() / 2;
    zeroed[middle..middle + 16].fill(0);
    let corrupt: [(&str, Vec<u8>); 5] = [
        ("truncated to half", good[..good.len() / 2].to_vec()),
        ("the last byte cut", good[..good.len() - 1].to_vec()),
        ("one byte of a value changed", flipped),
        ("16 bytes zeroed", zeroed),
        ("empty", Vec::new()),
    ];

    // The controller is down: each proxy has only its disk.
    let intact = proxy_on_cache(&scratch, &controller_url, "intact", &good);
    assert_eq!(readyz(&intact).await, 200, "the intact cache is served (log:\n{})", intact.log_text());
    assert_eq!(body_at(&intact, "/hello").await.as_deref(), Some("cached"));
    let mut refusing = Vec::new();
    for (n, (what, bytes)) in corrupt.iter().enumerate() {
        let proxy = proxy_on_cache(&scratch, &controller_url, &format!("corrupt-{n}"), bytes);
        wait_until(&format!("the refusal logged ({what})"), CONVERGE, || async {
            proxy.log_text().contains("refusing a corrupt cached snapshot")
        })
        .await;
        assert_eq!(readyz(&proxy).await, 503, "{what}: ready on a corrupt cache");
        let reply = get(&proxy.proxy_url("/hello")).await.unwrap();
        assert_eq!((reply.status.as_u16(), reply.error_code()), (503, Some("A503NR")), "{what}: {reply:?}");
        refusing.push((*what, scratch.dir.path().join(format!("corrupt-{n}")), proxy));
    }

    // The controller comes back: each refusing proxy serves its snapshot and caches it whole.
    config.write("api.yaml", &api(&upstream, "fresh"));
    let _controller = scratch.standalone(&config, &token, &snapshot_addr);
    for (what, cache_dir, proxy) in &refusing {
        wait_serving(&format!("the controller's snapshot after {what}"), proxy, "/hello", "fresh").await;
        assert_eq!(readyz(proxy).await, 200);
        wait_cached(proxy, cache_dir).await;
    }
}

/// A proxy started on a cache directory holding `bytes` as its snapshot file.
fn proxy_on_cache(scratch: &Scratch, controller_url: &str, name: &str, bytes: &[u8]) -> Switchyard {
    use std::os::unix::fs::PermissionsExt;
    let dir = scratch.cache_dir(name);
    let file = dir.join("snapshot.json");
    std::fs::write(&file, bytes).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    pulling_proxy(scratch, controller_url, &dir)
}

fn replace_once(bytes: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let at = bytes.windows(from.len()).position(|w| w == from).expect("the pattern is in the file");
    let mut out = bytes.to_vec();
    out[at..at + from.len()].copy_from_slice(to);
    out
}

// ------------------------------------------------- a database, a bus, a registry ---

fn dependencies(upstream: &Upstream, pg: &Postgres, nats: &NatsServer, zk: &ZooKeeperServer) -> String {
    format!(
        r#"apiVersion: switchyard.dev/v1alpha1
kind: BackendService
metadata: {{name: plain}}
spec: {{http: {{urls: ["{plain}"]}}, timeout: 3s}}
---
apiVersion: switchyard.dev/v1alpha1
kind: ApiRoute
metadata: {{name: plain}}
spec: {{match: {{path: /plain}}, backendRefs: [{{name: plain}}]}}
---
apiVersion: switchyard.dev/v1alpha1
kind: BackendService
metadata: {{name: items}}
spec:
  dataService:
    driver: postgres
    connection: {{url: "{pg}"}}
    query: "SELECT id, name FROM items ORDER BY id"
---
apiVersion: switchyard.dev/v1alpha1
kind: ApiRoute
metadata: {{name: items}}
spec: {{match: {{path: /items}}, timeout: 3s, backendRefs: [{{name: items}}]}}
---
apiVersion: switchyard.dev/v1alpha1
kind: BackendService
metadata: {{name: bus}}
spec:
  eventBus:
    nats: {{url: "{nats}", subject: orders.created}}
    source: /shop/orders
    type: com.example.order.created
---
apiVersion: switchyard.dev/v1alpha1
kind: ApiRoute
metadata: {{name: events}}
spec: {{match: {{path: /events}}, timeout: 3s, backendRefs: [{{name: bus}}]}}
---
apiVersion: switchyard.dev/v1alpha1
kind: BackendService
metadata: {{name: orders}}
spec:
  registry: {{zookeeper: {{servers: ["{zk}"], path: /services/orders, layout: SpringCloud}}}}
---
apiVersion: switchyard.dev/v1alpha1
kind: ApiRoute
metadata: {{name: orders}}
spec: {{match: {{path: /orders}}, timeout: 3s, backendRefs: [{{name: orders}}]}}
"#,
        plain = upstream.url(),
        pg = pg.url(),
        nats = nats.url(),
        zk = zk.connect_string(),
    )
}

/// The status and error code one request to `target` gets.
async fn answer(target: &Target) -> Option<(u16, Option<String>)> {
    let reply = send(target.method.clone(), &target.url, &[], Bytes::from_static(target.body)).await.ok()?;
    Some((reply.status.as_u16(), reply.error_code().map(str::to_owned)))
}

async fn wait_answer(what: &str, target: &Target, status: u16, code: Option<&str>) {
    wait_until(what, CONVERGE, || async { answer(target).await.is_some_and(|(s, c)| s == status && c.as_deref() == code) }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_bus_or_registry_down_under_load_fails_only_its_own_route_with_its_codes() {
    let (plain, registered) = (Upstream::start("plain").await, Upstream::start("registered").await);
    let mut pg = Postgres::start();
    testing::execute(
        Driver::Postgres,
        &pg.url(),
        &["CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL)", "INSERT INTO items VALUES (1, 'pen'), (2, 'lamp')"],
    )
    .await;
    let mut nats = NatsServer::start();
    nats.create_stream("ORDERS", &["orders.>"]).await;
    let mut zk = ZooKeeperServer::start();
    let app = zk.client().await;
    register_spring_cloud(&app, "orders", "orders-1", "127.0.0.1", registered.addr.port(), None, &[]).await.unwrap();
    let config = ConfigDir::with(&[("api.yaml", &dependencies(&plain, &pg, &nats, &zk))]);
    let gw = Switchyard::standalone(config.path(), &[]);
    gw.wait_ready().await;

    let targets = [
        ("plain", Target::get(gw.proxy_url("/plain"))),
        ("database", Target::get(gw.proxy_url("/items"))),
        ("bus", Target::post(gw.proxy_url("/events"), b"{\"order\": 1}", 202)),
        ("registry", Target::get(gw.proxy_url("/orders"))),
    ];
    for (name, target) in &targets {
        wait_answer(&format!("{name} serving"), target, target.success, None).await;
    }
    let phase = Phase::default();
    let loads: Vec<SteadyLoad> = targets.iter().map(|(name, target)| SteadyLoad::start(name, target.clone(), 2, &phase)).collect();
    let (database, bus) = (&targets[1].1, &targets[2].1);
    let hold = || tokio::time::sleep(Duration::from_millis(500));

    // 0: all up. 1: PostgreSQL killed. 2: it is back. 3: NATS killed. 4: it is back.
    // 5: ZooKeeper killed. 6: it is back.
    hold().await;
    phase.set(1);
    tokio::task::block_in_place(|| pg.stop());
    wait_answer("the database route refusing", database, 503, Some("D503DU")).await;
    hold().await;
    phase.set(2);
    tokio::task::block_in_place(|| pg.restart());
    wait_answer("the database route serving again", database, 200, None).await;
    hold().await;

    phase.set(3);
    tokio::task::block_in_place(|| nats.stop());
    wait_answer("the bus route refusing", bus, 503, Some("D503EB")).await;
    hold().await;
    phase.set(4);
    tokio::task::block_in_place(|| nats.restart());
    wait_answer("the bus route publishing again", bus, 202, None).await;
    hold().await;

    phase.set(5);
    tokio::task::block_in_place(|| zk.stop());
    wait_until("the registry's loss noticed", CONVERGE, || async {
        gw.condition("BackendService", "orders", "Ready").await.is_some_and(|(_, reason)| reason == "RegistryUnreachable")
    })
    .await;
    hold().await;
    phase.set(6);
    tokio::task::block_in_place(|| zk.restart());
    wait_until("the registry back", CONVERGE, || async {
        gw.condition("BackendService", "orders", "Ready").await.is_some_and(|(_, reason)| reason == "Ready")
    })
    .await;
    hold().await;

    let mut tallies = Vec::new();
    for load in loads {
        tallies.push(load.finish().await);
    }
    let [plain_tally, database_tally, bus_tally, registry_tally] = &tallies[..] else { unreachable!() };
    let all = [0, 1, 2, 3, 4, 5, 6];
    plain_tally.assert_none_failed(&all);
    // A lost registry leaves its last view serving (docs/registries.md).
    registry_tally.assert_none_failed(&all);
    database_tally.assert_failures_only_during(1..=2, 503, &["D503DU", "D503DP", "D504DT"]);
    // A database that refuses connections is refused at once, not at the route's 3 s timeout.
    database_tally.assert_refused_within("D503DU", Duration::from_secs(1));
    // A publish in flight when the bus goes waits for its ack until the route's timeout.
    bus_tally.assert_failures_only_during(3..=4, 503, &["D503EB", "D503ET"]);
    drop(app);
}
