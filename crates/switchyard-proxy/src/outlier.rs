//! Passive health: endpoints that keep failing on live traffic are ejected for a while.
//!
//! Consecutive failures (connect failures, timeouts, 5xx) past the threshold eject an
//! endpoint for `ejection_ms`, doubled for each ejection in a row (up to 64x); a success
//! resets both counts. The last endpoint still in rotation is never ejected: an
//! overloaded-but-alive backend is better than none. Lock-free: atomics per endpoint.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Instant;

use prometheus_client::metrics::counter::Counter;
use switchyard_compile::snapshot::OutlierPolicy;

pub struct Outlier {
    policy: OutlierPolicy,
    ejections: Counter,
    endpoints: Vec<EndpointState>,
    epoch: Instant,
}

#[derive(Default)]
struct EndpointState {
    failures: AtomicU32,
    /// Milliseconds since `epoch` until which the endpoint is out of rotation.
    ejected_until: AtomicU64,
    ejections: AtomicU32,
}

impl Outlier {
    pub fn new(policy: OutlierPolicy, endpoints: usize, ejections: Counter) -> Self {
        Self { policy, ejections, endpoints: (0..endpoints).map(|_| EndpointState::default()).collect(), epoch: Instant::now() }
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    pub fn is_ejected(&self, endpoint: usize) -> bool {
        self.endpoints.get(endpoint).is_some_and(|e| e.ejected_until.load(Ordering::Relaxed) > self.now_ms())
    }

    /// Records how a request to `endpoint` went.
    pub fn record(&self, endpoint: usize, ok: bool) {
        let Some(state) = self.endpoints.get(endpoint) else { return };
        if ok {
            state.failures.store(0, Ordering::Relaxed);
            state.ejections.store(0, Ordering::Relaxed);
            return;
        }
        let failures = state.failures.fetch_add(1, Ordering::Relaxed) + 1;
        if failures < self.policy.consecutive_failures || self.in_rotation_count() <= 1 || self.is_ejected(endpoint) {
            return;
        }
        let ejections = state.ejections.fetch_add(1, Ordering::Relaxed).min(6);
        let until = self.now_ms() + self.policy.ejection_ms.saturating_mul(1 << ejections);
        state.ejected_until.store(until, Ordering::Relaxed);
        state.failures.store(0, Ordering::Relaxed);
        self.ejections.inc();
        tracing::warn!(endpoint, ejected_for_ms = until - self.now_ms(), "endpoint ejected after consecutive failures");
    }

    fn in_rotation_count(&self) -> usize {
        (0..self.endpoints.len()).filter(|i| !self.is_ejected(*i)).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outlier(n: usize) -> Outlier {
        Outlier::new(OutlierPolicy { consecutive_failures: 3, ejection_ms: 60_000 }, n, Counter::default())
    }

    #[test]
    fn consecutive_failures_past_the_threshold_eject_an_endpoint() {
        let o = outlier(3);
        o.record(1, false);
        o.record(1, false);
        assert!(!o.is_ejected(1));
        o.record(1, false);
        assert!(o.is_ejected(1));
        assert!(!o.is_ejected(2));
    }

    #[test]
    fn a_success_resets_the_failure_count() {
        let o = outlier(3);
        o.record(0, false);
        o.record(0, false);
        o.record(0, true);
        o.record(0, false);
        assert!(!o.is_ejected(0));
    }

    #[test]
    fn the_last_endpoint_in_rotation_is_never_ejected() {
        let o = outlier(2);
        (0..3).for_each(|_| o.record(0, false));
        (0..10).for_each(|_| o.record(1, false));
        assert!(o.is_ejected(0));
        assert!(!o.is_ejected(1), "the other endpoint stays whatever it does");
    }

    #[test]
    fn ejection_time_grows_while_an_endpoint_keeps_failing() {
        let o = Outlier::new(OutlierPolicy { consecutive_failures: 1, ejection_ms: 1_000 }, 3, Counter::default());
        o.record(0, false);
        let first = o.endpoints[0].ejected_until.load(Ordering::Relaxed);
        // The ejection lapses; the endpoint fails again at once.
        o.endpoints[0].ejected_until.store(0, Ordering::Relaxed);
        o.record(0, false);
        let second = o.endpoints[0].ejected_until.load(Ordering::Relaxed);
        assert!(second >= first + 900, "second ejection {second} ms should be about twice the first {first} ms");
    }
}
