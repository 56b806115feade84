//! The discovery benchmark (`make bench-discovery`, `bench/discovery.sh`; ignored by default).
//!
//! For ZooKeeper and for Nacos (rnacos), in one run:
//!
//! - change to traffic: the real binary (standalone) watches the registry while a keep-alive
//!   client sends requests through it without pause; each change registers an instance on a
//!   fresh upstream, and the time runs from just before the registration call to the first
//!   response that upstream answers. The previous instance is deregistered afterwards, and the
//!   next change waits until the gateway and the subscriber no longer see it.
//! - registry push: the same changes seen by an independent subscriber in this process (a
//!   separate ZooKeeper session with a persistent recursive watch; a separate Nacos watch,
//!   `switchyard_nacos::watch`, on its own connection), timed from the same instant.
//! - full re-sync: 1,000 instances registered, then a fresh watch (the crate's `watch`, not
//!   the gateway) timed from its start until it publishes `Synced` with all of them.
//! - ZooKeeper again with 1,000 weight-0 (idle) instances on the watched path: the watch
//!   re-reads the whole path on every change, so this is what a change costs in a big service.
//!
//! It prints a table and PASS/FAIL for the targets, then asserts them: ZooKeeper change to
//! traffic p99 < 1 s; Nacos change to traffic p99 < the subscriber's p99 + 0.5 s.
//!
//! Env (defaults): DISCOVERY_BENCH_ZK_CHANGES=100 DISCOVERY_BENCH_ZK_LARGE_CHANGES=30 (0 skips)
//! DISCOVERY_BENCH_NACOS_CHANGES=50
//! DISCOVERY_BENCH_RESYNC_INSTANCES=1000 DISCOVERY_BENCH_RESYNC_RUNS=10
//! DISCOVERY_BENCH_GAP_MS=0 (pause between two requests of the traffic loop).

mod support;

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, RandomState};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use support::registries::{gateway, route_and_backend};
use support::upstream::Upstream;
use switchyard_api::ZooKeeperLayout;
use switchyard_compile::{Discovered, NacosWatch, SyncState};
use switchyard_nacos::testing::NacosServer;
use switchyard_zookeeper::testing::{ZooKeeperServer, register_plain};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use zookeeper_client::{Acls, AddWatchMode, CreateMode, EventType};

