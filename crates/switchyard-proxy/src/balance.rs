//! Endpoint selection: round robin, least request (power of two choices) and
//! consistent hashing (Maglev). Built once per snapshot, then only read on the request
//! path (atomics, no locks, no allocation).
//!
//! Endpoint weights (registry instance weights) count in all three. When every weight is
//! the same, each policy runs exactly as it would unweighted, at no extra cost:
//! - round robin becomes smooth weighted round robin over a precomputed [`Schedule`]
//!   (exact shares, interleaved; its length is capped, see
//!   [`MAX_SCHEDULE`](crate::weighted::MAX_SCHEDULE));
//! - least request draws its two candidates by weight and compares `in_flight / weight`;
//! - consistent hashing gives endpoints Maglev permutation turns in that same schedule's
//!   order, so each owns table slots (and keys) in proportion to its weight.

use std::hash::{Hash, Hasher};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use http::HeaderMap;
use switchyard_compile::snapshot::{HashKey, LoadBalancer};

use crate::weighted::Schedule;

/// What a pick may look at.
pub struct PickInput<'a> {
    pub headers: &'a HeaderMap,
    pub client_ip: IpAddr,
    /// 0 for the first attempt; a retry moves to another endpoint.
    pub attempt: u32,
}

/// The `Weighted` kinds are built only when endpoint weights differ.
pub enum Balancer {
    RoundRobin { next: AtomicUsize },
    WeightedRoundRobin { schedule: Schedule },
    LeastRequest { in_flight: Vec<AtomicUsize>, seed: AtomicU64 },
    WeightedLeastRequest { in_flight: Vec<AtomicUsize>, seed: AtomicU64, weights: Weights },
    ConsistentHash { key: HashKey, table: Maglev, fallback: AtomicUsize },
}

impl Balancer {
    /// `names` identify the endpoints (stable across snapshots, so hashing is too);
    /// `weights` are their relative shares, one per name. A weight of 0 counts as 1
    /// (compile leaves weightless instances out; an endpoint listed here stays reachable),
    /// and a missing one as 1.
    pub fn build(policy: &LoadBalancer, names: &[String], weights: &[u32]) -> Self {
        debug_assert_eq!(names.len(), weights.len(), "one weight per endpoint");
        let weights: Vec<u32> = (0..names.len()).map(|i| weights.get(i).map_or(1, |w| (*w).max(1))).collect();
        let equal = weights.windows(2).all(|pair| pair[0] == pair[1]);
        match policy {
            LoadBalancer::RoundRobin if equal => Self::RoundRobin { next: AtomicUsize::new(0) },
            LoadBalancer::RoundRobin => Self::WeightedRoundRobin { schedule: Schedule::new(&weights) },
            LoadBalancer::LeastRequest => {
                let (in_flight, seed) = (names.iter().map(|_| AtomicUsize::new(0)).collect(), AtomicU64::new(0x9E37_79B9));
                if equal {
                    Self::LeastRequest { in_flight, seed }
                } else {
                    Self::WeightedLeastRequest { in_flight, seed, weights: Weights::new(&weights) }
                }
            }
            LoadBalancer::ConsistentHash { key } => {
                let table = if equal { Maglev::new(names) } else { Maglev::weighted(names, &weights) };
                Self::ConsistentHash { key: key.clone(), table, fallback: AtomicUsize::new(0) }
            }
        }
    }

