//! Signature auth against the real binary, with requests signed by an independent
//! implementation of the scheme (tests/support/sign.py, Python's standard library,
//! written from the spec): both HMACs, signed headers, query and form parameters,
//! Content-MD5, every failure with its code and message, the window's edges, replays
//! within one proxy and across two sharing a real redis-server, and Redis down.

mod support;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::Method;
use serde_json::{Value, json};
use support::redis::{RedisServer, free_port};
use support::upstream::Upstream;
use support::{ConfigDir, Reply, Switchyard};

const API: &str = "apiVersion: switchyard.dev/v1alpha1";
const KEY: &str = "204000001";
const SECRET: &str = "s3cr3t-partner-9f2c";
const OTHER_SECRET: &str = "s3cr3t-other-41d7";
const WINDOW_MS: i64 = 15 * 60 * 1000;

fn app(name: &str, key: &str, secret: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: {name}, labels: {{switchyard.dev/app: \"true\"}}}}\n\
         stringData: {{appKey: \"{key}\", appSecret: \"{secret}\", appCode: \"\"}}\n"
    )
}

/// `/signed` (Signature, app `partner`) and `/open` (Anonymous) on one echo upstream;
/// the app `other` exists but the route does not allow it.
fn config(up: &Upstream) -> ConfigDir {
    let files = [
        ("backend.yaml", format!("{API}\nkind: BackendService\nmetadata: {{name: orders}}\nspec:\n  http: {{urls: [\"{}\"]}}\n", up.url())),
        (
            "signed.yaml",
            format!(
                "{API}\nkind: ApiRoute\nmetadata: {{name: signed}}\nspec:\n  match: {{path: /signed, pathType: Prefix}}\n  backendRefs: [{{name: orders}}]\n  auth: {{type: Signature, apps: [partner]}}\n"
            ),
        ),
        (
            "open.yaml",
            format!(
                "{API}\nkind: ApiRoute\nmetadata: {{name: open}}\nspec:\n  match: {{path: /open, pathType: Prefix}}\n  backendRefs: [{{name: orders}}]\n"
            ),
        ),
        ("partner.yaml", app("partner", KEY, SECRET)),
        ("other.yaml", app("other", "204000002", OTHER_SECRET)),
    ];
    ConfigDir::with(&files.iter().map(|(n, t)| (*n, t.as_str())).collect::<Vec<_>>())
}

async fn gateway(config: &ConfigDir, extra: &[&str]) -> Switchyard {
    let gw = Switchyard::standalone(config.path(), extra);
    gw.wait_ready().await;
    gw
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64
}

/// A request signed by tests/support/sign.py.
struct Signed {
    method: Method,
    path_and_query: String,
    headers: Vec<(String, String)>,
    body: String,
    string_to_sign: String,
}

impl Signed {
    /// Signs `spec` (see sign.py; `method`, `path`, `query` and `body` are also what is
    /// sent) as the app `partner` unless it says otherwise.
    fn new(mut spec: Value) -> Self {
        let fields = spec.as_object_mut().unwrap();
        fields.entry("key").or_insert(json!(KEY));
        fields.entry("secret").or_insert(json!(SECRET));
        fields.entry("method").or_insert(json!("GET"));
        let mut python = Command::new("python3")
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/sign.py"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 runs the independent signer");
        python.stdin.take().unwrap().write_all(spec.to_string().as_bytes()).unwrap();
        let output = python.wait_with_output().unwrap();
        assert!(output.status.success(), "sign.py failed");
        let signed: Value = serde_json::from_slice(&output.stdout).unwrap();
        let headers = signed["headers"].as_object().unwrap().iter().map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned())).collect();
        let query = spec["query"].as_str().map(|q| format!("?{q}")).unwrap_or_default();
        Self {
            method: spec["method"].as_str().unwrap().parse().unwrap(),
            path_and_query: format!("{}{query}", spec["path"].as_str().unwrap()),
            headers,
            body: spec["body"].as_str().unwrap_or("").to_owned(),
            string_to_sign: signed["stringToSign"].as_str().unwrap().to_owned(),
        }
    }

    fn header(&self, name: &str) -> &str {
        &self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).unwrap().1
    }

    fn without(mut self, name: &str) -> Self {
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        self
    }

    fn with(self, name: &str, value: &str) -> Self {
        let mut signed = self.without(name);
        signed.headers.push((name.to_owned(), value.to_owned()));
        signed
    }

    async fn send(&self, gw: &Switchyard) -> Reply {
        self.send_as(gw, &self.path_and_query, &self.body).await
    }

    /// Sends it with another path and query or body than the ones signed.
    async fn send_as(&self, gw: &Switchyard, path_and_query: &str, body: &str) -> Reply {
        let headers: Vec<(&str, &str)> = self.headers.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        let url = gw.proxy_url(path_and_query);
        support::send(self.method.clone(), &url, &headers, Bytes::from(body.to_owned())).await.unwrap()
    }
}

