//! The Grafana dashboard in the chart (`charts/switchyard/dashboards/switchyard.json`) names
//! only series the gateway exports. Every `expr` of every panel and every template
//! variable's query is parsed for the metric names it selects (and the labels its matchers
//! and `label_values` name), and each is looked up in the `/metrics` scrapes of real
//! processes after traffic that makes every series appear:
//! - `switchyard standalone` serving snapshots over TLS, with routes that answer 200, a dead
//!   upstream (502, a gateway error), no route (404), a retried upstream, a backend failing
//!   active health checks, an `eventBus` HTTP sink and a ZooKeeper `registry` backend with
//!   an instance;
//! - `switchyard proxy` pulling from it (the proxy-mode snapshot gauges), with
//!   `--otlp-endpoint` (the trace export counters exist only then), the same traffic;
//! - `switchyard controller`, whose series are unlabelled and exported from start, against
//!   an API server that does not answer (no cluster on a test machine; the names are what
//!   is checked here, envtest.rs runs a real one).
//!
//! Sample lines only: a family with no series (`# TYPE` and no sample) does not count, so a
//! series that appears only after an event must be made to appear by the traffic above.

mod support;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::Method;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use support::scratch::{Scratch, snapshot_url};
use support::upstream::Upstream;
use support::{ConfigDir, Switchyard, get, send, wait_until};
use switchyard_zookeeper::testing::{ZooKeeperServer, register_plain};

const DASHBOARD: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../charts/switchyard/dashboards/switchyard.json");
const API: &str = "apiVersion: switchyard.dev/v1alpha1";

/// Labels Prometheus adds when it scrapes (target labels, the ServiceMonitor's
/// `targetLabels`): a query may match on them although no scrape carries them.
const SCRAPE_LABELS: [&str; 8] = ["namespace", "pod", "service", "job", "instance", "container", "endpoint", "app_kubernetes_io_component"];

/// PromQL words that are not metric names: aggregations (may be followed by `by`), binary
/// operators and modifiers.
const KEYWORDS: [&str; 22] = [
    "sum",
    "avg",
    "min",
    "max",
    "count",
    "stddev",
    "stdvar",
    "topk",
    "bottomk",
    "quantile",
    "count_values",
    "group",
    "limitk",
    "limit_ratio",
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "atan2",
    "inf",
    "nan",
];
/// Modifiers followed by a list of label names.
const GROUPING: [&str; 6] = ["by", "without", "on", "ignoring", "group_left", "group_right"];

/// One selected metric: its name and the label names its matchers use.
#[derive(Debug, PartialEq)]
struct Selector {
    name: String,
    labels: Vec<String>,
}

fn ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == ':'
}

fn ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

/// Index just past the string literal opening at `i`.
fn skip_string(chars: &[char], i: usize) -> usize {
    let quote = chars[i];
    let mut j = i + 1;
    while j < chars.len() && chars[j] != quote {
        j += if chars[j] == '\\' && quote != '`' { 2 } else { 1 };
    }
    j + 1
}

/// Index of the `close` that ends the group opening at `i` (strings skipped, nesting
/// counted).
fn group_end(chars: &[char], i: usize, close: char) -> Result<usize, String> {
    let open = chars[i];
    let (mut depth, mut j) = (0, i);
    while j < chars.len() {
        match chars[j] {
            '"' | '\'' | '`' => {
                j = skip_string(chars, j);
                continue;
            }
            c if c == open => depth += 1,
            c if c == close => {
                depth -= 1;
                if depth == 0 {
                    return Ok(j);
                }
            }
            _ => {}
        }
        j += 1;
    }
    Err(format!("unbalanced {open}"))
}

/// The label names of the matchers between `{` and `}`.
fn matcher_labels(body: &[char]) -> Result<Vec<String>, String> {
    let mut labels = Vec::new();
    let mut i = 0;
    while i < body.len() {
        match body[i] {
            '"' | '\'' | '`' => i = skip_string(body, i),
            c if ident_start(c) => {
                let start = i;
                while i < body.len() && ident_char(body[i]) {
                    i += 1;
                }
                let label: String = body[start..i].iter().collect();
                if label == "__name__" {
                    return Err("a __name__ matcher cannot be checked: name the metric".into());
                }
                labels.push(label);
            }
            _ => i += 1,
        }
    }
    Ok(labels)
}

