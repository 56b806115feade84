//! Exact weighted choice: a shared counter walks the line of running weight sums, so over
//! every `total` picks each item is chosen exactly `weight` times (no randomness, no lock).
//! Used for a route's weighted backendRefs and a DnsRecord's weighted addresses.
//!
//! [`Schedule`] is the interleaved kind, for endpoint load balancing: the same exact
//! shares, but spread out (`b a b b`, not `a b b b`) so a heavy endpoint never takes a
//! long run of consecutive requests.

use std::sync::atomic::{AtomicUsize, Ordering};

pub struct WeightedCycle<T> {
    items: Vec<T>,
    /// Running sums of the weights (all weights above 0).
    cumulative: Vec<u32>,
    next: AtomicUsize,
}

impl<T> WeightedCycle<T> {
    /// Items with weight 0 take no picks; None when no weight is above 0 or they overflow.
    pub fn new(weighted: impl IntoIterator<Item = (T, u32)>) -> Option<Self> {
        let (mut items, mut cumulative, mut total) = (Vec::new(), Vec::new(), 0u32);
        for (item, weight) in weighted.into_iter().filter(|(_, w)| *w > 0) {
            total = total.checked_add(weight)?;
            items.push(item);
            cumulative.push(total);
        }
        (!items.is_empty()).then(|| Self { items, cumulative, next: AtomicUsize::new(0) })
    }

    pub fn pick(&self) -> &T {
        if self.items.len() == 1 {
            return &self.items[0];
        }
        let total = *self.cumulative.last().expect("never empty") as usize;
        let ticket = (self.next.fetch_add(1, Ordering::Relaxed) % total) as u32;
        &self.items[self.cumulative.partition_point(|&sum| sum <= ticket)]
    }
}

/// The most entries a [`Schedule`] is built for. Weights summing (after dividing by
/// their gcd) above this are scaled down proportionally, each kept at least 1: shares are
/// then exact to about 1/4096 of the total, a weight below that gets 1/4096 anyway, and a
/// schedule holds at most `MAX_SCHEDULE + endpoints` entries (4 bytes each).
pub const MAX_SCHEDULE: u64 = 4096;

/// Smooth, exact weighted round robin without a lock: a precomputed interleaved order of
/// indexes walked by a shared counter. Over every `order().len()` picks index `i` is
/// picked exactly its (reduced) weight times.
pub struct Schedule {
    order: Box<[u32]>,
    next: AtomicUsize,
}

impl Schedule {
    /// At least one weight. Weights of 0 count as 1: whoever lists an index wants it
    /// reachable.
    pub fn new(weights: &[u32]) -> Self {
        Self { order: interleave(&reduce(weights)).into(), next: AtomicUsize::new(0) }
    }

    /// The next index in the order (the schedule has at least one entry per weight).
    pub fn pick(&self) -> usize {
        self.order[self.next.fetch_add(1, Ordering::Relaxed) % self.order.len()] as usize
    }

    /// One full cycle of the order.
    pub fn order(&self) -> &[u32] {
        &self.order
    }
}

/// Weights divided by their gcd and, above [`MAX_SCHEDULE`], scaled down to it
/// (rounded, at least 1 each): the smallest cycle with the same shares, capped.
fn reduce(weights: &[u32]) -> Vec<u64> {
    let mut reduced: Vec<u64> = weights.iter().map(|&w| u64::from(w.max(1))).collect();
    let total: u64 = reduced.iter().sum();
    if total > MAX_SCHEDULE * gcd_of(&reduced) {
        for w in &mut reduced {
            *w = ((*w * MAX_SCHEDULE + total / 2) / total).max(1);
        }
    }
    let g = gcd_of(&reduced);
    reduced.iter_mut().for_each(|w| *w /= g);
    reduced
}

fn gcd_of(weights: &[u64]) -> u64 {
    weights.iter().fold(0, |a, &b| gcd(a, b)).max(1)
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// nginx's smooth weighted round robin, run once at build time: each step every index
/// gains its weight, the richest (lowest index on a tie) is picked and pays the total.
/// Each index comes up exactly its weight times per cycle, evenly spread, and endpoints of
/// equal weight take turns instead of bunching up. Costs cycle length x endpoints, once.
fn interleave(weights: &[u64]) -> Vec<u32> {
    let total: u64 = weights.iter().sum();
    let mut credit = vec![0i64; weights.len()];
    (0..total)
        .map(|_| {
            credit.iter_mut().zip(weights).for_each(|(c, &w)| *c += w as i64);
            let richest = (0..credit.len()).fold(0, |best, i| if credit[i] > credit[best] { i } else { best });
            credit[richest] -= total as i64;
            richest as u32
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_follow_the_weights_exactly_and_skip_zero_weights() {
        let cycle = WeightedCycle::new([("a", 3), ("b", 0), ("c", 1)]).unwrap();
        let mut counts = std::collections::HashMap::new();
        for _ in 0..400 {
            *counts.entry(*cycle.pick()).or_insert(0) += 1;
        }
        assert_eq!((counts.get("a"), counts.get("b"), counts.get("c")), (Some(&300), None, Some(&100)));
    }

    #[test]
    fn no_positive_weight_or_an_overflow_is_no_cycle() {
        assert!(WeightedCycle::new([("a", 0)]).is_none());
        assert!(WeightedCycle::new([("a", u32::MAX), ("b", 1)]).is_none());
    }

    #[test]
    fn a_schedule_gives_exact_shares_interleaved() {
        let schedule = Schedule::new(&[1, 3]);
        assert_eq!(schedule.order(), [1, 0, 1, 1]);
        let mut counts = [0; 2];
        for _ in 0..400 {
            counts[schedule.pick()] += 1;
        }
        assert_eq!(counts, [100, 300]);
    }

    /// The longest run of one index, counting runs across the cycle's end.
    fn longest_run(order: &[u32]) -> usize {
        let twice: Vec<u32> = order.iter().chain(order).copied().collect();
        twice.chunk_by(|a, b| a == b).map(<[u32]>::len).max().unwrap_or(0)
    }

    #[test]
    fn a_schedule_never_runs_an_endpoint_longer_than_its_share_needs() {
        // Back to back (0 0 1 1 1 2 2 2 2) would run the heaviest 4 times in a row.
        let order = Schedule::new(&[2, 3, 4]).order().to_vec();
        assert_eq!(order, [2, 1, 0, 2, 1, 2, 0, 1, 2]);
        assert_eq!(longest_run(&order), 2);
        assert_eq!(longest_run(Schedule::new(&[1, 2, 5]).order()), 2);
        // One heavy endpoint among light ones: the light ones take turns between its picks.
        assert_eq!(Schedule::new(&[100, 100, 100, 300]).order(), [3, 0, 1, 3, 2, 3]);
        assert_eq!(longest_run(Schedule::new(&[1, 1, 1, 1, 1, 5]).order()), 2);
    }

    #[test]
    fn a_schedule_is_as_short_as_the_weights_allow_and_capped() {
        assert_eq!(Schedule::new(&[100, 200]).order(), [1, 0, 1], "divided by the gcd");
        assert_eq!(Schedule::new(&[0, 0]).order(), [0, 1], "a weight of 0 counts as 1");
        let capped = Schedule::new(&[1, 10_000, u32::MAX]);
        let count = |i: u32| capped.order().iter().filter(|&&x| x == i).count();
        assert!(capped.order().len() as u64 <= MAX_SCHEDULE + 3, "{}", capped.order().len());
        assert_eq!((count(0), count(1)), (1, 1), "small weights keep at least one slot");
        assert!(count(2) >= 4_090);
    }
}
