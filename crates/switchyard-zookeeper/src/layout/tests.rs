use super::*;
use ZooKeeperLayout::{Dubbo, Plain, SpringCloud};

fn http(host: &str, port: u16, weight: u32) -> Entry {
    Entry::Serves(Instance { scheme: InstanceScheme::Http, host: host.to_owned(), port, weight })
}

fn https(host: &str, port: u16, weight: u32) -> Entry {
    Entry::Serves(Instance { scheme: InstanceScheme::Https, host: host.to_owned(), port, weight })
}

/// The `why` of a malformed entry (panics on anything else).
fn malformed_why(entry: Entry) -> String {
    match entry {
        Entry::Skipped(Skipped { why, malformed: true, .. }) => why,
        other => panic!("expected a malformed entry, got {other:?}"),
    }
}

fn assert_malformed(entry: Entry, why_contains: &str) {
    let why = malformed_why(entry);
    assert!(why.contains(why_contains), "{why:?} should mention {why_contains:?}");
}

// --- Spring Cloud -----------------------------------------------------------------------

/// What Spring Cloud Zookeeper 4 writes (Curator's JsonInstanceSerializer).
fn spring_json(address: &str, port: u16, ssl_port: Option<u16>, metadata: &str) -> String {
    let ssl_port = ssl_port.map_or("null".to_owned(), |p| p.to_string());
    format!(
        r#"{{"name":"orders","id":"5b8c","address":"{address}","port":{port},"sslPort":{ssl_port},
        "payload":{{"@class":"org.springframework.cloud.zookeeper.discovery.ZookeeperInstance",
        "id":"orders-1","name":"orders","metadata":{{{metadata}}}}},
        "registrationTimeUTC":1700000000000,"serviceType":"DYNAMIC",
        "uriSpec":{{"parts":[{{"value":"scheme","variable":true}},{{"value":"://","variable":false}}]}}}}"#
    )
}

fn spring(data: &str) -> Entry {
    parse_entry(SpringCloud, "5b8c", data.as_bytes())
}

#[test]
fn spring_cloud_instance_serves_http_on_port() {
    assert_eq!(spring(&spring_json("10.0.0.7", 8080, None, "")), http("10.0.0.7", 8080, 1));
}

