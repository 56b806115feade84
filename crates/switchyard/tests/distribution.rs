//! Snapshot distribution with the real binary: one `switchyard standalone` serving
//! snapshots (`--snapshot-listen`) to `switchyard proxy` processes that pull them by
//! long-poll, keep the last good one in memory and on disk, and swap new ones in without
//! failing requests in flight. The channel is HTTPS, with a CA made per test.

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Method;
use support::scratch::{Scratch, snapshot_url};
use support::upstream::Upstream;
use support::{ConfigDir, Switchyard, get, get_tls, send, wait_until};

const TOKEN: &str = "s3cret-distribution-token";
/// How long a change may take to reach a proxy: a 250 ms folder rescan, then a long-poll
/// answer, or a reconnect after the proxy's backoff (at most 5 s) when the controller restarted.
const PROPAGATION: Duration = Duration::from_secs(10);

/// A mock API at GET /hello answering `body`.
fn hello(body: &str) -> String {
    format!(
        "apiVersion: switchyard.dev/v1alpha1\nkind: BackendService\nmetadata: {{name: hello}}\n\
         spec: {{mock: {{statusCode: 200, body: \"{body}\"}}}}\n---\n\
         apiVersion: switchyard.dev/v1alpha1\nkind: ApiRoute\nmetadata: {{name: hello}}\n\
         spec: {{match: {{path: /hello}}, backendRefs: [{{name: hello}}]}}\n"
    )
}

/// `switchyard proxy` pulling over HTTPS, trusting the scratch CA.
fn pulling_proxy(scratch: &Scratch, controller_url: &str, token_file: &Path, cache_dir: &Path) -> Switchyard {
    Switchyard::proxy_with(controller_url, token_file, cache_dir, &["--controller-ca", &scratch.path("ca.pem")])
}

/// A loopback address nothing listens on.
fn dead_address() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

/// The body of GET `path` through the proxy listener, when it answers 200.
async fn body_at(switchyard: &Switchyard, path: &str) -> Option<String> {
    let reply = get(&switchyard.proxy_url(path)).await.ok()?;
    (reply.status == 200).then(|| reply.text())
}

async fn wait_serving(what: &str, switchyard: &Switchyard, path: &str, expected: &str) {
    wait_until(what, PROPAGATION, || async { body_at(switchyard, path).await.as_deref() == Some(expected) }).await;
}

async fn readyz(switchyard: &Switchyard) -> u16 {
    get(&switchyard.url("admin", "/readyz")).await.map(|r| r.status.as_u16()).unwrap_or(0)
}

/// A proxy's `switchyard_proxy_<name>_total` counter.
async fn proxy_counter(proxy: &Switchyard, name: &str) -> Option<u64> {
    let metrics = get(&proxy.url("metrics", "/metrics")).await.ok()?.text();
    let series = format!("switchyard_proxy_{name}_total ");
    metrics.lines().find_map(|line| line.strip_prefix(&series)?.trim().parse().ok())
}

