//! `compile(&Resources) -> Compiled`: resources in, snapshot and statuses out.
//!
//! Order matters only through references: authorizations and DNS records first (backends
//! refer to authorizations), then backends, then routes (routes refer to backends and
//! apps). Each step records one status per object and keeps only what is valid, so a bad
//! object never takes a good one down with it.

mod backends;
mod certificates;
mod dns;
mod ownership;
mod routes;
mod secrets;
mod tls;
mod vpc;

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use switchyard_api::condition_type::ACCEPTED;

#[cfg(feature = "fuzzing")]
pub use backends::fuzz_compile_query;
pub(crate) use backends::{bus_source, database_source};
pub use backends::{describe_registry, registry_source};
pub use certificates::TLS_SECRET_TYPE;

use crate::snapshot::{App, Snapshot};
use crate::{ConditionSpec, ObjectRef, ResourceKind, ResourceStatus, Resources, reason};

/// The result of one compile.
#[derive(Clone, Debug, PartialEq)]
pub struct Compiled {
    /// Version 0; the publisher numbers it.
    pub snapshot: Snapshot,
    /// One per object, sorted by kind, namespace, name.
    pub statuses: Vec<ResourceStatus>,
}

impl Compiled {
    pub fn status(&self, kind: ResourceKind, namespace: Option<&str>, name: &str) -> Option<&ResourceStatus> {
        self.statuses.iter().find(|s| s.object == ObjectRef::new(kind, namespace, name))
    }
}

/// Compiles the whole set of resources. Pure: no I/O, no clock.
pub fn compile(resources: &Resources) -> Compiled {
    let mut statuses: Vec<ResourceStatus> = resources.invalid.iter().map(invalid_status).collect();
    let mut grants = vpc::compile_all(&resources.vpc_authorizations, &resources.connectivity, resources.options, &mut statuses);
    let dns_records = dns::compile_all(&resources.dns_records, &mut statuses);
    vpc::pin_to_dns_records(&mut grants, &dns_records, resources.options);
    let backends = backends::compile_all(resources, &grants, &mut statuses);
    let apps = apps(resources);
    let (routes, host_owners) =
        routes::compile_all(&resources.api_routes, &backends, &apps, resources.options.host_ownership, &mut statuses);
    let certificates = certificates::compile_all(resources, &host_owners, &mut statuses);
    statuses.sort_by(|a, b| a.object.cmp(&b.object));
    let snapshot = Snapshot {
        version: 0,
        routes,
        backends: backends.into_snapshot_backends(),
        apps,
        dns_records,
        vpc_authorizations: grants.into_values().collect(),
        host_owners,
        certificates,
    };
    Compiled { snapshot, statuses }
}

fn invalid_status(invalid: &crate::InvalidObject) -> ResourceStatus {
    let mut status = ResourceStatus::new(invalid.object.clone(), invalid.generation);
    status.set(ConditionSpec::new(ACCEPTED, false, invalid.reason, invalid.message.clone()));
    status
}

fn apps(resources: &Resources) -> Vec<App> {
    let mut apps: Vec<App> = resources
        .apps
        .iter()
        .map(|a| App {
            namespace: a.namespace.clone(),
            name: a.name.clone(),
            app_key: a.app_key.clone(),
            app_secret: a.app_secret.clone(),
            app_code: a.app_code.clone(),
        })
        .collect();
    apps.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    apps
}

/// The namespace of an object; standalone manifests may leave it out.
pub(crate) fn namespace(meta: &ObjectMeta) -> &str {
    meta.namespace.as_deref().unwrap_or("default")
}

pub(crate) fn name(meta: &ObjectMeta) -> &str {
    meta.name.as_deref().unwrap_or("")
}

/// Age order: oldest creationTimestamp first, then namespace and name, so conflicts
/// resolve the same way on every replica and every run.
pub(crate) fn age_key(meta: &ObjectMeta) -> (Option<&Time>, &str, &str) {
    (meta.creation_timestamp.as_ref(), namespace(meta), name(meta))
}

pub(crate) fn status_for(kind: ResourceKind, meta: &ObjectMeta, namespaced: bool) -> ResourceStatus {
    let ns = namespaced.then(|| namespace(meta));
    ResourceStatus::new(ObjectRef::new(kind, ns, name(meta)), meta.generation)
}

/// `Accepted=False` with a reason.
pub(crate) fn reject(status: &mut ResourceStatus, why: Rejection) {
    status.set(ConditionSpec::new(ACCEPTED, false, why.reason, why.message));
}

pub(crate) fn accept(status: &mut ResourceStatus) {
    status.set(ConditionSpec::new(ACCEPTED, true, reason::ACCEPTED, "the resource is valid"));
}

/// Why an object was not accepted.
#[derive(Debug)]
pub(crate) struct Rejection {
    pub reason: &'static str,
    pub message: String,
}

impl Rejection {
    pub fn new(reason: &'static str, message: impl Into<String>) -> Self {
        Self { reason, message: message.into() }
    }
}

/// Keys `(namespace, name)` to a value; the shape every reference lookup uses.
pub(crate) type ByName<T> = BTreeMap<(String, String), T>;

/// Converts a duration field to milliseconds.
pub(crate) fn duration_ms(field: &str, value: Option<&String>) -> Result<Option<u64>, Rejection> {
    value
        .map(|v| crate::units::parse_duration(v).map(|d| d.as_millis() as u64))
        .transpose()
        .map_err(|e| Rejection::new(reason::INVALID_DURATION, format!("{field}: {e}")))
}