/// Any single wait (a change reaching traffic, a removal, a re-sync) fails past this.
const WAIT: Duration = Duration::from_secs(15);
/// Consecutive answers from the newest upstream that show the previous one is gone (the
/// two alternate under round robin while both are registered).
const STREAK: usize = 20;
const ZK_DIR: &str = "/bench/orders";
const ZK_LARGE_DIR: &str = "/bench/large";
const ZK_RESYNC_DIR: &str = "/bench/resync";
const GROUP: &str = "DEFAULT_GROUP";
const LOCALHOST: &str = "127.0.0.1";
/// rnacos batches pushes for about 0.5 s; changes start at a random point of that window.
const NACOS_JITTER: Duration = Duration::from_millis(500);
const ZK_JITTER: Duration = Duration::from_millis(20);
const ZK_P99_TARGET: Duration = Duration::from_secs(1);
const NACOS_MARGIN: Duration = Duration::from_millis(500);

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: make bench-discovery"]
async fn discovery_change_to_traffic_and_full_resync() {
    let zk_changes = env_number("DISCOVERY_BENCH_ZK_CHANGES", 100) as usize;
    let zk_large_changes = env_number("DISCOVERY_BENCH_ZK_LARGE_CHANGES", 30) as usize;
    let nacos_changes = env_number("DISCOVERY_BENCH_NACOS_CHANGES", 50) as usize;
    let resync_instances = env_number("DISCOVERY_BENCH_RESYNC_INSTANCES", 1000) as usize;
    let resync_runs = env_number("DISCOVERY_BENCH_RESYNC_RUNS", 10) as usize;
    let gap = Duration::from_millis(env_number("DISCOVERY_BENCH_GAP_MS", 0));
    assert!(zk_changes > 0 && nacos_changes > 0 && resync_instances > 0 && resync_runs > 0, "counts must be above 0");
    let load_before = load_average();

    let zk = ZooKeeperServer::start();
    eprintln!("== zookeeper: {zk_changes} changes through the gateway");
    let zk_run = zookeeper_changes(&zk, ZK_DIR, 0, zk_changes, gap).await;
    let zk_large_run = if zk_large_changes > 0 {
        eprintln!("== zookeeper: {zk_large_changes} changes on a path that also holds {resync_instances} idle instances");
        Some(zookeeper_changes(&zk, ZK_LARGE_DIR, resync_instances, zk_large_changes, gap).await)
    } else {
        None
    };
    eprintln!("== zookeeper: full re-sync of {resync_instances} instances, {resync_runs} fresh watches");
    let zk_resync = zookeeper_resync(&zk, resync_instances, resync_runs).await;
    drop(zk);

    let nacos = Arc::new(NacosServer::start().await);
    eprintln!("== nacos: {nacos_changes} changes through the gateway");
    let nacos_run = nacos_changes_run(&nacos, nacos_changes, gap).await;
    eprintln!("== nacos: full re-sync of {resync_instances} instances, {resync_runs} fresh watches");
    let nacos_resync = nacos_resync(&nacos, resync_instances, resync_runs).await;
    drop(nacos);

    let zk_row = Row::new("zookeeper", &zk_run);
    let nacos_row = Row::new("nacos", &nacos_run);
    let zk_pass = zk_row.gateway.p99 < ZK_P99_TARGET.as_secs_f64() * 1e3;
    let nacos_limit = nacos_row.subscriber.p99 + NACOS_MARGIN.as_secs_f64() * 1e3;
    let nacos_pass = nacos_row.gateway.p99 < nacos_limit;

    let mut report = String::new();
    let gap_text = if gap.is_zero() { "none".to_owned() } else { format!("{} ms", gap.as_millis()) };
    report.push_str(&format!(
        "\ndiscovery benchmark ({} cores, load average {load_before} before, {} after; traffic: one keep-alive client, \
         pause between requests: {gap_text})\n",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        load_average()
    ));
    let large_name = format!("zk+{resync_instances}idle");
    let mut runs = vec![(&zk_run, "zookeeper".to_owned())];
    if let Some(run) = &zk_large_run {
        runs.push((run, large_name));
    }
    runs.push((&nacos_run, "nacos".to_owned()));
    for (run, name) in &runs {
        report.push_str(&Row::new(name, run).line());
    }
    report.push_str("  change->traffic: registration call to the first answer from the new upstream; registry push: the same\n");
    report.push_str("  change seen by an independent subscriber; gateway adds: per change, gateway minus subscriber\n");
    if zk_large_run.is_some() {
        report.push_str(&format!(
            "  zk+{resync_instances}idle: the watched path also holds {resync_instances} weight-0 instances (read on every change, never served)\n"
        ));
    }
    for (run, name) in &runs {
        report.push_str(&format!(
            "{name:<14} registration call p50 {} | traffic: {} answers, {} failed during the changes{}\n",
            ms(percentile(&run.samples.iter().map(|s| s.call).collect::<Vec<_>>(), 0.5)),
            run.answered,
            run.failed,
            run.last_failure.as_ref().map(|why| format!(" (last: {why})")).unwrap_or_default()
        ));
    }
    for (times, name) in [(&zk_resync, "zookeeper"), (&nacos_resync, "nacos")] {
        report.push_str(&format!(
            "{name:<14} full re-sync of {resync_instances} instances (fresh watch to Synced): median {} min {} max {} over {} runs\n",
            ms(percentile(times, 0.5)),
            ms(percentile(times, 0.0)),
            ms(percentile(times, 1.0)),
            times.len()
        ));
    }
    let verdict = |pass: bool| if pass { "PASS" } else { "FAIL" };
    report.push_str(&format!(
        "{} zookeeper change->traffic p99 {:.1} ms < {} ms\n",
        verdict(zk_pass),
        zk_row.gateway.p99,
        ZK_P99_TARGET.as_millis()
    ));
    report.push_str(&format!(
        "{} nacos change->traffic p99 {:.1} ms < registry push p99 {:.1} ms + {} ms = {:.1} ms\n",
        verdict(nacos_pass),
        nacos_row.gateway.p99,
        nacos_row.subscriber.p99,
        NACOS_MARGIN.as_millis(),
        nacos_limit
    ));
    println!("{report}");

    assert!(zk_pass, "ZooKeeper change->traffic p99 {:.1} ms is not below {ZK_P99_TARGET:?}", zk_row.gateway.p99);
    assert!(nacos_pass, "Nacos change->traffic p99 {:.1} ms is not below {nacos_limit:.1} ms", nacos_row.gateway.p99);
    let failed: u64 = runs.iter().map(|(run, _)| run.failed).sum();
    assert_eq!(failed, 0, "no request may fail while instances change");
}

