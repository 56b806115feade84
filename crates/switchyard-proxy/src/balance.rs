//! Endpoint selection: round robin, least request (power of two choices) and
//! consistent hashing (Maglev). Built once per snapshot, then only read on the request
//! path (atomics, no locks).

use std::hash::{Hash, Hasher};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use http::HeaderMap;
use switchyard_compile::snapshot::{HashKey, LoadBalancer};

/// What a pick may look at.
pub struct PickInput<'a> {
    pub headers: &'a HeaderMap,
    pub client_ip: IpAddr,
    /// 0 for the first attempt; a retry moves to another endpoint.
    pub attempt: u32,
}

pub enum Balancer {
    RoundRobin { next: AtomicUsize },
    LeastRequest { in_flight: Vec<AtomicUsize>, seed: AtomicU64 },
    ConsistentHash { key: HashKey, table: Maglev, fallback: AtomicUsize },
}

impl Balancer {
    /// `names` identify the endpoints (stable across snapshots, so hashing is too).
    pub fn build(policy: &LoadBalancer, names: &[String]) -> Self {
        match policy {
            LoadBalancer::RoundRobin => Self::RoundRobin { next: AtomicUsize::new(0) },
            LoadBalancer::LeastRequest => {
                Self::LeastRequest { in_flight: names.iter().map(|_| AtomicUsize::new(0)).collect(), seed: AtomicU64::new(0x9E37_79B9) }
            }
            LoadBalancer::ConsistentHash { key } => {
                Self::ConsistentHash { key: key.clone(), table: Maglev::new(names), fallback: AtomicUsize::new(0) }
            }
        }
    }

    /// The endpoint index for this attempt (`len` endpoints, at least one).
    pub fn pick(&self, len: usize, input: &PickInput<'_>) -> usize {
        match self {
            Self::RoundRobin { next } => next.fetch_add(1, Ordering::Relaxed) % len,
            Self::LeastRequest { in_flight, seed } => least_request(in_flight, seed, len),
            Self::ConsistentHash { key, table, fallback } => match request_key(key, input) {
                // A retry walks on from the hashed endpoint so it lands elsewhere.
                Some(hash) => (table.lookup(hash) + input.attempt as usize) % len,
                None => fallback.fetch_add(1, Ordering::Relaxed) % len,
            },
        }
    }

    /// Marks a request to `endpoint` as started; the guard marks it finished.
    pub fn start(&self, endpoint: usize) -> InFlight<'_> {
        let counter = match self {
            Self::LeastRequest { in_flight, .. } => in_flight.get(endpoint),
            _ => None,
        };
        if let Some(c) = counter {
            c.fetch_add(1, Ordering::Relaxed);
        }
        InFlight(counter)
    }
}

/// Decrements an endpoint's in-flight count when dropped.
pub struct InFlight<'a>(Option<&'a AtomicUsize>);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if let Some(c) = self.0 {
            c.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// Two random endpoints, the one with fewer requests in flight wins: nearly as good as
/// scanning all of them, at constant cost and without herding onto one endpoint.
fn least_request(in_flight: &[AtomicUsize], seed: &AtomicU64, len: usize) -> usize {
    if len == 1 {
        return 0;
    }
    let r = splitmix(seed.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed));
    let a = (r % len as u64) as usize;
    let b = (a + 1 + ((r >> 32) % (len as u64 - 1)) as usize) % len;
    let load = |i: usize| in_flight.get(i).map_or(0, |c| c.load(Ordering::Relaxed));
    if load(b) < load(a) { b } else { a }
}

/// SplitMix64's finalizer: spreads a counter or seed over all 64 bits.
pub(crate) fn splitmix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

fn request_key(key: &HashKey, input: &PickInput<'_>) -> Option<u64> {
    match key {
        HashKey::Header(name) => input.headers.get(name).map(|v| hash(v.as_bytes())),
        HashKey::Cookie(name) => cookie(input.headers, name).map(|v| hash(v.as_bytes())),
        HashKey::SourceIp => Some(hash(&input.client_ip)),
    }
}

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn hash(value: &(impl Hash + ?Sized)) -> u64 {
    // DefaultHasher::new() has fixed keys: the same key hashes the same in every
    // process, so every proxy replica sends a key to the same endpoint.
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    value.hash(&mut hasher);
    hasher.finish()
}

/// Maglev hashing (Eisenbud et al., NSDI 2016): a lookup table filled from a
/// per-endpoint permutation, so removing one endpoint moves little more than its own keys.
pub struct Maglev {
    table: Vec<u32>,
}

/// Table sizes: primes, the first at least 100x the endpoint count is used.
const TABLE_SIZES: [usize; 9] = [251, 509, 1021, 2039, 4093, 8191, 16381, 32749, 65521];

impl Maglev {
    pub fn new(names: &[String]) -> Self {
        if names.is_empty() {
            return Self { table: vec![0] };
        }
        let m = TABLE_SIZES.iter().copied().find(|m| *m >= names.len() * 100).unwrap_or(TABLE_SIZES[TABLE_SIZES.len() - 1]);
        let perms: Vec<(usize, usize)> = names
            .iter()
            .map(|n| {
                let offset = (hash(&(n, 0x5EED_u32)) % m as u64) as usize;
                let skip = (hash(&(n, 0xC0FFEE_u32)) % (m as u64 - 1)) as usize + 1;
                (offset, skip)
            })
            .collect();
        let mut table = vec![u32::MAX; m];
        let mut next = vec![0usize; names.len()];
        let mut filled = 0;
        'fill: loop {
            for (i, (offset, skip)) in perms.iter().enumerate() {
                let mut slot = (offset + next[i] * skip) % m;
                while table[slot] != u32::MAX {
                    next[i] += 1;
                    slot = (offset + next[i] * skip) % m;
                }
                table[slot] = i as u32;
                next[i] += 1;
                filled += 1;
                if filled == m {
                    break 'fill;
                }
            }
        }
        Self { table }
    }

    pub fn lookup(&self, hash: u64) -> usize {
        self.table[(hash % self.table.len() as u64) as usize] as usize
    }
}

#[cfg(test)]
mod tests;
