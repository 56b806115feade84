//! The request path as an attacker sees it, against the real binary on loopback: paths
//! that try to slip past an authenticated route, a Host that disagrees with the request's
//! authority, auth that must fail closed, AppCode credentials that must not reach the
//! backend, and one namespace naming another's host. Requests are written as raw bytes
//! so no client library normalizes them first.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use support::upstream::Upstream;
use support::{ConfigDir, Switchyard, wait_until};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const API: &str = "apiVersion: switchyard.dev/v1alpha1";

fn backend(name: &str, namespace: &str, url: &str) -> String {
    format!("{API}\nkind: BackendService\nmetadata: {{name: {name}, namespace: {namespace}}}\nspec:\n  http: {{urls: [\"{url}\"]}}\n")
}

fn route(name: &str, namespace: &str, spec: &str) -> String {
    format!("{API}\nkind: ApiRoute\nmetadata: {{name: {name}, namespace: {namespace}}}\nspec:\n{spec}")
}

fn app(name: &str, namespace: &str, code: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: {name}, namespace: {namespace}, labels: {{switchyard.dev/app: \"true\"}}}}\nstringData: {{appKey: \"204000001\", appSecret: s3cr3t, appCode: \"{code}\"}}\n"
    )
}

/// A raw HTTP/1.1 exchange: the reply's status, headers (lowercase names) and body.
struct RawReply {
    status: u16,
    head: String,
    body: String,
}

impl RawReply {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|l| l.split_once(':').filter(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.trim()))
    }

    fn error_code(&self) -> Option<&str> {
        self.header("x-ca-error-code")
    }

    /// The echo upstream's JSON, when the request reached it.
    fn echo(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not the upstream's echo ({e}): {} {}", self.status, self.body))
    }
}

/// Sends `request_line` with the given headers (Host first when given) and reads to EOF.
async fn raw(addr: SocketAddr, request_line: &str, headers: &[&str]) -> RawReply {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut text = format!("{request_line}\r\n");
    for h in headers {
        text.push_str(h);
        text.push_str("\r\n");
    }
    text.push_str("connection: close\r\n\r\n");
    stream.write_all(text.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut out)).await.expect("reply").unwrap();
    let out = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("no status in {out:?}"));
    RawReply { status, head: head.to_owned(), body: body.to_owned() }
}

async fn get(gw: &Switchyard, path: &str, headers: &[&str]) -> RawReply {
    let mut all = vec!["host: api.example.com"];
    all.extend_from_slice(headers);
    raw(gw.addrs["proxy"], &format!("GET {path} HTTP/1.1"), &all).await
}

