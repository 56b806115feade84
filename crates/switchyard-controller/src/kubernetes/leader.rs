//! Leader election on a `coordination.k8s.io` Lease. Every replica compiles and serves
//! snapshots (so proxies keep working through a failover); only the leader writes status
//! and runs probes.
//!
//! Mutual exclusion comes from the API server's optimistic concurrency: a replica takes
//! or renews the lease with a `replace` carrying the `resourceVersion` it read, so of two
//! replicas racing for an expired lease exactly one succeeds (the other gets 409).
//!
//! Expiry is judged as client-go does: by when this replica last saw the lease *change*,
//! on its own monotonic clock, never by comparing the holder's `renewTime` with the local
//! wall clock. Clocks that disagree between nodes therefore cannot make a replica take a
//! lease that is still being renewed (nor keep one that is not).

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};
use tokio::sync::watch;

/// How long a lease stays valid without renewal.
pub const LEASE_DURATION: Duration = Duration::from_secs(15);
/// How often the holder renews (and others retry).
pub const RENEW_INTERVAL: Duration = Duration::from_secs(5);
/// The longest one round may take: a renewal that hangs (a half-open connection to the
/// API server) must drop leadership well before another replica may take the lease
/// (one `LEASE_DURATION` after it last saw it change).
pub const ROUND_DEADLINE: Duration = Duration::from_secs(8);

pub struct LeaderElector {
    api: Api<Lease>,
    name: String,
    identity: String,
    /// The lease record as last seen, and when (local monotonic time).
    observed: std::sync::Mutex<Option<Observed>>,
}

/// What identifies one renewal of a lease: a new holder or renew time is a change.
#[derive(Clone, PartialEq, Eq)]
struct Observed {
    holder: Option<String>,
    renew_time: Option<MicroTime>,
    lease_duration: Duration,
    seen_at: tokio::time::Instant,
}

impl LeaderElector {
    pub fn new(api: Api<Lease>, name: &str, identity: &str) -> Self {
        Self { api, name: name.to_owned(), identity: identity.to_owned(), observed: std::sync::Mutex::new(None) }
    }

    /// One round: take the lease if it is free or expired, renew it if held.
    /// Returns whether this replica leads now.
    pub async fn try_lead(&self, now: Timestamp) -> Result<bool, kube::Error> {
        let Some(lease) = self.api.get_opt(&self.name).await? else {
            let fresh = self.lease(ObjectMeta { name: Some(self.name.clone()), ..Default::default() }, now, now);
            return match self.api.create(&PostParams::default(), &fresh).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
                Err(e) => Err(e),
            };
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let mine = spec.holder_identity.as_deref() == Some(self.identity.as_str());
        if !mine && !self.expired(&spec) {
            return Ok(false);
        }
        let acquired = if mine { spec.acquire_time.map_or(now, |t| t.0) } else { now };
        let updated = self.lease(lease.metadata.clone(), acquired, now);
        match self.api.replace(&self.name, &PostParams::default(), &updated).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn lease(&self, metadata: ObjectMeta, acquired: Timestamp, now: Timestamp) -> Lease {
        Lease {
            metadata,
            spec: Some(LeaseSpec {
                holder_identity: Some(self.identity.clone()),
                lease_duration_seconds: Some(LEASE_DURATION.as_secs() as i32),
                acquire_time: Some(MicroTime(acquired)),
                renew_time: Some(MicroTime(now)),
                ..Default::default()
            }),
        }
    }

    /// Gives the lease up if this replica holds it, so another replica takes over at its
    /// next round instead of waiting for the lease to expire (on shutdown).
    pub async fn release(&self) -> Result<bool, kube::Error> {
        let Some(mut lease) = self.api.get_opt(&self.name).await? else { return Ok(false) };
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return Ok(false);
        }
        spec.holder_identity = None;
        self.api.replace(&self.name, &PostParams::default(), &lease).await?;
        Ok(true)
    }

    /// Runs forever, publishing leadership on `leading`. Leadership is dropped as soon as
    /// a renewal fails, before the lease could expire and another replica take over.
    pub async fn run(self: std::sync::Arc<Self>, leading: watch::Sender<bool>) {
        loop {
            let leads = match tokio::time::timeout(ROUND_DEADLINE, self.try_lead(Timestamp::now())).await {
                Ok(Ok(leads)) => leads,
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "leader election round failed; not leading");
                    false
                }
                Err(_) => {
                    tracing::warn!(deadline = ?ROUND_DEADLINE, "leader election round did not finish in time; not leading");
                    false
                }
            };
            leading.send_if_modified(|current| std::mem::replace(current, leads) != leads);
            tokio::time::sleep(RENEW_INTERVAL).await;
        }
    }
}

impl LeaderElector {
    /// A lease without a holder is free; one with a holder is free once this replica has
    /// seen it unchanged for its whole duration.
    fn expired(&self, spec: &LeaseSpec) -> bool {
        let now = tokio::time::Instant::now();
        let seconds = spec.lease_duration_seconds.and_then(|s| u64::try_from(s).ok()).unwrap_or(LEASE_DURATION.as_secs());
        let current = Observed {
            holder: spec.holder_identity.clone(),
            renew_time: spec.renew_time.clone(),
            lease_duration: Duration::from_secs(seconds),
            seen_at: now,
        };
        let mut observed = self.observed.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let unchanged = observed.as_ref().is_some_and(|o| o.holder == current.holder && o.renew_time == current.renew_time);
        if !unchanged {
            *observed = Some(current.clone());
        }
        let since = observed.as_ref().map_or(now, |o| o.seen_at);
        current.holder.is_none() || now.duration_since(since) >= current.lease_duration
    }
}

#[cfg(test)]
mod tests;
