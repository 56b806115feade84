//! Delays between attempts at a new ZooKeeper session.

use std::time::Duration;

const FIRST_DELAY: Duration = Duration::from_millis(200);
const MAX_DELAY: Duration = Duration::from_secs(5);

/// 200 ms doubling to 5 s, each delay jittered by ±20% so that many watchers (one per
/// registry source) do not reconnect in lockstep after an outage.
#[derive(Debug)]
pub struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self { next: FIRST_DELAY }
    }
}

impl Backoff {
    pub fn next_delay(&mut self) -> Duration {
        let base = self.next;
        self.next = (base * 2).min(MAX_DELAY);
        base.mul_f64(fastrand::f64().mul_add(0.4, 0.8))
    }

    /// After a session that worked: the next trouble starts from the first delay again.
    pub fn reset(&mut self) {
        self.next = FIRST_DELAY;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_to_a_cap_with_jitter_and_reset() {
        let mut backoff = Backoff::default();
        let delays: Vec<Duration> = (0..10).map(|_| backoff.next_delay()).collect();
        let bases = [200, 400, 800, 1600, 3200, 5000, 5000, 5000, 5000, 5000];
        for (delay, base) in delays.iter().zip(bases) {
            let base = Duration::from_millis(base);
            assert!(*delay >= base.mul_f64(0.8) && *delay <= base.mul_f64(1.2), "{delay:?} for {base:?}");
        }
        backoff.reset();
        assert!(backoff.next_delay() <= Duration::from_millis(240));
    }
}
