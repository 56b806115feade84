//! Whole-pass scenarios against a scripted API server.

use http::{Method, StatusCode};
use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::json;
use switchyard_compile::manifest;
use switchyard_compile::snapshot::BackendKind;

use super::*;
use crate::kubernetes::mock::{self, Expect};

const MANIFESTS: &str = "
apiVersion: switchyard.dev/v1alpha1
kind: BackendService
metadata: {name: hello, namespace: shop, generation: 1}
spec: {mock: {statusCode: 200}}
---
apiVersion: switchyard.dev/v1alpha1
kind: ApiRoute
metadata: {name: hello, namespace: shop, generation: 3}
spec: {match: {path: /hello}, backendRefs: [{name: hello}]}
";

struct Fixture {
    publisher: Publisher,
    book: StatusBook,
    metrics: ControllerMetrics,
}

impl Fixture {
    fn new() -> Self {
        let mut registry = prometheus_client::registry::Registry::default();
        Self { publisher: Publisher::starting_at(1), book: StatusBook::default(), metrics: ControllerMetrics::register(&mut registry) }
    }

    fn ctx(&self) -> PassContext<'_> {
        PassContext { publisher: &self.publisher, book: &self.book, metrics: &self.metrics, events_from_stored: false }
    }

    /// The context of a replica's first pass as leader.
    fn first_leading_ctx(&self) -> PassContext<'_> {
        PassContext { events_from_stored: true, ..self.ctx() }
    }
}

fn resources() -> Resources {
    let mut resources = Resources::default();
    manifest::add_yaml(&mut resources, "test", MANIFESTS);
    resources
}

fn applied(kind: &str, name: &str) -> serde_json::Value {
    json!({"apiVersion": "switchyard.dev/v1alpha1", "kind": kind, "metadata": {"name": name, "namespace": "shop"}})
}

#[tokio::test]
async fn a_replica_that_does_not_lead_publishes_but_writes_no_status() {
    let (client, mut handle) = mock::client();
    let fixture = Fixture::new();
    let mut writer = StatusWriter::new(client);
    let outcome = reconcile_once(&resources(), false, &mut writer, |_| None, fixture.ctx()).await;
    assert_eq!(outcome.version, Some(1), "every replica serves snapshots");
    assert_eq!(fixture.publisher.current().unwrap().snapshot.routes.len(), 1);
    mock::expect_no_more_calls(&mut handle).await;
}

#[tokio::test]
async fn the_leader_applies_every_status_then_nothing_while_nothing_changes() {
    let (client, mut handle) = mock::client();
    let fixture = Fixture::new();
    let mut writer = StatusWriter::new(client);
    let route = "/apis/switchyard.dev/v1alpha1/namespaces/shop/apiroutes/hello/status?&force=true&fieldManager=switchyard-controller";
    let backend =
        "/apis/switchyard.dev/v1alpha1/namespaces/shop/backendservices/hello/status?&force=true&fieldManager=switchyard-controller";
    let script = vec![
        Expect { method: Method::PATCH, path: route.into(), status: StatusCode::OK, reply: applied("ApiRoute", "hello") },
        Expect { method: Method::PATCH, path: backend.into(), status: StatusCode::OK, reply: applied("BackendService", "hello") },
    ];
    let resources = resources();
    let (outcome, bodies) =
        tokio::join!(reconcile_once(&resources, true, &mut writer, |_| None, fixture.ctx()), mock::serve_one_by_one(&mut handle, script));
    assert_eq!(outcome.version, Some(1));
    let programmed = bodies[0]["status"]["conditions"].as_array().unwrap().iter().find(|c| c["type"] == "Programmed").unwrap().clone();
    assert_eq!((programmed["status"].as_str(), programmed["observedGeneration"].as_i64()), (Some("True"), Some(3)));
    assert_eq!(bodies[1]["status"]["endpoints"], 1);
    // Same input again: no new snapshot version and no status traffic.
    let again = reconcile_once(&resources, true, &mut writer, |_| None, fixture.ctx()).await;
    assert_eq!(again.version, None);
    mock::expect_no_more_calls(&mut handle).await;
}