/// `/proc/loadavg`'s 1-minute figure (other work on the machine skews the numbers).
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg").ok().and_then(|l| l.split_whitespace().next().map(str::to_owned)).unwrap_or_else(|| "?".into())
}

// ---------------------------------------------------------------------------------------
// Changes through the gateway

/// One change: from just before the registration call until the first answer from the new
/// upstream (gateway), until the subscriber saw it (subscriber), until the call returned.
struct Sample {
    gateway: Duration,
    subscriber: Duration,
    call: Duration,
}

struct Run {
    samples: Vec<Sample>,
    answered: u64,
    failed: u64,
    last_failure: Option<String>,
}

/// How a registry is changed.
trait Registry {
    async fn register(&mut self, addr: SocketAddr);
    async fn deregister(&mut self, addr: SocketAddr);
}

struct ZooKeeperApp {
    client: zookeeper_client::Client,
    dir: &'static str,
    paths: HashMap<SocketAddr, String>,
}

impl Registry for ZooKeeperApp {
    async fn register(&mut self, addr: SocketAddr) {
        let path = register_plain(&self.client, self.dir, &addr.to_string(), b"").await.expect("register on ZooKeeper");
        self.paths.insert(addr, path);
    }

    async fn deregister(&mut self, addr: SocketAddr) {
        let path = self.paths.remove(&addr).expect("registered before");
        self.client.delete(&path, None).await.expect("deregister on ZooKeeper");
    }
}

struct NacosApp<'a>(&'a NacosServer);

impl Registry for NacosApp<'_> {
    async fn register(&mut self, addr: SocketAddr) {
        self.0.register(GROUP, "orders", LOCALHOST, addr.port(), 1.0, "{}", "").await;
    }

    async fn deregister(&mut self, addr: SocketAddr) {
        self.0.deregister(GROUP, "orders", LOCALHOST, addr.port()).await;
    }
}

async fn upstreams(prefix: &str, n: usize) -> Vec<Upstream> {
    let mut all = Vec::with_capacity(n);
    for i in 0..n {
        all.push(Upstream::start(&format!("{prefix}{i}")).await);
    }
    all
}

/// Changes on `dir`, which also holds `idle` weight-0 instances (read, never served).
async fn zookeeper_changes(zk: &ZooKeeperServer, dir: &'static str, idle: usize, changes: usize, gap: Duration) -> Run {
    let pool = upstreams("zk-", changes + 1).await;
    let app = zk.client().await;
    app.mkdir(dir, &CreateMode::Persistent.with_acls(Acls::anyone_all())).await.expect("the registration path");
    let idle_nodes: Vec<(String, String)> = (0..idle)
        .map(|i| (format!("{dir}/idle-{i}"), format!("{{\"host\": \"127.0.0.1\", \"port\": {}, \"weight\": 0}}", 30_000 + i)))
        .collect();
    let options = CreateMode::Persistent.with_acls(Acls::anyone_all());
    // Sent in call order and answered in order: one pipelined batch.
    let creates: Vec<_> = idle_nodes.iter().map(|(path, data)| app.create(path, data.as_bytes(), &options)).collect();
    for create in creates {
        create.await.expect("create an idle instance");
    }
    let subscriber = zookeeper_subscriber(zk, dir).await;
    let registry = format!("{{zookeeper: {{servers: [\"{}\"], path: {dir}, layout: Plain}}}}", zk.connect_string());
    let (_config, gw) = gateway(&route_and_backend(&registry)).await;
    let traffic = Traffic::start(&gw.proxy_url("/orders"), gap);
    let mut app = ZooKeeperApp { client: app, dir, paths: HashMap::new() };
    measure(&mut app, &pool, &traffic, &subscriber.view, ZK_JITTER).await
}

