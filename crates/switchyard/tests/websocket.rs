//! WebSocket pass-through: a real WebSocket server and client (the Python `websockets`
//! package, tests/support/ws_peer.py, in the venv `scripts/test.sh` makes and names in
//! `SWITCHYARD_TEST_PYTHON`) through the gateway. Text and binary frames pass both ways,
//! a close from either side reaches the other, a quiet tunnel is closed after
//! `--websocket-idle-timeout`, the upgrades are counted; a handshake still meets the
//! route's auth, and one to a backend kind that cannot take it is refused with `A400WS`.

mod support;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use support::{ConfigDir, Switchyard, get, wait_until};

const API: &str = "apiVersion: switchyard.dev/v1alpha1";

fn peer_script() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/ws_peer.py")
}

/// ws_peer.py's echo server on a free loopback port, killed (by PID) when dropped.
struct WsServer {
    child: Child,
    port: u16,
}

impl WsServer {
    fn start() -> Self {
        let mut child = Command::new(support::test_python("websockets"))
            .arg(peer_script())
            .arg("server")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python runs ws_peer.py");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let port = line.trim().strip_prefix("PORT ").unwrap_or_else(|| panic!("ws server said {line:?}")).parse().unwrap();
        Self { child, port }
    }
}

impl Drop for WsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One client session (`step`: echo, server-close, idle, handshake); its JSON report.
async fn session(url: &str, step: &str, headers: &[&str]) -> Value {
    let mut command = Command::new(support::test_python("websockets"));
    command.arg(peer_script()).args(["client", url, step]);
    for header in headers {
        command.args(["--header", header]);
    }
    let output = tokio::task::spawn_blocking(move || command.output()).await.unwrap().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "ws client failed:\n{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

fn files(ws_port: u16) -> Vec<(&'static str, String)> {
    vec![
        (
            "ws.yaml",
            format!(
                "{API}\nkind: BackendService\nmetadata: {{name: ws}}\nspec: {{http: {{urls: ['http://127.0.0.1:{ws_port}']}}}}\n---\n\
                 {API}\nkind: ApiRoute\nmetadata: {{name: ws}}\nspec: {{match: {{path: /ws, pathType: Prefix}}, backendRefs: [{{name: ws}}]}}\n---\n\
                 {API}\nkind: ApiRoute\nmetadata: {{name: private}}\nspec: {{match: {{path: /private, pathType: Prefix}}, backendRefs: [{{name: ws}}], auth: {{type: AppCode, apps: [partner]}}}}\n---\n\
                 apiVersion: v1\nkind: Secret\nmetadata: {{name: partner, labels: {{switchyard.dev/app: \"true\"}}}}\nstringData: {{appKey: \"204000001\", appSecret: s3cr3t, appCode: c0de-ws}}\n"
            ),
        ),
        (
            "vpc.yaml",
            format!(
                "{API}\nkind: VpcAuthorization\nmetadata: {{name: ws}}\nspec: {{target: {{address: 127.0.0.1}}, ports: [{ws_port}]}}\n---\n\
                 {API}\nkind: BackendService\nmetadata: {{name: vpc}}\nspec: {{vpc: {{authorizationRef: ws, port: {ws_port}}}}}\n---\n\
                 {API}\nkind: ApiRoute\nmetadata: {{name: vpc}}\nspec: {{match: {{path: /vpc, pathType: Prefix}}, backendRefs: [{{name: vpc}}]}}\n"
            ),
        ),
        (
            "mock.yaml",
            format!(
                "{API}\nkind: BackendService\nmetadata: {{name: mock}}\nspec: {{mock: {{statusCode: 200, body: not a websocket}}}}\n---\n\
                 {API}\nkind: ApiRoute\nmetadata: {{name: mock}}\nspec: {{match: {{path: /mock, pathType: Prefix}}, backendRefs: [{{name: mock}}]}}\n"
            ),
        ),
    ]
}

fn gateway(ws_port: u16, extra: &[&str]) -> (ConfigDir, Switchyard) {
    let files = files(ws_port);
    let files: Vec<(&str, &str)> = files.iter().map(|(f, y)| (*f, y.as_str())).collect();
    let config = ConfigDir::with(&files);
    let gw = Switchyard::standalone(config.path(), extra);
    (config, gw)
}

fn ws_url(gw: &Switchyard, path: &str) -> String {
    format!("ws://{}{path}", gw.addrs["proxy"])
}

/// A metric's value for backend `default/NAME` (0 when absent).
async fn metric(gw: &Switchyard, name: &str, backend: &str) -> f64 {
    let text = get(&gw.url("admin", "/metrics")).await.unwrap().text();
    let label = format!("backend=\"default/{backend}\"");
    text.lines().find(|l| l.starts_with(name) && l.contains(&label)).and_then(|l| l.rsplit(' ').next()?.parse().ok()).unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_frames_pass_both_ways_through_http_and_vpc_backends_and_closes_reach_the_other_side() {
    let server = WsServer::start();
    let (_config, gw) = gateway(server.port, &[]);
    gw.wait_ready().await;

    let echoed = session(&ws_url(&gw, "/ws/chat?room=1"), "echo", &[]).await;
    assert_eq!(echoed["text"], "echo:hi there", "{echoed}");
    assert_eq!(echoed["binary"], "6563686f3a0001ff", "binary frames pass byte for byte: {echoed}");
    assert_eq!(echoed["many"], true, "50 frames in order: {echoed}");
    assert_eq!(echoed["close_code"], 1000, "the client's close reached the server and its answer came back: {echoed}");
    let hello = &echoed["hello"];
    assert_eq!(hello["path"], "/ws/chat?room=1", "{hello}");
    assert_eq!(hello["headers"]["x-forwarded-for"], "127.0.0.1", "the handshake was shaped like any request: {hello}");
    assert!(hello["headers"]["x-ca-request-id"].is_string(), "{hello}");
    assert_eq!(hello["headers"]["upgrade"], "websocket");

    let closed = session(&ws_url(&gw, "/ws"), "server-close", &[]).await;
    assert_eq!(closed["close_code"], 4000, "the server's close frame reached the client: {closed}");
    assert_eq!(closed["close_reason"], "server says bye");

    let vpc = session(&ws_url(&gw, "/vpc"), "echo", &[]).await;
    assert_eq!(vpc["text"], "echo:hi there", "a vpc backend takes upgrades too: {vpc}");

    // Counted, and no tunnel left open once both sides closed.
    assert_eq!(metric(&gw, "switchyard_proxy_websocket_upgrades_total", "ws").await, 2.0);
    assert_eq!(metric(&gw, "switchyard_proxy_websocket_upgrades_total", "vpc").await, 1.0);
    wait_until("every tunnel closed", Duration::from_secs(5), || async {
        metric(&gw, "switchyard_proxy_websocket_open", "ws").await == 0.0
            && metric(&gw, "switchyard_proxy_websocket_open", "vpc").await == 0.0
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handshake_meets_the_routes_auth_and_one_to_a_backend_kind_without_upgrades_is_refused() {
    let server = WsServer::start();
    let (_config, gw) = gateway(server.port, &[]);
    gw.wait_ready().await;

    let anonymous = session(&ws_url(&gw, "/private"), "handshake", &[]).await;
    assert_eq!(anonymous["refused"], 401, "no app code, no tunnel: {anonymous}");
    assert_eq!(anonymous["error_code"], "A401AF", "{anonymous}");
    let partner = session(&ws_url(&gw, "/private"), "echo", &["Authorization:APPCODE c0de-ws"]).await;
    assert_eq!(partner["text"], "echo:hi there", "with the app code the tunnel opens: {partner}");
    assert_eq!(partner["hello"]["headers"].get("authorization"), None, "the app code is not passed on: {partner}");

    let mock = session(&ws_url(&gw, "/mock"), "handshake", &[]).await;
    assert_eq!(mock["refused"], 400, "{mock}");
    assert_eq!(mock["error_code"], "A400WS", "{mock}");
    assert_eq!(metric(&gw, "switchyard_proxy_websocket_upgrades_total", "mock").await, 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_tunnel_is_closed_after_the_idle_timeout() {
    let server = WsServer::start();
    let (_config, gw) = gateway(server.port, &["--websocket-idle-timeout", "1s"]);
    gw.wait_ready().await;
    let idle = session(&ws_url(&gw, "/ws"), "idle", &[]).await;
    let after = idle["closed_after"].as_f64().unwrap_or_else(|| panic!("not closed: {idle}"));
    assert!((0.9..5.0).contains(&after), "closed after {after} s with a 1 s idle timeout: {idle}");
    wait_until("the tunnel is no longer counted open", Duration::from_secs(5), || async {
        metric(&gw, "switchyard_proxy_websocket_open", "ws").await == 0.0
    })
    .await;
}
