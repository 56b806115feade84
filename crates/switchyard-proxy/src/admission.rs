//! Load shedding per backend: a proxy keeps at most `circuitBreaker.maxRequests` requests
//! in flight to one backend (until its response headers), and refuses the next ones at
//! once with 503 `D503OL` instead of queueing them. A backend slower than the offered load
//! then costs the proxy a bounded number of waiting requests (and their memory), and the
//! other routes, the health checks and the admin listener keep their share of the workers.
//!
//! One counter per backend id, shared by every worker of the process and carried across
//! snapshot swaps (a request admitted under the old snapshot still counts under the new
//! one), so a swap can never let a second `maxRequests` in. No lock: one atomic add to
//! enter and one to leave.

use std::sync::atomic::{AtomicU32, Ordering::Relaxed};

/// The in-flight count and limit of one backend.
#[derive(Debug)]
pub struct Admission {
    in_flight: AtomicU32,
    limit: AtomicU32,
}

impl Admission {
    pub fn new(limit: u32) -> Self {
        Self { in_flight: AtomicU32::new(0), limit: AtomicU32::new(limit) }
    }

    /// A new snapshot set another limit: requests in flight keep counting against it.
    pub fn set_limit(&self, limit: u32) {
        self.limit.store(limit, Relaxed);
    }

    pub fn limit(&self) -> u32 {
        self.limit.load(Relaxed)
    }

    /// Requests in flight now.
    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Relaxed)
    }

    /// A place for one more request, or None when the backend already has its limit in
    /// flight. The place is given back when the guard drops.
    pub fn admit(&self) -> Option<Admitted<'_>> {
        let before = self.in_flight.fetch_add(1, Relaxed);
        if before >= self.limit.load(Relaxed) {
            self.in_flight.fetch_sub(1, Relaxed);
            return None;
        }
        Some(Admitted(self))
    }
}

/// One admitted request; see [`Admission::admit`].
#[derive(Debug)]
pub struct Admitted<'a>(&'a Admission);

impl Drop for Admitted<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::Admission;

    #[test]
    fn the_request_past_the_limit_is_refused_and_a_finished_one_frees_its_place() {
        let admission = Admission::new(2);
        let first = admission.admit().expect("first");
        let _second = admission.admit().expect("second");
        assert!(admission.admit().is_none(), "a third while two are in flight");
        assert_eq!(admission.in_flight(), 2, "a refusal leaves no count behind");
        drop(first);
        assert!(admission.admit().is_some(), "a place was given back");
    }

    #[test]
    fn a_lower_limit_from_a_new_snapshot_counts_the_requests_already_in_flight() {
        let admission = Admission::new(4);
        let held: Vec<_> = (0..3).map(|_| admission.admit().unwrap()).collect();
        admission.set_limit(2);
        assert!(admission.admit().is_none(), "three in flight is past the new limit of two");
        drop(held);
        assert!(admission.admit().is_some());
    }
}