async fn nacos_changes_run(nacos: &NacosServer, changes: usize, gap: Duration) -> Run {
    let pool = upstreams("nacos-", changes + 1).await;
    let subscriber = nacos_subscriber(nacos.watch_spec("orders"));
    let registry = format!("{{nacos: {{serverAddr: \"{}\", service: orders}}}}", nacos.http_addr());
    let (_config, gw) = gateway(&route_and_backend(&registry)).await;
    let traffic = Traffic::start(&gw.proxy_url("/orders"), gap);
    measure(&mut NacosApp(nacos), &pool, &traffic, &subscriber.view, NACOS_JITTER).await
}

/// Registers `pool[0]`, then for each next upstream: registers it (timed), deregisters the
/// previous one and waits until it is gone everywhere.
async fn measure(registry: &mut impl Registry, pool: &[Upstream], traffic: &Traffic, view: &Shared<View>, jitter: Duration) -> Run {
    let key = |up: &Upstream| up.addr.to_string();
    registry.register(pool[0].addr).await;
    wait_for("the first instance serving", || {
        traffic.streak_of(&pool[0].name) >= STREAK && view.lock().unwrap().present.contains(&key(&pool[0]))
    })
    .await;
    let (answered_before, failed_before, _) = traffic.counts();

    let mut samples = Vec::new();
    for (n, pair) in pool.windows(2).enumerate() {
        let (old, new) = (&pair[0], &pair[1]);
        tokio::time::sleep(random_below(jitter)).await;
        let start = Instant::now();
        registry.register(new.addr).await;
        let call = start.elapsed();
        let what = format!("change {} ({}) reaching traffic and the subscriber", n + 1, new.name);
        wait_for(&what, || traffic.first_answer(&new.name).is_some() && view.lock().unwrap().appeared.contains_key(&key(new))).await;
        let gateway = traffic.first_answer(&new.name).unwrap() - start;
        let subscriber = view.lock().unwrap().appeared[&key(new)] - start;
        samples.push(Sample { gateway, subscriber, call });

        registry.deregister(old.addr).await;
        let what = format!("{} gone after change {}", old.name, n + 1);
        wait_for(&what, || traffic.streak_of(&new.name) >= STREAK && !view.lock().unwrap().present.contains(&key(old))).await;
        if (n + 1) % 10 == 0 {
            eprintln!("   {} changes, last: gateway {} subscriber {}", n + 1, ms(gateway), ms(subscriber));
        }
    }
    let (answered, failed, last_failure) = traffic.counts();
    let last_failure = if failed > failed_before { last_failure } else { None };
    Run { samples, answered: answered - answered_before, failed: failed - failed_before, last_failure }
}

// ---------------------------------------------------------------------------------------
// Traffic

type Shared<T> = Arc<Mutex<T>>;

#[derive(Default)]
struct Answers {
    /// When each upstream answered first.
    first: HashMap<String, Instant>,
    /// The upstream of the last answers and how many in a row it gave.
    streak: (String, usize),
    answered: u64,
    failed: u64,
    last_failure: Option<String>,
}

/// A keep-alive client sending requests through the gateway in a loop; stops on drop.
struct Traffic {
    answers: Shared<Answers>,
    stop: Arc<AtomicBool>,
    task: JoinHandle<()>,
}

