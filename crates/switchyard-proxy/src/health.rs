//! Active health checks: a task per backend probes every endpoint on an interval (with
//! jitter, so replicas do not probe in lockstep) and takes endpoints out of rotation after
//! `unhealthy_threshold` failures in a row, back after `healthy_threshold` passes.
//!
//! The task lives as long as the snapshot's runtime (it holds only a weak reference) and
//! dials through the same egress policy as traffic: a probe never reaches an address
//! requests could not.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use prometheus_client::metrics::gauge::Gauge;
use switchyard_compile::snapshot::ActiveHealthPolicy;

use crate::client::Upstream;
use crate::egress::{DialPolicy, Granted};

/// One probe may take this long.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

pub struct ActiveHealth {
    policy: ActiveHealthPolicy,
    endpoints: Vec<EndpointHealth>,
    /// Unhealthy endpoints: the proxy-wide count and this backend's; this runtime's share
    /// leaves with it.
    unhealthy: [Gauge; 2],
}

struct EndpointHealth {
    healthy: AtomicBool,
    passes: AtomicU32,
    failures: AtomicU32,
}

impl ActiveHealth {
    /// Every endpoint starts healthy: traffic flows until probes say otherwise.
    pub fn new(policy: ActiveHealthPolicy, endpoints: usize, unhealthy: [Gauge; 2]) -> Self {
        let endpoints = (0..endpoints)
            .map(|_| EndpointHealth { healthy: AtomicBool::new(true), passes: AtomicU32::new(0), failures: AtomicU32::new(0) })
            .collect();
        Self { policy, endpoints, unhealthy }
    }

    pub fn is_healthy(&self, endpoint: usize) -> bool {
        self.endpoints.get(endpoint).is_none_or(|e| e.healthy.load(Ordering::Relaxed))
    }

    pub fn record(&self, endpoint: usize, ok: bool) {
        let Some(e) = self.endpoints.get(endpoint) else { return };
        if ok {
            e.failures.store(0, Ordering::Relaxed);
            let passes = e.passes.fetch_add(1, Ordering::Relaxed) + 1;
            if passes >= self.policy.healthy_threshold && !e.healthy.swap(true, Ordering::Relaxed) {
                self.unhealthy.iter().for_each(|g| {
                    g.dec();
                });
                tracing::info!(endpoint, "endpoint healthy again");
            }
        } else {
            e.passes.store(0, Ordering::Relaxed);
            let failures = e.failures.fetch_add(1, Ordering::Relaxed) + 1;
            if failures >= self.policy.unhealthy_threshold && e.healthy.swap(false, Ordering::Relaxed) {
                self.unhealthy.iter().for_each(|g| {
                    g.inc();
                });
                tracing::warn!(endpoint, "endpoint failed its health checks; out of rotation");
            }
        }
    }
}

impl Drop for ActiveHealth {
    fn drop(&mut self) {
        let unhealthy = self.endpoints.iter().filter(|e| !e.healthy.load(Ordering::Relaxed)).count();
        self.unhealthy.iter().for_each(|g| {
            g.dec_by(unhealthy as i64);
        });
    }
}

/// What the probe task needs to reach each endpoint.
pub struct ProbeTargets {
    pub upstreams: Vec<Upstream>,
    pub host_headers: Vec<String>,
    pub dial: Arc<DialPolicy>,
    pub grant: Option<Granted>,
}

/// Starts the probe task when a runtime is available (not in plain unit tests).
pub fn spawn(health: &Arc<ActiveHealth>, targets: ProbeTargets) {
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        runtime.spawn(run(Arc::downgrade(health), targets));
    }
}

async fn run(health: Weak<ActiveHealth>, targets: ProbeTargets) {
    // Distinct per replica and per backend: every replica gets the snapshot at the same
    // moment, and the same PID (1, in a container) would probe in lockstep.
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    let mut seed = crate::balance::splitmix(nanos ^ (health.as_ptr() as u64) ^ targets.upstreams.len() as u64);
    loop {
        let Some(interval) = health.upgrade().map(|h| h.policy.interval_ms) else { return };
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let jitter = (seed >> 33) % (interval / 10 + 1);
        tokio::time::sleep(Duration::from_millis(interval + jitter)).await;
        let Some(health) = health.upgrade() else { return };
        for (i, upstream) in targets.upstreams.iter().enumerate() {
            let ok = probe_one(upstream, &targets.host_headers[i], &health.policy, &targets).await;
            health.record(i, ok);
        }
    }
}

async fn probe_one(upstream: &Upstream, host_header: &str, policy: &ActiveHealthPolicy, targets: &ProbeTargets) -> bool {
    // The address a request would use: IP literal, DnsRecord pick, or DNS; through the
    // egress policy like traffic, and through the TLS handshake for `https` (so an expired
    // or untrusted certificate takes the endpoint out of rotation too).
    let pinned = upstream.pinned(&targets.dial);
    let Ok(candidates) = crate::resolver::addresses(&upstream.authority, pinned).await else { return false };
    // The first address a request could use, as the connector picks among them.
    let grant = targets.grant.as_ref().map(Granted::grant);
    let Some(addr) = candidates.into_iter().find(|addr| targets.dial.check(*addr, grant).is_ok()) else { return false };
    let tls = upstream.tls.as_deref();
    switchyard_http::probe(addr, host_header, policy.path.as_deref(), PROBE_TIMEOUT, tls).await.is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn health() -> ActiveHealth {
        ActiveHealth::new(
            ActiveHealthPolicy { path: None, interval_ms: 1000, healthy_threshold: 2, unhealthy_threshold: 3 },
            2,
            [Gauge::default(), Gauge::default()],
        )
    }

    #[test]
    fn an_endpoint_leaves_after_the_unhealthy_threshold_and_returns_after_the_healthy_one() {
        let h = health();
        assert!(h.is_healthy(0), "healthy until probes say otherwise");
        h.record(0, false);
        h.record(0, false);
        assert!(h.is_healthy(0));
        h.record(0, false);
        assert!(!h.is_healthy(0));
        h.record(0, true);
        assert!(!h.is_healthy(0), "one pass is not enough");
        h.record(0, true);
        assert!(h.is_healthy(0));
        assert!(h.is_healthy(1), "endpoints are independent");
    }

    #[test]
    fn the_unhealthy_gauge_follows_transitions_and_forgets_a_dropped_runtime() {
        let (gauge, backend) = (Gauge::default(), Gauge::default());
        let h = ActiveHealth::new(
            ActiveHealthPolicy { path: None, interval_ms: 1000, healthy_threshold: 1, unhealthy_threshold: 1 },
            2,
            [gauge.clone(), backend.clone()],
        );
        h.record(0, false);
        h.record(1, false);
        assert_eq!((gauge.get(), backend.get()), (2, 2));
        h.record(1, true);
        assert_eq!((gauge.get(), backend.get()), (1, 1));
        drop(h);
        assert_eq!((gauge.get(), backend.get()), (0, 0), "the proxy's count and the backend's");
    }
}