fn service() -> Service {
    Service {
        metadata: ObjectMeta { name: Some("orders".into()), namespace: Some("shop".into()), ..Default::default() },
        spec: Some(ServiceSpec { ports: Some(vec![ServicePort { port: 80, ..Default::default() }]), ..Default::default() }),
        ..Default::default()
    }
}

fn slice(addresses: &[&str]) -> EndpointSlice {
    EndpointSlice {
        metadata: ObjectMeta {
            name: Some("orders-x".into()),
            namespace: Some("shop".into()),
            labels: Some([("kubernetes.io/service-name".to_owned(), "orders".to_owned())].into()),
            ..Default::default()
        },
        address_type: "IPv4".into(),
        ports: Some(vec![EndpointPort { port: Some(8080), ..Default::default() }]),
        endpoints: addresses.iter().map(|a| Endpoint { addresses: vec![(*a).into()], ..Default::default() }).collect(),
    }
}

fn with_service_backend(addresses: &[&str]) -> Resources {
    let mut resources = Resources::default();
    manifest::add_yaml(
        &mut resources,
        "test",
        "apiVersion: switchyard.dev/v1alpha1\nkind: BackendService\nmetadata: {name: orders, namespace: shop}\nspec: {http: {service: {name: orders, port: 80}}}\n",
    );
    resources.service_endpoints = endpoints::service_endpoints(&[service()], &[slice(addresses)]);
    resources
}

fn published_endpoints(publisher: &Publisher) -> Vec<String> {
    let current = publisher.current().unwrap();
    match &current.snapshot.backends[0].kind {
        BackendKind::Http { endpoints } => endpoints.iter().map(|e| e.authority.clone()).collect(),
        other => panic!("unexpected kind {other:?}"),
    }
}

#[tokio::test]
async fn service_scale_up_and_down_reach_the_snapshot_as_new_versions() {
    let (client, _handle) = mock::client();
    let fixture = Fixture::new();
    let mut writer = StatusWriter::new(client);
    let one = reconcile_once(&with_service_backend(&["10.1.0.1"]), false, &mut writer, |_| None, fixture.ctx()).await;
    assert_eq!(published_endpoints(&fixture.publisher), ["10.1.0.1:8080"]);
    let two = reconcile_once(&with_service_backend(&["10.1.0.1", "10.1.0.2"]), false, &mut writer, |_| None, fixture.ctx()).await;
    assert_eq!(published_endpoints(&fixture.publisher), ["10.1.0.1:8080", "10.1.0.2:8080"]);
    let down = reconcile_once(&with_service_backend(&["10.1.0.2"]), false, &mut writer, |_| None, fixture.ctx()).await;
    assert_eq!(published_endpoints(&fixture.publisher), ["10.1.0.2:8080"]);
    assert!(one.version < two.version && two.version < down.version, "each change is a new version");
}

#[tokio::test]
async fn an_annotation_triggered_test_is_written_with_the_request_it_answers() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut resources = Resources::default();
    let manifest = format!(
        "apiVersion: switchyard.dev/v1alpha1\nkind: VpcAuthorization\nmetadata: {{name: orders, namespace: shop, generation: 1, annotations: {{switchyard.dev/test-connectivity: req-7}}}}\nspec: {{target: {{address: 127.0.0.1}}, ports: [{port}]}}\n"
    );
    manifest::add_yaml(&mut resources, "test", &manifest);
    let mut prober = crate::connectivity::Prober::default();
    prober.start_due(&resources);
    prober.finished.notified().await;
    prober.collect();
    resources.connectivity = prober.results();

    let (client, mut handle) = mock::client();
    let fixture = Fixture::new();
    let mut writer = StatusWriter::new(client);
    let path =
        "/apis/switchyard.dev/v1alpha1/namespaces/shop/vpcauthorizations/orders/status?&force=true&fieldManager=switchyard-controller";
    let script =
        vec![Expect { method: Method::PATCH, path: path.into(), status: StatusCode::OK, reply: applied("VpcAuthorization", "orders") }];
    let (_, bodies) =
        tokio::join!(reconcile_once(&resources, true, &mut writer, |_| None, fixture.ctx()), mock::serve_one_by_one(&mut handle, script));
    let status = &bodies[0]["status"];
    assert_eq!(status["connectivityTestRequest"], "req-7");
    let connected = status["conditions"].as_array().unwrap().iter().find(|c| c["type"] == "Connected").unwrap();
    assert_eq!(connected["status"], "True", "{connected}");
    assert!(connected["message"].as_str().unwrap().contains("connected in"), "{connected}");
    mock::expect_no_more_calls(&mut handle).await;
}

