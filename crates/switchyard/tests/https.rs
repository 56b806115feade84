//! TLS termination (`--https-listen`): certificates from labelled `kubernetes.io/tls`
//! Secrets in the folder, made by a CA the test creates; real clients (curl, openssl
//! s_client, and a rustls client that keeps a connection open) verify against that CA.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use support::pki::TestCa;
use support::upstream::Upstream;
use support::{ConfigDir, Switchyard, wait_until};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore, crypto::ring};

const API: &str = "apiVersion: switchyard.dev/v1alpha1";
/// Valid now and for long after.
const VALID: (i32, i32) = (2020, 2200);

/// A labelled certificate Secret in namespace `default`.
fn secret(name: &str, (chain, key): &(String, String)) -> String {
    let indent = |pem: &str| pem.lines().map(|l| format!("    {l}\n")).collect::<String>();
    format!(
        "apiVersion: v1\nkind: Secret\ntype: kubernetes.io/tls\nmetadata:\n  name: {name}\n  labels: {{switchyard.dev/certificate: \"true\"}}\n\
         stringData:\n  tls.crt: |\n{}  tls.key: |\n{}",
        indent(chain),
        indent(key)
    )
}

fn route_to(upstream: &Upstream) -> String {
    format!(
        "{API}\nkind: BackendService\nmetadata: {{name: echo}}\nspec: {{http: {{urls: ['http://{}']}}}}\n---\n\
         {API}\nkind: ApiRoute\nmetadata: {{name: echo}}\nspec: {{match: {{path: /, pathType: Prefix}}, backendRefs: [{{name: echo}}]}}\n",
        upstream.addr
    )
}

fn https_gateway(config: &ConfigDir, extra: &[&str]) -> Switchyard {
    let mut args = vec![
        "standalone",
        "--config-dir",
        config.path().to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:0",
        "--https-listen",
        "127.0.0.1:0",
    ];
    args.extend_from_slice(extra);
    Switchyard::start(&args, &["proxy", "admin", "https"])
}

fn https_port(gw: &Switchyard) -> u16 {
    gw.addrs["https"].port()
}

/// The common name of the certificate served for SNI `name` (None: the handshake failed).
fn served_cn(port: u16, name: &str) -> Option<String> {
    let script = format!(
        "openssl s_client -connect 127.0.0.1:{port} -servername {name} </dev/null 2>/dev/null | openssl x509 -noout -subject -nameopt multiline"
    );
    let out = std::process::Command::new("sh").args(["-c", &script]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.lines().find_map(|l| l.trim().strip_prefix("commonName").map(|v| v.trim_start_matches([' ', '=']).trim().to_owned()))
}

/// `curl` to `https://NAME:PORT/PATH` resolved to loopback, verifying against `ca_file`:
/// (exit code, HTTP version, body).
fn curl(port: u16, name: &str, path: &str, ca_file: &std::path::Path, extra: &[&str]) -> (i32, String, String) {
    let resolve = format!("{name}:{port}:127.0.0.1");
    let url = format!("https://{name}:{port}{path}");
    let mut args = vec!["-sS", "--max-time", "10", "--cacert", ca_file.to_str().unwrap(), "--resolve", &resolve, "-w", "\n%{http_version}"];
    args.extend_from_slice(extra);
    args.push(&url);
    let out = std::process::Command::new("curl").args(&args).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, version) = text.rsplit_once('\n').unwrap_or(("", ""));
    (out.status.code().unwrap_or(-1), version.to_owned(), body.to_owned())
}

fn client_config(ca_pem: &str) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    for certificate in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(certificate.unwrap()).unwrap();
    }
    let mut config = ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

/// A keep-alive HTTP/1.1 connection over TLS, verified against the CA for `name`.
struct KeptConnection {
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    /// The leaf the server presented on this connection.
    leaf: Vec<u8>,
    name: String,
}

