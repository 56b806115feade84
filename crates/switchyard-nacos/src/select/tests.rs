use serde_json::json;

use super::*;

fn instance(scheme: InstanceScheme, host: &str, port: u16, weight: u32) -> Instance {
    Instance { scheme, host: host.to_owned(), port, weight }
}

fn hosts(value: Value) -> Hosts {
    Hosts::from(value.as_array().unwrap().clone())
}

fn malformed(entry: &str, why: &str) -> Skipped {
    Skipped { entry: entry.to_owned(), why: why.to_owned(), malformed: true }
}

#[test]
fn healthy_enabled_weighted_instances_serve_sorted_with_scheme_from_metadata() {
    let input = hosts(json!([
        {"ip": "10.0.0.2", "port": 8443, "weight": 2.5, "healthy": true, "enabled": true, "metadata": {"secure": "true"}},
        {"ip": "10.0.0.1", "port": 8080, "weight": 1.0, "healthy": true, "enabled": true, "metadata": {"secure": "false"}},
        {"ip": "backend.example", "port": 80},
    ]));
    let selection = select(&input, &[]);
    assert_eq!(
        selection.instances,
        vec![
            instance(InstanceScheme::Http, "10.0.0.1", 8080, 100),
            instance(InstanceScheme::Http, "backend.example", 80, 100),
            instance(InstanceScheme::Https, "10.0.0.2", 8443, 250),
        ]
    );
    assert!(selection.skipped.is_empty());
}

#[test]
fn down_disabled_and_weightless_instances_are_left_out_silently() {
    let input = hosts(json!([
        {"ip": "10.0.0.1", "port": 1, "healthy": false},
        {"ip": "10.0.0.2", "port": 2, "enabled": false},
        {"ip": "10.0.0.3", "port": 3, "weight": 0.0},
        {"ip": "10.0.0.4", "port": 4, "weight": -1.0},
    ]));
    assert_eq!(select(&input, &[]), Selection::default());
}

#[test]
fn weights_are_hundredths_at_least_one_and_capped() {
    let input = hosts(json!([
        {"ip": "10.0.0.1", "port": 1, "weight": 0.001},
        {"ip": "10.0.0.2", "port": 2, "weight": 0.333},
        {"ip": "10.0.0.3", "port": 3, "weight": 10000.0},
        {"ip": "10.0.0.4", "port": 4, "weight": 1e300},
        {"ip": "10.0.0.5", "port": 5, "weight": "2.5"},
    ]));
    let weights: Vec<u32> = select(&input, &[]).instances.iter().map(|i| i.weight).collect();
    assert_eq!(weights, vec![1, 33, 1_000_000, 1_000_000, 250]);
}

#[test]
fn only_listed_clusters_serve_and_an_unnamed_cluster_is_default() {
    let input = hosts(json!([
        {"ip": "10.0.0.1", "port": 1, "clusterName": "east"},
        {"ip": "10.0.0.2", "port": 2, "clusterName": "west"},
        {"ip": "10.0.0.3", "port": 3},
        {"ip": "bad ip", "port": 4, "clusterName": "west"},
    ]));
    let clusters = ["east".to_owned(), "DEFAULT".to_owned()];
    let selection = select(&input, &clusters);
    let ports: Vec<u16> = selection.instances.iter().map(|i| i.port).collect();
    assert_eq!(ports, vec![1, 3]);
    assert!(selection.skipped.is_empty(), "a malformed instance of another cluster is not ours to report");
}

#[test]
fn malformed_instances_are_skipped_with_a_reason() {
    let input = hosts(json!([
        {"ip": "not an ip", "port": 80},
        {"ip": "300.1.1.1", "port": 80},
        {"ip": "10.0.0.1", "port": 0},
        {"ip": "10.0.0.2", "port": 70000},
        {"ip": "10.0.0.3", "port": "80"},
        {"ip": "10.0.0.4", "port": 80, "weight": "NaN"},
        {"ip": "10.0.0.5", "port": 80, "weight": "Infinity"},
        {"port": 80},
        "just a string",
        {"ip": "10.0.0.6", "port": 80, "healthy": false, "weight": "-Infinity"},
        {"ip": "10.0.0.9", "port": 9},
    ]));
    let selection = select(&input, &[]);
    assert_eq!(selection.instances, vec![instance(InstanceScheme::Http, "10.0.0.9", 9, 100)]);
    let bad_ip = "ip is not an IP address or DNS name";
    let bad_port = "port is not a number from 1 to 65535";
    let bad_weight = "weight is not a finite number";
    let mut expected = vec![
        malformed("not an ip:80", bad_ip),
        malformed("300.1.1.1:80", bad_ip),
        malformed("10.0.0.1:0", bad_port),
        malformed("10.0.0.2:70000", bad_port),
        malformed("10.0.0.3:80", bad_port),
        malformed("10.0.0.4:80", bad_weight),
        malformed("10.0.0.5:80", bad_weight),
        malformed("?:80", bad_ip),
        malformed("?:?", "not a JSON object"),
        malformed("10.0.0.6:80", bad_weight),
    ];
    expected.sort();
    assert_eq!(selection.skipped, expected);
}

#[test]
fn entry_names_of_hostile_instances_are_bounded() {
    let long = "a".repeat(1000);
    let input = hosts(json!([{"ip": format!("{long}\n"), "port": 80}]));
    let skipped = &select(&input, &[]).skipped[0];
    assert!(skipped.entry.chars().count() <= switchyard_compile::discovered::MAX_ENTRY_LEN + 1);
}

#[test]
fn duplicate_endpoints_serve_once() {
    let input = hosts(json!([
        {"ip": "10.0.0.1", "port": 80, "weight": 3.0, "clusterName": "a"},
        {"ip": "10.0.0.1", "port": 80, "weight": 1.0, "clusterName": "b"},
        {"ip": "10.0.0.1", "port": 80, "metadata": {"secure": "true"}},
    ]));
    assert_eq!(
        select(&input, &[]).instances,
        vec![instance(InstanceScheme::Http, "10.0.0.1", 80, 100), instance(InstanceScheme::Https, "10.0.0.1", 80, 100)]
    );
}

#[test]
fn ipv6_hosts_are_kept_without_brackets() {
    let input = hosts(json!([{"ip": "[::1]", "port": 80}, {"ip": "fe80::2", "port": 81}]));
    let hosts: Vec<String> = select(&input, &[]).instances.into_iter().map(|i| i.host).collect();
    assert_eq!(hosts, vec!["::1", "fe80::2"]);
}

#[test]
fn instances_past_the_cap_are_reported_once() {
    let all: Vec<Value> = (0..MAX_INSTANCES + 5).map(|i| json!({"ip": "10.0.0.1", "port": 1 + i % 60000})).collect();
    let parsed: Hosts = serde_json::from_value(Value::Array(all)).unwrap();
    assert_eq!((parsed.kept.len(), parsed.total), (MAX_INSTANCES, MAX_INSTANCES + 5));
    let selection = select(&parsed, &[]);
    assert_eq!(selection.instances.len(), MAX_INSTANCES);
    assert_eq!(selection.skipped.len(), 1);
    assert!(!selection.skipped[0].malformed);
    assert_eq!(selection.skipped[0].entry, "5 more instances");
}
