//! Load balancing through the real binary over three real upstreams on loopback.

mod support;

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use support::upstream::Upstream;
use support::{ConfigDir, Switchyard};

type KeepAlive = Client<HttpConnector, Empty<Bytes>>;

async fn gateway(upstreams: &[&Upstream], load_balancing: &str) -> (ConfigDir, Switchyard) {
    let urls: Vec<String> = upstreams.iter().map(|u| format!("\"{}\"", u.url())).collect();
    let yaml = format!(
        "apiVersion: switchyard.dev/v1alpha1\nkind: BackendService\nmetadata: {{name: pool}}\nspec:\n  http: {{urls: [{}]}}\n  loadBalancing: {load_balancing}\n---\n\
         apiVersion: switchyard.dev/v1alpha1\nkind: ApiRoute\nmetadata: {{name: pool}}\nspec: {{match: {{path: /, pathType: Prefix}}, backendRefs: [{{name: pool}}]}}\n",
        urls.join(", ")
    );
    let config = ConfigDir::with(&[("pool.yaml", &yaml)]);
    let gw = Switchyard::standalone(config.path(), &[]);
    gw.wait_ready().await;
    (config, gw)
}

/// Sends `total` requests over `concurrency` keep-alive connections; counts answers per upstream.
async fn spread(gw: &Switchyard, total: usize, concurrency: usize, header: Option<(&'static str, String)>) -> HashMap<String, usize> {
    let client: KeepAlive = Client::builder(TokioExecutor::new()).build_http();
    let url: Arc<str> = gw.proxy_url("/x").into();
    let mut tasks = Vec::new();
    for worker in 0..concurrency {
        let (client, url, header) = (client.clone(), url.clone(), header.clone());
        tasks.push(tokio::spawn(async move {
            let mut counts: HashMap<String, usize> = HashMap::new();
            for _ in (worker..total).step_by(concurrency) {
                let mut request = http::Request::get(&*url).body(Empty::new()).unwrap();
                if let Some((name, value)) = &header {
                    request.headers_mut().insert(*name, value.parse().unwrap());
                }
                let response = client.request(request).await.unwrap();
                assert_eq!(response.status(), 200);
                let upstream = response.headers()["x-upstream"].to_str().unwrap().to_owned();
                response.into_body().collect().await.unwrap();
                *counts.entry(upstream).or_default() += 1;
            }
            counts
        }));
    }
    let mut counts = HashMap::new();
    for task in tasks {
        for (k, v) in task.await.unwrap() {
            *counts.entry(k).or_default() += v;
        }
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_spreads_ten_thousand_requests_evenly_over_three_upstreams() {
    let (a, b, c) = (Upstream::start("a").await, Upstream::start("b").await, Upstream::start("c").await);
    let (_config, gw) = gateway(&[&a, &b, &c], "{policy: RoundRobin}").await;
    let counts = spread(&gw, 10_000, 8, None).await;
    for name in ["a", "b", "c"] {
        let share = counts[name] as f64 / 10_000.0;
        assert!((share - 1.0 / 3.0).abs() < 0.01, "{counts:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consistent_hash_keeps_each_key_on_one_upstream() {
    let (a, b, c) = (Upstream::start("a").await, Upstream::start("b").await, Upstream::start("c").await);
    let (_config, gw) = gateway(&[&a, &b, &c], "{policy: ConsistentHash, hashOn: {header: x-user}}").await;
    let mut used = HashMap::new();
    for user in 0..60 {
        let counts = spread(&gw, 5, 1, Some(("x-user", format!("user-{user}")))).await;
        assert_eq!(counts.len(), 1, "user-{user} was spread over {counts:?}");
        *used.entry(counts.into_keys().next().unwrap()).or_insert(0) += 1;
    }
    assert_eq!(used.len(), 3, "keys should use every upstream: {used:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_request_sends_less_to_a_slow_upstream() {
    let (fast1, fast2, slow) = (Upstream::start("fast1").await, Upstream::start("fast2").await, Upstream::start_slow("slow", 40).await);
    let (_config, gw) = gateway(&[&fast1, &fast2, &slow], "{policy: LeastRequest}").await;
    let counts = spread(&gw, 1_500, 12, None).await;
    let slow_count = counts.get("slow").copied().unwrap_or(0);
    assert!(slow_count * 2 < counts["fast1"] && slow_count * 2 < counts["fast2"], "{counts:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consistent_hash_without_a_key_source_is_rejected() {
    let a = Upstream::start("a").await;
    let yaml = format!(
        "apiVersion: switchyard.dev/v1alpha1\nkind: BackendService\nmetadata: {{name: pool}}\nspec:\n  http: {{urls: [\"{}\"]}}\n  loadBalancing: {{policy: ConsistentHash}}\n",
        a.url()
    );
    let config = ConfigDir::with(&[("pool.yaml", &yaml)]);
    let gw = Switchyard::standalone(config.path(), &[]);
    gw.wait_ready().await;
    assert_eq!(gw.condition("BackendService", "pool", "Accepted").await, Some(("False".into(), "InvalidSpec".into())));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_endpoint_costs_under_a_thousandth_of_requests_and_returns_once_healthy() {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::time::Duration;

    let (a, b, c) = (Upstream::start("a").await, Upstream::start("b").await, Upstream::start("c").await);
    let c_addr = c.addr;
    let policy = "{policy: RoundRobin}\n  retries: {attempts: 2, retryOn: [connect-failure, reset]}\n  healthCheck: {passive: {consecutiveFailures: 1, ejectionTime: 300ms}}";
    let (_config, gw) = gateway(&[&a, &b, &c], policy).await;

    let phase = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let seen: Arc<Mutex<Vec<(usize, u16, String)>>> = Arc::default();
    let client: KeepAlive = Client::builder(TokioExecutor::new()).build_http();
    let url: Arc<str> = gw.proxy_url("/steady").into();
    let mut load = Vec::new();
    for _ in 0..6 {
        let (client, url, phase, stop, seen) = (client.clone(), url.clone(), phase.clone(), stop.clone(), seen.clone());
        load.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let request = http::Request::get(&*url).body(Empty::new()).unwrap();
                let (status, upstream) = match client.request(request).await {
                    Ok(response) => {
                        let status = response.status().as_u16();
                        let upstream = response.headers().get("x-upstream").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
                        let _ = response.into_body().collect().await;
                        (status, upstream)
                    }
                    Err(_) => (0, String::new()),
                };
                seen.lock().unwrap().push((phase.load(Ordering::Relaxed), status, upstream));
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    phase.store(1, Ordering::Relaxed);
    c.stop();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let _revived = Upstream::start_on("c", c_addr).await;
    phase.store(2, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(2000)).await;
    stop.store(true, Ordering::Relaxed);
    for task in load {
        task.await.unwrap();
    }

    let seen = seen.lock().unwrap();
    let failed = seen.iter().filter(|(_, status, _)| *status != 200).count();
    eprintln!("one of three endpoints killed under load: sent {}, failed {failed}", seen.len());
    assert!(seen.len() > 1_000, "only {} requests were sent", seen.len());
    assert!(failed * 1_000 < seen.len(), "{failed} of {} requests failed", seen.len());
    let c_after_return = seen.iter().filter(|(p, _, u)| *p == 2 && u == "c").count();
    assert!(c_after_return > 0, "the revived endpoint never came back into rotation");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_health_checks_take_a_dead_endpoint_out_and_bring_it_back() {
    use std::time::Duration;
    let (a, b) = (Upstream::start("a").await, Upstream::start("b").await);
    let b_addr = b.addr;
    let policy =
        "{policy: RoundRobin}\n  healthCheck: {active: {path: /healthz, interval: 100ms, unhealthyThreshold: 2, healthyThreshold: 1}}";
    let (_config, gw) = gateway(&[&a, &b], policy).await;
    assert_eq!(spread(&gw, 20, 1, None).await.len(), 2, "both endpoints serve at first");
    b.stop();
    drop(b);
    tokio::time::sleep(Duration::from_millis(800)).await;
    let counts = spread(&gw, 50, 1, None).await;
    assert_eq!(counts.get("a"), Some(&50), "no retries configured: every request succeeded on the healthy endpoint: {counts:?}");
    let dump = support::get(&gw.url("admin", "/config_dump")).await.unwrap().json();
    let endpoints = dump["endpointHealth"][0]["endpoints"].as_array().unwrap().clone();
    let out: Vec<&serde_json::Value> = endpoints.iter().filter(|e| e["inRotation"] == false).collect();
    assert_eq!(out.len(), 1, "config_dump shows the dead endpoint out of rotation: {endpoints:?}");
    assert_eq!(out[0]["endpoint"], b_addr.to_string());
    let metrics = support::get(&gw.url("admin", "/metrics")).await.unwrap().text();
    assert!(metrics.contains("switchyard_proxy_unhealthy_endpoints 1"), "{metrics}");
    let _b = Upstream::start_on("b", b_addr).await;
    support::wait_until("the endpoint is back in rotation", Duration::from_secs(5), || async {
        spread(&gw, 4, 1, None).await.contains_key("b")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ejected_endpoint_stays_ejected_when_an_unrelated_backend_is_added() {
    use std::time::Duration;
    let (a, b) = (Upstream::start("a").await, Upstream::start("b").await);
    let b_addr = b.addr.to_string();
    let policy = "{policy: RoundRobin}\n  healthCheck: {passive: {consecutiveFailures: 1, ejectionTime: 60s}}";
    let (config, gw) = gateway(&[&a, &b], policy).await;
    b.stop();
    drop(b);
    let ejected = || async {
        let dump = support::get(&gw.url("admin", "/config_dump")).await.unwrap().json();
        let endpoints = dump["endpointHealth"][0]["endpoints"].as_array().cloned().unwrap_or_default();
        endpoints.iter().any(|e| e["endpoint"] == b_addr.as_str() && e["ejected"] == true)
    };
    support::wait_until("the dead endpoint is ejected", Duration::from_secs(5), || async {
        for _ in 0..4 {
            let _ = support::get(&gw.proxy_url("/x")).await;
        }
        ejected().await
    })
    .await;
    config.write(
        "other.yaml",
        "apiVersion: switchyard.dev/v1alpha1\nkind: BackendService\nmetadata: {name: other}\nspec: {mock: {statusCode: 204}}\n",
    );
    support::wait_until("the unrelated backend is compiled", Duration::from_secs(5), || async {
        gw.condition("BackendService", "other", "Accepted").await.is_some()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(ejected().await, "a snapshot change elsewhere must not put the ejected endpoint back into rotation");
    let counts = spread(&gw, 20, 1, None).await;
    assert_eq!(counts.get("a"), Some(&20), "{counts:?}");
}