impl Traffic {
    fn start(url: &str, gap: Duration) -> Self {
        let answers: Shared<Answers> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let uri: http::Uri = url.parse().expect("the proxy URL");
        let (sink, stopped) = (answers.clone(), stop.clone());
        let task = tokio::spawn(async move {
            let client: HttpClient<HttpConnector, Full<Bytes>> = HttpClient::builder(TokioExecutor::new()).build(HttpConnector::new());
            while !stopped.load(Ordering::Relaxed) {
                let request = Request::get(uri.clone()).body(Full::new(Bytes::new())).unwrap();
                let outcome = match tokio::time::timeout(Duration::from_secs(5), client.request(request)).await {
                    Ok(Ok(response)) => {
                        let at = Instant::now();
                        let who = response.headers().get("x-upstream").and_then(|v| v.to_str().ok()).map(str::to_owned);
                        let status = response.status();
                        let _ = response.into_body().collect().await;
                        match who {
                            Some(who) if status == 200 => Ok((who, at)),
                            _ => Err(format!("HTTP {status}")),
                        }
                    }
                    Ok(Err(error)) => Err(format!("{error:?}")),
                    Err(_) => Err("timeout".to_owned()),
                };
                sink.lock().unwrap().record(outcome);
                if !gap.is_zero() {
                    tokio::time::sleep(gap).await;
                }
            }
        });
        Self { answers, stop, task }
    }

    fn first_answer(&self, upstream: &str) -> Option<Instant> {
        self.answers.lock().unwrap().first.get(upstream).copied()
    }

    fn streak_of(&self, upstream: &str) -> usize {
        let answers = self.answers.lock().unwrap();
        if answers.streak.0 == upstream { answers.streak.1 } else { 0 }
    }

    /// Answers, failures, and why the last failure failed.
    fn counts(&self) -> (u64, u64, Option<String>) {
        let answers = self.answers.lock().unwrap();
        (answers.answered, answers.failed, answers.last_failure.clone())
    }
}

impl Answers {
    fn record(&mut self, outcome: Result<(String, Instant), String>) {
        match outcome {
            Ok((who, at)) => {
                self.answered += 1;
                self.first.entry(who.clone()).or_insert(at);
                if self.streak.0 == who {
                    self.streak.1 += 1;
                } else {
                    self.streak = (who, 1);
                }
            }
            Err(why) => {
                self.failed += 1;
                self.streak = (String::new(), 0);
                self.last_failure = Some(why);
            }
        }
    }
}

impl Drop for Traffic {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.task.abort();
    }
}

// ---------------------------------------------------------------------------------------
// Independent subscribers

/// What a subscriber saw: when each `host:port` first appeared, and what is there now.
#[derive(Default)]
struct View {
    appeared: HashMap<String, Instant>,
    present: HashSet<String>,
}

impl View {
    fn set(&mut self, present: HashSet<String>, at: Instant) {
        for entry in &present {
            self.appeared.entry(entry.clone()).or_insert(at);
        }
        self.present = present;
    }
}

/// A subscriber's tasks (aborted on drop) and what it saw.
struct Subscriber {
    view: Shared<View>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.tasks.iter().for_each(JoinHandle::abort);
    }
}

/// A ZooKeeper session of its own with a persistent recursive watch on `dir`: node created
/// and deleted events under it, timed on arrival.
async fn zookeeper_subscriber(zk: &ZooKeeperServer, dir: &str) -> Subscriber {
    let client = zk.client().await;
    let mut watcher = client.watch(dir, AddWatchMode::PersistentRecursive).await.expect("a persistent recursive watch");
    let view: Shared<View> = Arc::default();
    let (seen, prefix) = (view.clone(), format!("{dir}/"));
    let task = tokio::spawn(async move {
        let _session = client;
        loop {
            let event = watcher.changed().await;
            let at = Instant::now();
            let name = event.path.strip_prefix(&prefix).map(str::to_owned);
            let mut view = seen.lock().unwrap();
            match (event.event_type, name) {
                (EventType::NodeCreated, Some(name)) => {
                    view.appeared.entry(name.clone()).or_insert(at);
                    view.present.insert(name);
                }
                (EventType::NodeDeleted, Some(name)) => {
                    view.present.remove(&name);
                }
                (EventType::Session, _) if event.session_state.is_terminated() => panic!("the subscriber's session ended"),
                _ => {}
            }
        }
    });
    Subscriber { view, tasks: vec![task] }
}

