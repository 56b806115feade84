//! What changed from one published snapshot to the next, so a proxy that holds the first
//! builds the second from it instead of downloading and decoding the whole snapshot again
//! (29 MiB of JSON at 100,000 routes for a change of one route; docs/benchmarks.md).
//!
//! Each list of the snapshot is edited as one run: the items the two lists share at
//! their front and at their back are kept, and what lies between is sent. Compile's output
//! is ordered and deterministic, so adding, changing or removing one resource is one short
//! run; changes spread over a list send everything between the first and the last of
//! them, which is still correct, only larger. An edit names the length of the list it
//! was made from, and a delta the version it was made from: applied to anything else it
//! is refused, never guessed at.

use serde::{Deserialize, Serialize};

use super::Snapshot;

/// The content type of a [`DeltaChain`] on the snapshot channel.
pub const CONTENT_TYPE: &str = "application/vnd.switchyard.snapshot-delta+json";

/// One list's change: keep `front` items of the base's front and `back` of its back, and
/// put `middle` between them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Edit<T> {
    /// The length of the list this edit was made from.
    pub base_len: usize,
    pub front: usize,
    pub back: usize,
    pub middle: Vec<T>,
}

impl<T: PartialEq + Clone> Edit<T> {
    /// The edit from `old` to `new`; `None` when they are equal.
    pub fn between(old: &[T], new: &[T]) -> Option<Self> {
        let front = old.iter().zip(new).take_while(|(a, b)| a == b).count();
        if front == old.len() && front == new.len() {
            return None;
        }
        // The back run may not reach into the front one (for "a a" -> "a", front is 1).
        let room = old.len().min(new.len()) - front;
        let back = old.iter().rev().zip(new.iter().rev()).take(room).take_while(|(a, b)| a == b).count();
        Some(Self { base_len: old.len(), front, back, middle: new[front..new.len() - back].to_vec() })
    }

    /// `base` with this edit made, or why it is not the list the edit was made from.
    pub fn apply(&self, base: &[T]) -> Result<Vec<T>, String> {
        if base.len() != self.base_len || self.front.saturating_add(self.back) > self.base_len {
            return Err(format!(
                "an edit of a list of {} items (keeping {} + {}) does not fit a list of {}",
                self.base_len,
                self.front,
                self.back,
                base.len()
            ));
        }
        let mut list = Vec::with_capacity(self.front + self.middle.len() + self.back);
        list.extend_from_slice(&base[..self.front]);
        list.extend_from_slice(&self.middle);
        list.extend_from_slice(&base[base.len() - self.back..]);
        Ok(list)
    }

    /// How many items it carries.
    pub fn carried(&self) -> usize {
        self.middle.len()
    }
}

/// `edit` applied to `base`, or `base` as it is when the list did not change.
fn edited<T: PartialEq + Clone>(edit: &Option<Edit<T>>, base: &[T], list: &str) -> Result<Vec<T>, String> {
    match edit {
        Some(edit) => edit.apply(base).map_err(|e| format!("{list}: {e}")),
        None => Ok(base.to_vec()),
    }
}

/// The change from the snapshot numbered `base` to the one numbered `version`, one
/// [`Edit`] per list that changed (an absent list is unchanged).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SnapshotDelta {
    pub base: u64,
    pub version: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routes: Option<Edit<super::Route>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backends: Option<Edit<super::Backend>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub apps: Option<Edit<super::App>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns_records: Option<Edit<super::DnsEntry>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vpc_authorizations: Option<Edit<super::VpcGrant>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_owners: Option<Edit<super::HostOwner>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificates: Option<Edit<super::ServerCertificate>>,
}

