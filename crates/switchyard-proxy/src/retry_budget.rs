//! A retry budget per backend: retries in flight may not exceed a share of the requests in
//! flight (with a small floor), so a failing backend is not hit by a storm of retries on
//! top of the traffic that is already failing.

use std::sync::atomic::{AtomicUsize, Ordering};

/// Retries in flight allowed, as a share of requests in flight.
const BUDGET_PERCENT: usize = 20;
/// Retries in flight always allowed, so low traffic can still retry.
const MIN_RETRIES: usize = 3;

#[derive(Default)]
pub struct RetryBudget {
    requests: AtomicUsize,
    retries: AtomicUsize,
}

/// Counts one request (or retry) while it is in flight.
pub struct Active<'a>(&'a AtomicUsize);

impl Drop for Active<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl RetryBudget {
    pub fn request(&self) -> Active<'_> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        Active(&self.requests)
    }

    /// A retry, if the budget has room for one.
    pub fn try_retry(&self) -> Option<Active<'_>> {
        let allowed = (self.requests.load(Ordering::Relaxed) * BUDGET_PERCENT / 100).max(MIN_RETRIES);
        let in_flight = self.retries.fetch_add(1, Ordering::Relaxed);
        if in_flight >= allowed {
            self.retries.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        Some(Active(&self.retries))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn low_traffic_may_always_retry_a_few_times() {
        let budget = RetryBudget::default();
        let _one = budget.request();
        let retries: Vec<_> = (0..MIN_RETRIES).map(|_| budget.try_retry().expect("within the floor")).collect();
        assert!(budget.try_retry().is_none(), "the floor is spent");
        drop(retries);
        assert!(budget.try_retry().is_some(), "finished retries give their room back");
    }

    #[test]
    fn retries_in_flight_are_capped_at_a_fifth_of_requests_in_flight() {
        let budget = RetryBudget::default();
        let _requests: Vec<_> = (0..100).map(|_| budget.request()).collect();
        let granted: Vec<_> = (0..100).filter_map(|_| budget.try_retry()).collect();
        assert_eq!(granted.len(), 20);
    }
}
