//! `registry` backends end to end: the real binary (standalone) watching a real ZooKeeper
//! and a real Nacos-compatible server (rnacos), instances registered the way applications
//! register them, traffic to real upstreams on loopback.

mod support;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use support::registries::{gateway, route_and_backend};
use support::upstream::Upstream;
use support::{Switchyard, get};
use switchyard_nacos::testing::NacosServer;
use switchyard_zookeeper::testing::{ZooKeeperServer, register_dubbo, register_plain, register_spring_cloud};

/// Registration changes reach traffic well within this (ZooKeeper fires at once, rnacos
/// batches pushes for ~0.5 s).
const CONVERGE: Duration = Duration::from_secs(10);

/// The BackendService's Ready condition: status, reason, message.
async fn ready(gw: &Switchyard) -> (String, String, String) {
    let status = gw.status().await;
    let resources = status["resources"].as_array().cloned().unwrap_or_default();
    let backend = resources.iter().find(|r| r["kind"] == "BackendService" && r["name"] == "orders").cloned().unwrap_or_default();
    let conditions = backend["conditions"].as_array().cloned().unwrap_or_default();
    let c = conditions.iter().find(|c| c["type"] == "Ready").cloned().unwrap_or_default();
    let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_owned();
    (text(&c["status"]), text(&c["reason"]), text(&c["message"]))
}

async fn wait_ready_reason(gw: &Switchyard, want: &str) -> String {
    wait_ready_message(gw, want, |_| true).await
}

