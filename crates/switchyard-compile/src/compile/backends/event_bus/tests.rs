use switchyard_api::condition_type::{ACCEPTED, READY, RESOLVED_REFS};

use crate::bus::BusState;
use crate::snapshot::{BackendKind, CloudEventsMode, EventSink, NatsCredentials, SecretText};
use crate::{Compiled, Resources, SecretData, reason};

fn resources(spec: &str) -> Resources {
    let mut resources = Resources::default();
    let yaml = format!(
        "apiVersion: switchyard.dev/v1alpha1\nkind: BackendService\nmetadata: {{name: orders, namespace: shop}}\nspec: {{eventBus: {spec}}}\n"
    );
    crate::manifest::add_yaml(&mut resources, "t", &yaml);
    resources
}

fn condition<'a>(compiled: &'a Compiled, type_: &str) -> (bool, &'a str, &'a str) {
    let c = compiled.statuses[0].condition(type_).unwrap_or_else(|| panic!("no {type_}: {:?}", compiled.statuses));
    (c.status, c.reason.as_str(), c.message.as_str())
}

const NATS: &str =
    "{nats: {url: \"nats://127.0.0.1:4222\", subject: orders.created}, source: /shop/orders, type: com.example.order.created}";

#[test]
fn a_nats_bus_is_ready_only_once_its_monitor_sees_a_stream_for_the_subject() {
    let mut res = resources(NATS);
    let compiled = crate::compile(&res);
    assert!(condition(&compiled, ACCEPTED).0);
    assert_eq!(condition(&compiled, READY).1, reason::CONNECTING, "no monitor result yet");
    let BackendKind::EventBus { sink: EventSink::Nats { target, subject }, source, event_type } = &compiled.snapshot.backends[0].kind
    else {
        panic!("{:?}", compiled.snapshot.backends[0].kind)
    };
    assert_eq!((target.servers.as_slice(), subject.as_str()), (&["nats://127.0.0.1:4222".to_owned()][..], "orders.created"));
    assert_eq!((source.as_str(), event_type.as_str()), ("/shop/orders", "com.example.order.created"));
    let key = ("shop".to_owned(), "orders".to_owned());
    res.buses.insert(key.clone(), BusState::Ready { server: "127.0.0.1:4222".into(), stream: "ORDERS".into() });
    let compiled = crate::compile(&res);
    let (ready, why, message) = condition(&compiled, READY);
    assert!(ready && why == reason::READY && message.contains("ORDERS") && message.contains("orders.created"), "{message}");
    res.buses.insert(key.clone(), BusState::NoStream { server: "127.0.0.1:4222".into() });
    assert_eq!(condition(&crate::compile(&res), READY).1, reason::NO_STREAM);
    res.buses.insert(key, BusState::Unreachable { error: "connection refused".into() });
    let compiled = crate::compile(&res);
    assert_eq!(condition(&compiled, READY).1, reason::BUS_UNREACHABLE);
    assert!(
        matches!(compiled.snapshot.backends[0].kind, BackendKind::EventBus { .. }),
        "a bus that is down still serves (503 per request)"
    );
}