/// Every metric an expression selects. Strings, ranges (`[$__rate_interval]`), Grafana
/// variables, numbers, functions, aggregations and the label lists of `by (...)` and the
/// like are skipped; an identifier left is a metric name.
fn selectors(expr: &str) -> Result<Vec<Selector>, String> {
    let chars: Vec<char> = expr.chars().collect();
    let mut found = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if matches!(c, '"' | '\'' | '`') {
            i = skip_string(&chars, i);
        } else if c == '[' {
            i = group_end(&chars, i, ']')? + 1;
        } else if c == '{' {
            return Err(format!("a selector without a metric name: {expr}"));
        } else if c == '$' || c.is_ascii_digit() || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit)) {
            i += 1;
            while i < chars.len() && (ident_char(chars[i]) || chars[i] == '.') {
                i += 1;
            }
        } else if ident_start(c) {
            let start = i;
            while i < chars.len() && ident_char(chars[i]) {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let mut next = i;
            while next < chars.len() && chars[next].is_whitespace() {
                next += 1;
            }
            let followed_by = chars.get(next).copied();
            if GROUPING.contains(&word.as_str()) {
                if followed_by == Some('(') {
                    i = group_end(&chars, next, ')')? + 1;
                }
            } else if KEYWORDS.contains(&word.as_str()) || followed_by == Some('(') {
                // an aggregation, operator or function
            } else {
                let mut labels = Vec::new();
                if followed_by == Some('{') {
                    let end = group_end(&chars, next, '}')?;
                    labels = matcher_labels(&chars[next + 1..end])?;
                    i = end + 1;
                }
                found.push(Selector { name: word, labels });
            }
        } else {
            i += 1;
        }
    }
    Ok(found)
}

/// A template variable's query as PromQL plus the label it reads: `label_values(EXPR,
/// LABEL)`, `query_result(EXPR)`, or an expression.
fn variable_query(query: &str) -> (Option<String>, Option<String>) {
    let q = query.trim();
    if let Some(inner) = q.strip_prefix("label_values(").and_then(|r| r.strip_suffix(')')) {
        let chars: Vec<char> = inner.chars().collect();
        let mut depth = 0;
        let mut last_comma = None;
        let mut i = 0;
        while i < chars.len() {
            match chars[i] {
                '"' | '\'' | '`' => {
                    i = skip_string(&chars, i);
                    continue;
                }
                '(' | '{' | '[' => depth += 1,
                ')' | '}' | ']' => depth -= 1,
                ',' if depth == 0 => last_comma = Some(i),
                _ => {}
            }
            i += 1;
        }
        return match last_comma {
            Some(k) => (Some(chars[..k].iter().collect()), Some(chars[k + 1..].iter().collect::<String>().trim().to_owned())),
            None => (None, Some(inner.trim().to_owned())),
        };
    }
    if let Some(inner) = q.strip_prefix("query_result(").and_then(|r| r.strip_suffix(')')) {
        return (Some(inner.to_owned()), None);
    }
    (Some(q.to_owned()), None)
}

/// What the scrapes export: each sample name with the label names its series carry.
#[derive(Default)]
struct Exported(HashMap<String, HashSet<String>>);

impl Exported {
    /// Adds the sample lines of a Prometheus text scrape (comments, so families without a
    /// series, do not count).
    fn add(&mut self, scrape: &str) {
        for line in scrape.lines().filter(|l| !l.is_empty() && !l.starts_with('#')) {
            let end = line.find(['{', ' ']).unwrap_or(line.len());
            let labels = self.0.entry(line[..end].to_owned()).or_default();
            if line[end..].starts_with('{') {
                let chars: Vec<char> = line[end..].chars().collect();
                if let Ok(close) = group_end(&chars, 0, '}') {
                    labels.extend(matcher_labels(&chars[1..close]).unwrap_or_default());
                }
            }
        }
    }
}

/// Every query of the dashboard: (where, PromQL, the label a `label_values` reads).
fn queries(dashboard: &Value) -> Vec<(String, String, Option<String>)> {
    let mut out = Vec::new();
    fn walk(panels: &[Value], out: &mut Vec<(String, String, Option<String>)>) {
        for panel in panels {
            let title = panel["title"].as_str().unwrap_or("?");
            for target in panel["targets"].as_array().into_iter().flatten() {
                let expr = target["expr"].as_str().unwrap_or_else(|| panic!("panel {title:?}: a target without expr: {target}"));
                out.push((format!("panel {title:?} {}", target["refId"]), expr.to_owned(), None));
            }
            walk(panel["panels"].as_array().map_or(&[], Vec::as_slice), out);
        }
    }
    walk(dashboard["panels"].as_array().expect("panels"), &mut out);
    for variable in dashboard["templating"]["list"].as_array().into_iter().flatten().filter(|v| v["type"] == "query") {
        let name = variable["name"].as_str().unwrap_or("?");
        let query = variable["query"].as_str().or_else(|| variable["query"]["query"].as_str());
        for (field, text) in [("query", query), ("definition", variable["definition"].as_str())] {
            if let Some(text) = text.filter(|t| !t.is_empty()) {
                let (expr, label) = variable_query(text);
                out.push((format!("variable ${name} {field}"), expr.unwrap_or_default(), label));
            }
        }
    }
    out
}

