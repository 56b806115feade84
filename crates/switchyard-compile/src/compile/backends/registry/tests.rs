use std::time::{Duration, SystemTime};

use crate::discovered::{Discovered, Instance, InstanceScheme, RegistrySource, SecretData, Skipped, SyncState};
use crate::snapshot::BackendKind;
use crate::{Resources, reason};

const NACOS: &str = "apiVersion: switchyard.dev/v1alpha1\nkind: BackendService\nmetadata: {name: orders, namespace: shop}\n\
                     spec: {registry: {nacos: {serverAddr: \"127.0.0.1:8848, nacos-2.internal\", service: orders}}}\n";

fn with(yaml: &str, discovered: Option<Discovered>) -> Resources {
    let mut resources = Resources::default();
    crate::manifest::add_yaml(&mut resources, "t", yaml);
    assert!(resources.invalid.is_empty(), "{:?}", resources.invalid);
    if let Some(d) = discovered {
        resources.registry.insert(("shop".into(), "orders".into()), d);
    }
    resources
}

fn instance(host: &str, port: u16, weight: u32, scheme: InstanceScheme) -> Instance {
    Instance { scheme, host: host.into(), port, weight }
}

fn synced(instances: Vec<Instance>, skipped: Vec<Skipped>) -> Discovered {
    Discovered { instances, skipped, sync: SyncState::Synced { at: SystemTime::now() }, malformed_total: 0 }
}

fn ready_of(resources: &Resources) -> (bool, String, String, Option<u32>) {
    let compiled = crate::compile(resources);
    let status = &compiled.statuses[0];
    let ready = status.condition("Ready").expect("a Ready condition");
    (ready.status, ready.reason.to_owned(), ready.message.clone(), status.endpoints)
}

fn endpoints_of(resources: &Resources) -> Vec<(String, String, u32, Option<String>)> {
    let compiled = crate::compile(resources);
    let BackendKind::Http { endpoints } = &compiled.snapshot.backends[0].kind else { panic!("not http: {:?}", compiled.snapshot.backends) };
    endpoints.iter().map(|e| (e.scheme.clone(), e.authority.clone(), e.weight, e.tls_server_name.clone())).collect()
}

#[test]
fn instances_become_weighted_endpoints_and_https_ones_are_verified_by_their_host() {
    let found = synced(
        vec![
            instance("10.0.0.5", 8080, 100, InstanceScheme::Http),
            instance("::1", 8443, 300, InstanceScheme::Https),
            instance("Orders-3.Internal", 80, 1, InstanceScheme::Http),
            instance("10.0.0.5", 8080, 100, InstanceScheme::Http),
        ],
        vec![],
    );
    let resources = with(NACOS, Some(found));
    assert_eq!(
        endpoints_of(&resources),
        [
            ("http".into(), "10.0.0.5:8080".into(), 100, None),
            ("https".into(), "[::1]:8443".into(), 300, Some("::1".into())),
            ("http".into(), "orders-3.internal:80".into(), 1, None),
        ],
        "a duplicate instance is one endpoint"
    );
    let (ok, why, message, count) = ready_of(&resources);
    assert!(ok, "{message}");
    assert_eq!((why.as_str(), count), (reason::READY, Some(3)));
    assert!(message.contains("3 endpoint(s) from Nacos service DEFAULT_GROUP@@orders in namespace public"), "{message}");
    assert!(crate::compile(&resources).snapshot.backends[0].tls.is_some(), "an https instance needs the backend's TLS trust");
}

#[test]
fn before_the_first_read_the_backend_is_discovering_with_no_endpoints() {
    let resources = with(NACOS, None);
    let (ok, why, message, count) = ready_of(&resources);
    assert!(!ok);
    assert_eq!((why.as_str(), count), (reason::DISCOVERING, Some(0)));
    assert!(message.contains("127.0.0.1:8848,nacos-2.internal:8848"), "default port filled in: {message}");
    assert!(endpoints_of(&resources).is_empty());
}

#[test]
fn an_unreachable_registry_keeps_its_last_instances_and_says_since_when() {
    let last_sync = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let found = Discovered {
        instances: vec![instance("10.0.0.5", 8080, 1, InstanceScheme::Http)],
        skipped: vec![],
        sync: SyncState::Unreachable { error: "connection refused".into(), last_sync: Some(last_sync) },
        malformed_total: 0,
    };
    let resources = with(NACOS, Some(found));
    let (ok, why, message, count) = ready_of(&resources);
    assert!(!ok);
    assert_eq!((why.as_str(), count), (reason::REGISTRY_UNREACHABLE, Some(1)));
    assert!(message.contains("last good sync at 2023-11-14T22:13:20Z") && message.contains("connection refused"), "{message}");
    assert_eq!(endpoints_of(&resources).len(), 1, "the last known instances keep serving");
}

