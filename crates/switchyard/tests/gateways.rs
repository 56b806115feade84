//! Gateways calling gateways: two real `switchyard standalone` processes on loopback, A
//! with a `gateway` backend pointing at B. The hop count and the client's request id
//! reach the upstream behind B, a loop A → B → A stops with 508 after a bounded number
//! of hops, and A signs as its app for B to verify.

mod support;

use std::time::Duration;

use http::Method;
use support::upstream::Upstream;
use support::{ConfigDir, Reply, Switchyard, get, send, wait_until};

const API: &str = "apiVersion: switchyard.dev/v1alpha1";
const APP_SECRET: &str = "s3cr3t-gw-secret";

/// A catch-all route to backend `next`, whose `spec` is given.
fn route_to(spec: &str) -> String {
    format!(
        "{API}\nkind: BackendService\nmetadata: {{name: next}}\nspec:\n  {spec}\n---\n\
         {API}\nkind: ApiRoute\nmetadata: {{name: api}}\nspec: {{match: {{path: /, pathType: Prefix}}, backendRefs: [{{name: next}}]}}\n"
    )
}

fn gateway_to(target: &Switchyard, extra: &str) -> String {
    route_to(&format!("gateway: {{url: \"{}\"{extra}}}", target.proxy_url("")))
}

