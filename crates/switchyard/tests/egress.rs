//! The security suite: the proxy dials only what the egress policy and the
//! VpcAuthorizations allow, checked on the resolved address; weighted DnsRecords.

mod support;

use std::collections::HashMap;
use std::net::SocketAddr;

use support::upstream::Upstream;
use support::{ConfigDir, Switchyard, get};

const API: &str = "apiVersion: switchyard.dev/v1alpha1";

fn backend_and_route(name: &str, backend_spec: &str) -> String {
    format!(
        "{API}\nkind: BackendService\nmetadata: {{name: {name}}}\nspec:\n{backend_spec}\n---\n\
         {API}\nkind: ApiRoute\nmetadata: {{name: {name}}}\nspec: {{match: {{path: /{name}}}, backendRefs: [{{name: {name}}}]}}\n"
    )
}

fn dns(domain: &str, records: &[(&str, u32)]) -> String {
    let records: Vec<String> = records.iter().map(|(a, w)| format!("{{address: {a}, weight: {w}}}")).collect();
    format!(
        "{API}\nkind: DnsRecord\nmetadata: {{name: {}}}\nspec: {{domain: {domain}, type: A, records: [{}]}}\n",
        domain.replace('.', "-"),
        records.join(", ")
    )
}

async fn gateway(files: &[(&str, &str)], extra: &[&str]) -> (ConfigDir, Switchyard) {
    let config = ConfigDir::with(files);
    let gw = Switchyard::standalone(config.path(), extra);
    gw.wait_ready().await;
    (config, gw)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cloud_metadata_is_never_dialled_by_address_or_through_a_dns_record() {
    let direct = backend_and_route("direct", "  http: {urls: ['http://169.254.169.254']}");
    let renamed = backend_and_route("renamed", "  http: {urls: ['http://metadata.internal']}");
    let record = dns("metadata.internal", &[("169.254.169.254", 100)]);
    let (_config, gw) = gateway(&[("a.yaml", &direct), ("b.yaml", &renamed), ("dns.yaml", &record)], &[]).await;
    for path in ["/direct", "/renamed"] {
        let reply = get(&gw.proxy_url(path)).await.unwrap();
        assert_eq!((reply.status.as_u16(), reply.error_code()), (502, Some("D502ED")), "{path}");
        let message = reply.header("x-ca-error-message").unwrap();
        assert!(message.contains("link-local") && !message.contains("169.254.169.254"), "{path}: {message}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_loopback_denied_only_a_vpc_authorization_reaches_a_loopback_service() {
    let up = Upstream::start("private").await;
    let port = up.addr.port();
    let plain = backend_and_route("plain", &format!("  http: {{urls: ['http://127.0.0.1:{port}']}}"));
    let authorization = format!(
        "{API}\nkind: VpcAuthorization\nmetadata: {{name: private}}\nspec: {{target: {{address: 127.0.0.1}}, ports: [{port}], hostName: private.internal}}\n"
    );
    let vpc = backend_and_route("vpc", &format!("  vpc: {{authorizationRef: private, port: {port}}}"));
    let files = [("plain.yaml", plain.as_str()), ("auth.yaml", authorization.as_str()), ("vpc.yaml", vpc.as_str())];
    let (_config, gw) = gateway(&files, &["--egress-deny-loopback"]).await;

    let refused = get(&gw.proxy_url("/plain")).await.unwrap();
    assert_eq!((refused.status.as_u16(), refused.error_code()), (502, Some("D502ED")));
    let admitted = get(&gw.proxy_url("/vpc")).await.unwrap();
    assert_eq!(admitted.status.as_u16(), 200, "{}", admitted.text());
    assert_eq!(admitted.json()["headers"]["host"], "private.internal", "Host priority 3: the authorization's hostName");
    assert_eq!(up.hits(), 1, "only the authorized request reached the service");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_port_of_an_authorized_address_is_refused() {
    let up = Upstream::start("private").await;
    let other = Upstream::start("other-port").await;
    let authorization = format!(
        "{API}\nkind: VpcAuthorization\nmetadata: {{name: private}}\nspec: {{target: {{address: 127.0.0.1}}, ports: [{}]}}\n",
        up.addr.port()
    );
    let sideways = backend_and_route("sideways", &format!("  http: {{urls: ['http://127.0.0.1:{}']}}", other.addr.port()));
    let wrong_port = backend_and_route("wrong-port", &format!("  vpc: {{authorizationRef: private, port: {}}}", other.addr.port()));
    let files = [("auth.yaml", authorization.as_str()), ("s.yaml", sideways.as_str()), ("w.yaml", wrong_port.as_str())];
    let (_config, gw) = gateway(&files, &["--egress-deny-loopback"]).await;
    assert_eq!(get(&gw.proxy_url("/sideways")).await.unwrap().error_code(), Some("D502ED"));
    assert_eq!(gw.condition("BackendService", "wrong-port", "ResolvedRefs").await, Some(("False".into(), "RefNotPermitted".into())));
    let reply = get(&gw.proxy_url("/wrong-port")).await.unwrap();
    assert_eq!((reply.status.as_u16(), reply.error_code()), (503, Some("D503BU")), "the route answers why its backend cannot serve");
    assert!(reply.header("x-ca-error-message").unwrap().contains("RefNotPermitted"));
    assert_eq!(other.hits(), 0, "nothing reached the unauthorized port");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configured_deny_ranges_are_refused() {
    let up = Upstream::start("up").await;
    let route = backend_and_route("ranged", &format!("  http: {{urls: ['{}']}}", up.url()));
    let (_config, gw) = gateway(&[("r.yaml", &route)], &["--egress-deny", "127.0.0.0/8"]).await;
    assert_eq!(get(&gw.proxy_url("/ranged")).await.unwrap().error_code(), Some("D502ED"));
    assert_eq!(up.hits(), 0);
}

/// Two upstreams on one port at 127.0.0.2 and 127.0.0.3 (the loopback range is a /8).
async fn twins() -> (Upstream, Upstream) {
    for _ in 0..20 {
        let probe = std::net::TcpListener::bind("127.0.0.2:0").unwrap();
        let port = probe.local_addr().unwrap().port();
        drop(probe);
        let b: SocketAddr = format!("127.0.0.3:{port}").parse().unwrap();
        if std::net::TcpListener::bind(b).is_ok() {
            let a = Upstream::start_on("a", format!("127.0.0.2:{port}").parse().unwrap()).await;
            return (a, Upstream::start_on("b", b).await);
        }
    }
    panic!("no port free on both 127.0.0.2 and 127.0.0.3");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dns_record_spreads_requests_60_40_and_a_change_applies_within_a_second() {
    let (a, _b) = twins().await;
    let port = a.addr.port();
    let route = backend_and_route("pool", &format!("  http: {{urls: ['http://pool.internal:{port}']}}"));
    let (config, gw) =
        gateway(&[("r.yaml", &route), ("dns.yaml", &dns("pool.internal", &[("127.0.0.2", 60), ("127.0.0.3", 40)]))], &[]).await;
    let mut counts: HashMap<String, usize> = HashMap::new();
    for _ in 0..1_000 {
        let reply = get(&gw.proxy_url("/pool")).await.unwrap();
        *counts.entry(reply.header("x-upstream").unwrap().to_owned()).or_default() += 1;
    }
    assert_eq!((counts["a"], counts["b"]), (600, 400), "weights hold per request, not per connection");

    config.write("dns.yaml", &dns("pool.internal", &[("127.0.0.2", 0), ("127.0.0.3", 100)]));
    let started = std::time::Instant::now();
    support::wait_until("the record change reaches traffic", std::time::Duration::from_secs(3), || async {
        get(&gw.proxy_url("/pool")).await.unwrap().header("x-upstream") == Some("b")
    })
    .await;
    assert!(started.elapsed() < std::time::Duration::from_secs(2), "took {:?}", started.elapsed());
    for _ in 0..50 {
        assert_eq!(get(&gw.proxy_url("/pool")).await.unwrap().header("x-upstream"), Some("b"), "weight 0 takes no traffic");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connected_flips_false_within_one_interval_when_the_target_goes_away_and_back_when_it_returns() {
    use std::time::{Duration, Instant};
    let up = Upstream::start("private").await;
    let addr = up.addr;
    let authorization = format!(
        "{API}\nkind: VpcAuthorization\nmetadata: {{name: private}}\nspec:\n  target: {{address: 127.0.0.1}}\n  ports: [{}]\n  connectivityTest: {{interval: 1s, http: {{path: /healthz}}}}\n",
        addr.port()
    );
    let (_config, gw) = gateway(&[("auth.yaml", &authorization)], &[]).await;
    let connected = |want: &'static str| {
        let gw = &gw;
        async move { gw.condition("VpcAuthorization", "private", "Connected").await.map(|(s, _)| s).as_deref() == Some(want) }
    };
    support::wait_until("Connected=True", Duration::from_secs(5), || connected("True")).await;
    up.stop();
    drop(up);
    let gone = Instant::now();
    support::wait_until("Connected=False", Duration::from_secs(5), || connected("False")).await;
    assert!(gone.elapsed() < Duration::from_millis(2500), "flipped after {:?} with a 1s interval", gone.elapsed());
    let status = gw.status().await;
    let message = status["resources"].as_array().unwrap().iter().find(|r| r["name"] == "private").unwrap()["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Connected")
        .unwrap()["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(message.contains("refused"), "the exact error is recorded: {message}");
    let _back = Upstream::start_on("private", addr).await;
    support::wait_until("Connected=True again", Duration::from_secs(5), || connected("True")).await;
}

#[test]
fn vpc_test_runs_one_connectivity_test_from_the_command_line() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let config = ConfigDir::with(&[(
        "auth.yaml",
        &format!(
            "{API}\nkind: VpcAuthorization\nmetadata: {{name: db, namespace: shop}}\nspec: {{target: {{address: 127.0.0.1}}, ports: [{port}]}}\n"
        ),
    )]);
    let run = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
            .args(["vpc", "test", "db", "-n", "shop", "--config-dir", config.path().to_str().unwrap()])
            .output()
            .unwrap()
    };
    let ok = run();
    assert_eq!(ok.status.code(), Some(0), "{}", String::from_utf8_lossy(&ok.stdout));
    assert!(String::from_utf8_lossy(&ok.stdout).contains("VpcAuthorization shop/db: Connected=True"));
    drop(listener);
    let failed = run();
    assert_eq!(failed.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&failed.stdout).contains("Connected=False"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_resolved_by_dns_is_checked_after_resolution() {
    let up = Upstream::start("up").await;
    let route = backend_and_route("named", &format!("  http: {{urls: ['http://localhost:{}']}}", up.addr.port()));
    let (_open, allowed) = gateway(&[("r.yaml", &route)], &[]).await;
    assert_eq!(get(&allowed.proxy_url("/named")).await.unwrap().status.as_u16(), 200, "localhost resolves and is dialled");
    let (_closed, refusing) = gateway(&[("r.yaml", &route)], &["--egress-deny-loopback"]).await;
    let reply = get(&refusing.proxy_url("/named")).await.unwrap();
    assert_eq!(reply.error_code(), Some("D502ED"), "the name resolved to loopback, which this gateway refuses");
    assert_eq!(up.hits(), 1);
}

/// A VpcAuthorization for host `orders.test` on `port`, tested hourly (so only the start
/// and the test-now annotation verify it during a test).
fn host_authorization(port: u16, annotation: &str) -> String {
    format!(
        "{API}\nkind: VpcAuthorization\nmetadata: {{name: orders, annotations: {{switchyard.dev/test-connectivity: '{annotation}'}}}}\n\
         spec: {{target: {{host: orders.test}}, ports: [{port}], connectivityTest: {{interval: 1h}}}}\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vpc_host_name_rebound_elsewhere_is_refused_until_a_connectivity_test_verifies_it() {
    use std::net::Ipv4Addr;
    use std::time::Duration;
    use support::dns::TestDns;
    let dns = TestDns::start().await;
    dns.set("orders.test", &[Ipv4Addr::LOCALHOST]);
    let first = Upstream::start("first").await;
    let port = first.addr.port();
    // Another address, same port: where a rebound name would lead.
    let rebound = Upstream::start_on("rebound", SocketAddr::from(([127, 0, 0, 2], port))).await;
    let vpc = backend_and_route("orders", &format!("  vpc: {{authorizationRef: orders, port: {port}}}"));
    let auth = host_authorization(port, "1");
    let dns_server = dns.addr.to_string();
    let (config, gw) = gateway(&[("auth.yaml", &auth), ("vpc.yaml", &vpc)], &["--dns-server", &dns_server]).await;
    let served_by = |gw: &Switchyard| {
        let url = gw.proxy_url("/orders");
        async move { get(&url).await.ok().filter(|r| r.status == 200).map(|r| r.json()["upstream"].as_str().unwrap_or("").to_owned()) }
    };
    support::wait_until("the verified address serves", Duration::from_secs(10), || async {
        served_by(&gw).await.as_deref() == Some("first")
    })
    .await;
    let dump = get(&gw.url("admin", "/config_dump")).await.unwrap().json();
    let grant = &dump["vpc_authorizations"][0];
    assert_eq!(grant["addresses"], serde_json::json!(["127.0.0.1"]), "the verified addresses are in the snapshot: {grant}");

    // The name now resolves elsewhere; the open connection goes away with its server.
    dns.set("orders.test", &[Ipv4Addr::new(127, 0, 0, 2)]);
    first.stop();
    drop(first);
    let url = gw.proxy_url("/orders");
    support::wait_until("a rebound dial is refused", Duration::from_secs(5), || async {
        let reply = get(&url).await.unwrap();
        reply.error_code() == Some("D502ED")
            && reply
                .header("x-ca-error-message")
                .is_some_and(|m| m.contains("VpcAuthorization default/orders grants") && !m.contains("127.0.0.2"))
    })
    .await;
    assert_eq!(rebound.hits(), 0, "nothing reached the rebound address");

    // An operator asks for a test now: the controller verifies the new address.
    config.write("auth.yaml", &host_authorization(port, "2"));
    support::wait_until("the newly verified address serves", Duration::from_secs(10), || async {
        served_by(&gw).await.as_deref() == Some("rebound")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateways_own_listeners_are_never_dialled_on_any_local_address() {
    use std::time::Duration;
    // Listening on every address, as in a pod: its own port is refused on loopback and on
    // any other local address (a pod IP), in standalone mode too.
    let config = ConfigDir::new();
    let dir = config.path().to_str().unwrap().to_owned();
    let args = ["standalone", "--config-dir", &dir, "--listen", "0.0.0.0:0", "--admin-listen", "127.0.0.1:0"];
    let gw = Switchyard::start(&args, &["proxy", "admin"]);
    gw.wait_ready().await;
    let (proxy_port, admin) = (gw.addrs["proxy"].port(), gw.addrs["admin"]);
    let routes = [
        backend_and_route("self", &format!("  http: {{urls: ['http://127.0.0.1:{proxy_port}']}}")),
        backend_and_route("podip", &format!("  http: {{urls: ['http://127.0.0.2:{proxy_port}']}}")),
        backend_and_route("admin", &format!("  http: {{urls: ['http://{admin}']}}")),
    ];
    config.write("loops.yaml", &routes.join("---\n"));
    let url = format!("http://127.0.0.1:{proxy_port}");
    for path in ["/self", "/podip", "/admin"] {
        let target = format!("{url}{path}");
        support::wait_until("the route is programmed and refused", Duration::from_secs(5), || async {
            let reply = get(&target).await.unwrap();
            reply.error_code() == Some("D502ED") && reply.header("x-ca-error-message").is_some_and(|m| m.contains("own listener"))
        })
        .await;
    }
}
