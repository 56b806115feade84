//! Compile tests of the http and vpc kinds.

use std::net::IpAddr;

use super::http::parse_url;
use super::*;
use crate::snapshot::BackendKind;

#[test]
fn a_base_path_must_be_normalized_and_wire_safe() {
    for bad in ["http://svc/a/..", "http://svc/a//b", "http://svc/%2e%2e/x", "http://svc/a b", "http://svc/a\r\nX: 1"] {
        assert!(parse_url(bad).is_err(), "{bad}");
    }
    assert_eq!(parse_url("http://svc/api/").unwrap().base_path, "/api");
}

#[test]
fn urls_give_dial_authority_host_header_and_base_path() {
    let ep = parse_url("http://Orders.Internal:8080/api/").unwrap();
    assert_eq!(ep.authority, "orders.internal:8080");
    assert_eq!(ep.host, "orders.internal:8080");
    assert_eq!(ep.base_path, "/api");
    let ep = parse_url("http://10.0.0.5").unwrap();
    assert_eq!((ep.authority.as_str(), ep.host.as_str()), ("10.0.0.5:80", "10.0.0.5"));
    let ep = parse_url("http://[::1]:9000").unwrap();
    assert_eq!(ep.authority, "[::1]:9000");
}

fn service_backend(port: &str) -> Resources {
    let mut resources = Resources::default();
    let yaml = format!(
        "apiVersion: switchyard.dev/v1alpha1\nkind: BackendService\nmetadata: {{name: b, namespace: shop}}\nspec: {{http: {{service: {{name: orders, {port}}}}}}}\n"
    );
    crate::manifest::add_yaml(&mut resources, "t", &yaml);
    let target = crate::ServicePortTarget { port: 80, name: "http".into(), target: 8080 };
    let endpoint = crate::ServiceEndpoint { address: "10.0.0.7".parse().unwrap(), ports: vec![target] };
    resources.service_endpoints.insert(("shop".into(), "orders".into()), vec![endpoint]);
    resources
}

fn endpoints_of(resources: &Resources) -> Vec<String> {
    let compiled = crate::compile(resources);
    match compiled.snapshot.backends.first().map(|b| &b.kind) {
        Some(BackendKind::Http { endpoints }) => endpoints.iter().map(|e| e.authority.clone()).collect(),
        _ => Vec::new(),
    }
}

#[test]
fn a_service_port_is_found_by_number_or_by_name() {
    assert_eq!(endpoints_of(&service_backend("port: 80")), ["10.0.0.7:8080"]);
    assert_eq!(endpoints_of(&service_backend("portName: http")), ["10.0.0.7:8080"]);
    assert!(endpoints_of(&service_backend("port: 81")).is_empty(), "no endpoint serves another port");
    let both = crate::compile(&service_backend("port: 80, portName: http"));
    assert_eq!(both.statuses[0].condition("Accepted").unwrap().reason, reason::INVALID_SPEC);
}

fn host_target(connectivity: Option<crate::Connectivity>) -> Resources {
    let mut resources = Resources::default();
    let yaml = "apiVersion: switchyard.dev/v1alpha1\nkind: VpcAuthorization\nmetadata: {name: a, namespace: shop}\n\
                spec: {target: {host: orders.test}, ports: [8080]}\n---\n\
                apiVersion: switchyard.dev/v1alpha1\nkind: BackendService\nmetadata: {name: b, namespace: shop}\n\
                spec: {vpc: {authorizationRef: a, port: 8080}}\n";
    crate::manifest::add_yaml(&mut resources, "t", yaml);
    if let Some(test) = connectivity {
        resources.connectivity.insert(("shop".into(), "a".into()), test);
    }
    resources
}

#[test]
fn a_host_target_is_dialled_only_at_the_addresses_its_connectivity_test_resolved() {
    let resolved = crate::Connectivity {
        connected: true,
        message: "10.0.3.15:8080 connected in 1.0 ms".into(),
        requested: None,
        addresses: vec!["10.0.3.15".parse().unwrap()],
    };
    let compiled = crate::compile(&host_target(Some(resolved)));
    let backend = &compiled.snapshot.backends[0];
    let grant = backend.dial_grant.as_ref().expect("a vpc backend always has a grant");
    assert_eq!(grant.addresses, ["10.0.3.15".parse::<IpAddr>().unwrap()]);
    assert!(!grant.bypass_egress, "a host target gets no egress exception");
    assert!(matches!(&backend.kind, BackendKind::Http { endpoints } if endpoints[0].authority == "orders.test:8080"));

    let failed = crate::Connectivity {
        connected: false,
        message: "resolving orders.test: no record found".into(),
        requested: None,
        addresses: vec![],
    };
    for (test, why) in [(None, "no connectivity test has resolved it yet"), (Some(failed), "resolving orders.test: no record found")] {
        let compiled = crate::compile(&host_target(test));
        let BackendKind::Unavailable { reason, message } = &compiled.snapshot.backends[0].kind else { panic!("not unavailable") };
        assert_eq!(reason, reason::ADDRESSES_NOT_VERIFIED);
        assert!(message.contains(why), "{message}");
    }
}