/// As [`wait_ready_reason`], until the condition's message also satisfies `until` (the
/// registry's children are read as they come: an early pass may have seen some of them).
async fn wait_ready_message(gw: &Switchyard, want: &str, until: impl Fn(&str) -> bool) -> String {
    let mut last = Default::default();
    let deadline = tokio::time::Instant::now() + CONVERGE;
    while tokio::time::Instant::now() < deadline {
        last = ready(gw).await;
        if last.1 == want && until(&last.2) {
            return last.2;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("Ready never became {want} with the message expected; last {last:?}");
}

/// Which upstream answered each of `n` requests (or the error code).
async fn answers(gw: &Switchyard, n: usize) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for _ in 0..n {
        let reply = get(&gw.proxy_url("/orders")).await.expect("the gateway answers");
        let who = match reply.status.as_u16() {
            200 => reply.header("x-upstream").unwrap_or("?").to_owned(),
            status => format!("{status} {}", reply.error_code().unwrap_or("-")),
        };
        *counts.entry(who).or_default() += 1;
    }
    counts
}

async fn wait_for_answers(gw: &Switchyard, n: usize, want: &[&str]) {
    let mut want: Vec<String> = want.iter().map(|w| (*w).to_owned()).collect();
    want.sort();
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + CONVERGE;
    while tokio::time::Instant::now() < deadline {
        seen = answers(gw, n).await.into_keys().collect::<Vec<_>>();
        seen.sort();
        if seen == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("answers never came from exactly {want:?}; last {seen:?}");
}

#[tokio::test]
async fn spring_cloud_instances_serve_and_stop_serving_as_zookeeper_changes() {
    let zk = ZooKeeperServer::start();
    let (a, b) = (Upstream::start("a").await, Upstream::start("b").await);
    let registry = format!("{{zookeeper: {{servers: [\"{}\"], path: /services/orders, layout: SpringCloud}}}}", zk.connect_string());
    let (_config, gw) = gateway(&route_and_backend(&registry)).await;

    assert!(wait_ready_reason(&gw, "NoEndpoints").await.contains("no serving instances"));
    assert_eq!(answers(&gw, 1).await.into_keys().collect::<Vec<_>>(), ["503 D503NE"], "no instance: 503 with a code");

    let app_a = zk.client().await;
    register_spring_cloud(&app_a, "orders", "a-1", "127.0.0.1", a.addr.port(), None, &[]).await.unwrap();
    wait_for_answers(&gw, 4, &["a"]).await;
    assert!(wait_ready_reason(&gw, "Ready").await.starts_with("1 endpoint(s) from ZooKeeper path /services/orders"));

    let app_b = zk.client().await;
    let out_of_service = [("instance_status", "OUT_OF_SERVICE")];
    let b_path = register_spring_cloud(&app_b, "orders", "b-1", "127.0.0.1", b.addr.port(), None, &out_of_service).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(answers(&gw, 10).await.into_keys().collect::<Vec<_>>(), ["a"], "an OUT_OF_SERVICE instance takes no traffic");

    app_b.delete(&b_path, None).await.unwrap();
    register_spring_cloud(&app_b, "orders", "b-1", "127.0.0.1", b.addr.port(), None, &[("instance_status", "UP")]).await.unwrap();
    wait_for_answers(&gw, 10, &["a", "b"]).await;

    // The app's session ends (a crash or a shutdown): its ephemeral node, and its traffic, go.
    drop(app_a);
    wait_for_answers(&gw, 10, &["b"]).await;
}

#[tokio::test]
async fn dubbo_http_providers_serve_and_binary_or_malformed_ones_are_named() {
    let zk = ZooKeeperServer::start();
    let a = Upstream::start("a").await;
    let registry = format!("{{zookeeper: {{servers: [\"{}\"], path: /dubbo/com.example.Orders, layout: Dubbo}}}}", zk.connect_string());
    let (_config, gw) = gateway(&route_and_backend(&registry)).await;

    let app = zk.client().await;
    let tri = format!("tri://127.0.0.1:{}/com.example.Orders?application=shop&weight=100", a.addr.port());
    register_dubbo(&app, "com.example.Orders", &tri).await.unwrap();
    register_dubbo(&app, "com.example.Orders", "dubbo://127.0.0.1:20880/com.example.Orders?application=legacy").await.unwrap();
    register_plain(&app, "/dubbo/com.example.Orders/providers", "not-a-url", b"").await.unwrap();
    wait_for_answers(&gw, 4, &["a"]).await;
    // All three children seen: the malformed one is the last registered.
    let message = wait_ready_message(&gw, "Ready", |m| m.contains("not-a-url")).await;
    assert!(message.contains("1 endpoint(s)"), "{message}");
    assert!(message.contains("dubbo://127.0.0.1:20880"), "the binary provider is named: {message}");
    assert!(message.contains("not-a-url") && message.contains("1 malformed"), "the malformed entry is named and counted: {message}");
    let echoed = get(&gw.proxy_url("/orders/list")).await.unwrap().json();
    assert_eq!(echoed["path"], "/orders/list", "a provider URL's path is the interface name, not a base path");

    let metrics = get(&gw.url("admin", "/metrics")).await.unwrap().text();
    let malformed = metrics.lines().find(|l| l.starts_with("switchyard_registry_malformed_instances_total")).unwrap_or_default();
    assert!(malformed.ends_with(" 1"), "one malformed entry counted: {malformed:?}");
}

#[tokio::test]
async fn plain_instance_weights_split_traffic_exactly() {
    let zk = ZooKeeperServer::start();
    let (a, b) = (Upstream::start("a").await, Upstream::start("b").await);
    let registry = format!("{{zookeeper: {{servers: [\"{}\"], path: /apps/orders, layout: Plain}}}}", zk.connect_string());
    let (_config, gw) = gateway(&route_and_backend(&registry)).await;
    let app = zk.client().await;
    register_plain(&app, "/apps/orders", &format!("127.0.0.1:{}", a.addr.port()), b"").await.unwrap();
    let heavy = format!("{{\"host\": \"127.0.0.1\", \"port\": {}, \"weight\": 3}}", b.addr.port());
    register_plain(&app, "/apps/orders", "b", heavy.as_bytes()).await.unwrap();
    wait_for_answers(&gw, 8, &["a", "b"]).await;
    let counts = answers(&gw, 400).await;
    assert_eq!((counts.get("a"), counts.get("b")), (Some(&100), Some(&300)), "weights 1 and 3: {counts:?}");
}

/// Requests in a loop until stopped; counts the ones that failed.
struct SteadyLoad {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicUsize>,
    failed: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl SteadyLoad {
    fn start(url: String) -> Self {
        let (stop, sent, failed) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let (s, n, f) = (stop.clone(), sent.clone(), failed.clone());
        let task = tokio::spawn(async move {
            while !s.load(Ordering::Relaxed) {
                let ok = get(&url).await.is_ok_and(|r| r.status.as_u16() == 200);
                n.fetch_add(1, Ordering::Relaxed);
                if !ok {
                    f.fetch_add(1, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        });
        Self { stop, sent, failed, task }
    }

    async fn finish(self) -> (usize, usize) {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap();
        (self.sent.load(Ordering::Relaxed), self.failed.load(Ordering::Relaxed))
    }
}

#[tokio::test]
async fn zookeeper_lost_under_load_keeps_serving_and_converges_when_back() {
    let mut zk = ZooKeeperServer::start();
    let (a, b) = (Upstream::start("a").await, Upstream::start("b").await);
    let registry = format!("{{zookeeper: {{servers: [\"{}\"], path: /services/orders, layout: SpringCloud}}}}", zk.connect_string());
    let (_config, gw) = gateway(&route_and_backend(&registry)).await;
    let app = zk.client().await;
    register_spring_cloud(&app, "orders", "a-1", "127.0.0.1", a.addr.port(), None, &[]).await.unwrap();
    wait_for_answers(&gw, 4, &["a"]).await;

    let load = SteadyLoad::start(gw.proxy_url("/orders"));
    zk.stop();
    let message = wait_ready_reason(&gw, "RegistryUnreachable").await;
    assert!(message.contains("last good sync at 20"), "the message says when the last good sync was: {message}");
    assert!(message.contains("serving 1 last known endpoint(s)"), "{message}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    zk.restart();
    wait_ready_reason(&gw, "Ready").await;
    let (sent, failed) = load.finish().await;
    assert!(sent > 50, "the load ran ({sent} requests)");
    assert_eq!(failed, 0, "no request failed while the registry was away ({sent} sent)");

    // Converged: changes after the restart reach traffic again.
    let later = zk.client().await;
    register_spring_cloud(&later, "orders", "b-1", "127.0.0.1", b.addr.port(), None, &[]).await.unwrap();
    wait_for_answers(&gw, 10, &["a", "b"]).await;
}

fn nacos_registry(server: &NacosServer, extra: &str) -> String {
    format!("{{nacos: {{serverAddr: \"{}\", service: orders{extra}}}}}", server.http_addr())
}

#[tokio::test]
async fn nacos_instances_serve_by_weight_and_stop_when_disabled_or_deregistered() {
    let nacos = NacosServer::start().await;
    let (a, b) = (Upstream::start("a").await, Upstream::start("b").await);
    let (_config, gw) = gateway(&route_and_backend(&nacos_registry(&nacos, ""))).await;
    let ip = "127.0.0.1";
    nacos.register("DEFAULT_GROUP", "orders", ip, a.addr.port(), 1.0, "{}", "").await;
    nacos.register("DEFAULT_GROUP", "orders", ip, b.addr.port(), 3.0, "{}", "").await;
    wait_for_answers(&gw, 8, &["a", "b"]).await;
    let counts = answers(&gw, 400).await;
    assert_eq!((counts.get("a"), counts.get("b")), (Some(&100), Some(&300)), "weights 1 and 3: {counts:?}");
    assert!(wait_ready_reason(&gw, "Ready").await.starts_with("2 endpoint(s) from Nacos service DEFAULT_GROUP@@orders"));

    nacos.set_enabled("DEFAULT_GROUP", "orders", ip, b.addr.port(), false).await;
    wait_for_answers(&gw, 10, &["a"]).await;
    nacos.deregister("DEFAULT_GROUP", "orders", ip, a.addr.port()).await;
    wait_for_answers(&gw, 2, &["503 D503NE"]).await;
    wait_ready_reason(&gw, "NoEndpoints").await;
}

#[tokio::test]
async fn nacos_lost_under_load_keeps_serving_and_converges_when_back() {
    let mut nacos = NacosServer::start().await;
    let (a, b) = (Upstream::start("a").await, Upstream::start("b").await);
    let (_config, gw) = gateway(&route_and_backend(&nacos_registry(&nacos, ", resyncInterval: 2s"))).await;
    nacos.register("DEFAULT_GROUP", "orders", "127.0.0.1", a.addr.port(), 1.0, "{}", "").await;
    wait_for_answers(&gw, 4, &["a"]).await;

    let load = SteadyLoad::start(gw.proxy_url("/orders"));
    nacos.kill();
    let message = wait_ready_reason(&gw, "RegistryUnreachable").await;
    assert!(message.contains("last good sync at 20") && message.contains("serving 1 last known endpoint(s)"), "{message}");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (sent, failed) = load.finish().await;
    assert!(sent > 50, "the load ran ({sent} requests)");
    assert_eq!(failed, 0, "no request failed while the registry was away ({sent} sent)");

    // What the restarted server lists is the truth, whatever it kept: the gateway follows it.
    nacos.restart().await;
    nacos.register("DEFAULT_GROUP", "orders", "127.0.0.1", a.addr.port(), 1.0, "{}", "").await;
    nacos.register("DEFAULT_GROUP", "orders", "127.0.0.1", b.addr.port(), 1.0, "{}", "").await;
    wait_for_answers(&gw, 10, &["a", "b"]).await;
    wait_ready_reason(&gw, "Ready").await;
}

#[tokio::test]
async fn nacos_credentials_come_from_a_secret_in_the_folder() {
    let nacos = NacosServer::start_with_auth("admin", "s3cret-pass").await;
    let a = Upstream::start("a").await;
    let yaml = route_and_backend(&nacos_registry(&nacos, ", credentialsSecretRef: {name: nacos-login}"));
    let (config, gw) = gateway(&yaml).await;
    let refs = gw.condition("BackendService", "orders", "ResolvedRefs").await;
    assert_eq!(refs, Some(("False".to_owned(), "SecretNotFound".to_owned())));

    let secret = "apiVersion: v1\nkind: Secret\nmetadata: {name: nacos-login}\nstringData: {username: admin, password: s3cret-pass}\n";
    config.write("secret.yaml", secret);
    nacos.register("DEFAULT_GROUP", "orders", "127.0.0.1", a.addr.port(), 1.0, "{}", "").await;
    wait_for_answers(&gw, 4, &["a"]).await;
    let everything = format!(
        "{}{}{}",
        get(&gw.url("admin", "/status")).await.unwrap().text(),
        get(&gw.url("admin", "/config_dump")).await.unwrap().text(),
        get(&gw.url("admin", "/metrics")).await.unwrap().text()
    );
    assert!(!everything.contains("s3cret-pass"), "the password is in no status, dump or metric");
    assert!(!gw.log_text().contains("s3cret-pass"), "nor in the log");
}

#[tokio::test]
async fn a_starting_gateway_publishes_its_first_snapshot_with_the_registered_instances() {
    let zk = ZooKeeperServer::start();
    let a = Upstream::start("a").await;
    let app = zk.client().await;
    register_spring_cloud(&app, "orders", "a-1", "127.0.0.1", a.addr.port(), None, &[]).await.unwrap();
    let registry = format!("{{zookeeper: {{servers: [\"{}\"], path: /services/orders, layout: SpringCloud}}}}", zk.connect_string());
    let (_config, gw) = gateway(&route_and_backend(&registry)).await;
    let first = get(&gw.proxy_url("/orders")).await.unwrap();
    assert_eq!(first.status.as_u16(), 200, "ready means the registry's instances are in: {:?}", first.error_code());
}
