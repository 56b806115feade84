//! `eventBus` backends end to end: the real binary (standalone) publishing requests as
//! CloudEvents to a real nats-server with JetStream, read back from the stream; and to a
//! real CloudEvents HTTP sink that parses them with the CloudEvents Python SDK.

mod support;

use std::time::Duration;

use http::Method;
use serde_json::{Value, json};
use support::{ConfigDir, Switchyard, send, wait_until};
use switchyard_nats::testing::NatsServer;

const CONVERGE: Duration = Duration::from_secs(15);

fn nats_config(url: &str) -> String {
    format!(
        r#"apiVersion: switchyard.dev/v1alpha1
kind: BackendService
metadata: {{name: orders-bus, namespace: default}}
spec:
  eventBus:
    nats: {{url: "{url}", subject: orders.created}}
    source: /shop/orders
    type: com.example.order.created
---
apiVersion: switchyard.dev/v1alpha1
kind: ApiRoute
metadata: {{name: orders-events, namespace: default}}
spec:
  match: {{path: "/orders/{{id}}/events", pathType: Template}}
  timeout: 3s
  backendRefs: [{{name: orders-bus}}]
"#
    )
}

async fn ready(gw: &Switchyard) -> Option<(String, String)> {
    gw.condition("BackendService", "orders-bus", "Ready").await
}