fn refusal(reply: &Reply) -> (u16, &str, &str) {
    (reply.status.as_u16(), reply.error_code().unwrap_or("-"), reply.header("x-ca-error-message").unwrap_or("-"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_signed_by_an_independent_signer_pass_with_either_hmac_and_signed_headers() {
    let up = Upstream::start("orders").await;
    let config = config(&up);
    let gw = gateway(&config, &[]).await;
    for algorithm in ["HmacSHA256", "HmacSHA1"] {
        let signed = Signed::new(json!({
            "path": "/signed/orders/%E5%BC%A0",
            "query": "b=2&a=x+y&a=z&flag&e=%26%3D",
            "algorithm": algorithm,
            "headers": {"X-Tenant": "Blue", "Accept": "application/json", "Date": "Tue, 01 Dec 2026 10:00:00 GMT"},
            "signed": ["X-Tenant"],
        }));
        assert!(signed.string_to_sign.ends_with("X-Tenant:Blue\n/signed/orders/张?a=x y&b=2&e=&=&flag"), "{}", signed.string_to_sign);
        let reply = signed.send(&gw).await;
        assert_eq!(reply.status, 200, "{algorithm}: {:?}", refusal(&reply));
        let echo = reply.json();
        assert_eq!(echo["path"], "/signed/orders/%E5%BC%A0");
        assert_eq!(echo["query"], "b=2&a=x+y&a=z&flag&e=%26%3D", "the query is forwarded as it came");
    }
    let signed = Signed::new(json!({"path": "/signed", "method_header": false}));
    assert!(!signed.headers.iter().any(|(n, _)| n == "X-Ca-Signature-Method"));
    assert_eq!(signed.send(&gw).await.status, 200, "without X-Ca-Signature-Method the signature is HmacSHA256");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn form_parameters_and_content_md5_are_signed_and_the_body_reaches_the_backend_unchanged() {
    let up = Upstream::start("orders").await;
    let config = config(&up);
    let gw = gateway(&config, &[]).await;
    let form = "qty=2&item=book+one&item=ignored&note=a%2Bb";
    let signed = Signed::new(json!({
        "method": "POST",
        "path": "/signed/orders",
        "query": "v=1",
        "body": form,
        "headers": {"Content-Type": "application/x-www-form-urlencoded; charset=UTF-8"},
        "content_md5": true,
    }));
    assert!(signed.string_to_sign.ends_with("/signed/orders?item=book one&note=a+b&qty=2&v=1"), "{}", signed.string_to_sign);
    let reply = signed.send(&gw).await;
    assert_eq!(reply.status, 200, "{:?}", refusal(&reply));
    assert_eq!((reply.json()["body"].as_str(), reply.json()["bodyLength"].as_u64()), (Some(form), Some(form.len() as u64)));
    assert_eq!(reply.json()["headers"]["content-md5"], signed.header("Content-MD5"));

    let json_body = r#"{"qty": 2, "item": "book"}"#;
    let signed = Signed::new(json!({
        "method": "PUT",
        "path": "/signed/orders/1",
        "body": json_body,
        "headers": {"Content-Type": "application/json"},
        "content_md5": true,
    }));
    let reply = signed.send(&gw).await;
    assert_eq!(reply.status, 200, "{:?}", refusal(&reply));
    assert_eq!(reply.json()["body"], json_body);
    let changed = signed.send_as(&gw, "/signed/orders/1", r#"{"qty": 9, "item": "book"}"#).await;
    let (status, code, message) = refusal(&changed);
    assert_eq!((status, code), (400, "A400MD"));
    assert!(message.starts_with("Content-MD5 does not match the body: the body's is "), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_failure_has_its_own_code_and_a_message_precise_enough_to_fix_the_client() {
    let up = Upstream::start("orders").await;
    let config = config(&up);
    let gw = gateway(&config, &[]).await;
    let fresh = || Signed::new(json!({"path": "/signed/x", "query": "a=1"}));
    for header in ["X-Ca-Key", "X-Ca-Signature", "X-Ca-Timestamp", "X-Ca-Nonce"] {
        let reply = fresh().without(header).send(&gw).await;
        let expected = format!("the request is not signed: the {header} header is missing");
        assert_eq!(refusal(&reply), (400, "A400SH", expected.as_str()));
    }
    let cases: Vec<(Signed, u16, &str, &str)> = vec![
        (
            fresh().with("X-Ca-Signature-Method", "HmacMD5"),
            400,
            "A400SM",
            "X-Ca-Signature-Method \"HmacMD5\" is not supported (HmacSHA256, the default, or HmacSHA1)",
        ),
        (
            fresh().with("X-Ca-Timestamp", "2026-12-01T10:00:00Z"),
            400,
            "A400SV",
            "X-Ca-Timestamp is invalid: not milliseconds since the Unix epoch",
        ),
        (
            Signed::new(json!({"path": "/signed/x", "signed_exactly": ["X-Ca-Key", "X-Ca-Nonce"]})),
            400,
            "A400SU",
            "X-Ca-Signature-Headers must list X-Ca-Timestamp: unsigned, it does not stop a replay",
        ),
        (Signed::new(json!({"path": "/signed/x", "key": "999"})), 401, "A401AK", "no app of this API's namespace has the X-Ca-Key \"999\""),
        (
            Signed::new(json!({"path": "/signed/x", "key": "204000002", "secret": OTHER_SECRET})),
            403,
            "A403AP",
            "the app with X-Ca-Key \"204000002\" is not allowed on route default/signed",
        ),
    ];
    for (signed, status, code, message) in cases {
        assert_eq!(refusal(&signed.send(&gw).await), (status, code, message));
    }
    // A wrong secret: the gateway signed exactly what the independent signer did.
    let wrong = Signed::new(
        json!({"path": "/signed/x", "query": "b=2&a=1", "secret": "not-the-secret", "signed": ["X-Tenant"], "headers": {"X-Tenant": "t"}}),
    );
    let expected = format!("Invalid Signature, Server StringToSign:{}", wrong.string_to_sign.replace('\n', "#"));
    let reply = wrong.send(&gw).await;
    assert_eq!(refusal(&reply), (401, "A401SI", expected.as_str()));
    assert_eq!(reply.json()["message"], expected.as_str());
    // A changed query: the message shows what the gateway signed instead.
    let signed = fresh();
    let reply = signed.send_as(&gw, "/signed/x?a=2", "").await;
    let (status, code, message) = refusal(&reply);
    assert_eq!((status, code), (401, "A401SI"));
    assert_eq!(
        message,
        format!("Invalid Signature, Server StringToSign:{}", signed.string_to_sign.replace("a=1", "a=2").replace('\n', "#"))
    );
    assert_eq!(up.hits(), 0, "no refused request reached the backend");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_timestamp_window_is_fifteen_minutes_either_way() {
    let up = Upstream::start("orders").await;
    let config = config(&up);
    let gw = gateway(&config, &[]).await;
    let at = |timestamp: i64| Signed::new(json!({"path": "/signed/w", "timestamp": timestamp}));
    assert_eq!(at(now_ms() - WINDOW_MS + 3_000).send(&gw).await.status, 200, "15 minutes old, less the time to send it");
    // Exactly 15 minutes ahead when signed: the clock only moves towards it.
    assert_eq!(at(now_ms() + WINDOW_MS).send(&gw).await.status, 200, "exactly 15 minutes ahead");
    let early = at(now_ms() - WINDOW_MS - 1_000).send(&gw).await;
    let (status, code, message) = refusal(&early);
    assert_eq!((status, code), (401, "A401TS"));
    assert!(
        message.starts_with("X-Ca-Timestamp is 901.")
            && message.contains(" s behind the gateway's clock; requests are accepted within 900 s"),
        "{message}"
    );
    let late = at(now_ms() + WINDOW_MS + 5_000).send(&gw).await;
    let (status, code, message) = refusal(&late);
    assert_eq!((status, code), (401, "A401TS"));
    assert!(message.starts_with("X-Ca-Timestamp is 904.") || message.starts_with("X-Ca-Timestamp is 905."), "{message}");
    assert!(message.contains(" s ahead of the gateway's clock"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_nonce_is_refused_by_every_worker_of_one_proxy() {
    let up = Upstream::start("orders").await;
    let config = config(&up);
    let gw = gateway(&config, &["--workers", "2"]).await;
    let signed = Signed::new(json!({"path": "/signed/r"}));
    assert_eq!(signed.send(&gw).await.status, 200);
    // A new connection each time (the test client keeps none), spread over both workers.
    for _ in 0..6 {
        let reply = signed.send(&gw).await;
        assert_eq!(refusal(&reply), (401, "A401NR", "X-Ca-Nonce was already used within the last 15 minutes: a replay"));
    }
    assert_eq!(up.hits(), 1);
    assert_eq!(Signed::new(json!({"path": "/signed/r"})).send(&gw).await.status, 200, "a fresh nonce passes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nonce_replayed_to_another_proxy_sharing_redis_is_refused() {
    let redis = RedisServer::start();
    let up = Upstream::start("orders").await;
    let config = config(&up);
    let url = redis.url();
    let (a, b) = (gateway(&config, &["--nonce-store", &url]).await, gateway(&config, &["--nonce-store", &url]).await);
    let signed = Signed::new(json!({"path": "/signed/r"}));
    assert_eq!(signed.send(&a).await.status, 200);
    assert_eq!(refusal(&signed.send(&b).await).1, "A401NR", "the replay to the other replica is refused");
    assert_eq!(refusal(&signed.send(&a).await).1, "A401NR");
    let other = Signed::new(json!({"path": "/signed/r"}));
    assert_eq!(other.send(&b).await.status, 200, "a fresh nonce passes on either");
    // Without the shared store, each proxy only knows its own nonces.
    let (c, d) = (gateway(&config, &[]).await, gateway(&config, &[]).await);
    let signed = Signed::new(json!({"path": "/signed/r"}));
    assert_eq!((signed.send(&c).await.status.as_u16(), signed.send(&d).await.status.as_u16()), (200, 200), "memory stores are per proxy");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_fails_signed_requests_closed_with_503_until_it_is_back() {
    let mut redis = RedisServer::start();
    let up = Upstream::start("orders").await;
    let config = config(&up);
    let gw = gateway(&config, &["--nonce-store", &redis.url()]).await;
    assert_eq!(Signed::new(json!({"path": "/signed/d"})).send(&gw).await.status, 200);
    redis.stop();
    let reply = Signed::new(json!({"path": "/signed/d"})).send(&gw).await;
    assert_eq!(
        refusal(&reply),
        (503, "A503NS", "the nonce store cannot be reached, so signed requests are refused: connection refused"),
        "fail closed, and the message holds no address"
    );
    assert_eq!(support::get(&gw.proxy_url("/open")).await.unwrap().status, 200, "routes without signatures keep serving");
    redis.restart();
    assert_eq!(Signed::new(json!({"path": "/signed/d"})).send(&gw).await.status, 200, "back once Redis is");
    // A Redis that never was: the same 503 from the first request on.
    let dead = format!("redis://127.0.0.1:{}", free_port());
    let gw = gateway(&config, &["--nonce-store", &dead]).await;
    assert_eq!(refusal(&Signed::new(json!({"path": "/signed/d"})).send(&gw).await).1, "A503NS");
    assert_eq!(up.hits(), 3, "two signed requests and one to /open");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_secrets_never_reach_the_config_dump_metrics_logs_or_messages() {
    let up = Upstream::start("orders").await;
    let config = config(&up);
    let gw = gateway(&config, &[]).await;
    let wrong = Signed::new(json!({"path": "/signed/x", "secret": "not-the-secret"})).send(&gw).await;
    let ok = Signed::new(json!({"path": "/signed/x"})).send(&gw).await;
    let dump = support::get(&gw.url("admin", "/config_dump")).await.unwrap().text();
    let metrics = support::get(&gw.url("admin", "/metrics")).await.unwrap().text();
    let status = support::get(&gw.url("admin", "/status")).await.unwrap().text();
    assert!(dump.contains(KEY) && dump.contains("<redacted>"), "the dump shows app keys, not secrets: {dump}");
    for (what, text) in [
        ("config_dump", dump),
        ("metrics", metrics),
        ("status", status),
        ("log", gw.log_text()),
        ("error", format!("{:?} {}", wrong.headers, wrong.text())),
        ("reply", format!("{:?} {}", ok.headers, ok.text())),
    ] {
        assert!(!text.contains(SECRET) && !text.contains(OTHER_SECRET), "{what} shows an app secret");
    }
}