/// A Nacos watch of its own (its own gRPC connection and subscription): the instances of
/// every publication, timed on arrival.
fn nacos_subscriber(spec: NacosWatch) -> Subscriber {
    let (tx, mut rx) = watch::channel(Discovered::default());
    let client = tokio::spawn(switchyard_nacos::watch(spec, tx));
    let view: Shared<View> = Arc::default();
    let seen = view.clone();
    let follower = tokio::spawn(async move {
        while rx.changed().await.is_ok() {
            let at = Instant::now();
            let present = rx.borrow_and_update().instances.iter().map(|i| format!("{}:{}", i.host, i.port)).collect();
            seen.lock().unwrap().set(present, at);
        }
    });
    Subscriber { view, tasks: vec![client, follower] }
}

// ---------------------------------------------------------------------------------------
// Full re-sync

/// Times fresh watches until each publishes `Synced` with `expected` instances.
async fn time_fresh_watches(runs: usize, expected: usize, start: impl Fn(watch::Sender<Discovered>) -> JoinHandle<()>) -> Vec<Duration> {
    // One untimed watch first: every registration is visible before the timing starts.
    let mut times = Vec::new();
    for run in 0..=runs {
        let (tx, mut rx) = watch::channel(Discovered::default());
        let began = Instant::now();
        let task = start(tx);
        let synced = rx.wait_for(|d| matches!(d.sync, SyncState::Synced { .. }) && d.instances.len() == expected);
        let outcome = tokio::time::timeout(WAIT, synced).await.map(|r| r.is_ok());
        let elapsed = began.elapsed();
        task.abort();
        if outcome != Ok(true) {
            let last = rx.borrow();
            panic!("a fresh watch did not sync {expected} instances within {WAIT:?}: {:?}, {} instances", last.sync, last.instances.len());
        }
        if run > 0 {
            times.push(elapsed);
        }
    }
    times
}

async fn zookeeper_resync(zk: &ZooKeeperServer, instances: usize, runs: usize) -> Vec<Duration> {
    let app = zk.client().await;
    app.mkdir(ZK_RESYNC_DIR, &CreateMode::Persistent.with_acls(Acls::anyone_all())).await.expect("the re-sync path");
    let paths: Vec<String> = (0..instances).map(|i| format!("{ZK_RESYNC_DIR}/127.0.0.1:{}", 30_000 + i)).collect();
    let options = CreateMode::Ephemeral.with_acls(Acls::anyone_all());
    // Sent in call order and answered in order: one pipelined batch.
    let creates: Vec<_> = paths.iter().map(|path| app.create(path, b"", &options)).collect();
    for create in creates {
        create.await.expect("create a re-sync instance");
    }
    let spec = zk.watch_spec(ZK_RESYNC_DIR, ZooKeeperLayout::Plain);
    let times = time_fresh_watches(runs, instances, |tx| tokio::spawn(switchyard_zookeeper::watch(spec.clone(), tx))).await;
    drop(app);
    times
}

