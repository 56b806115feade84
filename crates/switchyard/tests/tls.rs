//! TLS upstreams: real `https` servers on loopback with certificates from a CA made for
//! the test. The proxy verifies them (system roots or `tls.caCertificate`), sends the
//! right server name as SNI, reuses TLS connections, and answers `D502TL` when a
//! certificate does not verify, without the request reaching the upstream.

mod support;

use support::pki::TestCa;
use support::upstream::Upstream;
use support::{ConfigDir, Switchyard, get};

const API: &str = "apiVersion: switchyard.dev/v1alpha1";

/// A BackendService (spec given as YAML lines under `spec:`) and a route `/NAME` to it.
fn backend_and_route(name: &str, spec: &str) -> String {
    format!(
        "{API}\nkind: BackendService\nmetadata: {{name: {name}}}\nspec:\n{spec}\n---\n\
         {API}\nkind: ApiRoute\nmetadata: {{name: {name}}}\nspec: {{match: {{path: /{name}}}, backendRefs: [{{name: {name}}}]}}\n"
    )
}

/// `tls:` options at `indent` spaces: optional SNI and CA bundle.
fn tls_block(indent: usize, sni: Option<&str>, ca_pem: Option<&str>) -> String {
    let pad = " ".repeat(indent);
    let mut out = format!("{pad}tls:\n");
    if let Some(sni) = sni {
        out.push_str(&format!("{pad}  sni: {sni}\n"));
    }
    if let Some(pem) = ca_pem {
        out.push_str(&format!("{pad}  caCertificate: |\n"));
        for line in pem.lines() {
            out.push_str(&format!("{pad}    {line}\n"));
        }
    }
    out
}

fn https_backend(name: &str, url: &str, tls: &str) -> String {
    backend_and_route(name, &format!("  http:\n    urls: ['{url}']\n{tls}"))
}