#[test]
fn spring_cloud_ssl_port_means_https_on_that_port() {
    assert_eq!(spring(&spring_json("orders.svc", 8080, Some(8443), "")), https("orders.svc", 8443, 1));
    assert_eq!(spring(r#"{"address":"h","port":null,"sslPort":8443}"#), https("h", 8443, 1));
}

#[test]
fn spring_cloud_status_up_serves_in_any_case() {
    for status in ["UP", "up", "Up"] {
        let metadata = format!(r#""instance_status":"{status}""#);
        assert_eq!(spring(&spring_json("10.0.0.7", 8080, None, &metadata)), http("10.0.0.7", 8080, 1));
    }
}

#[test]
fn spring_cloud_other_statuses_are_idle() {
    for status in [r#""OUT_OF_SERVICE""#, r#""DOWN""#, r#""STARTING""#, r#""""#, "5"] {
        let metadata = format!(r#""instance_status":{status}"#);
        assert_eq!(spring(&spring_json("10.0.0.7", 8080, None, &metadata)), Entry::Idle, "{status}");
    }
}

#[test]
fn spring_cloud_disabled_instances_are_idle() {
    let disabled_by_metadata = spring_json("10.0.0.7", 8080, None, r#""enabled":"false""#);
    assert_eq!(spring(&disabled_by_metadata), Entry::Idle);
    assert_eq!(spring(r#"{"address":"h","port":80,"enabled":false}"#), Entry::Idle);
    assert_eq!(spring(r#"{"address":"h","port":80,"enabled":"FALSE"}"#), Entry::Idle);
    assert_eq!(spring(r#"{"address":"h","port":80,"enabled":true}"#), http("h", 80, 1));
    assert_eq!(spring(&spring_json("h", 80, None, r#""enabled":"true""#)), http("h", 80, 1));
}

#[test]
fn spring_cloud_ipv6_addresses_lose_their_brackets() {
    assert_eq!(spring(r#"{"address":"[fd00::1]","port":80}"#), http("fd00::1", 80, 1));
    assert_eq!(spring(r#"{"address":"fd00::1","port":80}"#), http("fd00::1", 80, 1));
}

#[test]
fn spring_cloud_malformed_entries_say_why() {
    assert_malformed(spring(""), "no data");
    assert_malformed(spring("{not json"), "not JSON");
    assert_malformed(spring("[1,2]"), "not an object");
    assert_malformed(spring(r#"{"port":80}"#), "no address");
    assert_malformed(spring(r#"{"address":null,"port":80}"#), "no address");
    assert_malformed(spring(r#"{"address":"","port":80}"#), "no host");
    assert_malformed(spring(r#"{"address":7,"port":80}"#), "not a string");
    assert_malformed(spring(r#"{"address":"h"}"#), "no port");
    assert_malformed(spring(r#"{"address":"h","port":0}"#), "not a port");
    assert_malformed(spring(r#"{"address":"h","port":70000}"#), "not a port");
    assert_malformed(spring(r#"{"address":"h","port":-1}"#), "not a port");
    assert_malformed(spring(r#"{"address":"h","port":80.5}"#), "not a port");
    assert_malformed(spring(r#"{"address":"h","port":"80"}"#), "not a number");
    assert_malformed(spring(r#"{"address":"h","port":80,"sslPort":0}"#), "sslPort");
    assert_malformed(spring(r#"{"address":"h","port":80,"sslPort":"x"}"#), "sslPort");
    assert_malformed(spring(r#"{"address":"bad host!","port":80}"#), "neither an IP address nor a DNS name");
}

#[test]
fn spring_cloud_malformed_beats_out_of_service() {
    // A broken registration is reported even when it also says it is down.
    assert_malformed(spring(r#"{"address":"h","payload":{"metadata":{"instance_status":"DOWN"}}}"#), "no port");
}

#[test]
fn skipped_entries_are_named_by_the_child() {
    let entry = parse_entry(SpringCloud, "instance-\n1", b"nope");
    let Entry::Skipped(skipped) = entry else { panic!("{entry:?}") };
    assert_eq!(skipped.entry, "instance-?1");
    assert!(skipped.malformed);
}

#[test]
fn oversized_data_is_not_parsed() {
    let padding = " ".repeat(MAX_DATA_LEN);
    let data = format!(r#"{{"address":"h","port":80}}{padding}"#);
    assert_malformed(parse_entry(SpringCloud, "big", data.as_bytes()), "64 KiB");
    // Exactly the limit is still read.
    let data = format!(r#"{{"address":"h","port":80}}{}"#, " ".repeat(MAX_DATA_LEN - 25));
    assert_eq!(data.len(), MAX_DATA_LEN);
    assert_eq!(parse_entry(SpringCloud, "limit", data.as_bytes()), http("h", 80, 1));
}

#[test]
fn hostile_content_never_panics() {
    let deep = "[".repeat(10_000);
    let inputs: [&[u8]; 6] = [b"\xff\xfe", b"\0", deep.as_bytes(), b"{\"address\":\"\xff\"}", b"1e999", b"{\"port\":1e400}"];
    for data in inputs {
        for layout in [SpringCloud, Dubbo, Plain] {
            let _ = parse_entry(layout, "x", data);
            let _ = parse_entry(layout, std::str::from_utf8(data).unwrap_or("%ff%fe"), data);
        }
    }
}

// --- Dubbo --------------------------------------------------------------------------------

/// A provider's child name, encoded as Dubbo's `URL.encode` (Java form encoding) does.
fn dubbo_name(url: &str) -> String {
    form_urlencoded::byte_serialize(url.as_bytes()).collect()
}

fn provider(url: &str) -> Entry {
    parse_entry(Dubbo, &dubbo_name(url), b"")
}

#[test]
fn dubbo_triple_rest_and_http_providers_serve_http() {
    let url = "tri://127.0.0.1:50051/com.example.OrderService?application=shop&weight=200&enabled=true&methods=a,b";
    assert_eq!(provider(url), http("127.0.0.1", 50051, 200));
    assert_eq!(provider("rest://10.0.0.2:8080/com.example.OrderService?application=shop"), http("10.0.0.2", 8080, 100));
    assert_eq!(provider("http://orders.svc:80/com.example.OrderService"), http("orders.svc", 80, 100));
    assert_eq!(provider("TRI://10.0.0.3:50051"), http("10.0.0.3", 50051, 100));
}

#[test]
fn dubbo_decodes_the_literal_example() {
    let child = "tri%3A%2F%2F127.0.0.1%3A50051%2Fcom.example.OrderService%3Fapplication%3Dshop%26weight%3D200%26enabled%3Dtrue";
    assert_eq!(parse_entry(Dubbo, child, b""), http("127.0.0.1", 50051, 200));
}

#[test]
fn dubbo_url_path_is_the_interface_not_a_base_path() {
    let Entry::Serves(instance) = provider("tri://10.0.0.1:50051/com.example.OrderService/extra?weight=5") else { panic!() };
    assert_eq!((instance.host.as_str(), instance.port, instance.weight), ("10.0.0.1", 50051, 5));
}

#[test]
fn dubbo_ipv6_and_userinfo_providers() {
    assert_eq!(provider("tri://[fd00::5]:50051/com.example.OrderService"), http("fd00::5", 50051, 100));
    assert_eq!(provider("rest://admin:secret@10.0.0.1:8080/svc"), http("10.0.0.1", 8080, 100));
}

#[test]
fn dubbo_binary_protocol_is_skipped_but_not_malformed() {
    let entry = provider("dubbo://10.0.0.1:20880/com.example.OrderService?weight=100");
    assert_eq!(
        entry,
        Entry::Skipped(Skipped {
            entry: "dubbo://10.0.0.1:20880/com.example.OrderService".to_owned(),
            why: DUBBO_BINARY_WHY.to_owned(),
            malformed: false,
        })
    );
}

#[test]
fn a_skipped_provider_is_named_without_its_user_info_or_query() {
    let Entry::Skipped(skipped) = provider("dubbo://admin:pa55@10.0.0.1:20880/com.example.OrderService?token=t0ken&weight=1") else {
        panic!("a dubbo:// provider is skipped")
    };
    assert_eq!(skipped.entry, "dubbo://10.0.0.1:20880/com.example.OrderService");
}

/// Found by fuzz/fuzz_targets/dubbo_url.rs: a name that is not UTF-8 once decoded was
/// shown raw, user info and query included (percent-encoded, but readable).
#[test]
fn a_provider_name_that_is_not_utf8_decoded_is_still_named_without_its_user_info_or_query() {
    let crashing = ".exampddubbo%1A%2F%2F10.0.0.1%3A20tri%3A%2F%2Fuser%3As3cr3tZ%4010.0.0.1%880%23A50051Fcom.exam%2plF";
    let Entry::Skipped(skipped) = parse_entry(Dubbo, crashing, b"") else { panic!("not a provider URL") };
    assert!(!skipped.entry.contains("s3cr3tZ"), "{:?}", skipped.entry);
    let token = "tri%3A%2F%2Fadmin%3Apa55%4010.0.0.1%3A50051%2Fsvc%FF%3Ftoken%3Dt0ken";
    let Entry::Skipped(skipped) = parse_entry(Dubbo, token, b"") else { panic!("not UTF-8") };
    assert!(!skipped.entry.contains("pa55") && !skipped.entry.contains("t0ken"), "{:?}", skipped.entry);
    assert!(skipped.entry.starts_with("tri://10.0.0.1:50051/svc"), "{:?}", skipped.entry);
}

#[test]
fn dubbo_disabled_or_weightless_providers_are_idle() {
    assert_eq!(provider("tri://10.0.0.1:50051/svc?enabled=false"), Entry::Idle);
    assert_eq!(provider("tri://10.0.0.1:50051/svc?enabled=FALSE&weight=3"), Entry::Idle);
    assert_eq!(provider("tri://10.0.0.1:50051/svc?weight=0"), Entry::Idle);
}

#[test]
fn dubbo_last_parameter_wins_and_ssl_enabled_keeps_http() {
    assert_eq!(provider("tri://10.0.0.1:50051/svc?weight=1&weight=7"), http("10.0.0.1", 50051, 7));
    assert_eq!(provider("tri://10.0.0.1:50051/svc?ssl-enabled=true"), http("10.0.0.1", 50051, 100));
    assert_eq!(provider("tri://10.0.0.1:50051/svc?x=1#weight=9"), http("10.0.0.1", 50051, 100));
}

#[test]
fn dubbo_malformed_providers_say_why() {
    assert_malformed(provider("grpc://10.0.0.1:50051/svc"), "unknown protocol grpc://");
    assert_malformed(provider("https://10.0.0.1:443/svc"), "unknown protocol https://");
    assert_malformed(provider("10.0.0.1:50051"), "no protocol");
    assert_malformed(provider("tri://10.0.0.1/svc"), "no port");
    assert_malformed(provider("tri://10.0.0.1:0/svc"), "not a port");
    assert_malformed(provider("tri://10.0.0.1:99999/svc"), "not a port");
    assert_malformed(provider("tri://10.0.0.1:x/svc"), "not a port");
    assert_malformed(provider("tri://:50051/svc"), "no host");
    assert_malformed(provider("tri://bad_host:50051/svc"), "neither an IP address nor a DNS name");
    assert_malformed(provider("tri://10.0.0.1:50051/svc?weight=heavy"), "weight");
    assert_malformed(provider("tri://10.0.0.1:50051/svc?weight=-1"), "weight");
    assert_malformed(provider("tri://10.0.0.1:50051/svc?enabled=maybe"), "enabled");
    assert_malformed(parse_entry(Dubbo, "tri%3A%2F%2F%FF", b""), "UTF-8");
    assert_malformed(provider("tri://[fd00::1/svc"), "closing ]");
}

#[test]
fn dubbo_reads_names_only_under_providers() {
    assert!(!reads_data(Dubbo));
    assert!(reads_data(SpringCloud) && reads_data(Plain));
    assert_eq!(instances_dir(Dubbo, "/dubbo/com.example.OrderService"), "/dubbo/com.example.OrderService/providers");
    assert_eq!(instances_dir(SpringCloud, "/services/orders"), "/services/orders");
    assert_eq!(instances_dir(Plain, "/"), "/");
    assert_eq!(child_path("/", "a"), "/a");
    assert_eq!(child_path("/x", "a"), "/x/a");
}

// --- Plain --------------------------------------------------------------------------------

fn plain_entry(child: &str, data: &str) -> Entry {
    parse_entry(Plain, child, data.as_bytes())
}

#[test]
fn plain_child_names_are_host_port() {
    assert_eq!(plain_entry("10.0.0.1:8080", ""), http("10.0.0.1", 8080, 1));
    assert_eq!(plain_entry("orders.default.svc:80", ""), http("orders.default.svc", 80, 1));
    assert_eq!(plain_entry("[::1]:8080", ""), http("::1", 8080, 1));
    assert_eq!(plain_entry("localhost:1", " \n"), http("localhost", 1, 1));
}

#[test]
fn plain_json_data_takes_precedence_over_the_name() {
    assert_eq!(plain_entry("10.0.0.1:8080", r#"{"host":"10.0.0.2","port":9090,"weight":5}"#), http("10.0.0.2", 9090, 5));
    assert_eq!(plain_entry("instance-0000000001", r#"{"host":"10.0.0.2","port":9090}"#), http("10.0.0.2", 9090, 1));
    assert_eq!(plain_entry("x", r#"{"host":"::1","port":9090,"weight":null}"#), http("::1", 9090, 1));
}

#[test]
fn plain_weight_zero_is_idle() {
    assert_eq!(plain_entry("x", r#"{"host":"10.0.0.2","port":9090,"weight":0}"#), Entry::Idle);
}

#[test]
fn plain_malformed_entries_say_why() {
    assert_malformed(plain_entry("10.0.0.1", ""), "no port");
    assert_malformed(plain_entry("10.0.0.1:", ""), "not a port");
    assert_malformed(plain_entry("10.0.0.1:0", ""), "not a port");
    assert_malformed(plain_entry("10.0.0.1:65536", ""), "not a port");
    assert_malformed(plain_entry("10.0.0.1:+80", ""), "not a port");
    assert_malformed(plain_entry("::1:8080", ""), "brackets");
    assert_malformed(plain_entry("fd00::1:8080", ""), "brackets");
    assert_malformed(plain_entry("[::1]8080", ""), "no port");
    assert_malformed(plain_entry("[not-v6]:8080", ""), "neither an IP address nor a DNS name");
    assert_malformed(plain_entry("10.0.0.256:80", ""), "neither an IP address nor a DNS name");
    assert_malformed(plain_entry("-bad.example:80", ""), "neither an IP address nor a DNS name");
    assert_malformed(plain_entry("a..b:80", ""), "neither an IP address nor a DNS name");
    assert_malformed(plain_entry(&format!("{}:80", "a".repeat(64)), ""), "neither an IP address nor a DNS name");
    assert_malformed(plain_entry("10.0.0.1:8080", "10.0.0.1:8080"), "not JSON");
    assert_malformed(plain_entry("x", r#"{"port":80}"#), "no host");
    assert_malformed(plain_entry("x", r#"{"host":"h"}"#), "no port");
    assert_malformed(plain_entry("x", r#"{"host":"h","port":80,"weight":"5"}"#), "weight");
    assert_malformed(plain_entry("x", r#"{"host":"h","port":80,"weight":-1}"#), "weight");
    assert_malformed(plain_entry("x", r#"{"host":"h","port":80,"weight":1.5}"#), "weight");
    assert_malformed(plain_entry("x", r#"{"host":"h","port":80,"weight":5000000000}"#), "weight");
}

#[test]
fn echoed_values_are_bounded() {
    let long_host = "h".repeat(10_000);
    let why = malformed_why(plain_entry("x", &format!(r#"{{"host":"{long_host}!","port":80}}"#)));
    assert!(why.len() < 300, "{} bytes", why.len());
    let why = malformed_why(plain_entry("x", &format!(r#"{{"host":"h","port":80,"weight":"{long_host}"}}"#)));
    assert!(why.len() < 300, "{} bytes", why.len());
}

#[test]
fn dns_names_follow_rfc_1123() {
    for name in ["a", "a-b.example", "xn--bcher-kva.example", "10.0.0.1.nip.io", &"a".repeat(63)] {
        assert!(parse_host(name).is_ok(), "{name}");
    }
    for name in ["", "a_b", "a b", "a.", ".a", "a-", "1.2.3", "a/b", "a@b", "é.example", &format!("{}.x", "a.".repeat(130))] {
        assert!(parse_host(name).is_err(), "{name}");
    }
}