#[test]
fn no_serving_instance_is_no_endpoints_and_skipped_entries_are_named() {
    let skipped = vec![
        Skipped { entry: "dubbo://10.0.0.9:20880".into(), why: "dubbo:// cannot be proxied as HTTP".into(), malformed: false },
        Skipped { entry: "bad-node".into(), why: "not JSON".into(), malformed: true },
    ];
    let resources = with(NACOS, Some(synced(vec![instance("a b", 80, 1, InstanceScheme::Http)], skipped)));
    let (ok, why, message, count) = ready_of(&resources);
    assert!(!ok);
    assert_eq!((why.as_str(), count), (reason::NO_ENDPOINTS, Some(0)));
    for named in ["dubbo://10.0.0.9:20880", "bad-node (not JSON)", "a b:80", "skipped 3 entries (2 malformed)"] {
        assert!(message.contains(named), "{named} in {message}");
    }
}

#[test]
fn credentials_come_from_a_secret_in_the_backends_namespace() {
    let yaml = NACOS.replace("service: orders}", "service: orders, credentialsSecretRef: {name: login}}");
    let mut resources = with(&yaml, None);
    let compiled = crate::compile(&resources);
    let refs = compiled.statuses[0].condition("ResolvedRefs").unwrap();
    assert_eq!((refs.status, refs.reason.as_str()), (false, reason::SECRET_NOT_FOUND));
    assert!(crate::registry_source(&resources.backend_services[0], &resources).is_none(), "no watch without its credentials");

    resources.secrets.insert(("shop".into(), "login".into()), SecretData([("username".to_owned(), "u".to_owned())].into()));
    let refs = crate::compile(&resources).statuses[0].condition("ResolvedRefs").unwrap().clone();
    assert_eq!(refs.reason, reason::SECRET_KEY_NOT_FOUND);
    assert!(refs.message.contains("\"password\""), "{}", refs.message);

    let data = SecretData([("username".to_owned(), "u".to_owned()), ("password".to_owned(), "p4ss".to_owned())].into());
    resources.secrets.insert(("shop".into(), "login".into()), data);
    let Some(RegistrySource::Nacos(watch)) = crate::registry_source(&resources.backend_services[0], &resources) else { panic!() };
    let credentials = watch.credentials.expect("credentials");
    assert_eq!((credentials.username.as_str(), credentials.password.as_str()), ("u", "p4ss"));
    let compiled = crate::compile(&resources);
    let everything = format!("{:?}{}", compiled.statuses, serde_json::to_string(&compiled.snapshot).unwrap());
    assert!(!everything.contains("p4ss"), "a password never reaches statuses or the snapshot");
}

#[test]
fn zookeeper_sources_are_normalized_and_bad_ones_rejected_with_a_reason() {
    let zk = |fields: &str| {
        format!(
            "apiVersion: switchyard.dev/v1alpha1\nkind: BackendService\nmetadata: {{name: orders, namespace: shop}}\n\
             spec: {{registry: {{zookeeper: {{{fields}}}}}}}\n"
        )
    };
    let good = with(&zk("servers: [\"zk-1:2181\", \"10.0.0.2\"], chroot: /apps, path: /dubbo/com.example.Orders, layout: Dubbo"), None);
    let Some(RegistrySource::ZooKeeper(watch)) = crate::registry_source(&good.backend_services[0], &good) else { panic!() };
    assert_eq!(watch.servers, ["zk-1:2181", "10.0.0.2:2181"]);
    assert_eq!((watch.chroot.as_deref(), watch.path.as_str()), (Some("/apps"), "/dubbo/com.example.Orders"));

    for (fields, why) in [
        ("servers: [\"zk:2181\"], path: /services/../etc", reason::INVALID_REGISTRY),
        ("servers: [\"zk:2181\"], path: services/orders", reason::INVALID_REGISTRY),
        ("servers: [\"zk:2181\"], path: /services/orders/", reason::INVALID_REGISTRY),
        ("servers: [\"zk:99999\"], path: /services/orders", reason::INVALID_REGISTRY),
        ("servers: [\"169.254.169.254:80\"], path: /services/orders", reason::LINK_LOCAL_NOT_ALLOWED),
        ("servers: [], path: /services/orders", reason::INVALID_REGISTRY),
    ] {
        let resources = with(&zk(fields), None);
        let accepted = crate::compile(&resources).statuses[0].condition("Accepted").unwrap().clone();
        assert_eq!((accepted.status, accepted.reason.as_str()), (false, why), "{fields}: {}", accepted.message);
    }
    let fast = with(&NACOS.replace("service: orders}", "service: orders, resyncInterval: 500ms}"), None);
    assert_eq!(crate::compile(&fast).statuses[0].condition("Accepted").unwrap().reason, reason::INVALID_REGISTRY);
}
