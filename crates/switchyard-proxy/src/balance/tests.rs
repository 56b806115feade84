use super::*;

fn names(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("10.0.0.{i}:8080")).collect()
}

fn input(headers: &HeaderMap) -> PickInput<'_> {
    PickInput { headers, client_ip: "192.0.2.1".parse().unwrap(), attempt: 0 }
}

/// How many of `picks` picks each of `weights.len()` endpoints gets.
fn counts(b: &Balancer, weights: &[u32], picks: usize) -> Vec<usize> {
    let headers = HeaderMap::new();
    let mut counts = vec![0; weights.len()];
    for _ in 0..picks {
        counts[b.pick(weights.len(), &input(&headers))] += 1;
    }
    counts
}

fn sequence(b: &Balancer, len: usize, picks: usize) -> Vec<usize> {
    let headers = HeaderMap::new();
    (0..picks).map(|_| b.pick(len, &input(&headers))).collect()
}

#[test]
fn round_robin_spreads_exactly_evenly() {
    let b = Balancer::build(&LoadBalancer::RoundRobin, &names(3), &[1; 3]);
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
    let b = Balancer::build(&LoadBalancer::ConsistentHash { key: HashKey::Header("x-user".into()) }, &names(4), &[1; 4]);
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
    let by_cookie = Balancer::build(&LoadBalancer::ConsistentHash { key: HashKey::Cookie("session".into()) }, &names(8), &[1; 8]);
    let mut a = HeaderMap::new();
    a.insert(http::header::COOKIE, "theme=dark; session=abc123".parse().unwrap());
    let mut b = HeaderMap::new();
    b.insert(http::header::COOKIE, "session=abc123".parse().unwrap());
    assert_eq!(by_cookie.pick(8, &input(&a)), by_cookie.pick(8, &input(&b)));
    let by_ip = Balancer::build(&LoadBalancer::ConsistentHash { key: HashKey::SourceIp }, &names(8), &[1; 8]);
    let headers = HeaderMap::new();
    let one = PickInput { headers: &headers, client_ip: "198.51.100.7".parse().unwrap(), attempt: 0 };
    assert_eq!(by_ip.pick(8, &one), by_ip.pick(8, &one));
}

#[test]
fn least_request_avoids_the_busier_endpoint() {
    let b = Balancer::build(&LoadBalancer::LeastRequest, &names(2), &[1; 2]);
    let headers = HeaderMap::new();
    let _busy: Vec<_> = (0..5).map(|_| b.start(0)).collect();
    for _ in 0..100 {
        assert_eq!(b.pick(2, &input(&headers)), 1, "with two endpoints both are always compared");
    }
}

#[test]
fn least_request_in_flight_counts_fall_when_requests_finish() {
    let b = Balancer::build(&LoadBalancer::LeastRequest, &names(2), &[1; 2]);
    {
        let _one = b.start(1);
        let Balancer::LeastRequest { in_flight, .. } = &b else { unreachable!() };
        assert_eq!(in_flight[1].load(Ordering::Relaxed), 1);
    }
    let Balancer::LeastRequest { in_flight, .. } = &b else { unreachable!() };
    assert_eq!(in_flight[1].load(Ordering::Relaxed), 0);
}

#[test]
fn round_robin_with_weights_1_and_3_gives_exactly_25_and_75_percent() {
    let b = Balancer::build(&LoadBalancer::RoundRobin, &names(2), &[1, 3]);
    assert_eq!(counts(&b, &[1, 3], 400), [100, 300]);
    let registry = [100, 200, 100];
    let b = Balancer::build(&LoadBalancer::RoundRobin, &names(3), &registry);
    assert_eq!(counts(&b, &registry, 400), [100, 200, 100], "over every total weight, exactly the weights");
}

#[test]
fn weighted_round_robin_interleaves_instead_of_running_each_endpoint_out() {
    let b = Balancer::build(&LoadBalancer::RoundRobin, &names(2), &[1, 3]);
    assert_eq!(sequence(&b, 2, 8), [1, 0, 1, 1, 1, 0, 1, 1]);
    // Four endpoints, one of them three times heavier: never more than two in a row.
    let b = Balancer::build(&LoadBalancer::RoundRobin, &names(4), &[100, 100, 100, 300]);
    let picks = sequence(&b, 4, 600);
    assert!(picks.chunk_by(|a, b| a == b).all(|run| run.len() <= 2), "{:?}", &picks[..12]);
}

#[test]
fn equal_weights_keep_the_plain_counter() {
    for weights in [[1, 1, 1], [200, 200, 200], [0, 1, 0]] {
        let b = Balancer::build(&LoadBalancer::RoundRobin, &names(3), &weights);
        assert!(matches!(b, Balancer::RoundRobin { .. }), "{weights:?}");
        assert_eq!(sequence(&b, 3, 6), [0, 1, 2, 0, 1, 2]);
    }
}