/// Which object and condition each Event of a pass is about.
fn event_keys(outcome: &PassOutcome) -> Vec<String> {
    let mut keys: Vec<String> =
        outcome.events.iter().map(|c| format!("{} {}={}", c.object, c.condition.type_, c.condition.status)).collect();
    keys.sort();
    keys
}

#[tokio::test]
async fn the_first_pass_as_leader_emits_events_for_conditions_the_stored_status_does_not_have() {
    let (client, mut handle) = mock::client();
    let fixture = Fixture::new();
    let mut writer = StatusWriter::new(client);
    let resources = resources();
    // Before it leads, the replica compiles like every replica: its book absorbs every
    // condition, so book-based transitions are gone by the time it leads.
    let follower = reconcile_once(&resources, false, &mut writer, |_| None, fixture.ctx()).await;
    assert!(follower.events.is_empty(), "a follower publishes no Events");
    // The route's stored status is what an earlier leader wrote; the backend was created
    // while no controller ran, so it has none.
    let route_status = fixture.book.snapshot().into_iter().find(|o| o.object.kind == ResourceKind::ApiRoute).unwrap();
    let stored_route = json!({"observedGeneration": 3, "conditions": route_status.conditions});
    let current = |o: &ObjectRef| (o.kind == ResourceKind::ApiRoute).then(|| stored_route.clone());
    let backend =
        "/apis/switchyard.dev/v1alpha1/namespaces/shop/backendservices/hello/status?&force=true&fieldManager=switchyard-controller";
    let script =
        vec![Expect { method: Method::PATCH, path: backend.into(), status: StatusCode::OK, reply: applied("BackendService", "hello") }];
    let (first, _) = tokio::join!(
        reconcile_once(&resources, true, &mut writer, current, fixture.first_leading_ctx()),
        mock::serve_one_by_one(&mut handle, script)
    );
    assert_eq!(
        event_keys(&first),
        ["BackendService shop/hello Accepted=True", "BackendService shop/hello Ready=True", "BackendService shop/hello ResolvedRefs=True"],
        "Events for the backend's conditions only: the route's stored status already says the same"
    );
    assert!(first.events.iter().all(|c| c.condition.last_transition_time == first.now), "published as transitions of this pass");
    // A stored condition with another status is a transition too.
    let mut flipped = stored_route.clone();
    for c in flipped["conditions"].as_array_mut().unwrap() {
        if c["type"] == "Programmed" {
            c["status"] = json!("False");
        }
    }
    let route = "/apis/switchyard.dev/v1alpha1/namespaces/shop/apiroutes/hello/status?&force=true&fieldManager=switchyard-controller";
    let script = vec![Expect { method: Method::PATCH, path: route.into(), status: StatusCode::OK, reply: applied("ApiRoute", "hello") }];
    let current = |o: &ObjectRef| match o.kind {
        ResourceKind::ApiRoute => Some(flipped.clone()),
        _ => Some(
            json!({"conditions": fixture.book.snapshot().into_iter().find(|s| s.object.kind == ResourceKind::BackendService).unwrap().conditions, "observedGeneration": 1, "kind": "mock", "endpoints": 1}),
        ),
    };
    let (again, _) = tokio::join!(
        reconcile_once(&resources, true, &mut writer, current, fixture.first_leading_ctx()),
        mock::serve_one_by_one(&mut handle, script)
    );
    assert_eq!(event_keys(&again), ["ApiRoute shop/hello Programmed=True"]);
    // Later passes take transitions from the book: nothing changed, so no Events.
    let later = reconcile_once(&resources, true, &mut writer, |_| None, fixture.ctx()).await;
    assert!(later.events.is_empty());
}