async fn nacos_resync(nacos: &Arc<NacosServer>, instances: usize, runs: usize) -> Vec<Duration> {
    // rnacos probes persistent instances over TCP: every one needs a listening port.
    let listeners = listening_ports(instances).await;
    // 16 registrations at a time (the register future is not Send: local tasks).
    let registering = tokio::task::LocalSet::new();
    registering
        .run_until(async {
            let mut tasks = Vec::new();
            for chunk in listeners.ports.chunks(instances.div_ceil(16)) {
                let (nacos, chunk) = (nacos.clone(), chunk.to_vec());
                tasks.push(tokio::task::spawn_local(async move {
                    for port in chunk {
                        nacos.register(GROUP, "resync", LOCALHOST, port, 1.0, "{}", "").await;
                    }
                }));
            }
            for task in tasks {
                task.await.expect("registrations");
            }
        })
        .await;
    let spec = nacos.watch_spec("resync");
    time_fresh_watches(runs, instances, |tx| tokio::spawn(switchyard_nacos::watch(spec.clone(), tx))).await
}

/// `n` loopback ports that accept (and close) connections, closed on drop.
struct Listening {
    ports: Vec<u16>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Listening {
    fn drop(&mut self) {
        self.tasks.iter().for_each(JoinHandle::abort);
    }
}

async fn listening_ports(n: usize) -> Listening {
    let mut listening = Listening { ports: Vec::with_capacity(n), tasks: Vec::with_capacity(n) };
    for _ in 0..n {
        let listener = tokio::net::TcpListener::bind((LOCALHOST, 0)).await.expect("a loopback port");
        listening.ports.push(listener.local_addr().unwrap().port());
        listening.tasks.push(tokio::spawn(async move {
            while let Ok((connection, _)) = listener.accept().await {
                drop(connection);
            }
        }));
    }
    listening
}

// ---------------------------------------------------------------------------------------
// Numbers

/// Nearest rank: the smallest sample with at least `p` of the samples at or below it.
fn percentile(samples: &[Duration], p: f64) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort();
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn percentile_f64(samples: &[f64], p: f64) -> f64 {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

struct Stat {
    p50: f64,
    p99: f64,
}

impl Stat {
    fn of(samples_ms: &[f64]) -> Self {
        Self { p50: percentile_f64(samples_ms, 0.5), p99: percentile_f64(samples_ms, 0.99) }
    }
}

struct Row<'a> {
    name: &'a str,
    changes: usize,
    gateway: Stat,
    subscriber: Stat,
    /// Per change, gateway minus subscriber.
    added: Stat,
}

impl<'a> Row<'a> {
    fn new(name: &'a str, run: &Run) -> Self {
        let millis = |f: &dyn Fn(&Sample) -> Duration| run.samples.iter().map(|s| f(s).as_secs_f64() * 1e3).collect::<Vec<_>>();
        let added: Vec<f64> = run.samples.iter().map(|s| (s.gateway.as_secs_f64() - s.subscriber.as_secs_f64()) * 1e3).collect();
        Self {
            name,
            changes: run.samples.len(),
            gateway: Stat::of(&millis(&|s| s.gateway)),
            subscriber: Stat::of(&millis(&|s| s.subscriber)),
            added: Stat::of(&added),
        }
    }

    fn line(&self) -> String {
        format!(
            "{:<14} {:>3} changes  change->traffic p50 {:>6.1} ms p99 {:>6.1} ms | registry push p50 {:>6.1} ms p99 {:>6.1} ms | \
             gateway adds p50 {:>5.1} ms p99 {:>5.1} ms (p50 diff {:.1} ms, p99 diff {:.1} ms)\n",
            self.name,
            self.changes,
            self.gateway.p50,
            self.gateway.p99,
            self.subscriber.p50,
            self.subscriber.p99,
            self.added.p50,
            self.added.p99,
            self.gateway.p50 - self.subscriber.p50,
            self.gateway.p99 - self.subscriber.p99,
        )
    }
}

fn random_below(limit: Duration) -> Duration {
    let nanos = limit.as_nanos() as u64;
    if nanos == 0 { Duration::ZERO } else { Duration::from_nanos(RandomState::new().hash_one(Instant::now()) % nanos) }
}

/// Polls `done` every millisecond (the times measured are taken where the events arrive,
/// not here) and panics after [`WAIT`].
async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !done() {
        assert!(Instant::now() < deadline, "timed out after {WAIT:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}