async fn wait_ready_reason(gw: &Switchyard, want: &str) {
    let mut last = None;
    let deadline = tokio::time::Instant::now() + CONVERGE;
    while tokio::time::Instant::now() < deadline {
        last = ready(gw).await;
        if last.as_ref().is_some_and(|(_, reason)| reason == want) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("Ready never became {want}; last {last:?}");
}

/// A standalone gateway with the orders bus on `nats`, once its backend's Ready reason is `ready`.
async fn bus_gateway(nats: &NatsServer, ready: &str) -> (ConfigDir, Switchyard) {
    let config = ConfigDir::with(&[("bus.yaml", &nats_config(&nats.url()))]);
    let gw = Switchyard::standalone(config.path(), &[]);
    gw.wait_ready().await;
    wait_ready_reason(&gw, ready).await;
    (config, gw)
}

async fn post(gw: &Switchyard, path: &str, headers: &[(&str, &str)], body: &'static [u8]) -> support::Reply {
    send(Method::POST, &gw.proxy_url(path), headers, body).await.expect("the gateway answers")
}

/// Every message of the stream, oldest first, as (headers, JSON payload).
async fn stream_events(nats: &NatsServer, stream: &str) -> Vec<(async_nats::HeaderMap, Value)> {
    let jetstream = async_nats::jetstream::new(nats.client().await);
    let mut stream = jetstream.get_stream(stream).await.expect("the stream exists");
    let count = stream.info().await.unwrap().state.messages;
    let mut out = Vec::new();
    for seq in 1..=count {
        let message = stream.get_raw_message(seq).await.expect("the message");
        out.push((message.headers, serde_json::from_slice(&message.payload).expect("a JSON CloudEvent")));
    }
    out
}

#[tokio::test]
async fn a_request_is_published_once_acknowledged_with_every_field_of_the_cloudevent() {
    let nats = NatsServer::start();
    nats.create_stream("ORDERS", &["orders.>"]).await;
    let (_config, gw) = bus_gateway(&nats, "Ready").await;

    let headers = [("content-type", "application/json"), ("authorization", "Bearer client-secret"), ("x-trace", "t1")];
    let reply = post(&gw, "/orders/42/events?source=web&source=app&q=a+b", &headers, b"{\"total\":9.5}").await;
    assert_eq!(reply.status, 202, "{}", reply.text());
    let id = reply.json()["eventId"].as_str().expect("an event id").to_owned();
    let binary = post(&gw, "/orders/7/events", &[("idempotency-key", "order-7-created")], b"\xff\x00bin").await;
    assert_eq!((binary.status.as_u16(), binary.json()["eventId"].as_str()), (202, Some("order-7-created")));

    let events = stream_events(&nats, "ORDERS").await;
    assert_eq!(events.len(), 2, "one message per accepted request");
    let (first_headers, first) = &events[0];
    assert_eq!(first_headers.get("Nats-Msg-Id").map(|v| v.as_str()), Some(id.as_str()));
    assert_eq!(first["specversion"], "1.0");
    assert_eq!(
        (first["id"].as_str(), first["source"].as_str(), first["type"].as_str()),
        (Some(id.as_str()), Some("/shop/orders"), Some("com.example.order.created"))
    );
    assert_eq!((first["datacontenttype"].as_str(), first["subject"].as_str()), (Some("application/json"), Some("/orders/42/events")));
    let time = first["time"].as_str().expect("a time");
    assert!(time.len() == 20 && time.ends_with('Z') && time.starts_with("20"), "RFC 3339: {time}");
    let data = &first["data"];
    assert_eq!((data["method"].as_str(), data["path"].as_str()), (Some("POST"), Some("/orders/42/events")));
    assert_eq!(data["pathParameters"], json!({"id": "42"}));
    assert_eq!(data["query"], json!({"source": "web", "q": "a b"}), "decoded; a repeated key keeps its first value");
    assert_eq!((data["body"].as_str(), data["bodyBase64"].as_bool()), (Some("{\"total\":9.5}"), Some(false)));
    assert_eq!(data["headers"]["x-trace"], "t1");
    assert_eq!(data["headers"]["content-type"], "application/json");
    assert!(data["headers"].get("authorization").is_none(), "credentials never go into events: {data}");
    assert!(data["headers"].get("connection").is_none() && data["headers"].get("host").is_none(), "{data}");
    let second = &events[1].1;
    assert_eq!((second["data"]["body"].as_str(), second["data"]["bodyBase64"].as_bool()), (Some("/wBiaW4="), Some(true)));
    assert_eq!(second["data"]["pathParameters"], json!({"id": "7"}));
}

#[tokio::test]
async fn the_gateway_logs_in_with_the_secrets_credentials_and_never_shows_them() {
    use switchyard_nats::testing::Auth;
    let nats = NatsServer::start_with(Auth::UserPassword("gw".into(), "n4ts-pa55word".into()));
    nats.create_stream("ORDERS", &["orders.>"]).await;
    let with_login =
        nats_config(&nats.url()).replace("subject: orders.created}", "subject: orders.created, credentialsSecretRef: {name: nats-login}}");
    let secret = "apiVersion: v1\nkind: Secret\nmetadata: {name: nats-login, namespace: default}\nstringData: {username: gw, password: n4ts-pa55word}\n";
    let config = ConfigDir::with(&[("bus.yaml", &with_login), ("secret.yaml", secret)]);
    let gw = Switchyard::standalone(config.path(), &[]);
    gw.wait_ready().await;
    wait_ready_reason(&gw, "Ready").await;
    assert_eq!(post(&gw, "/orders/1/events", &[], b"{}").await.status, 202);
    assert_eq!(stream_events(&nats, "ORDERS").await.len(), 1);
    for path in ["/config_dump", "/status", "/metrics"] {
        let text = support::get(&gw.url("admin", path)).await.unwrap().text();
        assert!(!text.contains("n4ts-pa55word"), "{path} shows the password: {text}");
    }
    assert!(!gw.log_text().contains("n4ts-pa55word"), "the log shows the password");

    // A wrong password: not Ready, with the reason, and every event refused.
    config.write("secret.yaml", &secret.replace("n4ts-pa55word", "wr0ng-pa55word"));
    wait_ready_reason(&gw, "BusUnreachable").await;
    wait_until("events are refused", CONVERGE, || async { post(&gw, "/orders/1/events", &[], b"{}").await.status == 503 }).await;
    let status = gw.status().await.to_string();
    assert!(!status.contains("wr0ng-pa55word") && status.to_ascii_lowercase().contains("authorization"), "{status}");
}

#[tokio::test]
async fn a_retried_request_with_its_idempotency_key_or_nonce_is_stored_once_with_the_same_id() {
    let nats = NatsServer::start();
    nats.create_stream("ORDERS", &["orders.>"]).await;
    let (_config, gw) = bus_gateway(&nats, "Ready").await;
    for _ in 0..3 {
        let reply = post(&gw, "/orders/1/events", &[("idempotency-key", "pay-1")], b"{}").await;
        assert_eq!((reply.status.as_u16(), reply.json()["eventId"].as_str()), (202, Some("pay-1")));
    }
    for _ in 0..2 {
        let reply = post(&gw, "/orders/1/events", &[("x-ca-nonce", "nonce-9")], b"{}").await;
        assert_eq!(reply.json()["eventId"].as_str(), Some("nonce-9"));
    }
    let fresh = [post(&gw, "/orders/1/events", &[], b"{}").await, post(&gw, "/orders/1/events", &[], b"{}").await];
    assert_ne!(fresh[0].json()["eventId"], fresh[1].json()["eventId"], "without a key every request is its own event");
    assert_eq!(stream_events(&nats, "ORDERS").await.len(), 4, "pay-1 once, nonce-9 once, two fresh ones");
    let bad = post(&gw, "/orders/1/events", &[("idempotency-key", "has space")], b"{}").await;
    assert_eq!((bad.status.as_u16(), bad.error_code()), (400, Some("A400EK")));
}

#[tokio::test]
async fn a_bus_that_is_down_is_refused_at_once_and_ready_follows_it_back() {
    let mut nats = NatsServer::start();
    nats.create_stream("ORDERS", &["orders.>"]).await;
    let (_config, gw) = bus_gateway(&nats, "Ready").await;
    assert_eq!(post(&gw, "/orders/1/events", &[], b"{}").await.status, 202);

    nats.stop();
    let started = std::time::Instant::now();
    let down = post(&gw, "/orders/1/events", &[], b"{}").await;
    assert_eq!((down.status.as_u16(), down.error_code()), (503, Some("D503EB")), "{}", down.text());
    assert!(started.elapsed() < Duration::from_secs(3), "within the route timeout: {:?}", started.elapsed());
    wait_ready_reason(&gw, "BusUnreachable").await;

    nats.restart();
    wait_until("publishing works again", CONVERGE, || async { post(&gw, "/orders/1/events", &[], b"{}").await.status == 202 }).await;
    wait_ready_reason(&gw, "Ready").await;
    assert_eq!(stream_events(&nats, "ORDERS").await.len(), 2, "the refused event was never published");
}

#[tokio::test]
async fn a_subject_without_a_stream_is_not_ready_and_refused() {
    let nats = NatsServer::start();
    let (_config, gw) = bus_gateway(&nats, "NoStream").await;
    let refused = post(&gw, "/orders/1/events", &[], b"{}").await;
    assert_eq!((refused.status.as_u16(), refused.error_code()), (503, Some("D503ER")), "{}", refused.text());
    nats.create_stream("ORDERS", &["orders.>"]).await;
    wait_ready_reason(&gw, "Ready").await;
    assert_eq!(post(&gw, "/orders/1/events", &[], b"{}").await.status, 202);
}

#[tokio::test]
async fn in_a_burst_every_202_is_a_message_in_the_stream() {
    let nats = NatsServer::start();
    nats.create_stream("ORDERS", &["orders.>"]).await;
    let (_config, gw) = bus_gateway(&nats, "Ready").await;
    let url = gw.proxy_url("/orders/5/events");
    let tasks: Vec<_> = (0..300)
        .map(|i| {
            let url = url.clone();
            tokio::spawn(async move { send(Method::POST, &url, &[], format!("{{\"n\":{i}}}")).await.map(|r| r.status.as_u16()) })
        })
        .collect();
    let mut accepted = 0;
    for task in tasks {
        if task.await.unwrap() == Ok(202) {
            accepted += 1;
        }
    }
    assert!(accepted > 250, "most of the burst is accepted: {accepted}");
    assert_eq!(stream_events(&nats, "ORDERS").await.len(), accepted, "every 202 is in the stream, and nothing else");
    let metrics = support::get(&gw.url("admin", "/metrics")).await.unwrap().text();
    let sample =
        |name: &str| metrics.lines().find(|l| l.starts_with(name)).and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok()).unwrap_or(-1.0);
    let labels = "{backend=\"default/orders-bus\"";
    assert_eq!(sample(&format!("switchyard_eventbus_events_total{labels},outcome=\"accepted\"}}")), accepted as f64, "{metrics}");
    assert_eq!(sample(&format!("switchyard_eventbus_publish_duration_seconds_count{labels}}}")), 300.0, "{metrics}");
}