/// What the dashboard names that the scrapes do not have, one line each.
fn missing(dashboard: &Value, exported: &Exported) -> Vec<String> {
    let mut problems = Vec::new();
    for (place, expr, label) in queries(dashboard) {
        let found = match selectors(&expr) {
            Ok(found) => found,
            Err(e) => {
                problems.push(format!("{place}: {e}"));
                continue;
            }
        };
        if found.is_empty() && label.is_none() {
            problems.push(format!("{place}: selects no metric: {expr}"));
        }
        for (i, selector) in found.iter().enumerate() {
            let Some(labels) = exported.0.get(&selector.name) else {
                problems.push(format!("{place}: {} is not exported: {expr}", selector.name));
                continue;
            };
            let read = if i == 0 { label.iter().collect() } else { Vec::new() };
            for l in selector.labels.iter().chain(read) {
                if !labels.contains(l) && !SCRAPE_LABELS.contains(&l.as_str()) {
                    problems.push(format!("{place}: {} has no label {l:?} (it has {labels:?})", selector.name));
                }
            }
        }
    }
    problems
}

/// An upstream that answers its first request 503 and every later one 200.
async fn flaky() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(AtomicUsize::new(0));
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let seen = seen.clone();
            tokio::spawn(async move {
                let service = service_fn(move |_request| {
                    let status = if seen.fetch_add(1, Ordering::SeqCst) == 0 { 503 } else { 200 };
                    async move {
                        Ok::<_, std::convert::Infallible>(
                            http::Response::builder().status(status).body(Full::new(Bytes::from("x"))).unwrap(),
                        )
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
            });
        }
    });
    addr
}

/// A loopback address nothing listens on.
fn closed_port() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

fn backend(name: &str, spec: &str) -> String {
    format!("{API}\nkind: BackendService\nmetadata: {{name: {name}}}\nspec:\n{spec}\n")
}

fn route(name: &str, path: &str, backend: &str) -> String {
    format!(
        "{API}\nkind: ApiRoute\nmetadata: {{name: {name}}}\nspec:\n  match: {{path: {path}, pathType: Prefix}}\n  backendRefs: [{{name: {backend}}}]\n"
    )
}

/// Requests that make every per-route and per-backend series appear: successes, no route,
/// a gateway error, a retry, an event published, a registry instance served.
async fn traffic(gw: &Switchyard) {
    for _ in 0..3 {
        assert_eq!(get(&gw.proxy_url("/orders/1")).await.unwrap().status, 200);
    }
    assert_eq!(get(&gw.proxy_url("/missing")).await.unwrap().status, 404);
    let dead = get(&gw.proxy_url("/dead")).await.unwrap();
    assert_eq!((dead.status.as_u16(), dead.error_code()), (502, Some("D502CF")));
    assert_eq!(get(&gw.proxy_url("/flaky")).await.unwrap().status, 200);
    let event = send(Method::POST, &gw.proxy_url("/events"), &[("content-type", "application/json")], "{\"n\":1}").await.unwrap();
    assert!(event.status.is_success(), "event: {} {}", event.status, event.text());
    assert_eq!(get(&gw.proxy_url("/inventory")).await.unwrap().status, 200);
}

