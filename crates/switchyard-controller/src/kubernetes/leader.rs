//! Leader election on a `coordination.k8s.io` Lease. Every replica compiles and serves
//! snapshots (so proxies keep working through a failover); only the leader writes status
//! and runs probes.
//!
//! Mutual exclusion comes from the API server's optimistic concurrency: a replica takes
//! or renews the lease with a `replace` carrying the `resourceVersion` it read, so of two
//! replicas racing for an expired lease exactly one succeeds (the other gets 409).

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, PostParams};
use tokio::sync::watch;

/// How long a lease stays valid without renewal.
pub const LEASE_DURATION: Duration = Duration::from_secs(15);
/// How often the holder renews (and others retry).
pub const RENEW_INTERVAL: Duration = Duration::from_secs(5);

pub struct LeaderElector {
    api: Api<Lease>,
    name: String,
    identity: String,
}

impl LeaderElector {
    pub fn new(api: Api<Lease>, name: &str, identity: &str) -> Self {
        Self { api, name: name.to_owned(), identity: identity.to_owned() }
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
        if !mine && !expired(&spec, now) {
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
            let leads = match self.try_lead(Timestamp::now()).await {
                Ok(leads) => leads,
                Err(e) => {
                    tracing::warn!(error = %e, "leader election round failed; not leading");
                    false
                }
            };
            leading.send_if_modified(|current| std::mem::replace(current, leads) != leads);
            tokio::time::sleep(RENEW_INTERVAL).await;
        }
    }
}

/// A lease without a holder, or not renewed within its duration, is free.
fn expired(spec: &LeaseSpec, now: Timestamp) -> bool {
    let Some(renewed) = spec.renew_time.as_ref() else { return true };
    let seconds = i64::from(spec.lease_duration_seconds.unwrap_or(LEASE_DURATION.as_secs() as i32));
    spec.holder_identity.is_none() || renewed.0 + SignedDuration::from_secs(seconds) < now
}

#[cfg(test)]
mod tests;