#[test]
fn a_service_target_grants_exactly_its_ready_endpoints() {
    let mut resources = Resources::default();
    let yaml = "apiVersion: switchyard.dev/v1alpha1\nkind: VpcAuthorization\nmetadata: {name: a, namespace: shop}\n\
                spec: {target: {service: {name: orders}}, ports: [80]}\n---\n\
                apiVersion: switchyard.dev/v1alpha1\nkind: BackendService\nmetadata: {name: b, namespace: shop}\n\
                spec: {vpc: {authorizationRef: a, port: 80}}\n";
    crate::manifest::add_yaml(&mut resources, "t", yaml);
    let target = crate::ServicePortTarget { port: 80, name: "http".into(), target: 8080 };
    let endpoints = ["10.0.0.7", "10.0.0.8"].map(|a| crate::ServiceEndpoint { address: a.parse().unwrap(), ports: vec![target.clone()] });
    resources.service_endpoints.insert(("shop".into(), "orders".into()), endpoints.to_vec());
    let compiled = crate::compile(&resources);
    let grant = compiled.snapshot.backends[0].dial_grant.clone().unwrap();
    assert_eq!(grant.addresses, ["10.0.0.7".parse::<IpAddr>().unwrap(), "10.0.0.8".parse().unwrap()]);
    assert_eq!(grant.ports, [8080], "the Service's target port is what is dialled");
    assert!(!grant.bypass_egress);
}

#[test]
fn malformed_urls_are_rejected_with_a_reason() {
    for bad in
        ["10.0.0.5:80", "ftp://a", "http://", "http://a:0", "http://a:99999", "http://u@a", "http://a/?q", "http://a b", "http://[zz]:80"]
    {
        let err = parse_url(bad).unwrap_err();
        assert_eq!(err.reason, reason::INVALID_URL, "{bad}");
    }
    let secure = parse_url("https://Orders.Internal/api").unwrap();
    assert_eq!((secure.authority.as_str(), secure.host.as_str()), ("orders.internal:443", "orders.internal"));
    assert_eq!(secure.tls_server_name.as_deref(), Some("orders.internal"));
}

/// One `http` BackendService with `http` fields `fields`, compiled.
fn compiled_http(fields: &str) -> crate::Compiled {
    let mut resources = Resources::default();
    let yaml = format!(
        "apiVersion: switchyard.dev/v1alpha1\nkind: BackendService\nmetadata: {{name: b, namespace: shop}}\nspec: {{http: {{{fields}}}}}\n"
    );
    crate::manifest::add_yaml(&mut resources, "t", &yaml);
    crate::compile(&resources)
}

#[test]
fn the_protocol_sets_the_upstream_version_and_must_agree_with_the_endpoints_scheme() {
    use crate::snapshot::UpstreamVersion;
    let version = |fields: &str| compiled_http(fields).snapshot.backends.first().map(|b| b.upstream_version);
    assert_eq!(version("urls: ['http://a:1']"), Some(UpstreamVersion::Http1), "HTTP1 by default");
    assert_eq!(version("urls: ['http://a:1'], protocol: H2C"), Some(UpstreamVersion::Http2));
    assert_eq!(version("urls: ['https://a:1'], protocol: H2"), Some(UpstreamVersion::Http2));
    for contradiction in
        ["urls: ['http://a:1'], protocol: H2", "urls: ['https://a:1'], protocol: H2C", "urls: ['http://a:1', 'https://b:1'], protocol: H2C"]
    {
        let compiled = compiled_http(contradiction);
        let accepted = compiled.statuses[0].condition("Accepted").unwrap();
        assert_eq!(accepted.reason, reason::INVALID_SPEC, "{contradiction}");
        assert!(accepted.message.contains("http.protocol"), "{}", accepted.message);
        assert!(compiled.snapshot.backends.is_empty(), "{contradiction}: not served");
    }
}

#[test]
fn an_http2_backend_takes_tcp_health_checks_but_not_http1_path_probes() {
    let with_check = |check: &str| {
        let mut resources = Resources::default();
        let yaml = format!(
            "apiVersion: switchyard.dev/v1alpha1\nkind: BackendService\nmetadata: {{name: b, namespace: shop}}\nspec: {{http: {{urls: ['http://a:1'], protocol: H2C}}, healthCheck: {{active: {{{check}}}}}}}\n"
        );
        crate::manifest::add_yaml(&mut resources, "t", &yaml);
        crate::compile(&resources)
    };
    let tcp = with_check("interval: 5s");
    assert!(tcp.statuses[0].condition("Accepted").unwrap().status, "a TCP check is fine");
    let path = with_check("interval: 5s, path: /healthz");
    let accepted = path.statuses[0].condition("Accepted").unwrap();
    assert_eq!(accepted.reason, reason::INVALID_SPEC);
    assert!(accepted.message.contains("healthCheck.active.path"), "{}", accepted.message);
}