async fn scrape(gw: &Switchyard, role: &str) -> String {
    let reply = get(&gw.url(role, "/metrics")).await.unwrap();
    assert_eq!(reply.status, 200);
    reply.text()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_the_dashboard_queries_is_exported_by_a_running_gateway_and_controller() {
    let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(DASHBOARD).unwrap()).expect("the dashboard is JSON");
    assert!(dashboard["schemaVersion"].as_u64().is_some_and(|v| v >= 36), "schemaVersion of a current Grafana");
    let variables = dashboard["templating"]["list"].as_array().unwrap();
    assert!(variables.iter().any(|v| v["name"] == "datasource" && v["type"] == "datasource" && v["query"] == "prometheus"));

    let zk = ZooKeeperServer::start();
    let app = zk.client().await;
    let (orders, inventory, sink) = (Upstream::start("orders").await, Upstream::start("inventory").await, Upstream::start("sink").await);
    register_plain(&app, "/apps/inventory", &format!("127.0.0.1:{}", inventory.addr.port()), b"").await.unwrap();
    let (dead, flaky) = (closed_port(), flaky().await);
    let manifests = [
        backend("orders", &format!("  http: {{urls: ['{}']}}", orders.url())),
        route("orders", "/orders", "orders"),
        backend("dead", &format!("  http: {{urls: ['http://{dead}']}}")),
        route("dead", "/dead", "dead"),
        backend("flaky", &format!("  http: {{urls: ['http://{flaky}']}}\n  retries: {{attempts: 2, retryOn: [gateway-error]}}")),
        route("flaky", "/flaky", "flaky"),
        backend(
            "checked",
            &format!(
                "  http: {{urls: ['{}', 'http://{dead}']}}\n  loadBalancing: {{policy: RoundRobin}}\n  healthCheck: {{active: {{path: /healthz, interval: 100ms, unhealthyThreshold: 1, healthyThreshold: 1}}}}",
                orders.url()
            ),
        ),
        route("checked", "/checked", "checked"),
        backend("events", &format!("  eventBus: {{http: {{url: '{}/ingest'}}, source: /dashboard, type: com.example.test}}", sink.url())),
        route("events", "/events", "events"),
        backend(
            "inventory",
            &format!("  registry: {{zookeeper: {{servers: ['{}'], path: /apps/inventory, layout: Plain}}}}", zk.connect_string()),
        ),
        route("inventory", "/inventory", "inventory"),
    ];
    let config = ConfigDir::with(&[("all.yaml", &manifests.join("---\n"))]);
    let scratch = Scratch::new("dashboard-ca");
    let token = scratch.token_file("token", "dashboard-snapshot-token");
    let standalone = scratch.standalone(&config, &token, "127.0.0.1:0");
    standalone.wait_ready().await;
    traffic(&standalone).await;

    let otlp = format!("http://{}", closed_port());
    let proxy = Switchyard::proxy_with(
        &snapshot_url(&standalone),
        &token,
        &scratch.cache_dir("proxy-cache"),
        &["--controller-ca", &scratch.path("ca.pem"), "--otlp-endpoint", &otlp],
    );
    proxy.wait_ready().await;
    traffic(&proxy).await;

    let kubeconfig = scratch.write(
        "kubeconfig",
        &format!(
            "apiVersion: v1\nkind: Config\nclusters: [{{name: none, cluster: {{server: 'https://{}'}}}}]\n\
             users: [{{name: none, user: {{token: unused}}}}]\ncontexts: [{{name: none, context: {{cluster: none, user: none}}}}]\n\
             current-context: none\n",
            closed_port()
        ),
    );
    let controller_args = [
        "controller",
        "--snapshot-listen",
        "127.0.0.1:0",
        "--snapshot-insecure-http",
        "--admin-listen",
        "127.0.0.1:0",
        "--metrics-listen",
        "127.0.0.1:0",
        "--token-file",
        token.to_str().unwrap(),
    ];
    let env =
        [("KUBECONFIG", kubeconfig.to_str().unwrap()), ("SWITCHYARD_LEASE_NAMESPACE", "default"), ("SWITCHYARD_POD_NAME", "dashboard-0")];
    let controller = Switchyard::start_with_env(&controller_args, &["snapshot", "admin", "metrics"], &env);
    let metrics_url = controller.url("metrics", "/metrics");
    wait_until("the controller serves /metrics", Duration::from_secs(10), || async {
        get(&metrics_url).await.is_ok_and(|r| r.status == 200)
    })
    .await;

    let mut exported = Exported::default();
    let health_gauge = "switchyard_proxy_backend_unhealthy_endpoints{backend=\"default/checked\"} 1";
    wait_until("the checked backend's dead endpoint is out of rotation", Duration::from_secs(10), || async {
        scrape(&standalone, "admin").await.contains(health_gauge) && scrape(&proxy, "metrics").await.contains(health_gauge)
    })
    .await;
    for (gw, role) in [(&standalone, "admin"), (&proxy, "metrics"), (&controller, "metrics")] {
        exported.add(&scrape(gw, role).await);
    }
    let problems = missing(&dashboard, &exported);
    let names: BTreeSet<&String> = exported.0.keys().filter(|n| n.starts_with("switchyard_")).collect();
    assert!(problems.is_empty(), "the dashboard names series nobody exports:\n{}\n\nexported: {names:#?}", problems.join("\n"));

    // Exported families the dashboard does not show, for the record (not a failure: the
    // dashboard shows a selection).
    let family = |name: &str| ["_bucket", "_sum", "_count"].iter().find_map(|s| name.strip_suffix(s)).unwrap_or(name).to_owned();
    let used: HashSet<String> =
        queries(&dashboard).iter().flat_map(|(_, expr, _)| selectors(expr).unwrap_or_default()).map(|s| family(&s.name)).collect();
    let unused: BTreeSet<String> = names.iter().map(|n| family(n)).filter(|f| !used.contains(f)).collect();
    eprintln!("exported but not on the dashboard: {unused:?}");

    // The check is not vacuous: one metric renamed in a copy of the dashboard is found.
    let mut broken = dashboard.clone();
    let target = &mut broken["panels"][1]["targets"][0]["expr"];
    let renamed = target.as_str().unwrap().replacen("switchyard_proxy_requests_total", "switchyard_proxy_request_total", 1);
    assert_ne!(renamed, target.as_str().unwrap(), "the first panel queries switchyard_proxy_requests_total");
    *target = Value::String(renamed);
    let found = missing(&broken, &exported);
    assert!(found.len() == 1 && found[0].contains("switchyard_proxy_request_total is not exported"), "{found:?}");
    drop((controller, proxy, standalone, zk));
}