/// support/cloudevents_sink.py on an ephemeral loopback port, killed on drop.
struct Sink {
    child: std::process::Child,
    addr: String,
}

impl Sink {
    fn start(status: u16) -> Self {
        use std::io::BufRead;
        let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/cloudevents_sink.py");
        let mut child = std::process::Command::new(support::test_python("the cloudevents SDK"))
            .arg(script)
            .args(["--port", "0", "--status", &status.to_string()])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("the venv's python runs the sink");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let addr = line.trim().strip_prefix("listening on ").unwrap_or_else(|| panic!("the sink said {line:?}")).to_owned();
        Self { child, addr }
    }

    async fn events(&self) -> Vec<Value> {
        support::get(&format!("http://{}/_events", self.addr)).await.unwrap().json().as_array().unwrap().clone()
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn sink_config(url: &str, mode: &str) -> String {
    format!(
        "apiVersion: switchyard.dev/v1alpha1\nkind: BackendService\nmetadata: {{name: orders-bus, namespace: default}}\n\
         spec:\n  eventBus: {{http: {{url: \"{url}\", mode: {mode}}}, source: /shop/orders, type: com.example.order.created}}\n---\n\
         apiVersion: switchyard.dev/v1alpha1\nkind: ApiRoute\nmetadata: {{name: orders-events, namespace: default}}\n\
         spec:\n  match: {{path: \"/orders/{{id}}/events\", pathType: Template}}\n  timeout: 3s\n  backendRefs: [{{name: orders-bus}}]\n"
    )
}

#[tokio::test]
async fn both_http_modes_deliver_an_event_the_cloudevents_sdk_parses() {
    for mode in ["Structured", "Binary"] {
        let sink = Sink::start(202);
        let config = ConfigDir::with(&[("bus.yaml", &sink_config(&format!("http://{}/ingest", sink.addr), mode))]);
        let gw = Switchyard::standalone(config.path(), &[]);
        gw.wait_ready().await;
        let reply = post(&gw, "/orders/3/events?x=1", &[("idempotency-key", "k-3"), ("x-trace", "t")], b"{\"n\":3}").await;
        assert_eq!((reply.status.as_u16(), reply.json()["eventId"].as_str()), (202, Some("k-3")), "{mode}: {}", reply.text());
        let events = sink.events().await;
        assert_eq!(events.len(), 1, "{mode}: {events:?}");
        let event = &events[0];
        assert_eq!(event["mode"], mode.to_ascii_lowercase());
        let attributes = &event["attributes"];
        assert_eq!((attributes["id"].as_str(), attributes["specversion"].as_str()), (Some("k-3"), Some("1.0")), "{mode}: {event}");
        assert_eq!((attributes["source"].as_str(), attributes["type"].as_str()), (Some("/shop/orders"), Some("com.example.order.created")));
        assert_eq!(attributes["subject"], "/orders/3/events");
        assert!(attributes["time"].as_str().is_some_and(|t| t.starts_with("20")), "{mode}: {event}");
        let data = &event["data"];
        assert_eq!((data["method"].as_str(), data["body"].as_str()), (Some("POST"), Some("{\"n\":3}")), "{mode}: {event}");
        assert_eq!((data["pathParameters"]["id"].as_str(), data["query"]["x"].as_str()), (Some("3"), Some("1")));
        assert_eq!(data["headers"]["x-trace"], "t");
    }
}

#[tokio::test]
async fn a_sink_that_refuses_or_is_gone_is_a_503_and_never_a_202() {
    let refusing = Sink::start(500);
    let config = ConfigDir::with(&[("bus.yaml", &sink_config(&format!("http://{}/", refusing.addr), "Structured"))]);
    let gw = Switchyard::standalone(config.path(), &[]);
    gw.wait_ready().await;
    let reply = post(&gw, "/orders/1/events", &[], b"{}").await;
    assert_eq!((reply.status.as_u16(), reply.error_code()), (503, Some("D503ER")), "{}", reply.text());
    assert!(reply.text().contains("500"), "the message gives the sink's status: {}", reply.text());
    let gone = format!("http://{}/", refusing.addr);
    drop(refusing);
    config.write("bus.yaml", &sink_config(&gone, "Binary"));
    wait_until("the sink is gone", CONVERGE, || async { post(&gw, "/orders/1/events", &[], b"{}").await.error_code() == Some("D503EB") })
        .await;
}

/// `make bench` (bench/event-bus.sh, release build): events per second into JetStream
/// through the gateway (HTTP POST → 202 after the ack) against publishing the same events
/// directly with the same client library (async-nats: publish, await the ack), with the
/// same concurrency, in one run, two alternating rounds; the best round of each counts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: bench/event-bus.sh runs it"]
async fn event_bus_bench() {
    use http_body_util::Full;
    use hyper_util::client::legacy::Client;
    use hyper_util::client::legacy::connect::HttpConnector;
    use hyper_util::rt::TokioExecutor;

    let events: usize = std::env::var("EVENT_BENCH_EVENTS").ok().and_then(|v| v.parse().ok()).unwrap_or(20_000);
    let concurrency: usize = std::env::var("EVENT_BENCH_CONCURRENCY").ok().and_then(|v| v.parse().ok()).unwrap_or(32);
    let nats = NatsServer::start();
    nats.create_stream("ORDERS", &["orders.>"]).await;
    let extra = std::env::var("EVENT_BENCH_GATEWAY_ARGS").unwrap_or_default();
    let extra: Vec<&str> = extra.split_whitespace().collect();
    let config = ConfigDir::with(&[("bus.yaml", &nats_config(&nats.url()))]);
    let gw = Switchyard::standalone(config.path(), &extra);
    gw.wait_ready().await;
    wait_ready_reason(&gw, "Ready").await;
    let url = gw.proxy_url("/orders/1/events");
    let client: Client<HttpConnector, Full<bytes::Bytes>> = Client::builder(TokioExecutor::new()).build(HttpConnector::new());
    let jetstream = async_nats::jetstream::new(nats.client().await);
    let body = bytes::Bytes::from_static(b"{\"order\":42,\"total\":9.5,\"items\":[1,2,3]}");

    let through_gateway = || {
        let (client, url, body) = (client.clone(), url.clone(), body.clone());
        async move {
            let started = std::time::Instant::now();
            let workers: Vec<_> = (0..concurrency)
                .map(|_| {
                    let (client, url, body) = (client.clone(), url.clone(), body.clone());
                    tokio::spawn(async move {
                        for _ in 0..events / concurrency {
                            let request = http::Request::post(&url).body(Full::new(body.clone())).unwrap();
                            let response = client.request(request).await.expect("the gateway answers");
                            assert_eq!(response.status(), 202);
                            http_body_util::BodyExt::collect(response.into_body()).await.unwrap();
                        }
                    })
                })
                .collect();
            for worker in workers {
                worker.await.unwrap();
            }
            (events / concurrency * concurrency) as f64 / started.elapsed().as_secs_f64()
        }
    };
    // The direct publisher sends the very event the gateway made of the request (its
    // CloudEvent bytes, read back from the stream), so both legs store the same payload.
    through_gateway().await;
    let event = {
        let stream = jetstream.get_stream("ORDERS").await.unwrap();
        let last = stream.get_last_raw_message_by_subject("orders.created").await.unwrap();
        last.payload
    };
    let direct = || {
        let (jetstream, body) = (jetstream.clone(), event.clone());
        async move {
            let started = std::time::Instant::now();
            let workers: Vec<_> = (0..concurrency)
                .map(|w| {
                    let (jetstream, body) = (jetstream.clone(), body.clone());
                    tokio::spawn(async move {
                        for i in 0..events / concurrency {
                            let message = async_nats::jetstream::message::PublishMessage::build()
                                .payload(body.clone())
                                .message_id(format!("d-{w}-{i}-{}", rand_suffix()));
                            let ack = jetstream.send_publish("orders.created", message).await.unwrap();
                            ack.await.expect("JetStream acknowledges");
                        }
                    })
                })
                .collect();
            for worker in workers {
                worker.await.unwrap();
            }
            (events / concurrency * concurrency) as f64 / started.elapsed().as_secs_f64()
        }
    };
    // Warm both paths (connections, the stream's first blocks).
    direct().await;
    // CPU time per event of each process (utime + stime from /proc), to see where it goes.
    let nats_pid = pid_listening_on(nats.port());
    let processes = [("client", std::process::id()), ("gateway", gw.pid()), ("nats-server", nats_pid)];
    let cpu = || processes.map(|(_, pid)| cpu_ticks(pid));
    let per_event = |before: [u64; 3], after: [u64; 3]| {
        let ticks = 1_000_000.0 / CLOCK_TICKS_PER_SECOND / (events / concurrency * concurrency) as f64;
        processes
            .iter()
            .zip(before.iter().zip(after))
            .map(|((name, _), (b, a))| format!("{name} {:.1}", (a - b) as f64 * ticks))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let (mut best_direct, mut best_gateway) = (0f64, 0f64);
    for round in 1..=2 {
        let before = cpu();
        let d = direct().await;
        let middle = cpu();
        let g = through_gateway().await;
        let after = cpu();
        println!("round {round}: direct {d:.0} events/s, switchyard {g:.0} events/s");
        println!("round {round}: CPU us/event direct: {}; switchyard: {}", per_event(before, middle), per_event(middle, after));
        best_direct = best_direct.max(d);
        best_gateway = best_gateway.max(g);
    }
    println!(
        "# {events} events per round ({} request body bytes; a {}-byte CloudEvent, published as is by the direct leg), {concurrency} concurrent publishers, JetStream file storage",
        body.len(),
        event.len()
    );
    println!("direct (async-nats publish + ack): {best_direct:.0} events/s");
    println!("switchyard (HTTP POST -> 202 after the ack): {best_gateway:.0} events/s");
    println!("event bus ratio (switchyard / direct): {:.3} (target >= 0.8)", best_gateway / best_direct);
}

/// utime + stime of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("the process's stat");
    // The fields after the command (which may hold spaces) in parentheses.
    let fields: Vec<&str> = stat.rsplit_once(')').expect("stat format").1.split_whitespace().collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// `/proc` counts CPU time in USER_HZ ticks, 100 a second on Linux.
const CLOCK_TICKS_PER_SECOND: f64 = 100.0;

/// The process with a listening socket on `port` (the nats-server a harness started).
fn pid_listening_on(port: u16) -> u32 {
    let hex = format!(":{port:04X} ");
    let tcp = std::fs::read_to_string("/proc/net/tcp").unwrap();
    let inode = tcp
        .lines()
        .find(|l| {
            l.split_whitespace().nth(1).is_some_and(|local| format!("{local} ").ends_with(&hex))
                && l.split_whitespace().nth(3) == Some("0A")
        })
        .and_then(|l| l.split_whitespace().nth(9).map(str::to_owned))
        .expect("a listener on the port");
    let wanted = format!("socket:[{inode}]");
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else { continue };
        if fds.flatten().any(|fd| std::fs::read_link(fd.path()).is_ok_and(|l| l.to_string_lossy() == wanted)) {
            return pid;
        }
    }
    panic!("no process holds {wanted}");
}

/// Distinct message ids across rounds (the stream's duplicate window would drop repeats).
fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}