#[test]
fn weighted_least_request_favours_the_heavier_endpoint_under_equal_load() {
    let b = Balancer::build(&LoadBalancer::LeastRequest, &names(2), &[1, 3]);
    let _load: Vec<_> = [0, 0, 1, 1].iter().map(|&i| b.start(i)).collect();
    for _ in 0..100 {
        assert_eq!(b.pick(2, &input(&HeaderMap::new())), 1, "2/3 in flight per weight beats 2/1");
    }
}

#[test]
fn weighted_least_request_compares_load_per_unit_of_weight() {
    let b = Balancer::build(&LoadBalancer::LeastRequest, &names(2), &[1, 3]);
    // 4 of weight 3 is more per unit than 1 of weight 1: the lighter endpoint wins.
    let _load: Vec<_> = [0, 1, 1, 1, 1].iter().map(|&i| b.start(i)).collect();
    assert_eq!(counts(&b, &[1, 3], 100), [100, 0]);
}

#[test]
fn weighted_least_request_follows_the_weights_when_idle() {
    // Nothing in flight: every comparison ties and the weighted draw decides.
    let b = Balancer::build(&LoadBalancer::LeastRequest, &names(3), &[100, 200, 700]);
    let c = counts(&b, &[100, 200, 700], 10_000);
    assert!((800..=1_200).contains(&c[0]) && (1_800..=2_200).contains(&c[1]) && (6_700..=7_300).contains(&c[2]), "{c:?}");
}

#[test]
fn least_request_with_equal_weights_is_unweighted() {
    let plain = Balancer::build(&LoadBalancer::LeastRequest, &names(5), &[1; 5]);
    let heavy = Balancer::build(&LoadBalancer::LeastRequest, &names(5), &[300; 5]);
    assert!(matches!(heavy, Balancer::LeastRequest { .. }));
    assert_eq!(sequence(&plain, 5, 50), sequence(&heavy, 5, 50));
}

#[test]
fn a_weighted_draw_of_the_second_candidate_never_repeats_the_first() {
    let weights = Weights::new(&[1, 2, 3]);
    let mut others = [0; 3];
    for r in 0..6_000 {
        let other = weights.draw_other(splitmix(r), 1);
        others[other] += 1;
    }
    assert_eq!(others[1], 0);
    assert!((1_300..=1_700).contains(&others[0]) && (4_300..=4_700).contains(&others[2]), "1:3 between the rest: {others:?}");
}

#[test]
fn maglev_gives_keys_in_proportion_to_weight() {
    let table = Maglev::weighted(&names(3), &[100, 100, 200]);
    let mut counts = [0; 3];
    for key in 0..40_000 {
        counts[table.lookup(hash(&key))] += 1;
    }
    assert!((9_000..=11_000).contains(&counts[0]) && (9_000..=11_000).contains(&counts[1]), "{counts:?}");
    assert!((18_000..=22_000).contains(&counts[2]), "{counts:?}");
}

#[test]
fn maglev_with_equal_weights_builds_the_unweighted_table() {
    // Keys stay where they were before weights existed.
    for n in [1, 2, 5, 10, 37] {
        let weights = vec![100; n];
        assert!(Maglev::weighted(&names(n), &weights).table == Maglev::new(&names(n)).table, "{n}");
    }
    let b = Balancer::build(&LoadBalancer::ConsistentHash { key: HashKey::SourceIp }, &names(3), &[2, 2, 2]);
    let Balancer::ConsistentHash { table, .. } = &b else { unreachable!() };
    assert!(table.table == Maglev::new(&names(3)).table);
}

#[test]
fn weighted_consistent_hash_still_retries_elsewhere() {
    let b = Balancer::build(&LoadBalancer::ConsistentHash { key: HashKey::Header("x-user".into()) }, &names(3), &[1, 5, 1]);
    let mut headers = HeaderMap::new();
    headers.insert("x-user", "bob".parse().unwrap());
    let first = b.pick(3, &input(&headers));
    let retry = b.pick(3, &PickInput { headers: &headers, client_ip: "192.0.2.1".parse().unwrap(), attempt: 1 });
    assert_ne!(retry, first);
}

#[test]
fn unweighted_maglev_tables_are_the_ones_built_before_weights() {
    // Checksums of the tables as built before weights existed: during a rollout old and
    // new proxies must still send a key to the same endpoint.
    let expected =
        [(1, 0x93529ff95c7857b0), (2, 0x4b96140800c447c9), (5, 0x0a788ed3bac20d6c), (10, 0xc125ad0ca6f2f2e6), (37, 0x0455fb572013da24)];
    for (n, checksum) in expected {
        let table = Maglev::new(&names(n)).table;
        let sum = table.iter().enumerate().fold(0, |acc, (slot, &i)| acc ^ splitmix(slot as u64 ^ u64::from(i) << 32));
        assert_eq!(sum, checksum, "{n} endpoints");
    }
}
