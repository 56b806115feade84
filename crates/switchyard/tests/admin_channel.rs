//! The admin listener, the metrics listener and the snapshot channel with the real binary
//! on loopback: no secret in `/config_dump` or `/status`, admin on 127.0.0.1 by default, a
//! metrics listener that serves nothing else, snapshots only over verified TLS (plain HTTP
//! only by explicit choice, on both ends), token files that rotate without a restart, and
//! an owner-only disk cache.

mod support;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::time::{Duration, Instant};

use support::pki::TestCa;
use support::scratch::{Scratch, snapshot_url};
use support::{ConfigDir, Switchyard, get, get_tls, wait_until};

const TOKEN: &str = "admin-channel-token";
const APP_SECRET: &str = "sEcReT-9f3a1c";
const APP_CODE: &str = "c0De-77b2e4";
const APP_KEY: &str = "204000123";
const REDACTED: &str = "<redacted>";
const PROPAGATION: Duration = Duration::from_secs(10);

/// An app Secret, a mock API that needs its code, and a public one.
fn resources(body: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: partner, labels: {{switchyard.dev/app: \"true\"}}}}\n\
         stringData: {{appKey: \"{APP_KEY}\", appSecret: {APP_SECRET}, appCode: {APP_CODE}}}\n---\n\
         apiVersion: switchyard.dev/v1alpha1\nkind: BackendService\nmetadata: {{name: hello}}\n\
         spec: {{mock: {{statusCode: 200, body: \"{body}\"}}}}\n---\n\
         apiVersion: switchyard.dev/v1alpha1\nkind: ApiRoute\nmetadata: {{name: private}}\n\
         spec: {{match: {{path: /private}}, backendRefs: [{{name: hello}}], auth: {{type: AppCode, apps: [partner]}}}}\n---\n\
         apiVersion: switchyard.dev/v1alpha1\nkind: ApiRoute\nmetadata: {{name: hello}}\n\
         spec: {{match: {{path: /hello}}, backendRefs: [{{name: hello}}]}}\n"
    )
}

/// The test's credentials: the snapshot certificate and CA, another CA, and the token.
fn scratch() -> Scratch {
    let scratch = Scratch::new("admin channel CA");
    scratch.write("other-ca.pem", &TestCa::new("some other CA").pem());
    scratch.token_file("token", TOKEN);
    scratch
}

fn tls_proxy(scratch: &Scratch, controller: &Switchyard, ca: &str, token: &Path, cache: &str) -> Switchyard {
    Switchyard::proxy_with(&snapshot_url(controller), token, &scratch.dir.path().join(cache), &["--controller-ca", &scratch.path(ca)])
}

async fn body_at(switchyard: &Switchyard, path: &str) -> Option<String> {
    let reply = get(&switchyard.proxy_url(path)).await.ok()?;
    (reply.status == 200).then(|| reply.text())
}

/// `/config_dump` and `/status` of `switchyard` hold neither the app's secret nor its
/// code, and show the key and `<redacted>` instead.
async fn assert_no_app_secrets(what: &str, switchyard: &Switchyard) {
    let dump = get(&switchyard.url("admin", "/config_dump")).await.unwrap();
    assert_eq!(dump.status, 200, "{what}: {dump:?}");
    let text = dump.text();
    assert!(!text.contains(APP_SECRET) && !text.contains(APP_CODE), "{what}: /config_dump leaks app credentials: {text}");
    let app = dump.json()["apps"].as_array().and_then(|apps| apps.first().cloned()).unwrap_or_default();
    assert_eq!(app["app_key"], APP_KEY, "{what}: the app key is an identifier and stays: {text}");
    assert_eq!((app["app_secret"].as_str(), app["app_code"].as_str()), (Some(REDACTED), Some(REDACTED)), "{what}: {text}");
    let status = get(&switchyard.url("admin", "/status")).await.unwrap();
    assert_eq!(status.status, 200);
    assert!(!status.text().contains(APP_SECRET) && !status.text().contains(APP_CODE), "{what}: /status leaks: {}", status.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_dump_and_status_show_redacted_app_credentials_in_standalone_and_in_a_proxy() {
    let config = ConfigDir::with(&[("api.yaml", &resources("v1"))]);
    let scratch = scratch();
    let standalone = scratch.standalone(&config, &scratch.dir.path().join("token"), "127.0.0.1:0");
    standalone.wait_ready().await;
    assert_no_app_secrets("standalone", &standalone).await;

    let proxy = tls_proxy(&scratch, &standalone, "ca.pem", &scratch.dir.path().join("token"), "cache");
    proxy.wait_ready().await;
    assert_no_app_secrets("proxy", &proxy).await;
    // Redaction is only what the admin listener shows: the proxy still holds the real code.
    let url = proxy.proxy_url("/private");
    let authorization = format!("APPCODE {APP_CODE}");
    let reply = support::send(http::Method::GET, &url, &[("authorization", &authorization)], bytes::Bytes::new()).await.unwrap();
    assert_eq!((reply.status.as_u16(), reply.text().as_str()), (200, "v1"), "{reply:?}");
    assert_eq!(get(&url).await.unwrap().status, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metrics_listener_answers_metrics_and_health_and_nothing_else() {
    let config = ConfigDir::with(&[("api.yaml", &resources("v1"))]);
    let scratch = scratch();
    let standalone = scratch.standalone(&config, &scratch.dir.path().join("token"), "127.0.0.1:0");
    standalone.wait_ready().await;
    let proxy = tls_proxy(&scratch, &standalone, "ca.pem", &scratch.dir.path().join("token"), "cache");
    proxy.wait_ready().await;
    for (what, switchyard) in [("standalone", &standalone), ("proxy", &proxy)] {
        let metrics = get(&switchyard.url("metrics", "/metrics")).await.unwrap();
        assert_eq!(metrics.status, 200, "{what}");
        assert!(metrics.text().contains("switchyard_proxy_snapshot_version"), "{what}: {}", metrics.text());
        assert_eq!(get(&switchyard.url("metrics", "/healthz")).await.unwrap().status, 200, "{what}");
        assert_eq!(get(&switchyard.url("metrics", "/readyz")).await.unwrap().status, 200, "{what}");
        for path in ["/config_dump", "/status", "/v1/snapshot", "/"] {
            let reply = get(&switchyard.url("metrics", path)).await.unwrap();
            assert_eq!(reply.status, 404, "{what} {path}: {reply:?}");
            assert!(!reply.text().contains(APP_KEY), "{what} {path}");
        }
    }
}

/// Starts `switchyard ARGS` and returns the address its admin listener bound (or, when
/// something else holds that port, the address the error names), then stops it.
fn admin_address_of(args: &[&str], env: &[(&str, &str)]) -> String {
    let mut child = support::spawn(args, env);
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut log = Vec::new();
    let found = loop {
        let Ok(line) = rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) else { break None };
        if let Some(addr) = line.strip_prefix("switchyard: listening role=admin addr=") {
            break Some(addr.to_owned());
        }
        if let Some(rest) = line.split("cannot listen on ").nth(1) {
            break Some(rest.split(':').take(2).collect::<Vec<_>>().join(":"));
        }
        log.push(line);
    };
    let _ = child.kill();
    let _ = child.wait();
    found.unwrap_or_else(|| panic!("{args:?}: no admin listener announced; log:\n{}", log.join("\n")))
}

#[test]
fn the_admin_listener_binds_loopback_by_default_in_every_subcommand() {
    let config = ConfigDir::new();
    let scratch = scratch();
    let (dir, token, cache) = (config.path().to_str().unwrap(), scratch.path("token"), scratch.path("cache"));
    let standalone = ["standalone", "--config-dir", dir, "--listen", "127.0.0.1:0"];
    assert_eq!(admin_address_of(&standalone, &[]), "127.0.0.1:9901");
    let proxy = [
        "proxy",
        "--controller",
        "https://127.0.0.1:1",
        "--token-file",
        &token,
        "--cache-dir",
        &cache,
        "--listen",
        "127.0.0.1:0",
        "--metrics-listen",
        "127.0.0.1:0",
    ];
    assert_eq!(admin_address_of(&proxy, &[]), "127.0.0.1:9901");
    // The controller listens before it connects to the API server (there is none here).
    let controller = [
        "controller",
        "--token-file",
        &token,
        "--snapshot-listen",
        "127.0.0.1:0",
        "--metrics-listen",
        "127.0.0.1:0",
        "--snapshot-insecure-http",
    ];
    let no_cluster = [("KUBECONFIG", "/nonexistent/kubeconfig")];
    assert_eq!(admin_address_of(&controller, &no_cluster), "127.0.0.1:9902");
}

/// Runs `switchyard ARGS` to its exit; returns the exit code and stderr.
fn run_to_exit(args: &[&str]) -> (Option<i32>, String) {
    let mut child = support::spawn(args, &[("KUBECONFIG", "/nonexistent/kubeconfig")]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = child.wait_with_output().unwrap();
    (output.status.code(), String::from_utf8_lossy(&output.stderr).into_owned())
}

#[test]
fn a_plain_http_snapshot_listener_refuses_to_start_without_snapshot_insecure_http() {
    let config = ConfigDir::new();
    let scratch = scratch();
    let (dir, token) = (config.path().to_str().unwrap(), scratch.path("token"));
    let common = ["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--snapshot-listen", "127.0.0.1:0"];
    let mut standalone = vec!["standalone", "--config-dir", dir, "--token-file", &token];
    standalone.extend_from_slice(&common);
    let (code, log) = run_to_exit(&standalone);
    assert_eq!(code, Some(2), "standalone started: {log}");
    assert!(log.contains("--snapshot-tls-cert") && log.contains("--snapshot-insecure-http"), "{log}");
    assert!(!log.contains("role=snapshot"), "{log}");

    let controller = ["controller", "--token-file", &token, "--snapshot-listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"];
    let (code, log) = run_to_exit(&controller);
    assert_eq!(code, Some(2), "controller started: {log}");
    assert!(log.contains("--snapshot-tls-cert") && !log.contains("role=snapshot"), "{log}");

    // With the explicit opt-in it starts, and warns.
    standalone.push("--snapshot-insecure-http");
    let insecure = Switchyard::start(&standalone, &["snapshot"]);
    assert!(insecure.log_text().contains("local development only"), "{}", insecure.log_text());
}

#[test]
fn a_proxy_refuses_a_plain_http_controller_url_without_controller_insecure_http() {
    let scratch = scratch();
    let (token, cache) = (scratch.path("token"), scratch.path("cache"));
    let args =
        ["proxy", "--controller", "http://127.0.0.1:18000", "--token-file", &token, "--cache-dir", &cache, "--listen", "127.0.0.1:0"];
    let (code, log) = run_to_exit(&args);
    assert_eq!(code, Some(2), "{log}");
    assert!(log.contains("--controller-insecure-http") && !log.contains("role=proxy"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_trusting_another_ca_gets_no_snapshot_and_plain_http_gets_nothing_from_the_tls_listener() {
    let config = ConfigDir::with(&[("api.yaml", &resources("v1"))]);
    let scratch = scratch();
    let standalone = scratch.standalone(&config, &scratch.dir.path().join("token"), "127.0.0.1:0");
    standalone.wait_ready().await;
    let token = scratch.dir.path().join("token");

    let fooled = tls_proxy(&scratch, &standalone, "other-ca.pem", &token, "fooled");
    wait_until("the failed handshake logged", PROPAGATION, || async { fooled.log_text().contains("snapshot pull failed") }).await;
    assert!(fooled.log_text().contains("TLS"), "{}", fooled.log_text());
    let until = Instant::now() + Duration::from_secs(1);
    while Instant::now() < until {
        assert_eq!(get(&fooled.url("admin", "/readyz")).await.unwrap().status, 503);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!scratch.cache_dir("fooled").join("snapshot.json").exists());

    // The right CA gets it; a plain-HTTP proxy (opted in) does not.
    let trusting = tls_proxy(&scratch, &standalone, "ca.pem", &token, "trusting");
    trusting.wait_ready().await;
    assert_eq!(body_at(&trusting, "/hello").await.as_deref(), Some("v1"));
    let plain = Switchyard::proxy(&format!("http://{}", standalone.addrs["snapshot"]), &token, &scratch.cache_dir("plain"));
    wait_until("the plain pull refused", PROPAGATION, || async { plain.log_text().contains("snapshot pull failed") }).await;
    assert_eq!(get(&plain.url("admin", "/readyz")).await.unwrap().status, 503);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_token_takes_effect_without_a_restart_on_the_controller_and_on_the_proxy() {
    let config = ConfigDir::with(&[("api.yaml", &resources("v1"))]);
    let scratch = scratch();
    // The proxy reads its own copy of the token, as a pod mounting the same Secret does.
    let proxy_token = scratch.write("proxy-token", TOKEN);
    let standalone = scratch.standalone(&config, &scratch.dir.path().join("token"), "127.0.0.1:0");
    standalone.wait_ready().await;
    let proxy = tls_proxy(&scratch, &standalone, "ca.pem", &proxy_token, "cache");
    wait_until("v1 through the proxy", PROPAGATION, || async { body_at(&proxy, "/hello").await.as_deref() == Some("v1") }).await;

    let endpoint = format!("{}/v1/snapshot", snapshot_url(&standalone));
    let ca = scratch.ca.pem();
    let status_with = |token: &'static str| {
        let (endpoint, ca) = (endpoint.clone(), ca.clone());
        async move {
            let bearer = format!("Bearer {token}");
            get_tls(&endpoint, &ca, &[("authorization", &bearer)]).await.unwrap().status.as_u16()
        }
    };
    assert_eq!(status_with(TOKEN).await, 200);

    // The controller's token rotates: the old one is refused at once, the new one accepted.
    scratch.write("token", "rotated-token-2\n");
    assert_eq!(status_with(TOKEN).await, 401, "the old token still works after rotation");
    assert_eq!(status_with("rotated-token-2").await, 200);

    // The proxy still presents the old token: a change does not reach it, it keeps serving v1.
    config.write("api.yaml", &resources("v2"));
    wait_until("the proxy's refused pull logged", PROPAGATION, || async { proxy.log_text().contains("401") }).await;
    assert_eq!(body_at(&proxy, "/hello").await.as_deref(), Some("v1"));

    // Its token file rotates too: the next pull uses the new token and gets v2, no restart.
    scratch.write("proxy-token", "rotated-token-2\n");
    wait_until("v2 through the proxy after its token rotated", PROPAGATION, || async {
        body_at(&proxy, "/hello").await.as_deref() == Some("v2")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxys_disk_cache_is_readable_by_its_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let config = ConfigDir::with(&[("api.yaml", &resources("v1"))]);
    let scratch = scratch();
    let standalone = scratch.standalone(&config, &scratch.dir.path().join("token"), "127.0.0.1:0");
    let proxy = tls_proxy(&scratch, &standalone, "ca.pem", &scratch.dir.path().join("token"), "cache");
    proxy.wait_ready().await;
    let cache = scratch.dir.path().join("cache");
    let file = cache.join("snapshot.json");
    wait_until("the snapshot cached on disk", PROPAGATION, || {
        let file = file.clone();
        async move { file.exists() }
    })
    .await;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&file), 0o600, "the cache holds app credentials");
    assert_eq!(mode(&cache), 0o700, "the cache directory the proxy created");
    assert!(std::fs::read_to_string(&file).unwrap().contains(APP_SECRET), "the cache is what the proxy needs to serve");
}