async fn gateway(files: &[(&str, &str)]) -> (ConfigDir, Switchyard) {
    let config = ConfigDir::with(files);
    let gw = Switchyard::standalone(config.path(), &[]);
    gw.wait_ready().await;
    (config, gw)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vpc_backend_over_tls_sends_the_authorization_host_name_as_sni_and_reuses_the_connection() {
    let ca = TestCa::new("private ca");
    let upstream = Upstream::start_tls("orders", ca.server_config(&["orders.internal"])).await;
    let port = upstream.addr.port();
    let authorization = format!(
        "{API}\nkind: VpcAuthorization\nmetadata: {{name: orders}}\nspec: {{target: {{address: 127.0.0.1}}, ports: [{port}], hostName: orders.internal}}\n"
    );
    let vpc = backend_and_route(
        "orders",
        &format!("  vpc:\n    authorizationRef: orders\n    port: {port}\n    scheme: https\n{}", tls_block(4, None, Some(&ca.pem()))),
    );
    // One worker, so one keep-alive pool: every request after the first must reuse its connection.
    let config = ConfigDir::with(&[("auth.yaml", &authorization), ("vpc.yaml", &vpc)]);
    let gw = Switchyard::standalone(config.path(), &["--workers", "1"]);
    gw.wait_ready().await;
    for _ in 0..20 {
        let reply = get(&gw.proxy_url("/orders")).await.unwrap();
        assert_eq!(reply.status, 200, "{}", reply.text());
        let echo = reply.json();
        assert_eq!(echo["sni"], "orders.internal", "SNI is the authorization's hostName");
        assert_eq!(echo["headers"]["host"], "orders.internal", "so is the Host header (priority 3)");
    }
    // The test client opens a connection per request; the gateway keeps its TLS one alive.
    assert_eq!(upstream.connections(), 1, "TLS connections for 20 requests");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_urls_are_verified_against_their_host_name_or_address() {
    let ca = TestCa::new("private ca");
    let by_address = Upstream::start_tls("by-address", ca.server_config(&["127.0.0.1"])).await;
    let by_name = Upstream::start_tls("by-name", ca.server_config(&["api.internal"])).await;
    let pem = ca.pem();
    let address = https_backend("address", &format!("https://127.0.0.1:{}", by_address.addr.port()), &tls_block(4, None, Some(&pem)));
    // The name resolves through a DnsRecord to loopback; the certificate is checked for the name.
    let name = https_backend("name", &format!("https://api.internal:{}", by_name.addr.port()), &tls_block(4, None, Some(&pem)));
    let record = format!(
        "{API}\nkind: DnsRecord\nmetadata: {{name: api-internal}}\nspec: {{domain: api.internal, type: A, records: [{{address: 127.0.0.1, weight: 100}}]}}\n"
    );
    let (_config, gw) = gateway(&[("address.yaml", &address), ("name.yaml", &name), ("dns.yaml", &record)]).await;

    let reply = get(&gw.proxy_url("/address")).await.unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json()["sni"], serde_json::Value::Null, "an address is verified but never sent as SNI");

    let reply = get(&gw.proxy_url("/name")).await.unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json()["sni"], "api.internal");
    assert_eq!(reply.json()["headers"]["host"], format!("api.internal:{}", by_name.addr.port()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_that_do_not_verify_answer_d502tl_and_the_request_never_reaches_the_upstream() {
    let ca = TestCa::new("private ca");
    let upstream = Upstream::start_tls("strict", ca.server_config(&["orders.internal"])).await;
    let url = format!("https://127.0.0.1:{}", upstream.addr.port());
    let pem = ca.pem();
    let other_ca = TestCa::new("someone else").pem();
    let files = [
        // The system roots do not know the test CA.
        ("untrusted.yaml", https_backend("untrusted", &url, &tls_block(4, Some("orders.internal"), None))),
        ("wrong-ca.yaml", https_backend("wrongca", &url, &tls_block(4, Some("orders.internal"), Some(&other_ca)))),
        ("wrong-name.yaml", https_backend("wrongname", &url, &tls_block(4, Some("billing.internal"), Some(&pem)))),
        ("insecure.yaml", https_backend("insecure", &url, "    tls: {insecureSkipVerify: true}\n")),
    ];
    let files: Vec<(&str, &str)> = files.iter().map(|(f, y)| (*f, y.as_str())).collect();
    let (_config, gw) = gateway(&files).await;

    for (path, why) in
        [("/untrusted", "UnknownIssuer"), ("/wrongca", "UnknownIssuer"), ("/wrongname", "not valid for name \"billing.internal\"")]
    {
        let reply = get(&gw.proxy_url(path)).await.unwrap();
        assert_eq!((reply.status.as_u16(), reply.error_code()), (502, Some("D502TL")), "{path}: {}", reply.text());
        let message = reply.header("x-ca-error-message").unwrap();
        assert!(message.contains(why), "{path}: {message}");
    }
    assert_eq!(upstream.hits(), 0, "no request went over an unverified connection");

    let reply = get(&gw.proxy_url("/insecure")).await.unwrap();
    assert_eq!(reply.status, 200, "insecureSkipVerify still connects: {}", reply.text());
    assert_eq!(upstream.hits(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_ca_bundle_is_not_accepted_and_the_other_backends_keep_serving() {
    let plain = Upstream::start("plain").await;
    let bad = https_backend("bad", "https://127.0.0.1:1", &tls_block(4, None, Some("not a certificate")));
    let good = backend_and_route("good", &format!("  http: {{urls: ['{}']}}", plain.url()));
    let (_config, gw) = gateway(&[("bad.yaml", &bad), ("good.yaml", &good)]).await;
    assert_eq!(gw.condition("BackendService", "bad", "Accepted").await, Some(("False".into(), "InvalidTls".into())));
    assert_eq!(gw.condition("ApiRoute", "bad", "ResolvedRefs").await, Some(("False".into(), "BackendNotAccepted".into())));
    assert_eq!(get(&gw.proxy_url("/good")).await.unwrap().status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_health_checks_over_tls_take_out_an_endpoint_whose_certificate_does_not_verify() {
    use std::time::Duration;
    let ca = TestCa::new("private ca");
    let good = Upstream::start_tls("good", ca.server_config(&["127.0.0.1"])).await;
    let impostor = Upstream::start_tls("impostor", TestCa::new("someone else").server_config(&["127.0.0.1"])).await;
    let urls = format!("['https://{}', 'https://{}']", good.addr, impostor.addr);
    let spec = format!(
        "  http:\n    urls: {urls}\n{}  healthCheck: {{active: {{path: /healthz, interval: 100ms, unhealthyThreshold: 2, healthyThreshold: 1}}}}",
        tls_block(4, None, Some(&ca.pem()))
    );
    let (_config, gw) = gateway(&[("b.yaml", &backend_and_route("pair", &spec))]).await;
    let dump_url = gw.url("admin", "/config_dump");
    support::wait_until("the impostor leaves rotation", Duration::from_secs(5), || async {
        let dump = get(&dump_url).await.unwrap().json();
        let endpoints = dump["endpointHealth"][0]["endpoints"].as_array().cloned().unwrap_or_default();
        endpoints.iter().any(|e| e["endpoint"] == impostor.addr.to_string() && e["inRotation"] == false)
    })
    .await;
    let probes_before = good.hits();
    assert!(probes_before > 0, "the good endpoint was probed over TLS");
    for _ in 0..10 {
        let reply = get(&gw.proxy_url("/pair")).await.unwrap();
        assert_eq!((reply.status.as_u16(), reply.json()["upstream"].as_str()), (200, Some("good")));
    }
    assert_eq!(impostor.hits(), 0, "neither probes nor requests were sent over an unverified connection");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connectivity_test_probes_over_tls_when_its_http_probe_says_https() {
    use std::time::Duration;
    let ca = TestCa::new("private ca");
    let upstream = Upstream::start_tls("orders", ca.server_config(&["orders.internal"])).await;
    let port = upstream.addr.port();
    let authorization = |name: &str, scheme: &str| {
        format!(
            "{API}\nkind: VpcAuthorization\nmetadata: {{name: {name}}}\nspec: {{target: {{address: 127.0.0.1}}, ports: [{port}], \
             hostName: orders.internal, connectivityTest: {{interval: 1h, http: {{path: /healthz{scheme}}}}}}}\n"
        )
    };
    let files = [("tls.yaml", authorization("over-tls", ", scheme: https")), ("plain.yaml", authorization("plain", ""))];
    let files: Vec<(&str, &str)> = files.iter().map(|(f, y)| (*f, y.as_str())).collect();
    let (_config, gw) = gateway(&files).await;
    let message = |name: &'static str| {
        let gw = &gw;
        async move {
            let status = gw.status().await;
            let resource = status["resources"].as_array()?.iter().find(|r| r["kind"] == "VpcAuthorization" && r["name"] == name)?.clone();
            let c = resource["conditions"].as_array()?.iter().find(|c| c["type"] == "Connected")?.clone();
            Some((c["status"].as_str()?.to_owned(), c["message"].as_str()?.to_owned()))
        }
    };
    support::wait_until("both tests ran", Duration::from_secs(10), || async {
        message("over-tls").await.is_some() && message("plain").await.is_some()
    })
    .await;
    let (status, text) = message("over-tls").await.unwrap();
    assert_eq!(status, "True", "{text}");
    assert!(text.contains("connected (TLS)") && text.contains("GET /healthz answered 200"), "{text}");
    assert!(upstream.server_names().contains(&Some("orders.internal".to_owned())), "the hostName is the probe's SNI");
    let (status, text) = message("plain").await.unwrap();
    assert_eq!(status, "False", "plain HTTP to a TLS port does not pass: {text}");
}