async fn config_dump(switchyard: &Switchyard) -> serde_json::Value {
    get(&switchyard.url("admin", "/config_dump")).await.unwrap().json()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_standalone_feeds_two_proxies_the_same_routes_and_a_folder_change_reaches_both() {
    let config = ConfigDir::with(&[("hello.yaml", &hello("v1"))]);
    let scratch = Scratch::new("distribution test CA");
    let token = scratch.token_file("token", TOKEN);
    let standalone = scratch.standalone(&config, &token, "127.0.0.1:0");
    let proxies = [
        pulling_proxy(&scratch, &snapshot_url(&standalone), &token, &scratch.cache_dir("a")),
        pulling_proxy(&scratch, &snapshot_url(&standalone), &token, &scratch.cache_dir("b")),
    ];
    for proxy in &proxies {
        proxy.wait_ready().await;
        wait_serving("v1 on a proxy", proxy, "/hello", "v1").await;
    }

    // Both hold exactly the controller's snapshot: same version, same routes and backends.
    let published = config_dump(&standalone).await;
    assert!(published["version"].is_u64(), "controller config_dump: {published}");
    for proxy in &proxies {
        assert_eq!(config_dump(proxy).await, published, "a proxy's snapshot differs from the controller's");
        assert_eq!(proxy.status().await["snapshot"]["version"], published["version"]);
        let missing = get(&proxy.proxy_url("/nowhere")).await.unwrap();
        assert_eq!(missing.status, 404);
        assert_eq!(missing.error_code(), Some("A404NF"));
        assert!(missing.header("x-ca-request-id").is_some());
    }
    // Each proxy holds a long-poll open on the controller.
    let metrics_url = standalone.url("admin", "/metrics");
    wait_until("two long-polls held by the controller", PROPAGATION, || async {
        get(&metrics_url).await.map(|r| r.text().contains("switchyard_controller_snapshot_polls_waiting 2")).unwrap_or(false)
    })
    .await;

    let changed = Instant::now();
    config.write("hello.yaml", &hello("v2"));
    for proxy in &proxies {
        wait_serving("v2 on a proxy", proxy, "/hello", "v2").await;
    }
    let took = changed.elapsed();
    assert!(took < Duration::from_secs(5), "the change took {took:?} to reach both proxies");
    let published = config_dump(&standalone).await;
    for proxy in &proxies {
        assert_eq!(config_dump(proxy).await, published);
        // The change came as a delta from the snapshot each held, not as a whole snapshot.
        assert_eq!(proxy_counter(proxy, "snapshot_deltas").await, Some(1), "log:\n{}", proxy.log_text());
        assert_eq!(proxy_counter(proxy, "snapshot_delta_misfits").await, Some(0));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxies_keep_serving_while_the_controller_is_down_and_follow_a_new_one_on_the_same_port() {
    let config = ConfigDir::with(&[("hello.yaml", &hello("v1"))]);
    let scratch = Scratch::new("distribution test CA");
    let token = scratch.token_file("token", TOKEN);
    let mut first = scratch.standalone(&config, &token, "127.0.0.1:0");
    let snapshot_addr = first.addrs["snapshot"];
    let controller_url = snapshot_url(&first);
    let proxies = [
        pulling_proxy(&scratch, &controller_url, &token, &scratch.cache_dir("a")),
        pulling_proxy(&scratch, &controller_url, &token, &scratch.cache_dir("b")),
    ];
    for proxy in &proxies {
        wait_serving("v1 on a proxy", proxy, "/hello", "v1").await;
    }

    first.kill();
    // For about a second with no controller, every request is still served from the last snapshot.
    let until = Instant::now() + Duration::from_secs(1);
    while Instant::now() < until {
        for proxy in &proxies {
            assert_eq!(body_at(proxy, "/hello").await.as_deref(), Some("v1"), "log:\n{}", proxy.log_text());
            assert_eq!(readyz(proxy).await, 200);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The folder changes while no controller runs; a new one comes up on the same port.
    config.write("hello.yaml", &hello("v2"));
    let second = scratch.standalone(&config, &token, &snapshot_addr.to_string());
    assert_eq!(second.addrs["snapshot"], snapshot_addr);
    for proxy in &proxies {
        wait_serving("v2 from the new controller", proxy, "/hello", "v2").await;
        assert_eq!(readyz(proxy).await, 200);
        // The new controller is another stream: it sent the whole snapshot.
        assert_eq!(proxy_counter(proxy, "snapshot_deltas").await, Some(0));
    }
    let published = config_dump(&second).await;
    for proxy in &proxies {
        assert_eq!(config_dump(proxy).await, published);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_restarted_while_the_controller_is_down_serves_from_its_disk_cache_at_once() {
    let config = ConfigDir::with(&[("hello.yaml", &hello("first"))]);
    let scratch = Scratch::new("distribution test CA");
    let token = scratch.token_file("token", TOKEN);
    let cache = scratch.cache_dir("cache");
    let mut standalone = scratch.standalone(&config, &token, "127.0.0.1:0");
    let mut proxy = pulling_proxy(&scratch, &snapshot_url(&standalone), &token, &cache);
    wait_serving("the first proxy serving", &proxy, "/hello", "first").await;
    // The snapshot cached is one the proxy built from a delta: its JSON is made by the proxy.
    config.write("hello.yaml", &hello("cached"));
    wait_serving("the change served", &proxy, "/hello", "cached").await;
    assert_eq!(proxy_counter(&proxy, "snapshot_deltas").await, Some(1));
    let version = proxy.status().await["snapshot"]["version"].clone();
    let cache_file = cache.join("snapshot.json");
    wait_until("the snapshot cached on disk", PROPAGATION, || {
        let cache_file = cache_file.clone();
        let version = version.clone();
        async move {
            let Ok(bytes) = std::fs::read(&cache_file) else { return false };
            serde_json::from_slice::<serde_json::Value>(&bytes).is_ok_and(|cached| cached["snapshot"]["version"] == version)
        }
    })
    .await;
    // It holds app credentials: owner-only.
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&cache_file).unwrap().permissions().mode() & 0o777, 0o600);

    standalone.kill();
    proxy.kill();
    let controller_url = snapshot_url(&standalone);
    let restarted = pulling_proxy(&scratch, &controller_url, &token, &cache);
    // No waiting: the cache is loaded before the listeners are announced.
    assert_eq!(readyz(&restarted).await, 200, "log:\n{}", restarted.log_text());
    let reply = get(&restarted.proxy_url("/hello")).await.unwrap();
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.text(), "cached");
    assert_eq!(restarted.status().await["snapshot"]["version"], version);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_with_no_cache_and_no_reachable_controller_answers_503_not_ready() {
    let scratch = Scratch::new("distribution test CA");
    let token = scratch.token_file("token", TOKEN);
    let cache = scratch.cache_dir("empty");
    let proxy = pulling_proxy(&scratch, &format!("https://{}", dead_address()), &token, &cache);

    let reply = get(&proxy.proxy_url("/hello")).await.unwrap();
    assert_eq!(reply.status, 503, "{reply:?}");
    assert_eq!(reply.error_code(), Some("A503NR"));
    assert!(reply.header("x-ca-request-id").is_some());
    assert_eq!(readyz(&proxy).await, 503);
    assert_eq!(get(&proxy.url("admin", "/healthz")).await.unwrap().status, 200, "alive though not ready");

    // Still not ready after a few failed pulls, and nothing was cached.
    wait_until("a failed pull logged", PROPAGATION, || async { proxy.log_text().contains("snapshot pull failed") }).await;
    assert_eq!(readyz(&proxy).await, 503);
    assert_eq!(get(&proxy.proxy_url("/hello")).await.unwrap().error_code(), Some("A503NR"));
    assert!(!cache.join("snapshot.json").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_token_gets_no_snapshot_and_the_proxy_never_becomes_ready() {
    let config = ConfigDir::with(&[("hello.yaml", &hello("v1"))]);
    let scratch = Scratch::new("distribution test CA");
    let token = scratch.token_file("token", TOKEN);
    let wrong = scratch.token_file("wrong", "not-the-token");
    let standalone = scratch.standalone(&config, &token, "127.0.0.1:0");
    standalone.wait_ready().await;
    let endpoint = format!("{}/v1/snapshot", snapshot_url(&standalone));

    // Direct requests: no token, a wrong one, a wrong scheme are refused; the right one is served.
    // Plain HTTP to the TLS listener gets no snapshot either.
    let plain = get(&endpoint.replace("https://", "http://")).await;
    assert!(plain.as_ref().map_or(true, |r| r.status != 200), "plain HTTP was answered: {plain:?}");
    let refused: [&[(&str, &str)]; 3] =
        [&[], &[("authorization", "Bearer not-the-token")], &[("authorization", &format!("Basic {TOKEN}"))]];
    for headers in refused {
        let reply = get_tls(&endpoint, &scratch.ca_pem, headers).await.unwrap();
        assert_eq!(reply.status, 401, "with headers {headers:?}: {reply:?}");
        assert!(!reply.text().contains("\"routes\""), "a refused request leaked the snapshot");
    }
    let bearer = format!("Bearer {TOKEN}");
    let reply = get_tls(&endpoint, &scratch.ca_pem, &[("authorization", &bearer)]).await.unwrap();
    assert_eq!(reply.status, 200, "{reply:?}");
    assert!(reply.header("x-switchyard-version").is_some());
    assert_eq!(reply.json()["version"], config_dump(&standalone).await["version"]);

    // A proxy with the wrong token is refused and stays unready.
    let cache = scratch.cache_dir("cache");
    let proxy = pulling_proxy(&scratch, &snapshot_url(&standalone), &wrong, &cache);
    wait_until("the proxy's refused pull logged", PROPAGATION, || async { proxy.log_text().contains("401") }).await;
    let until = Instant::now() + Duration::from_secs(1);
    while Instant::now() < until {
        assert_eq!(readyz(&proxy).await, 503, "log:\n{}", proxy.log_text());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let reply = get(&proxy.proxy_url("/hello")).await.unwrap();
    assert_eq!(reply.status, 503);
    assert_eq!(reply.error_code(), Some("A503NR"));
    assert!(!cache.join("snapshot.json").exists());
}

/// Two HTTP backends and the route to one of them.
fn backends(a: &Upstream, b: &Upstream) -> String {
    let backend = |name: &str, url: String| {
        format!(
            "apiVersion: switchyard.dev/v1alpha1\nkind: BackendService\nmetadata: {{name: {name}}}\n\
             spec: {{http: {{urls: [\"{url}\"]}}, timeout: 5s}}\n"
        )
    };
    format!("{}---\n{}", backend("alpha", a.url()), backend("beta", b.url()))
}

fn route_to(backend: &str) -> String {
    format!(
        "apiVersion: switchyard.dev/v1alpha1\nkind: ApiRoute\nmetadata: {{name: echo}}\n\
         spec: {{match: {{path: /echo}}, backendRefs: [{{name: {backend}}}]}}\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_change_applied_while_requests_are_in_flight_fails_none_of_them() {
    let (a, b) = (Upstream::start("alpha").await, Upstream::start("beta").await);
    let config = ConfigDir::with(&[("backends.yaml", &backends(&a, &b)), ("route.yaml", &route_to("alpha"))]);
    let scratch = Scratch::new("distribution test CA");
    let token = scratch.token_file("token", TOKEN);
    let standalone = scratch.standalone(&config, &token, "127.0.0.1:0");
    let proxy = pulling_proxy(&scratch, &snapshot_url(&standalone), &token, &scratch.cache_dir("cache"));
    let url = proxy.proxy_url("/echo");
    let served_by = |url: String| async move {
        let reply = get(&url).await.ok()?;
        (reply.status == 200).then(|| reply.header("x-upstream").unwrap_or("").to_owned())
    };
    wait_until("alpha through the proxy", PROPAGATION, || async { served_by(url.clone()).await.as_deref() == Some("alpha") }).await;

    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..4)
        .map(|i| {
            let (url, stop) = (url.clone(), stop.clone());
            tokio::spawn(async move {
                let (mut alpha, mut beta, mut failures) = (0usize, 0usize, Vec::new());
                while !stop.load(Ordering::Relaxed) {
                    // Half the requests carry a body and a small upstream delay, so swaps land mid-request.
                    let (headers, body): (&[(&str, &str)], Bytes) =
                        if i % 2 == 0 { (&[], Bytes::new()) } else { (&[("x-test-delay-ms", "20")], Bytes::from_static(b"payload")) };
                    match send(Method::POST, &url, headers, body).await {
                        Ok(reply) if reply.status == 200 => match reply.header("x-upstream") {
                            Some("alpha") => alpha += 1,
                            Some("beta") => beta += 1,
                            other => failures.push(format!("200 from an unknown upstream {other:?}")),
                        },
                        Ok(reply) => failures.push(format!("{} {:?}: {}", reply.status, reply.error_code(), reply.text())),
                        Err(e) => failures.push(e),
                    }
                }
                (alpha, beta, failures)
            })
        })
        .collect();

    // Flip the route between the two backends several times while the clients run.
    let flips_started = Instant::now();
    for (n, target) in ["beta", "alpha", "beta", "alpha", "beta", "alpha"].into_iter().enumerate() {
        tokio::time::sleep(Duration::from_millis(150)).await;
        config.write("route.yaml", &format!("{}# flip {n}\n", route_to(target)));
        wait_until(&format!("flip {n} to {target}"), PROPAGATION, || async { served_by(url.clone()).await.as_deref() == Some(target) })
            .await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::Relaxed);
    let flipping = flips_started.elapsed();

    let (mut alpha, mut beta, mut failures) = (0, 0, Vec::new());
    for client in clients {
        let (a_count, b_count, f) = client.await.unwrap();
        alpha += a_count;
        beta += b_count;
        failures.extend(f);
    }
    eprintln!("in-flight swaps: alpha={alpha} beta={beta} failures={} over {flipping:?}", failures.len());
    assert!(
        failures.is_empty(),
        "{} of {} requests failed during the swaps, e.g. {:?}",
        failures.len(),
        alpha + beta + failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert!(alpha > 0 && beta > 0, "both versions should be observed: alpha={alpha} beta={beta} over {flipping:?}");
    assert!(a.hits() > 0 && b.hits() > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxys_status_reports_its_snapshot_and_controller_and_a_405_names_the_allowed_methods() {
    let post_only = "apiVersion: switchyard.dev/v1alpha1\nkind: ApiRoute\nmetadata: {name: post-only}\n\
                     spec: {match: {path: /submit, methods: [POST, PUT]}, backendRefs: [{name: hello}]}\n";
    let config = ConfigDir::with(&[("hello.yaml", &hello("v1")), ("post.yaml", post_only)]);
    let scratch = Scratch::new("distribution test CA");
    let token = scratch.token_file("token", TOKEN);
    let standalone = scratch.standalone(&config, &token, "127.0.0.1:0");
    let controller_url = snapshot_url(&standalone);
    let proxy = pulling_proxy(&scratch, &controller_url, &token, &scratch.cache_dir("a"));
    wait_serving("v1 on the proxy", &proxy, "/hello", "v1").await;

    let status: serde_json::Value = get(&proxy.url("admin", "/status")).await.unwrap().json();
    let published = config_dump(&standalone).await["version"].clone();
    assert_eq!(status["mode"], "proxy", "{status}");
    assert_eq!(status["snapshot"]["version"], published, "{status}");
    assert!(status["snapshot"]["appliedAtUnixSeconds"].as_u64().is_some_and(|t| t > 1_600_000_000), "{status}");
    assert!(status["snapshot"]["appliedSecondsAgo"].as_u64().is_some_and(|s| s < 30), "{status}");
    assert_eq!(status["controller"]["url"], controller_url.as_str(), "{status}");
    assert!(status["controller"]["lastAnsweredPullSecondsAgo"].as_u64().is_some_and(|s| s < 30), "{status}");
    assert_eq!(status["controller"]["pullsFailing"], false, "{status}");

    // A 405 through the proxy lists what the path takes.
    let reply = get(&proxy.proxy_url("/submit")).await.unwrap();
    assert_eq!(reply.status, 405);
    assert_eq!(reply.header("allow"), Some("POST, PUT"), "{:?}", reply.headers);

    // A folder change moves the version and the applied time on.
    config.write("hello.yaml", &hello("v2"));
    wait_serving("v2 on the proxy", &proxy, "/hello", "v2").await;
    let after: serde_json::Value = get(&proxy.url("admin", "/status")).await.unwrap().json();
    assert_eq!(after["snapshot"]["version"], config_dump(&standalone).await["version"], "{after}");
    assert_ne!(after["snapshot"]["version"], status["snapshot"]["version"], "{after}");
}
