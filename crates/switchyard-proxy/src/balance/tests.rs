use super::*;

fn names(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("10.0.0.{i}:8080")).collect()
}

fn input(headers: &HeaderMap) -> PickInput<'_> {
    PickInput { headers, client_ip: "192.0.2.1".parse().unwrap(), attempt: 0 }
}

#[test]
fn round_robin_spreads_exactly_evenly() {
    let b = Balancer::build(&LoadBalancer::RoundRobin, &names(3));
    let headers = HeaderMap::new();
    let mut counts = [0; 3];
    for _ in 0..9_999 {
        counts[b.pick(3, &input(&headers))] += 1;
    }
    assert_eq!(counts, [3_333; 3]);
}

#[test]
fn maglev_keeps_at_least_90_percent_of_keys_when_one_of_ten_endpoints_leaves() {
    let ten = names(10);
    let nine: Vec<String> = ten.iter().filter(|n| *n != "10.0.0.3:8080").cloned().collect();
    let (before, after) = (Maglev::new(&ten), Maglev::new(&nine));
    let mut kept = 0;
    let total = 10_000;
    for key in 0..total {
        let h = hash(&format!("user-{key}"));
        if ten[before.lookup(h)] == nine[after.lookup(h)] {
            kept += 1;
        }
    }
    // Keys on the removed endpoint (about 10%) must move; nearly all others stay.
    assert!(kept * 100 >= total * 85, "only {kept} of {total} keys kept their endpoint");
    let on_survivors = (0..total).filter(|k| ten[before.lookup(hash(&format!("user-{k}")))] != "10.0.0.3:8080").count();
    let kept_of_survivors = kept as f64 / on_survivors as f64;
    assert!(kept_of_survivors >= 0.90, "{kept_of_survivors:.3} of the keys on surviving endpoints stayed");
}

#[test]
fn maglev_spreads_keys_evenly() {
    let table = Maglev::new(&names(5));
    let mut counts = [0; 5];
    for key in 0..50_000 {
        counts[table.lookup(hash(&key))] += 1;
    }
    for c in counts {
        assert!((9_000..=11_000).contains(&c), "{counts:?}");
    }
}

#[test]
fn consistent_hash_sends_a_header_value_to_the_same_endpoint_and_retries_elsewhere() {
    let b = Balancer::build(&LoadBalancer::ConsistentHash { key: HashKey::Header("x-user".into()) }, &names(4));
    let mut headers = HeaderMap::new();
    headers.insert("x-user", "alice".parse().unwrap());
    let first = b.pick(4, &input(&headers));
    for _ in 0..20 {
        assert_eq!(b.pick(4, &input(&headers)), first);
    }
    let retry = b.pick(4, &PickInput { headers: &headers, client_ip: "192.0.2.1".parse().unwrap(), attempt: 1 });
    assert_ne!(retry, first);
}

#[test]
fn consistent_hash_reads_cookies_and_source_addresses() {
    let by_cookie = Balancer::build(&LoadBalancer::ConsistentHash { key: HashKey::Cookie("session".into()) }, &names(8));
    let mut a = HeaderMap::new();
    a.insert(http::header::COOKIE, "theme=dark; session=abc123".parse().unwrap());
    let mut b = HeaderMap::new();
    b.insert(http::header::COOKIE, "session=abc123".parse().unwrap());
    assert_eq!(by_cookie.pick(8, &input(&a)), by_cookie.pick(8, &input(&b)));
    let by_ip = Balancer::build(&LoadBalancer::ConsistentHash { key: HashKey::SourceIp }, &names(8));
    let headers = HeaderMap::new();
    let one = PickInput { headers: &headers, client_ip: "198.51.100.7".parse().unwrap(), attempt: 0 };
    assert_eq!(by_ip.pick(8, &one), by_ip.pick(8, &one));
}

#[test]
fn least_request_avoids_the_busier_endpoint() {
    let b = Balancer::build(&LoadBalancer::LeastRequest, &names(2));
    let headers = HeaderMap::new();
    let _busy: Vec<_> = (0..5).map(|_| b.start(0)).collect();
    for _ in 0..100 {
        assert_eq!(b.pick(2, &input(&headers)), 1, "with two endpoints both are always compared");
    }
}

#[test]
fn least_request_in_flight_counts_fall_when_requests_finish() {
    let b = Balancer::build(&LoadBalancer::LeastRequest, &names(2));
    {
        let _one = b.start(1);
        let Balancer::LeastRequest { in_flight, .. } = &b else { unreachable!() };
        assert_eq!(in_flight[1].load(Ordering::Relaxed), 1);
    }
    let Balancer::LeastRequest { in_flight, .. } = &b else { unreachable!() };
    assert_eq!(in_flight[1].load(Ordering::Relaxed), 0);
}