#[test]
fn selectors_are_the_metric_names_of_an_expression_and_their_matcher_labels() {
    let expr = r#"histogram_quantile(0.99, sum by (le, route) (rate(switchyard_proxy_request_duration_seconds_bucket{namespace=~"$namespace", route=~"a,b}"}[$__rate_interval]))) / on (route) group_left max without (pod) (up offset 5m) or vector(0) > bool 1e3"#;
    assert_eq!(
        selectors(expr).unwrap(),
        [
            Selector { name: "switchyard_proxy_request_duration_seconds_bucket".into(), labels: vec!["namespace".into(), "route".into()] },
            Selector { name: "up".into(), labels: vec![] },
        ]
    );
    assert_eq!(selectors("sum(rate(x_total[5m])) by (code)").unwrap(), [Selector { name: "x_total".into(), labels: vec![] }]);
    assert!(selectors(r#"{__name__="x"}"#).is_err());
    assert_eq!(
        variable_query(r#"label_values(switchyard_proxy_requests_total{namespace=~"$namespace"}, route)"#),
        (Some(r#"switchyard_proxy_requests_total{namespace=~"$namespace"}"#.into()), Some("route".into()))
    );
    assert_eq!(variable_query("label_values(namespace)"), (None, Some("namespace".into())));

    let mut exported = Exported::default();
    exported.add("# TYPE a counter\na_total{route=\"x\",code=\"y\"} 1\n# TYPE b gauge\n");
    let dashboard = serde_json::json!({
        "panels": [{"title": "p", "targets": [{"refId": "A", "expr": "sum by (code) (rate(a_total{route=\"x\", pod=\"p\"}[1m])) + b + a_total{backend=\"z\"}"}]}],
        "templating": {"list": [{"type": "query", "name": "v", "query": "label_values(a_total, class)"}]},
    });
    let found = missing(&dashboard, &exported);
    assert_eq!(found.len(), 3, "{found:?}");
    assert!(found[0].contains("b is not exported"), "a family without a sample is not exported: {found:?}");
    assert!(found[1].contains("a_total has no label \"backend\""), "{found:?}");
    assert!(found[2].contains("a_total has no label \"class\""), "{found:?}");
}

#[test]
fn every_panel_reads_the_datasource_variable_and_fits_the_grid() {
    let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(DASHBOARD).unwrap()).unwrap();
    let mut ids = HashSet::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        let title = panel["title"].as_str().unwrap();
        assert!(ids.insert(panel["id"].as_u64().unwrap()), "panel {title:?}: id used twice");
        let grid = &panel["gridPos"];
        let (x, w) = (grid["x"].as_u64().unwrap(), grid["w"].as_u64().unwrap());
        assert!(x + w <= 24 && grid["h"].as_u64().is_some_and(|h| h > 0), "panel {title:?}: gridPos {grid}");
        if panel["type"] == "row" {
            continue;
        }
        assert!(panel["description"].as_str().is_some_and(|d| !d.is_empty()), "panel {title:?} says what it shows");
        let targets = panel["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "panel {title:?} has no query");
        for source in std::iter::once(&panel["datasource"]).chain(targets.iter().map(|t| &t["datasource"])) {
            assert_eq!(source, &serde_json::json!({"type": "prometheus", "uid": "${datasource}"}), "panel {title:?}");
        }
    }
}