impl KeptConnection {
    async fn open(port: u16, name: &str, config: Arc<ClientConfig>) -> Result<Self, String> {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.map_err(|e| e.to_string())?;
        let server = ServerName::try_from(name.to_owned()).unwrap();
        let tls = tokio_rustls::TlsConnector::from(config).connect(server, tcp).await.map_err(|e| format!("TLS: {e}"))?;
        let leaf = tls.get_ref().1.peer_certificates().unwrap()[0].to_vec();
        let (sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls)).await.map_err(|e| e.to_string())?;
        tokio::spawn(connection);
        Ok(Self { sender, leaf, name: name.to_owned() })
    }

    async fn get(&mut self, path: &str) -> Result<u16, String> {
        let request = http::Request::get(path).header("host", &self.name).body(Full::new(Bytes::new())).unwrap();
        let response = self.sender.send_request(request).await.map_err(|e| e.to_string())?;
        let status = response.status().as_u16();
        response.into_body().collect().await.map_err(|e| e.to_string())?;
        Ok(status)
    }
}

fn leaf_der((chain, _): &(String, String)) -> Vec<u8> {
    CertificateDer::pem_slice_iter(chain.as_bytes()).next().unwrap().unwrap().to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sni_picks_the_exact_name_before_the_wildcard_and_the_default_answers_the_rest() {
    let ca = TestCa::new("https test ca");
    let upstream = Upstream::start("echo").await;
    let exact = ca.leaf_pem("exact", &["api.shop.test"], VALID);
    let wild = ca.leaf_pem("wild", &["*.shop.test"], VALID);
    let fallback = ca.leaf_pem("fallback", &["fallback.test"], VALID);
    let config = ConfigDir::with(&[
        ("route.yaml", &route_to(&upstream)),
        ("exact.yaml", &secret("exact", &exact)),
        ("wild.yaml", &secret("wild", &wild)),
        ("fallback.yaml", &secret("fallback", &fallback)),
    ]);
    let gw = https_gateway(&config, &["--default-certificate", "default/fallback"]);
    gw.wait_ready().await;
    let port = https_port(&gw);
    assert_eq!(served_cn(port, "api.shop.test").as_deref(), Some("exact"), "exact before wildcard");
    assert_eq!(served_cn(port, "web.shop.test").as_deref(), Some("wild"));
    assert_eq!(served_cn(port, "a.b.shop.test").as_deref(), Some("fallback"), "a wildcard covers one label only");
    assert_eq!(served_cn(port, "unknown.example").as_deref(), Some("fallback"));
    let ca_file = config.file("ca.pem.txt");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    let (code, version, body) = curl(port, "web.shop.test", "/orders", &ca_file, &["--http1.1"]);
    assert_eq!((code, version.as_str()), (0, "1.1"), "{body}");
    let echo: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(echo["headers"]["x-forwarded-proto"], "https");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_default_an_uncovered_name_fails_the_handshake_with_a_log_line() {
    let ca = TestCa::new("https test ca");
    let upstream = Upstream::start("echo").await;
    let exact = ca.leaf_pem("exact", &["api.shop.test"], VALID);
    let config = ConfigDir::with(&[("route.yaml", &route_to(&upstream)), ("exact.yaml", &secret("exact", &exact))]);
    let gw = https_gateway(&config, &[]);
    gw.wait_ready().await;
    let port = https_port(&gw);
    assert_eq!(served_cn(port, "api.shop.test").as_deref(), Some("exact"));
    assert_eq!(served_cn(port, "other.test"), None, "no certificate, no default: no handshake");
    wait_until("the refusal logged", Duration::from_secs(5), || async {
        gw.log_text().contains("TLS handshake refused: no certificate covers the name") && gw.log_text().contains("other.test")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alpn_gives_h2_to_curl_and_the_access_log_names_the_tls_version() {
    let ca = TestCa::new("https test ca");
    let upstream = Upstream::start("echo").await;
    let exact = ca.leaf_pem("exact", &["api.shop.test"], VALID);
    let config = ConfigDir::with(&[("route.yaml", &route_to(&upstream)), ("exact.yaml", &secret("exact", &exact))]);
    let gw = https_gateway(&config, &["--access-log", "json"]);
    gw.wait_ready().await;
    let ca_file = config.file("ca.pem.txt");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    let port = https_port(&gw);
    let (code, version, body) = curl(port, "api.shop.test", "/h2", &ca_file, &["--http2", "-H", "X-Forwarded-Proto: http"]);
    assert_eq!((code, version.as_str()), (0, "2"), "{body}");
    let echo: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(echo["headers"]["x-forwarded-proto"], "https", "the client's own X-Forwarded-Proto is not passed on");
    let (code, version, _) = curl(port, "api.shop.test", "/tls12", &ca_file, &["--http1.1", "--tls-max", "1.2"]);
    assert_eq!((code, version.as_str()), (0, "1.1"));
    wait_until("two access log lines", Duration::from_secs(5), || async { gw.access_log().len() >= 2 }).await;
    let lines: Vec<serde_json::Value> = gw.access_log().iter().map(|l| serde_json::from_str(l).unwrap()).collect();
    let line = |path: &str| lines.iter().find(|l| l["path"] == path).unwrap().clone();
    assert_eq!((line("/h2")["tls"].as_str(), line("/h2")["protocol"].as_str()), (Some("TLSv1.3"), Some("HTTP/2")));
    assert_eq!(line("/tls12")["tls"], "TLSv1.2");
    let plain = support::get(&gw.proxy_url("/plain")).await.unwrap();
    assert_eq!(plain.json()["headers"]["x-forwarded-proto"], "http");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_certificate_serves_new_handshakes_while_an_open_connection_keeps_working() {
    let ca = TestCa::new("https test ca");
    let upstream = Upstream::start("echo").await;
    let first = ca.leaf_pem("first", &["api.shop.test"], VALID);
    let second = ca.leaf_pem("second", &["api.shop.test"], VALID);
    let config = ConfigDir::with(&[("route.yaml", &route_to(&upstream)), ("cert.yaml", &secret("shop-tls", &first))]);
    let gw = https_gateway(&config, &[]);
    gw.wait_ready().await;
    let port = https_port(&gw);
    let client = client_config(&ca.pem());
    let mut kept = KeptConnection::open(port, "api.shop.test", client.clone()).await.unwrap();
    assert_eq!(kept.get("/before").await, Ok(200));
    assert_eq!(kept.leaf, leaf_der(&first));
    config.write("cert.yaml", &secret("shop-tls", &second));
    let written = Instant::now();
    wait_until("a new handshake gets the rotated certificate", Duration::from_secs(10), || async {
        KeptConnection::open(port, "api.shop.test", client.clone()).await.is_ok_and(|c| c.leaf == leaf_der(&second))
    })
    .await;
    eprintln!("rotation reached new handshakes {:?} after the Secret file changed", written.elapsed());
    for path in ["/after-1", "/after-2"] {
        assert_eq!(kept.get(path).await, Ok(200), "the connection opened before the rotation still serves");
    }
    let mut fresh = KeptConnection::open(port, "api.shop.test", client).await.unwrap();
    assert_eq!(fresh.get("/fresh").await, Ok(200));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_and_mismatched_certificates_are_refused_with_reasons_while_a_good_one_serves() {
    let ca = TestCa::new("https test ca");
    let upstream = Upstream::start("echo").await;
    let good = ca.leaf_pem("good", &["good.test"], VALID);
    let expired = ca.leaf_pem("expired", &["expired.test"], (2001, 2002));
    let other = ca.leaf_pem("other", &["mixed.test"], VALID);
    let mixed = (other.0.clone(), good.1.clone());
    let config = ConfigDir::with(&[
        ("route.yaml", &route_to(&upstream)),
        ("good.yaml", &secret("good", &good)),
        ("expired.yaml", &secret("expired", &expired)),
        ("mixed.yaml", &secret("mixed", &mixed)),
    ]);
    let gw = https_gateway(&config, &[]);
    gw.wait_ready().await;
    let accepted = |name: &'static str| {
        let gw = &gw;
        async move { gw.condition("Secret", name, "Accepted").await }
    };
    assert_eq!(accepted("good").await, Some(("True".into(), "Accepted".into())));
    assert_eq!(accepted("expired").await, Some(("False".into(), "CertificateExpired".into())));
    assert_eq!(accepted("mixed").await, Some(("False".into(), "CertificateKeyMismatch".into())));
    let port = https_port(&gw);
    assert_eq!(served_cn(port, "good.test").as_deref(), Some("good"));
    assert_eq!(served_cn(port, "expired.test"), None, "an expired certificate is not served");
    assert_eq!(served_cn(port, "mixed.test"), None, "nor one whose key is another's");
    // No private key anywhere an operator or a scraper can read.
    let dump = support::get(&gw.url("admin", "/config_dump")).await.unwrap().text();
    let status = support::get(&gw.url("admin", "/status")).await.unwrap().text();
    let key_line = good.1.lines().nth(1).unwrap();
    assert!(dump.contains("good.test") && dump.contains("<redacted>"), "the dump shows the certificate, not its key");
    for (place, text) in
        [("/config_dump", &dump), ("/status", &status), ("the log", &gw.log_text()), ("stdout", &gw.access_log().join("\n"))]
    {
        assert!(!text.contains(key_line) && !text.contains("PRIVATE KEY"), "a private key in {place}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_to_an_https_only_route_is_redirected_and_https_to_an_http_only_one_refused() {
    let ca = TestCa::new("https test ca");
    let upstream = Upstream::start("echo").await;
    let exact = ca.leaf_pem("exact", &["api.shop.test"], VALID);
    let routes = format!(
        "{API}\nkind: BackendService\nmetadata: {{name: echo}}\nspec: {{http: {{urls: ['http://{}']}}}}\n---\n\
         {API}\nkind: ApiRoute\nmetadata: {{name: secure}}\nspec: {{match: {{path: /secure, pathType: Prefix}}, protocols: [HTTPS], backendRefs: [{{name: echo}}]}}\n---\n\
         {API}\nkind: ApiRoute\nmetadata: {{name: legacy}}\nspec: {{match: {{path: /legacy, pathType: Prefix}}, protocols: [HTTP], backendRefs: [{{name: echo}}]}}\n---\n\
         {API}\nkind: ApiRoute\nmetadata: {{name: both}}\nspec: {{match: {{path: /both, pathType: Prefix}}, protocols: [HTTP, HTTPS], backendRefs: [{{name: echo}}]}}\n",
        upstream.addr
    );
    let config = ConfigDir::with(&[("routes.yaml", &routes), ("exact.yaml", &secret("exact", &exact))]);
    let gw = https_gateway(&config, &[]);
    gw.wait_ready().await;
    let port = https_port(&gw);
    let plain = |path: &str| {
        let url = gw.proxy_url(path);
        async move { support::send(http::Method::POST, &url, &[("host", "api.shop.test:8080")], "body").await }
    };
    let redirected = plain("/secure/orders?id=7&x=%20").await.unwrap();
    assert_eq!(redirected.status, 308, "{}", redirected.text());
    assert_eq!(redirected.header("location"), Some(format!("https://api.shop.test:{port}/secure/orders?id=7&x=%20").as_str()));
    assert_eq!(redirected.error_code(), Some("A308HS"));
    assert_eq!(plain("/legacy").await.unwrap().status, 200);
    assert_eq!(plain("/both").await.unwrap().status, 200);
    let ca_file = config.file("ca.pem.txt");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    let (code, _, body) = curl(port, "api.shop.test", "/secure/orders", &ca_file, &[]);
    assert_eq!(code, 0);
    assert_eq!(serde_json::from_str::<serde_json::Value>(&body).unwrap()["headers"]["x-forwarded-proto"], "https");
    let (_, _, body) = curl(port, "api.shop.test", "/legacy", &ca_file, &["-i", "--http1.1"]);
    assert!(body.starts_with("HTTP/1.1 421") && body.to_ascii_lowercase().contains("x-ca-error-code: a421ho"), "{body}");
    let (_, _, body) = curl(port, "api.shop.test", "/both", &ca_file, &[]);
    assert!(body.contains("\"x-forwarded-proto\":\"https\""), "{body}");
    // Behind a Service that maps 443 to the listener, the redirect names 443: no port in the URL.
    let gw443 = https_gateway(&config, &["--https-redirect-port", "443"]);
    gw443.wait_ready().await;
    let url = gw443.proxy_url("/secure");
    let redirected = support::send(http::Method::GET, &url, &[("host", "api.shop.test")], "").await.unwrap();
    assert_eq!(redirected.header("location"), Some("https://api.shop.test/secure"));
}
