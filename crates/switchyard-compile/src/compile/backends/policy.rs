//! The traffic policy every kind shares: timeout, retries, load balancing, health checks.

use switchyard_api::{BackendServiceSpec, LoadBalancing, LoadBalancingPolicy, PassiveHealthCheck, Retries, RetryOn};

use crate::compile::{Rejection, duration_ms};
use crate::snapshot::{ActiveHealthPolicy, DEFAULT_MAX_REQUESTS, HashKey, LoadBalancer, OutlierPolicy, RetryPolicy};
use crate::{reason, validate};

/// Timeout, retries and load balancing: the policy every kind shares.
pub(super) struct CommonPolicy {
    pub timeout_ms: Option<u64>,
    pub retries: RetryPolicy,
    pub load_balancer: LoadBalancer,
    pub outlier: Option<OutlierPolicy>,
    pub active_health: Option<ActiveHealthPolicy>,
    pub max_requests: u32,
}

pub(super) fn common_policy(spec: &BackendServiceSpec) -> Result<CommonPolicy, Rejection> {
    Ok(CommonPolicy {
        timeout_ms: duration_ms("timeout", spec.timeout.as_ref())?,
        retries: spec.retries.as_ref().map(retry_policy).transpose()?.unwrap_or_default(),
        load_balancer: spec.load_balancing.as_ref().map(load_balancer).transpose()?.unwrap_or_default(),
        outlier: spec.health_check.as_ref().and_then(|h| h.passive.as_ref()).map(outlier_policy).transpose()?,
        active_health: spec.health_check.as_ref().and_then(|h| h.active.as_ref()).map(active_health_policy).transpose()?,
        max_requests: max_requests(spec.circuit_breaker.as_ref())?,
    })
}

/// `circuitBreaker.maxRequests`: 1 to 1,000,000 (the CRD says so too; a standalone
/// folder has no schema check), 1024 when not set.
fn max_requests(breaker: Option<&switchyard_api::CircuitBreaker>) -> Result<u32, Rejection> {
    match breaker.and_then(|b| b.max_requests) {
        None => Ok(DEFAULT_MAX_REQUESTS),
        Some(n @ 1..=1_000_000) => Ok(n),
        Some(n) => Err(Rejection::new(reason::INVALID_SPEC, format!("circuitBreaker.maxRequests {n} is not between 1 and 1000000"))),
    }
}

/// Defaults: every 5 s, 2 passes to return, 3 failures to leave.
fn active_health_policy(active: &switchyard_api::ActiveHealthCheck) -> Result<ActiveHealthPolicy, Rejection> {
    let bad = |why: &str| Rejection::new(reason::INVALID_SPEC, format!("healthCheck.active.{why}"));
    if let Some(path) = &active.path {
        // Written into the probe's request line as it is.
        validate::wire_path(path).map_err(|e| Rejection::new(reason::INVALID_PATH, format!("healthCheck.active.path: {e}")))?;
    }
    let interval_ms = duration_ms("healthCheck.active.interval", active.interval.as_ref())?.unwrap_or(5_000);
    if interval_ms < 100 {
        return Err(bad("interval must be at least 100ms"));
    }
    let (healthy_threshold, unhealthy_threshold) = (active.healthy_threshold.unwrap_or(2), active.unhealthy_threshold.unwrap_or(3));
    if healthy_threshold == 0 || unhealthy_threshold == 0 {
        return Err(bad("thresholds must be at least 1"));
    }
    Ok(ActiveHealthPolicy { path: active.path.clone(), interval_ms, healthy_threshold, unhealthy_threshold })
}

/// Defaults: 5 consecutive failures, 30 s first ejection.
fn outlier_policy(passive: &PassiveHealthCheck) -> Result<OutlierPolicy, Rejection> {
    let consecutive_failures = passive.consecutive_failures.unwrap_or(5);
    if consecutive_failures == 0 {
        return Err(Rejection::new(reason::INVALID_SPEC, "healthCheck.passive.consecutiveFailures must be at least 1"));
    }
    let ejection_ms = duration_ms("healthCheck.passive.ejectionTime", passive.ejection_time.as_ref())?.unwrap_or(30_000);
    Ok(OutlierPolicy { consecutive_failures, ejection_ms })
}

fn load_balancer(lb: &LoadBalancing) -> Result<LoadBalancer, Rejection> {
    let bad = |why: &str| Rejection::new(reason::INVALID_SPEC, format!("loadBalancing: {why}"));
    match lb.policy {
        LoadBalancingPolicy::RoundRobin => Ok(LoadBalancer::RoundRobin),
        LoadBalancingPolicy::LeastRequest => Ok(LoadBalancer::LeastRequest),
        LoadBalancingPolicy::ConsistentHash => {
            let on = lb.hash_on.as_ref().ok_or_else(|| bad("ConsistentHash needs hashOn (header, cookie or sourceIp)"))?;
            let key = match (&on.header, &on.cookie, on.source_ip) {
                (Some(header), None, false) => {
                    validate::header_name(header).map_err(|e| bad(&format!("hashOn.header: {e}")))?;
                    HashKey::Header(header.to_ascii_lowercase())
                }
                (None, Some(cookie), false) if !cookie.is_empty() => HashKey::Cookie(cookie.clone()),
                (None, None, true) => HashKey::SourceIp,
                _ => return Err(bad("hashOn: set exactly one of header, cookie or sourceIp")),
            };
            Ok(LoadBalancer::ConsistentHash { key })
        }
    }
}

/// Retry policy from the resource; `retryOn` defaults to connect failures only.
pub(crate) fn retry_policy(retries: &Retries) -> Result<RetryPolicy, Rejection> {
    if retries.attempts > 10 {
        return Err(Rejection::new(reason::INVALID_SPEC, format!("retries.attempts {} is above 10", retries.attempts)));
    }
    let on = |what| retries.retry_on.contains(&what);
    let connect = retries.retry_on.is_empty() || on(RetryOn::ConnectFailure);
    Ok(RetryPolicy {
        attempts: retries.attempts,
        on_connect_failure: connect,
        on_gateway_error: on(RetryOn::GatewayError),
        on_reset: on(RetryOn::Reset),
        non_idempotent: retries.non_idempotent,
    })
}