fn partner_app() -> String {
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: partner, labels: {{switchyard.dev/app: \"true\"}}}}\n\
         stringData: {{appKey: \"204000001\", appSecret: {APP_SECRET}, appCode: \"\"}}\n"
    )
}

async fn start(config: &ConfigDir) -> Switchyard {
    let gw = Switchyard::standalone(config.path(), &[]);
    gw.wait_ready().await;
    gw
}

async fn call(gw: &Switchyard, path: &str, headers: &[(&str, &str)]) -> Reply {
    send(Method::GET, &gw.proxy_url(path), headers, "").await.unwrap()
}

/// Waits until `gw` serves a snapshot whose dump contains `needle`.
async fn wait_for_dump(gw: &Switchyard, needle: &str) {
    let url = gw.url("admin", "/config_dump");
    let what = format!("a snapshot with {needle}");
    wait_until(&what, Duration::from_secs(10), || async { get(&url).await.is_ok_and(|r| r.text().contains(needle)) }).await;
}

/// A counter of `/metrics` (a full sample name with labels), 0 when absent.
async fn counter(gw: &Switchyard, sample: &str) -> u64 {
    let text = get(&gw.url("admin", "/metrics")).await.unwrap().text();
    text.lines().find_map(|l| l.strip_prefix(sample)?.trim().parse().ok()).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_through_two_gateways_reaches_the_upstream_with_its_hop_count_and_the_clients_request_id() {
    let upstream = Upstream::start("orders").await;
    let b_config = ConfigDir::with(&[("b.yaml", &route_to(&format!("http: {{urls: [\"{}\"]}}", upstream.url())))]);
    let b = start(&b_config).await;
    let a_config = ConfigDir::with(&[("a.yaml", &gateway_to(&b, ", maxHops: 3"))]);
    let a = start(&a_config).await;

    let reply = call(&a, "/orders/7?x=1", &[("x-ca-request-id", "client-req.42_A")]).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let seen = reply.json();
    assert_eq!((seen["path"].as_str(), seen["query"].as_str()), (Some("/orders/7"), Some("x=1")));
    assert_eq!(seen["headers"]["x-ca-hops"], "1", "A added one; B's http backend passes it on: {seen}");
    assert_eq!(seen["headers"]["x-ca-request-id"], "client-req.42_A", "one id across both gateways");
    assert_eq!(reply.header("x-ca-request-id"), Some("client-req.42_A"));

    // No id, or a malformed one: A makes one, and that one goes all the way.
    for sent in [None, Some("bad id!")] {
        let headers: Vec<(&str, &str)> = sent.iter().map(|id| ("x-ca-request-id", *id)).collect();
        let reply = call(&a, "/", &headers).await;
        let made = reply.header("x-ca-request-id").unwrap().to_owned();
        assert_eq!(made.len(), 36, "{made}");
        assert_eq!(reply.json()["headers"]["x-ca-request-id"], made.as_str());
    }

    // A client's own count is counted on; at A's maxHops it is refused before dialling B.
    assert_eq!(call(&a, "/", &[("x-ca-hops", "2")]).await.json()["headers"]["x-ca-hops"], "3");
    let hits = upstream.hits();
    let refused = call(&a, "/", &[("x-ca-hops", "3"), ("x-ca-request-id", "too-far-1")]).await;
    assert_eq!((refused.status.as_u16(), refused.error_code()), (508, Some("D508LD")), "{}", refused.text());
    assert_eq!(refused.header("x-ca-request-id"), Some("too-far-1"));
    let malformed = call(&a, "/", &[("x-ca-hops", "two")]).await;
    assert_eq!((malformed.status.as_u16(), malformed.error_code()), (400, Some("A400HC")));
    assert_eq!(upstream.hits(), hits, "refused requests never leave A");
    let logged = || a.log_text().contains("too-far-1");
    wait_until("A logs the refusal with the request id", Duration::from_secs(5), || async { logged() }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loop_of_two_gateways_stops_with_508_after_max_hops_and_each_logs_the_request_id() {
    // A first points nowhere (B's port is not known yet); then B points at A, A at B.
    let a_config = ConfigDir::with(&[("a.yaml", &route_to("gateway: {url: \"http://127.0.0.1:9\"}"))]);
    let a = start(&a_config).await;
    let b_config = ConfigDir::with(&[("b.yaml", &gateway_to(&a, ""))]);
    let b = start(&b_config).await;
    a_config.write("a.yaml", &gateway_to(&b, ""));
    wait_for_dump(&a, &b.addrs["proxy"].to_string()).await;

    let five_xx = "switchyard_proxy_requests_total{class=\"5xx\",route=\"default/api\",backend=\"default/next\"}";
    let (a_before, b_before) = (counter(&a, five_xx).await, counter(&b, five_xx).await);
    let reply = call(&a, "/loop", &[("x-ca-request-id", "loop-test-7f3a")]).await;
    assert_eq!((reply.status.as_u16(), reply.error_code()), (508, Some("D508LD")), "{}", reply.text());
    assert_eq!(reply.header("x-ca-request-id"), Some("loop-test-7f3a"));
    let message = reply.header("x-ca-error-message").unwrap();
    assert!(message.contains("5 gateway hops") && message.contains("default/next"), "{message}");

    // maxHops 5 on both: A, B, A, B and A forward (hops 1-5); B refuses the sixth arrival.
    assert_eq!(counter(&a, five_xx).await - a_before, 3, "A saw the request three times");
    assert_eq!(counter(&b, five_xx).await - b_before, 3, "B saw it three times");
    let loop_detected = "switchyard_proxy_gateway_errors_total{code=\"D508LD\",route=\"default/api\"}";
    assert_eq!(counter(&b, loop_detected).await, 1, "only B refused it");
    assert_eq!(counter(&a, loop_detected).await, 0, "A passed B's answer back");
    for (name, gw) in [("A", &a), ("B", &b)] {
        let what = format!("{name} logs the loop with the request id");
        wait_until(&what, Duration::from_secs(5), || async { gw.log_text().contains("loop-test-7f3a") }).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_with_an_app_never_forwards_unsigned_and_its_config_dump_never_shows_the_secret() {
    let upstream = Upstream::start("orders").await;
    let b_config = ConfigDir::with(&[("b.yaml", &route_to(&format!("http: {{urls: [\"{}\"]}}", upstream.url())))]);
    let b = start(&b_config).await;
    let a_config = ConfigDir::with(&[("a.yaml", &gateway_to(&b, ", app: partner"))]);
    let a = start(&a_config).await;

    assert_eq!(a.condition("BackendService", "next", "ResolvedRefs").await, Some(("False".into(), "AppNotFound".into())));
    let reply = call(&a, "/", &[]).await;
    assert_eq!((reply.status.as_u16(), reply.error_code()), (503, Some("D503BU")), "{}", reply.text());
    assert_eq!(upstream.hits(), 0, "no unsigned request went out");

    a_config.write("app.yaml", &partner_app());
    wait_for_dump(&a, "204000001").await;
    let reply = call(&a, "/", &[("x-ca-signature", "forged-by-client")]).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let seen = reply.json()["headers"].clone();
    assert_eq!(seen["x-ca-key"], "204000001");
    assert_eq!(seen["x-ca-signature-method"], "HmacSHA256");
    assert_eq!(seen["x-ca-signature-headers"], "x-ca-key,x-ca-nonce,x-ca-signature-method,x-ca-timestamp");
    assert_ne!(seen["x-ca-signature"], "forged-by-client");

    let dump = get(&a.url("admin", "/config_dump")).await.unwrap().text();
    assert!(dump.contains("default/partner") && dump.contains("<redacted>"), "{dump}");
    assert!(!dump.contains(APP_SECRET), "the app secret leaked into /config_dump: {dump}");
    assert!(!a.log_text().contains(APP_SECRET), "the app secret leaked into the log");
}

/// B's route takes Signature auth: A's signature is what lets the request through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_signs_as_its_app_and_the_next_gateway_verifies_the_signature() {
    let upstream = Upstream::start("orders").await;
    let signed_route = format!(
        "{API}\nkind: BackendService\nmetadata: {{name: orders}}\nspec: {{http: {{urls: [\"{}\"]}}}}\n---\n\
         {API}\nkind: ApiRoute\nmetadata: {{name: signed}}\n\
         spec: {{match: {{path: /, pathType: Prefix}}, backendRefs: [{{name: orders}}], auth: {{type: Signature, apps: [partner]}}}}\n",
        upstream.url()
    );
    let b_config = ConfigDir::with(&[("b.yaml", &signed_route), ("app.yaml", &partner_app())]);
    let b = start(&b_config).await;
    let retrying = format!("gateway: {{url: \"{}\", app: partner}}\n  retries: {{attempts: 1, retryOn: [gateway-error]}}", b.proxy_url(""));
    let signing = ConfigDir::with(&[("a.yaml", &route_to(&retrying)), ("app.yaml", &partner_app())]);
    let a = start(&signing).await;
    let unsigned_config = ConfigDir::with(&[("a.yaml", &gateway_to(&b, ""))]);
    let unsigned = start(&unsigned_config).await;

    // Unsigned through a gateway without an app: B refuses it.
    let refused = call(&unsigned, "/orders/1", &[]).await;
    assert_eq!(refused.status, 400, "{}", refused.text());
    assert_eq!(refused.error_code(), Some("A400SH"), "the signature headers are missing");
    assert_eq!(upstream.hits(), 0);

    // Signed by A as partner: B verifies; GETs with a query and a form POST alike, and a
    // client's forged signature headers are replaced by A's.
    let reply = call(&a, "/orders/1?b=2&a=1", &[("x-ca-signature", "forged"), ("accept", "application/json")]).await;
    assert_eq!(reply.status, 200, "{} {:?}", reply.text(), reply.header("x-ca-error-message"));
    assert_eq!(reply.json()["headers"]["x-ca-hops"], "1");
    let form = [("content-type", "application/x-www-form-urlencoded")];
    let posted = send(Method::POST, &a.proxy_url("/orders?q=0"), &form, "item=7&qty=2").await.unwrap();
    assert_eq!(posted.status, 200, "{} {:?}", posted.text(), posted.header("x-ca-error-message"));
    assert_eq!(posted.json()["body"], "item=7&qty=2");
    // Each request has its own nonce: the same call again is not a replay.
    assert_eq!(call(&a, "/orders/1?b=2&a=1", &[]).await.status, 200);
    assert_eq!(upstream.hits(), 3);
    // A retry is signed afresh: B lets it through (a reused nonce would be A401NR), and
    // the upstream's own 503 passes back once the attempts run out.
    let retried = call(&a, "/orders/1", &[("x-test-status", "503")]).await;
    assert_eq!((retried.status.as_u16(), retried.error_code()), (503, None), "{}", retried.text());
    assert_eq!(upstream.hits(), 5, "both attempts reached the upstream");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_gateway_over_https_is_verified_with_the_tls_options_and_the_egress_policy_applies() {
    let ca = support::pki::TestCa::new("private ca");
    let remote = Upstream::start_tls("gw-east", ca.server_config(&["gw-east.internal"])).await;
    let pem: String = ca.pem().lines().map(|l| format!("        {l}\n")).collect();
    let spec = |ca_pem: &str| {
        format!(
            "gateway:\n    url: \"https://127.0.0.1:{}/edge\"\n    tls:\n      sni: gw-east.internal\n      caCertificate: |\n{ca_pem}",
            remote.addr.port()
        )
    };
    let config = ConfigDir::with(&[("a.yaml", &route_to(&spec(&pem)))]);
    let a = start(&config).await;
    let reply = call(&a, "/orders", &[]).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let seen = reply.json();
    assert_eq!((seen["sni"].as_str(), seen["path"].as_str()), (Some("gw-east.internal"), Some("/edge/orders")));
    assert_eq!(seen["headers"]["x-ca-hops"], "1");

    // Another CA's bundle: the handshake fails, as for `http`.
    let other: String = support::pki::TestCa::new("someone else").pem().lines().map(|l| format!("        {l}\n")).collect();
    config.write("a.yaml", &route_to(&spec(&other)));
    wait_until("the new CA is in use", Duration::from_secs(10), || async { call(&a, "/", &[]).await.error_code() == Some("D502TL") }).await;

    // Cloud metadata is never dialled, whatever kind points at it.
    config.write("a.yaml", &route_to("gateway: {url: \"http://169.254.169.254\"}"));
    wait_until("the egress policy refuses it", Duration::from_secs(10), || async {
        call(&a, "/", &[]).await.error_code() == Some("D502ED")
    })
    .await;
}