#[test]
fn subjects_servers_and_attributes_are_checked() {
    let cases = [
        ("{nats: {url: \"nats://n:4222\", subject: \"orders.*\"}, source: /s, type: t}", reason::INVALID_SPEC),
        ("{nats: {url: \"nats://n:4222\", subject: \"orders..x\"}, source: /s, type: t}", reason::INVALID_SPEC),
        ("{nats: {url: \"nats://n:4222\", subject: \"a b\"}, source: /s, type: t}", reason::INVALID_SPEC),
        ("{nats: {url: \"nats://user:pw@n:4222\", subject: s}, source: /s, type: t}", reason::INVALID_URL),
        ("{nats: {url: \"http://n:4222\", subject: s}, source: /s, type: t}", reason::INVALID_URL),
        ("{nats: {url: \"nats://169.254.169.254:4222\", subject: s}, source: /s, type: t}", reason::LINK_LOCAL_NOT_ALLOWED),
        ("{nats: {url: \"nats://n\", subject: s}, source: \"\", type: t}", reason::INVALID_SPEC),
        ("{nats: {url: \"nats://n\", subject: s}, source: /s, type: \"a b\"}", reason::INVALID_SPEC),
        ("{nats: {url: \"nats://n\", subject: s}, http: {url: \"http://sink\"}, source: /s, type: t}", reason::INVALID_SPEC),
    ];
    for (spec, want) in cases {
        let compiled = crate::compile(&resources(spec));
        let (accepted, why, message) = condition(&compiled, ACCEPTED);
        assert_eq!((accepted, why), (false, want), "{spec}: {message}");
        assert!(!message.contains("pw@"), "{message}");
    }
    let compiled = crate::compile(&resources("{nats: {url: \"nats://A.example:1, tls://b.example\", subject: s}, source: /s, type: t}"));
    let BackendKind::EventBus { sink: EventSink::Nats { target, .. }, .. } = &compiled.snapshot.backends[0].kind else { panic!() };
    assert_eq!(target.servers, ["nats://a.example:1", "tls://b.example:4222"]);
}

#[test]
fn credentials_come_from_a_secret_with_a_token_or_a_username_and_password() {
    let spec = "{nats: {url: \"nats://n\", subject: s, credentialsSecretRef: {name: bus}}, source: /s, type: t}";
    let mut res = resources(spec);
    let compiled = crate::compile(&res);
    assert_eq!(condition(&compiled, RESOLVED_REFS).1, reason::SECRET_NOT_FOUND);
    assert!(matches!(compiled.snapshot.backends[0].kind, BackendKind::Unavailable { .. }), "never publish without the login");
    let key = ("shop".to_owned(), "bus".to_owned());
    res.secrets.insert(key.clone(), SecretData([("user".to_owned(), "x".to_owned())].into()));
    let compiled = crate::compile(&res);
    let (_, why, message) = condition(&compiled, RESOLVED_REFS);
    assert_eq!(why, reason::SECRET_KEY_NOT_FOUND, "{message}");
    res.secrets.insert(key.clone(), SecretData([("token".to_owned(), "s3cr3t\n".to_owned())].into()));
    let compiled = crate::compile(&res);
    let BackendKind::EventBus { sink: EventSink::Nats { target, .. }, .. } = &compiled.snapshot.backends[0].kind else { panic!() };
    assert_eq!(target.credentials, Some(NatsCredentials::Token { token: SecretText("s3cr3t".into()) }));
    let pair = [("username".to_owned(), "gw".to_owned()), ("password".to_owned(), "pw".to_owned())];
    res.secrets.insert(key, SecretData(pair.into()));
    let compiled = crate::compile(&res);
    let BackendKind::EventBus { sink: EventSink::Nats { target, .. }, .. } = &compiled.snapshot.backends[0].kind else { panic!() };
    assert_eq!(target.credentials, Some(NatsCredentials::UserPassword { username: "gw".into(), password: SecretText("pw".into()) }));
    assert!(!format!("{:?}", compiled.snapshot).contains("\"pw\""), "Debug redacts the password");
}

#[test]
fn an_http_sink_is_one_endpoint_in_its_mode() {
    let compiled = crate::compile(&resources("{http: {url: \"https://broker.example/default\", mode: Binary}, source: /s, type: t}"));
    assert!(condition(&compiled, READY).0);
    let BackendKind::EventBus { sink: EventSink::Http { endpoints, mode }, .. } = &compiled.snapshot.backends[0].kind else { panic!() };
    assert_eq!((endpoints[0].base_path.as_str(), *mode), ("/default", CloudEventsMode::Binary));
    assert!(compiled.snapshot.backends[0].tls.is_some());
}