    /// The endpoint index for this attempt (`len` endpoints, at least one).
    pub fn pick(&self, len: usize, input: &PickInput<'_>) -> usize {
        match self {
            Self::RoundRobin { next } => next.fetch_add(1, Ordering::Relaxed) % len,
            // `% len` only guards against a caller's mismatch: entries are below len.
            Self::WeightedRoundRobin { schedule } => schedule.pick() % len,
            Self::LeastRequest { in_flight, seed } => least_request(in_flight, seed, len),
            Self::WeightedLeastRequest { in_flight, seed, weights } => weighted_least_request(in_flight, seed, weights),
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
            Self::LeastRequest { in_flight, .. } | Self::WeightedLeastRequest { in_flight, .. } => in_flight.get(endpoint),
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

/// Power of two choices with weights: both candidates are drawn by weight, and the second
/// wins only with strictly less `in_flight / weight`. Drawing by weight (not uniformly)
/// matters when the backend is idle: every load is 0, the comparison is a tie, and only
/// the draw decides, so idle traffic still follows the weights; under load the comparison
/// moves traffic until in-flight counts are proportional to the weights.
fn weighted_least_request(in_flight: &[AtomicUsize], seed: &AtomicU64, weights: &Weights) -> usize {
    let r = splitmix(seed.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed));
    let a = weights.draw(r);
    let b = weights.draw_other(splitmix(r), a);
    let load = |i: usize| in_flight.get(i).map_or(0, |c| c.load(Ordering::Relaxed)) as u128;
    let weight = |i: usize| u128::from(weights.of(i));
    // load(b) / w(b) < load(a) / w(a), cross-multiplied: exact, no floats.
    if load(b) * weight(a) < load(a) * weight(b) { b } else { a }
}

/// Unequal endpoint weights, with running sums for drawing an endpoint by weight.
pub struct Weights {
    /// `cumulative[i]`: the sum of the weights of endpoints 0..=i (all weights ≥ 1).
    cumulative: Box<[u64]>,
}

impl Weights {
    fn new(weights: &[u32]) -> Self {
        let running = |sum: &mut u64, &w: &u32| {
            *sum += u64::from(w);
            Some(*sum)
        };
        Self { cumulative: weights.iter().scan(0, running).collect() }
    }

    fn of(&self, i: usize) -> u64 {
        self.cumulative[i] - if i == 0 { 0 } else { self.cumulative[i - 1] }
    }

    fn total(&self) -> u64 {
        self.cumulative.last().copied().unwrap_or(0)
    }

    /// The endpoint whose share of the weight line `r` lands on.
    fn draw(&self, r: u64) -> usize {
        self.at(scale(r, self.total()))
    }

    /// Like [`Self::draw`], but never `a`: the line without `a`'s share, so two
    /// candidates are always two endpoints (there are at least two when weights differ).
    fn draw_other(&self, r: u64, a: usize) -> usize {
        let width = self.of(a);
        let ticket = scale(r, self.total() - width);
        let start = self.cumulative[a] - width;
        self.at(if ticket >= start { ticket + width } else { ticket })
    }

    fn at(&self, ticket: u64) -> usize {
        self.cumulative.partition_point(|&sum| sum <= ticket)
    }
}

/// `r` mapped onto `0..n` by its high bits (Lemire's multiply-shift: no division, and no
/// modulo bias worth the name).
fn scale(r: u64, n: u64) -> u64 {
    ((u128::from(r) * u128::from(n)) >> 64) as u64
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
/// Weighted, endpoints take their turns filling the table in a [`Schedule`]'s order
/// (the paper's suggestion), so each owns slots in proportion to its weight.
pub struct Maglev {
    table: Vec<u32>,
}

/// Table sizes: primes, the first at least 100x the endpoint count is used.
const TABLE_SIZES: [usize; 9] = [251, 509, 1021, 2039, 4093, 8191, 16381, 32749, 65521];

impl Maglev {
    /// Equal shares: endpoints take turns in index order, one slot each.
    pub fn new(names: &[String]) -> Self {
        let turns: Vec<u32> = (0..names.len() as u32).collect();
        Self::with_turns(names, &turns)
    }

    /// Shares by weight (one per name).
    pub fn weighted(names: &[String], weights: &[u32]) -> Self {
        Self::with_turns(names, Schedule::new(weights).order())
    }

    /// `turns`: the order endpoints take turns in, repeated until the table is full;
    /// each turn fills one slot.
    fn with_turns(names: &[String], turns: &[u32]) -> Self {
        if names.is_empty() {
            return Self { table: vec![0] };
        }
        let m = TABLE_SIZES.iter().copied().find(|m| *m >= names.len() * 100).unwrap_or(TABLE_SIZES[TABLE_SIZES.len() - 1]);
        let perms = permutations(names, m);
        let mut table = vec![u32::MAX; m];
        let mut next = vec![0usize; names.len()];
        let mut filled = 0;
        'fill: loop {
            for &turn in turns {
                let (i, (offset, skip)) = (turn as usize, perms[turn as usize]);
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

/// Each endpoint's permutation of the `m` slots, as (offset, skip), from its name alone.
fn permutations(names: &[String], m: usize) -> Vec<(usize, usize)> {
    let permutation = |n: &String| {
        let offset = (hash(&(n, 0x5EED_u32)) % m as u64) as usize;
        let skip = (hash(&(n, 0xC0FFEE_u32)) % (m as u64 - 1)) as usize + 1;
        (offset, skip)
    };
    names.iter().map(permutation).collect()
}

#[cfg(test)]
mod tests;