/// `/public` (anonymous) and `/admin` (AppCode) on one upstream, as in the review.
async fn public_and_admin(up: &Upstream) -> (ConfigDir, Switchyard) {
    let files = [
        ("backend.yaml", backend("files", "default", &up.url())),
        ("public.yaml", route("public", "default", "  match: {path: /public, pathType: Prefix}\n  backendRefs: [{name: files}]\n")),
        (
            "admin.yaml",
            route(
                "admin",
                "default",
                "  match: {path: /admin, pathType: Prefix}\n  backendRefs: [{name: files}]\n  auth: {type: AppCode, apps: [partner]}\n",
            ),
        ),
        ("partner.yaml", app("partner", "default", "c0de")),
    ];
    let config = ConfigDir::with(&files.iter().map(|(n, t)| (*n, t.as_str())).collect::<Vec<_>>());
    let gw = Switchyard::standalone(config.path(), &[]);
    gw.wait_ready().await;
    (config, gw)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dot_segments_and_escapes_cannot_reach_an_appcode_route_through_an_anonymous_one() {
    let up = Upstream::start("files").await;
    let (_config, gw) = public_and_admin(&up).await;
    for path in [
        "/public/../admin/secret.txt",
        "/public/%2e%2e/admin/secret.txt",
        "/public/%2E./admin/secret.txt",
        "/%61dmin/secret.txt",
        "/./admin/secret.txt",
        "//admin/secret.txt",
        "/public//../admin/secret.txt",
    ] {
        let reply = get(&gw, path, &[]).await;
        assert_eq!((reply.status, reply.error_code()), (401, Some("A401AF")), "{path} must meet the AppCode route");
    }
    assert_eq!(up.hits(), 0, "nothing reached the upstream without the AppCode");
    let reply = get(&gw, "/public/../%61dmin/./secret.txt", &["authorization: APPCODE c0de"]).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.echo()["path"], "/admin/secret.txt", "the normalized path is what is forwarded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encoded_separators_nul_and_climbs_above_the_root_are_refused_with_their_own_code() {
    let up = Upstream::start("files").await;
    let (_config, gw) = public_and_admin(&up).await;
    for path in [
        "/public/..%2Fadmin/x",
        "/public/..%2fadmin/x",
        "/public/..%5Cadmin/x",
        "/public/%00/x",
        "/../admin/x",
        "/public/../../admin/x",
        "/public/%zz",
    ] {
        let reply = get(&gw, path, &[]).await;
        assert_eq!((reply.status, reply.error_code()), (400, Some("A400PR")), "{path}");
    }
    let backslash = get(&gw, "/public/..\\admin/x", &[]).await;
    assert_eq!(backslash.status, 400, "a raw backslash is refused (by the HTTP parser or by normalization)");
    assert_eq!(up.hits(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_base_path_and_template_captures_cannot_be_climbed_out_of() {
    let up = Upstream::start("up").await;
    let files = [
        ("backend.yaml", backend("static", "default", &format!("{}/public", up.url()))),
        (
            "static.yaml",
            route(
                "static",
                "default",
                "  match: {path: /static, pathType: Prefix}\n  rewrite: {path: /}\n  backendRefs: [{name: static}]\n",
            ),
        ),
        (
            "files.yaml",
            route(
                "files",
                "default",
                "  match: {path: '/files/{name}'}\n  rewrite: {path: '/store/{name}'}\n  backendRefs: [{name: static}]\n",
            ),
        ),
    ];
    let config = ConfigDir::with(&files.iter().map(|(n, t)| (*n, t.as_str())).collect::<Vec<_>>());
    let gw = Switchyard::standalone(config.path(), &[]);
    gw.wait_ready().await;

    assert_eq!(get(&gw, "/static/x.txt", &[]).await.echo()["path"], "/public/x.txt");
    let escape = get(&gw, "/static/../private/x", &[]).await;
    assert_eq!((escape.status, escape.error_code()), (404, Some("A404NF")), "normalized to /private/x, which no route serves");
    assert_eq!(get(&gw, "/files/a.txt", &[]).await.echo()["path"], "/public/store/a.txt");
    let capture = get(&gw, "/files/..%2F..%2Fprivate%2Fx", &[]).await;
    assert_eq!((capture.status, capture.error_code()), (400, Some("A400PR")));
    let dots = get(&gw, "/files/%2e%2e", &[]).await;
    assert_eq!(dots.error_code(), Some("A404NF"), "a capture can never be a dot segment");
    assert_eq!(up.hits(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_authority_is_the_one_host_and_a_disagreeing_host_header_is_refused() {
    let up = Upstream::start("up").await;
    let files = [
        ("backend.yaml", backend("up", "default", &up.url())),
        (
            "public.yaml",
            route(
                "public",
                "default",
                "  hosts: [public.example.com]\n  match: {path: /whoami}\n  backendRefs: [{name: up}]\n  passHostHeader: true\n",
            ),
        ),
        (
            "admin.yaml",
            route(
                "admin",
                "default",
                "  hosts: [admin.example.com]\n  match: {path: /whoami}\n  backendRefs: [{name: up}]\n  passHostHeader: true\n",
            ),
        ),
    ];
    let config = ConfigDir::with(&files.iter().map(|(n, t)| (*n, t.as_str())).collect::<Vec<_>>());
    let gw = Switchyard::standalone(config.path(), &[]);
    gw.wait_ready().await;
    let addr = gw.addrs["proxy"];

    let mismatch = raw(addr, "GET http://public.example.com/whoami HTTP/1.1", &["host: admin.example.com"]).await;
    assert_eq!((mismatch.status, mismatch.error_code()), (400, Some("A400HM")));
    let two_hosts = raw(addr, "GET /whoami HTTP/1.1", &["host: public.example.com", "host: admin.example.com"]).await;
    assert_eq!(two_hosts.status, 400);
    assert_eq!(up.hits(), 0);

    let agreed = raw(addr, "GET http://public.example.com/whoami HTTP/1.1", &["host: PUBLIC.example.com:80"]).await.echo();
    assert_eq!(agreed["headers"]["host"], "public.example.com", "passHostHeader forwards the authority");
    assert_eq!(agreed["headers"]["x-forwarded-host"], "public.example.com");
    let origin_form = raw(addr, "GET /whoami HTTP/1.1", &["host: admin.example.com"]).await.echo();
    assert_eq!(origin_form["headers"]["x-forwarded-host"], "admin.example.com");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_code_credentials_never_reach_the_backend_and_an_empty_code_never_authenticates() {
    let up = Upstream::start("files").await;
    let (config, gw) = public_and_admin(&up).await;
    let by_header = get(&gw, "/admin/x?a=1", &["authorization: APPCODE c0de"]).await.echo();
    assert!(by_header["headers"].get("authorization").is_none(), "{by_header}");
    assert_eq!(by_header["query"], "a=1");
    let by_query = get(&gw, "/admin/x?a=1&AppCode=c0de&b=2", &[]).await.echo();
    assert_eq!(by_query["query"], "a=1&b=2");
    let anonymous = get(&gw, "/public/x?AppCode=c0de", &["authorization: APPCODE c0de"]).await.echo();
    assert!(anonymous["headers"].get("authorization").is_none() && anonymous["query"].is_null(), "stripped on every route: {anonymous}");

    // An app whose appCode is empty: `?AppCode=` must not open the route.
    config.write("partner.yaml", &app("partner", "default", ""));
    wait_until("the empty code is compiled", Duration::from_secs(10), || async {
        gw.condition("ApiRoute", "admin", "ResolvedRefs").await.is_some_and(|(s, r)| s == "False" && r == "AppNotUsable")
    })
    .await;
    for query in ["/admin/x?AppCode=", "/admin/x?AppCode"] {
        let reply = get(&gw, query, &[]).await;
        assert_eq!((reply.status, reply.error_code()), (503, Some("A503AU")), "{query}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_the_app_of_an_appcode_route_fails_closed_instead_of_falling_to_a_broader_route() {
    let up = Upstream::start("files").await;
    let (config, gw) = public_and_admin(&up).await;
    config
        .write("catch-all.yaml", &route("catch-all", "default", "  match: {path: /, pathType: Prefix}\n  backendRefs: [{name: files}]\n"));
    wait_until("the catch-all is programmed", Duration::from_secs(10), || async {
        gw.condition("ApiRoute", "catch-all", "Programmed").await.is_some_and(|(s, _)| s == "True")
    })
    .await;
    assert_eq!(get(&gw, "/admin/secret.txt", &[]).await.status, 401);

    config.remove("partner.yaml");
    wait_until("the route reports the missing app", Duration::from_secs(10), || async {
        gw.condition("ApiRoute", "admin", "ResolvedRefs").await.is_some_and(|(s, r)| s == "False" && r == "AppNotFound")
    })
    .await;
    let reply = get(&gw, "/admin/secret.txt", &[]).await;
    assert_eq!((reply.status, reply.error_code()), (503, Some("A503AU")), "{}", reply.body);
    assert!(reply.header("x-ca-error-message").unwrap().contains("default/admin"));
    assert_eq!(gw.condition("ApiRoute", "admin", "Programmed").await.map(|c| c.0).as_deref(), Some("True"));
    assert_eq!(up.hits(), 0);
}

/// team-a's AppCode shop and team-b's route for the same host (newer), one upstream each.
async fn two_tenants(ownership: &str) -> (Upstream, Upstream, ConfigDir, Switchyard) {
    let (a, b) = (Upstream::start("team-a").await, Upstream::start("team-b").await);
    let stamp = |t: &str| format!("creationTimestamp: \"2026-01-0{t}T00:00:00Z\", ");
    let files = [
        ("a-backend.yaml", backend("shop", "team-a", &a.url())),
        ("b-backend.yaml", backend("orders", "team-b", &b.url())),
        ("a-app.yaml", app("partner", "team-a", "c0de")),
        (
            "a-route.yaml",
            route("shop", "team-a", "  hosts: [shop.example.com]\n  match: {path: /, pathType: Prefix}\n  backendRefs: [{name: shop}]\n  auth: {type: AppCode, apps: [partner]}\n")
                .replace("metadata: {", &format!("metadata: {{{}", stamp("1"))),
        ),
        (
            "b-route.yaml",
            route("orders", "team-b", "  hosts: [shop.example.com]\n  match: {path: /orders, pathType: Prefix}\n  backendRefs: [{name: orders}]\n")
                .replace("metadata: {", &format!("metadata: {{{}", stamp("2"))),
        ),
    ];
    let config = ConfigDir::with(&files.iter().map(|(n, t)| (*n, t.as_str())).collect::<Vec<_>>());
    let gw = Switchyard::standalone(config.path(), &["--host-ownership", ownership]);
    gw.wait_ready().await;
    (a, b, config, gw)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_namespace_cannot_take_over_a_host_another_namespace_owns() {
    let (a, b, _config, gw) = two_tenants("namespace").await;
    assert_eq!(gw.condition("ApiRoute", "orders", "Accepted").await, Some(("False".to_owned(), "HostOwnedByAnotherNamespace".to_owned())));
    let addr = gw.addrs["proxy"];
    let reply = raw(addr, "GET /orders/1 HTTP/1.1", &["host: shop.example.com", "authorization: APPCODE c0de"]).await;
    assert_eq!(reply.echo()["upstream"], "team-a", "team-a's clients and credentials stay with team-a");
    assert_eq!(b.hits(), 0);
    assert_eq!(a.hits(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_hosts_let_any_namespace_serve_a_host_as_before() {
    let (_a, _b, _config, gw) = two_tenants("shared").await;
    assert_eq!(gw.condition("ApiRoute", "orders", "Accepted").await.map(|c| c.0).as_deref(), Some("True"));
    let reply = raw(gw.addrs["proxy"], "GET /orders/1 HTTP/1.1", &["host: shop.example.com"]).await;
    assert_eq!(reply.echo()["upstream"], "team-b");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarding_headers_keep_every_x_forwarded_for_line_drop_forwarded_and_keep_a_good_request_id() {
    let up = Upstream::start("files").await;
    let (_config, gw) = public_and_admin(&up).await;
    let headers = [
        "x-forwarded-for: 203.0.113.7",
        "x-forwarded-for: 198.51.100.1, 198.51.100.2",
        "forwarded: for=10.0.0.1;host=admin.example.com",
        "x-ca-request-id: edge-42.abc_DEF",
    ];
    let reply = get(&gw, "/public/x", &headers).await;
    assert_eq!(reply.header("x-ca-request-id"), Some("edge-42.abc_DEF"), "one id follows the request");
    let echo = reply.echo();
    assert_eq!(echo["headers"]["x-forwarded-for"], "203.0.113.7, 198.51.100.1, 198.51.100.2, 127.0.0.1");
    assert!(echo["headers"].get("forwarded").is_none(), "{echo}");
    assert_eq!(echo["headers"]["x-ca-request-id"], "edge-42.abc_DEF");
    let bad_id = get(&gw, "/public/x", &["x-ca-request-id: not/valid"]).await;
    assert_ne!(bad_id.header("x-ca-request-id"), Some("not/valid"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_parameters_on_dot_segments_are_refused_and_cannot_dodge_a_prefix_route() {
    let up = Upstream::start("files").await;
    let (_config, gw) = public_and_admin(&up).await;
    for path in ["/public/..;/admin/secret.txt", "/public/.;x/../admin/x", "/public/%2e%2e;v=1/admin/x"] {
        let reply = get(&gw, path, &[]).await;
        assert_eq!((reply.status, reply.error_code()), (400, Some("A400PR")), "{path}");
    }
    let reply = get(&gw, "/admin;jsessionid=1/secret.txt", &[]).await;
    assert_eq!((reply.status, reply.error_code()), (401, Some("A401AF")), "a servlet backend reads /admin/secret.txt");
    let connect = raw(gw.addrs["proxy"], "CONNECT api.example.com:443 HTTP/1.1", &["host: api.example.com:443"]).await;
    assert_eq!(connect.status, 400, "an authority-form target has no path to route");
    assert_eq!(up.hits(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_that_is_not_a_plain_authority_is_refused_and_x_forwarded_host_is_never_passed_through() {
    let up = Upstream::start("files").await;
    let (_config, gw) = public_and_admin(&up).await;
    let addr = gw.addrs["proxy"];
    for host in ["[api.example.com]:80@evil.com", "api.example.com@evil.com", "api.example.com:80:80"] {
        let reply = raw(addr, "GET /public/x HTTP/1.1", &[&format!("host: {host}")]).await;
        assert_eq!((reply.status, reply.error_code()), (400, Some("A400BR")), "{host}");
    }
    let no_host = raw(addr, "GET /public/x HTTP/1.0", &["x-forwarded-host: evil.com"]).await.echo();
    assert!(no_host["headers"].get("x-forwarded-host").is_none(), "{no_host}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_constant_query_parameter_is_the_only_value_of_its_name_the_backend_sees() {
    let up = Upstream::start("up").await;
    let files = [
        ("backend.yaml", backend("up", "default", &up.url())),
        (
            "route.yaml",
            route(
                "r",
                "default",
                "  match: {path: /q}\n  backendRefs: [{name: up}]\n  parameters: [{in: query, name: tenant, value: a}]\n",
            ),
        ),
    ];
    let config = ConfigDir::with(&files.iter().map(|(n, t)| (*n, t.as_str())).collect::<Vec<_>>());
    let gw = Switchyard::standalone(config.path(), &[]);
    gw.wait_ready().await;
    let echo = get(&gw, "/q?tenant=b&x=1&ten%61nt=c", &[]).await.echo();
    assert_eq!(echo["query"], "x=1&tenant=a");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trailing_dot_host_meets_its_owners_routes_not_another_namespaces_catch_all() {
    let (a, b, config, gw) = two_tenants("namespace").await;
    config.write("b-any.yaml", &route("catch-all", "team-b", "  match: {path: /, pathType: Prefix}\n  backendRefs: [{name: orders}]\n"));
    wait_until("the catch-all is programmed", Duration::from_secs(10), || async {
        gw.condition("ApiRoute", "catch-all", "Programmed").await.is_some_and(|(s, _)| s == "True")
    })
    .await;
    let reply = raw(gw.addrs["proxy"], "GET /x HTTP/1.1", &["host: shop.example.com.", "authorization: APPCODE c0de"]).await;
    assert_eq!(reply.echo()["upstream"], "team-a");
    assert_eq!((a.hits(), b.hits()), (1, 0));
}
