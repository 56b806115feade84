//! Exact weighted choice: a shared counter walks the line of running weight sums, so over
//! every `total` picks each item is chosen exactly `weight` times (no randomness, no lock).
//! Used for a route's weighted backendRefs and a DnsRecord's weighted addresses.

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
}
