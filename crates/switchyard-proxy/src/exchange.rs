//! The one record of what a request did, filled in as its phases run and read when it
//! ends: by the metrics (at the response headers) and the access log (when the response
//! body is done). Tracing reads the same fields, so a span and a log line can never
//! disagree about a request.
//!
//! Every field is an atomic with relaxed ordering (a plain load or store on x86): phases
//! write through a shared reference (the backend call has only `&CallContext`). No lock, no
//! allocation: the record lives on the stack, or inside the access log's record.
//!
//! The one count that can change after the response's headers is the client body's bytes,
//! which the upstream connection's task may still be reading; when asked for (the access
//! log is on and the body streams), that count is a small shared counter of its own
//! ([`Exchange::body_counter`]), so a request without a body allocates nothing for it.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// "None" for the index fields.
const NONE: u32 = u32::MAX;

/// One request's record. Indexes point into the request's own [`crate::runtime::Runtime`]
/// (routes, backends, and the backend's endpoints), which outlives the record.
#[derive(Debug)]
pub struct Exchange {
    route: AtomicU32,
    backend: AtomicU32,
    endpoint: AtomicU32,
    attempts: AtomicU32,
    upstream_nanos: AtomicU64,
    bytes_in: AtomicU64,
    /// Bytes of a streamed client body, counted by whichever task reads it.
    streamed_in: OnceLock<Arc<AtomicU64>>,
}

impl Default for Exchange {
    fn default() -> Self {
        Self {
            route: AtomicU32::new(NONE),
            backend: AtomicU32::new(NONE),
            endpoint: AtomicU32::new(NONE),
            attempts: AtomicU32::new(0),
            upstream_nanos: AtomicU64::new(0),
            bytes_in: AtomicU64::new(0),
            streamed_in: OnceLock::new(),
        }
    }
}

fn index(value: u32) -> Option<usize> {
    (value != NONE).then_some(value as usize)
}

fn store(slot: &AtomicU32, i: usize) {
    slot.store(u32::try_from(i).unwrap_or(NONE), Relaxed);
}

impl Exchange {
    /// The route `match_route` chose (an index into the runtime's routes).
    pub fn matched(&self, route: usize) {
        store(&self.route, route);
    }

    /// The backend `choose_backend` picked (an index into the runtime's backends).
    pub fn chose(&self, backend: usize) {
        store(&self.backend, backend);
    }

    /// An attempt goes to `endpoint` (an index into the backend's endpoints); the last
    /// one recorded is the one that answered, or failed last.
    pub fn attempt(&self, endpoint: usize) {
        store(&self.endpoint, endpoint);
        self.attempts.fetch_add(1, Relaxed);
    }

    /// Times the backend's upstream calls until the guard drops: from the first
    /// attempt's start to the last one's response headers (or failure).
    pub fn time_upstream(&self) -> UpstreamTimer<'_> {
        UpstreamTimer { exchange: self, started: Instant::now() }
    }

    /// `n` more body bytes read from the client.
    pub fn read(&self, n: u64) {
        self.bytes_in.fetch_add(n, Relaxed);
    }

    /// The counter a streamed client body adds its bytes to, shared with the task that
    /// reads it (that task may outlive the request's handler).
    pub fn body_counter(&self) -> Arc<AtomicU64> {
        self.streamed_in.get_or_init(Arc::default).clone()
    }

    pub fn route(&self) -> Option<usize> {
        index(self.route.load(Relaxed))
    }

    pub fn backend(&self) -> Option<usize> {
        index(self.backend.load(Relaxed))
    }

    pub fn endpoint(&self) -> Option<usize> {
        index(self.endpoint.load(Relaxed))
    }

    /// Upstream attempts made (0 for backends that call no upstream).
    pub fn attempts(&self) -> u32 {
        self.attempts.load(Relaxed)
    }

    /// Attempts after the first.
    pub fn retries(&self) -> u32 {
        self.attempts().saturating_sub(1)
    }

    /// Time spent on upstream calls; None when no upstream was called.
    pub fn upstream_time(&self) -> Option<Duration> {
        (self.attempts() > 0).then(|| Duration::from_nanos(self.upstream_nanos.load(Relaxed)))
    }

    /// Body bytes read from the client so far.
    pub fn bytes_in(&self) -> u64 {
        self.bytes_in.load(Relaxed) + self.streamed_in.get().map_or(0, |n| n.load(Relaxed))
    }
}

/// See [`Exchange::time_upstream`].
pub struct UpstreamTimer<'a> {
    exchange: &'a Exchange,
    started: Instant,
}

impl Drop for UpstreamTimer<'_> {
    fn drop(&mut self) {
        let nanos = u64::try_from(self.started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.exchange.upstream_nanos.store(nanos, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::Exchange;

    #[test]
    fn a_fresh_record_names_no_route_backend_or_endpoint_and_counts_no_retries() {
        let x = Exchange::default();
        assert_eq!((x.route(), x.backend(), x.endpoint(), x.attempts(), x.retries()), (None, None, None, 0, 0));
        assert_eq!(x.upstream_time(), None, "no upstream called");
    }

    #[test]
    fn the_last_attempt_names_the_endpoint_and_retries_are_attempts_after_the_first() {
        let x = Exchange::default();
        x.matched(3);
        x.chose(1);
        {
            let _timer = x.time_upstream();
            x.attempt(0);
            x.attempt(2);
        }
        x.read(10);
        x.read(5);
        assert_eq!((x.route(), x.backend(), x.endpoint(), x.attempts(), x.retries()), (Some(3), Some(1), Some(2), 2, 1));
        assert!(x.upstream_time().is_some());
        assert_eq!(x.bytes_in(), 15);
        // A streamed body's reader counts into the shared counter, after the fact too.
        let counter = x.body_counter();
        counter.fetch_add(7, std::sync::atomic::Ordering::Relaxed);
        assert!(Arc::ptr_eq(&counter, &x.body_counter()), "one counter per request");
        assert_eq!(x.bytes_in(), 22);
    }
}