impl SnapshotDelta {
    /// The delta from `old` to `new` (numbered with their versions); `None` when their
    /// content is the same.
    pub fn between(old: &Snapshot, new: &Snapshot) -> Option<Self> {
        // Destructured without `..`: a list added to the snapshot must be added here too.
        let Snapshot { version, routes, backends, apps, dns_records, vpc_authorizations, host_owners, certificates } = new;
        let delta = Self {
            base: old.version,
            version: *version,
            routes: Edit::between(&old.routes, routes),
            backends: Edit::between(&old.backends, backends),
            apps: Edit::between(&old.apps, apps),
            dns_records: Edit::between(&old.dns_records, dns_records),
            vpc_authorizations: Edit::between(&old.vpc_authorizations, vpc_authorizations),
            host_owners: Edit::between(&old.host_owners, host_owners),
            certificates: Edit::between(&old.certificates, certificates),
        };
        (delta.carried().is_some()).then_some(delta)
    }

    /// The snapshot this delta leads to from `base`, held as version `held` (a proxy
    /// moves its version on without a rebuild when a snapshot's content is the one it
    /// serves), which must be the version it was made from, with the lists it was made from.
    pub fn apply(&self, held: u64, base: &Snapshot) -> Result<Snapshot, String> {
        if held != self.base {
            return Err(format!("a delta from version {} does not apply to version {held}", self.base));
        }
        Ok(Snapshot {
            version: self.version,
            routes: edited(&self.routes, &base.routes, "routes")?,
            backends: edited(&self.backends, &base.backends, "backends")?,
            apps: edited(&self.apps, &base.apps, "apps")?,
            dns_records: edited(&self.dns_records, &base.dns_records, "dnsRecords")?,
            vpc_authorizations: edited(&self.vpc_authorizations, &base.vpc_authorizations, "vpcAuthorizations")?,
            host_owners: edited(&self.host_owners, &base.host_owners, "hostOwners")?,
            certificates: edited(&self.certificates, &base.certificates, "certificates")?,
        })
    }

    /// How many items the delta carries, over all lists; `None` when no list changed.
    pub fn carried(&self) -> Option<usize> {
        let counts = [
            self.routes.as_ref().map(Edit::carried),
            self.backends.as_ref().map(Edit::carried),
            self.apps.as_ref().map(Edit::carried),
            self.dns_records.as_ref().map(Edit::carried),
            self.vpc_authorizations.as_ref().map(Edit::carried),
            self.host_owners.as_ref().map(Edit::carried),
            self.certificates.as_ref().map(Edit::carried),
        ];
        counts.into_iter().flatten().reduce(|a, b| a + b)
    }
}

/// What the snapshot server sends a proxy that holds a recent version of its stream: the
/// deltas from that version to the newest, in order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeltaChain {
    /// The publisher's stream (one per controller process): version numbers mean the
    /// same content only within one stream.
    pub stream: String,
    pub steps: Vec<SnapshotDelta>,
}

impl DeltaChain {
    /// The newest snapshot, built step by step from `base` held as version `held`.
    pub fn apply(&self, held: u64, base: &Snapshot) -> Result<Snapshot, String> {
        let (first, rest) = self.steps.split_first().ok_or("a delta chain with no steps")?;
        rest.iter().try_fold(first.apply(held, base)?, |snapshot, step| step.apply(snapshot.version, &snapshot))
    }