#[test]
fn only_secrets_a_backend_references_reach_compile() {
    use k8s_openapi::ByteString;
    let secret = |ns: &str, name: &str| {
        Arc::new(Secret {
            metadata: kube::api::ObjectMeta { namespace: Some(ns.into()), name: Some(name.into()), ..Default::default() },
            data: Some(
                [("username".to_owned(), ByteString(b"nacos".to_vec())), ("password".to_owned(), ByteString(vec![0xff, 0xfe]))].into(),
            ),
            ..Default::default()
        })
    };
    let mut resources = Resources::default();
    let yaml = "apiVersion: switchyard.dev/v1alpha1\nkind: BackendService\nmetadata: {name: n, namespace: shop}\n\
                spec: {registry: {nacos: {serverAddr: \"127.0.0.1:8848\", service: orders, credentialsSecretRef: {name: login}}}}\n";
    switchyard_compile::manifest::add_yaml(&mut resources, "t", yaml);
    let all = [secret("shop", "login"), secret("shop", "unrelated"), secret("other", "login")];
    let found = super::referenced_secrets(&resources.backend_services, &all);
    assert_eq!(found.keys().collect::<Vec<_>>(), [&("shop".to_owned(), "login".to_owned())]);
    let data = &found[&("shop".to_owned(), "login".to_owned())].0;
    assert_eq!(data.get("username").map(String::as_str), Some("nacos"));
    assert!(!data.contains_key("password"), "a value that is not UTF-8 is left out");

    // A model's token and an event bus's login are references too.
    let mut resources = Resources::default();
    let yaml = "apiVersion: switchyard.dev/v1alpha1\nkind: BackendService\nmetadata: {name: m, namespace: shop}\n\
                spec: {model: {url: \"http://m\", tokenSecretRef: {name: eas, key: token}}}\n---\n\
                apiVersion: switchyard.dev/v1alpha1\nkind: BackendService\nmetadata: {name: b, namespace: other}\n\
                spec: {eventBus: {nats: {url: \"nats://n\", subject: s, credentialsSecretRef: {name: bus}}, source: /s, type: t}}\n";
    switchyard_compile::manifest::add_yaml(&mut resources, "t", yaml);
    let all = [secret("shop", "eas"), secret("other", "bus"), secret("shop", "bus"), secret("other", "eas")];
    let found = super::referenced_secrets(&resources.backend_services, &all);
    let keys: Vec<(String, String)> = found.into_keys().collect();
    assert_eq!(keys, [("other".to_owned(), "bus".to_owned()), ("shop".to_owned(), "eas".to_owned())]);
}

#[test]
fn labelled_tls_secrets_become_certificates_for_compile_and_others_do_not() {
    use k8s_openapi::ByteString;
    let secret = |name: &str, label: Option<&str>| Secret {
        metadata: kube::api::ObjectMeta {
            namespace: Some("shop".into()),
            name: Some(name.into()),
            labels: label.map(|v| [(CERTIFICATE_LABEL.to_owned(), v.to_owned())].into()),
            ..Default::default()
        },
        type_: Some("kubernetes.io/tls".into()),
        data: Some([("tls.crt".to_owned(), ByteString(b"CERT".to_vec())), ("tls.key".to_owned(), ByteString(vec![0xff]))].into()),
        ..Default::default()
    };
    let found = super::certificate_secret(&secret("shop-tls", Some("true"))).unwrap();
    assert_eq!((found.namespace.as_str(), found.name.as_str()), ("shop", "shop-tls"));
    assert_eq!(found.secret_type.as_deref(), Some("kubernetes.io/tls"));
    assert_eq!(found.certificate_chain.as_deref(), Some("CERT"));
    assert_eq!(found.private_key, None, "a key that is not text is missing (compile says SecretKeyNotFound)");
    assert!(super::certificate_secret(&secret("plain", None)).is_none());
    assert!(super::certificate_secret(&secret("off", Some("false"))).is_none());
}
