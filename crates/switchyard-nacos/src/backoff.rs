//! Reconnect delays: 200 ms doubling to 5 s, each jittered so that many watches of a
//! restarted server do not reconnect in lockstep.

use std::hash::{BuildHasher, RandomState};
use std::time::Duration;

const FIRST: Duration = Duration::from_millis(200);
const MAX: Duration = Duration::from_secs(5);

pub struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self { next: FIRST }
    }
}

impl Backoff {
    /// The delay before the next attempt: between half and all of the current step.
    pub fn next_delay(&mut self) -> Duration {
        let step = self.next;
        self.next = (step * 2).min(MAX);
        step.mul_f64(0.5 + 0.5 * random_fraction())
    }

    /// After a connection that worked, the next failure starts over at the first step.
    pub fn reset(&mut self) {
        self.next = FIRST;
    }
}

/// A number in [0, 1) from std's randomly keyed hasher (enough for jitter, no rand crate).
fn random_fraction() -> f64 {
    (RandomState::new().hash_one(()) >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_cap_and_reset() {
        let mut backoff = Backoff::default();
        let delays: Vec<Duration> = (0..8).map(|_| backoff.next_delay()).collect();
        assert!(delays[0] >= FIRST / 2 && delays[0] <= FIRST);
        assert!(delays.iter().all(|d| *d <= MAX));
        assert!(delays[7] >= MAX / 2);
        backoff.reset();
        assert!(backoff.next_delay() <= FIRST);
    }
}