    /// The version the chain leads to.
    pub fn version(&self) -> Option<u64> {
        self.steps.last().map(|s| s.version)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::{Auth, Backend, BackendKind, HostRule, PathKind, Protocols, Route, RouteBackend};

    fn route(id: &str, path: &str) -> Route {
        Route {
            id: id.into(),
            hosts: vec![],
            path: path.into(),
            path_type: PathKind::Exact,
            methods: vec![],
            headers: vec![],
            query_params: vec![],
            backends: vec![RouteBackend { backend: 0, weight: 1, host: HostRule::Client }],
            rewrite_path: None,
            add_headers: vec![],
            add_query: vec![],
            auth: Auth::Anonymous,
            timeout_ms: None,
            retries: None,
            body_limit: 1024,
            protocols: Protocols::Both,
        }
    }

    fn snapshot(version: u64, routes: &[(&str, &str)]) -> Snapshot {
        Snapshot {
            version,
            routes: routes.iter().map(|(id, path)| route(id, path)).collect(),
            backends: vec![Backend::with_defaults("d/b", BackendKind::Mock { status: 200, headers: vec![], body: "ok".into() })],
            ..Snapshot::default()
        }
    }

    /// Every pair of lists over a small alphabet, up to four items each: the edit from one
    /// to the other rebuilds the second exactly, carries only what lies between the runs
    /// they share, and is refused by a list of another length.
    #[test]
    fn an_edit_rebuilds_every_list_from_every_other() {
        let lists: Vec<Vec<u8>> =
            (0..=4u32).flat_map(|len| (0..3u32.pow(len)).map(move |n| (0..len).map(|i| (n / 3u32.pow(i) % 3) as u8).collect())).collect();
        for old in &lists {
            for new in &lists {
                match Edit::between(old, new) {
                    None => assert_eq!(old, new),
                    Some(edit) => {
                        assert_ne!(old, new);
                        assert_eq!(&edit.apply(old).unwrap(), new, "{old:?} -> {new:?} by {edit:?}");
                        assert!(edit.carried() <= new.len());
                        assert!(edit.front + edit.back <= old.len().min(new.len()));
                        let other = vec![0u8; old.len() + 1];
                        assert!(edit.apply(&other).is_err(), "{edit:?} applied to a list of another length");
                    }
                }
            }
        }
    }

    #[test]
    fn one_added_route_in_many_carries_that_route_only() {
        let before: Vec<(String, String)> = (0..1000).map(|i| (format!("ns/r{i}"), format!("/r{i}"))).collect();
        let mut after = before.clone();
        after.insert(500, ("ns/new".into(), "/new".into()));
        fn refs(v: &[(String, String)]) -> Vec<(&str, &str)> {
            v.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect()
        }
        let old = snapshot(7, &refs(&before));
        let new = snapshot(8, &refs(&after));
        let delta = SnapshotDelta::between(&old, &new).unwrap();
        assert_eq!(delta.carried(), Some(1));
        assert!(delta.backends.is_none(), "the unchanged backends are not sent");
        assert_eq!(delta.apply(7, &old).unwrap(), new);
        // The wire form round-trips and stays small.
        let json = serde_json::to_vec(&delta).unwrap();
        assert!(json.len() < 400, "{} bytes for one route", json.len());
        assert_eq!(serde_json::from_slice::<SnapshotDelta>(&json).unwrap(), delta);
    }

    #[test]
    fn a_delta_applies_only_to_the_version_and_lists_it_was_made_from() {
        let v1 = snapshot(1, &[("ns/a", "/a")]);
        let v2 = snapshot(2, &[("ns/a", "/a"), ("ns/b", "/b")]);
        assert!(SnapshotDelta::between(&v1, &snapshot(2, &[("ns/a", "/a")])).is_none(), "same content, no delta");
        let delta = SnapshotDelta::between(&v1, &v2).unwrap();
        let err = delta.apply(2, &v1).unwrap_err();
        assert!(err.contains("from version 1 does not apply to version 2"), "{err}");
        // Held as version 1 with the content another snapshot numbered 1 had.
        let err = delta.apply(1, &snapshot(1, &[])).unwrap_err();
        assert!(err.starts_with("routes: an edit of a list of 1 items"), "{err}");
    }

    #[test]
    fn a_chain_applies_its_steps_in_order() {
        let v1 = snapshot(1, &[("ns/a", "/a")]);
        let v2 = snapshot(2, &[("ns/a", "/a"), ("ns/b", "/b")]);
        let v3 = snapshot(3, &[("ns/b", "/b2")]);
        let steps = vec![SnapshotDelta::between(&v1, &v2).unwrap(), SnapshotDelta::between(&v2, &v3).unwrap()];
        let chain = DeltaChain { stream: "s".into(), steps };
        assert_eq!(chain.apply(1, &v1).unwrap(), v3);
        assert_eq!(chain.version(), Some(3));
        assert!(chain.apply(2, &v2).is_err(), "the chain starts at version 1");
        assert!(DeltaChain { stream: "s".into(), steps: vec![] }.apply(1, &v1).is_err());
    }
}
