//! BackendServices: the fields every kind shares here, each kind's own compile step in a
//! module of its own behind [`KindCompiler`].

mod data_service;
mod event_bus;
mod function;
mod gateway;
mod http;
mod mock;
mod model;
mod policy;
mod registry;
mod vpc;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use switchyard_api::condition_type::{READY, RESOLVED_REFS};
use switchyard_api::{BackendService, BackendServiceSpec};

use super::{ByName, Rejection, accept, name, namespace, reject, status_for, tls};
use crate::snapshot::{Backend, BackendKind, DialGrant, TlsTrust, UpstreamVersion, VpcGrant};
use crate::{ConditionSpec, ResourceKind, ResourceStatus, Resources, reason, validate};
pub(crate) use data_service::database_source;
#[cfg(feature = "fuzzing")]
pub use data_service::fuzz_compile_query;
pub(crate) use event_bus::bus_source;
pub(crate) use policy::retry_policy;
use policy::{CommonPolicy, common_policy};
pub use registry::{describe as describe_registry, registry_source};

/// What routes need to know about each BackendService, accepted or not.
pub(super) struct BackendTable {
    /// Namespace -> name -> entry, so that a lookup by borrowed names allocates nothing.
    entries: BTreeMap<String, BTreeMap<String, BackendEntry>>,
    list: Vec<Backend>,
}

pub(super) struct BackendEntry {
    /// Index into the snapshot's backends; None when the backend is not usable.
    pub index: Option<usize>,
    /// Why it is not usable.
    pub unusable: Option<String>,
    pub allowed_route_namespaces: Vec<String>,
    /// Host priority 2: the backend's `hostHeader` (http and vpc kinds).
    pub host_header: Option<String>,
    /// Host priority 3: the VpcAuthorization's `hostName` (vpc kind).
    pub authorization_host: Option<String>,
    /// The egress exception a vpc backend's authorization gives it.
    pub dial_grant: Option<DialGrant>,
    /// How its `https` endpoints are verified, when it has any.
    pub tls: Option<TlsTrust>,
    /// HTTP/1 or HTTP/2 towards the endpoints (`protocol` of http, vpc, registry).
    pub upstream_version: UpstreamVersion,
}

impl BackendTable {
    pub fn get(&self, namespace: &str, name: &str) -> Option<&BackendEntry> {
        self.entries.get(namespace)?.get(name)
    }

    pub fn into_snapshot_backends(self) -> Vec<Backend> {
        self.list
    }
}

/// The kinds a BackendService can set, with whether this one sets them.
fn kinds_set(spec: &BackendServiceSpec) -> Vec<&'static str> {
    let all = [
        ("http", spec.http.is_some()),
        ("vpc", spec.vpc.is_some()),
        ("function", spec.function.is_some()),
        ("mock", spec.mock.is_some()),
        ("dataService", spec.data_service.is_some()),
        ("model", spec.model.is_some()),
        ("eventBus", spec.event_bus.is_some()),
        ("registry", spec.registry.is_some()),
        ("gateway", spec.gateway.is_some()),
    ];
    all.iter().filter(|(_, set)| *set).map(|(kind, _)| *kind).collect()
}

pub(super) fn compile_all(resources: &Resources, grants: &ByName<VpcGrant>, statuses: &mut Vec<ResourceStatus>) -> BackendTable {
    let mut sorted: Vec<&BackendService> = resources.backend_services.iter().collect();
    sorted.sort_by_key(|b| (namespace(&b.metadata), name(&b.metadata)));
    let mut table = BackendTable { entries: BTreeMap::new(), list: Vec::new() };
    for backend in sorted {
        let mut status = status_for(ResourceKind::BackendService, &backend.metadata, true);
        let entry = compile_one(backend, resources, grants, &mut status, &mut table.list);
        let ns = namespace(&backend.metadata);
        if !table.entries.contains_key(ns) {
            table.entries.insert(ns.to_owned(), BTreeMap::new());
        }
        let names = table.entries.get_mut(ns).expect("inserted above");
        // A name given twice: the later one wins, as it always has.
        names.insert(name(&backend.metadata).to_owned(), entry);
        statuses.push(status);
    }
    table
}

fn compile_one(
    backend: &BackendService,
    resources: &Resources,
    grants: &ByName<VpcGrant>,
    status: &mut ResourceStatus,
    list: &mut Vec<Backend>,
) -> BackendEntry {
    let spec = &backend.spec;
    let ns = namespace(&backend.metadata);
    let mut entry = BackendEntry {
        index: None,
        unusable: None,
        allowed_route_namespaces: spec.allowed_route_namespaces.clone(),
        host_header: None,
        authorization_host: None,
        dial_grant: None,
        tls: None,
        upstream_version: UpstreamVersion::Http1,
    };
    let ctx = KindContext { ns, name: name(&backend.metadata), resources, grants };
    let compiled = kind_of(spec)
        .inspect(|kind| status.backend_kind = Some((*kind).to_owned()))
        .and_then(|kind| common_policy(spec).map(|policy| (kind, policy)))
        .and_then(|(kind, policy)| compile_kind(kind, spec, &ctx, &mut entry).map(|k| (k, policy)));
    let id = format!("{ns}/{}", name(&backend.metadata));
    let compiled = compiled.and_then(|(resolved, policy)| probes_fit(&policy, entry.upstream_version).map(|()| (resolved, policy)));
    let (resolved, policy) = match compiled {
        Ok(compiled) => compiled,
        Err(why) => {
            entry.unusable = Some(format!("it is not accepted: {}", why.message));
            reject(status, why);
            return entry;
        }
    };
    accept(status);
    entry.index = Some(list.len());
    let (kind, endpoints, ready) = match resolved {
        Resolved::ReadyWith(kind, endpoints, ready) => (kind, endpoints, ready),
        Resolved::Ready(kind, endpoints) => {
            let ready = ready_condition(&kind, endpoints);
            (kind, endpoints, ready)
        }
        Resolved::Unresolved(why) => {
            status.set(ConditionSpec::new(RESOLVED_REFS, false, why.reason, why.message.clone()));
            status.set(ConditionSpec::new(READY, false, reason::REFS_NOT_RESOLVED, "references are not resolved"));
            let kind = BackendKind::Unavailable { reason: why.reason.to_owned(), message: why.message };
            list.push(Backend { timeout_ms: policy.timeout_ms, retries: policy.retries, ..Backend::with_defaults(id, kind) });
            return entry;
        }
    };
    status.set(ConditionSpec::new(RESOLVED_REFS, true, reason::RESOLVED_REFS, "all references resolved"));
    status.endpoints = Some(endpoints);
    status.set(ready);
    let CommonPolicy { timeout_ms, retries, load_balancer, outlier, active_health, max_requests } = policy;
    let timeout_ms = timeout_ms.or_else(|| default_timeout_ms(&kind));
    let (dial_grant, tls, upstream_version) = (entry.dial_grant.clone(), entry.tls.clone(), entry.upstream_version);
    list.push(Backend {
        id,
        kind,
        timeout_ms,
        retries,
        load_balancer,
        dial_grant,
        outlier,
        active_health,
        tls,
        upstream_version,
        max_requests,
    });
    entry
}

/// Active checks with a `path` send an HTTP/1.1 `GET`, which an HTTP/2-only backend (a
/// gRPC server) cannot answer: they would take every endpoint out of rotation.
fn probes_fit(policy: &CommonPolicy, version: UpstreamVersion) -> Result<(), Rejection> {
    if version == UpstreamVersion::Http2 && policy.active_health.as_ref().is_some_and(|h| h.path.is_some()) {
        return Err(Rejection::new(
            reason::INVALID_SPEC,
            "healthCheck.active.path: path probes speak HTTP/1.1; a backend with protocol H2C or H2 takes TCP checks (no path)",
        ));
    }
    Ok(())
}

/// A kind's time for one attempt when `timeout` is not set, if it differs from the
/// gateway's default (a model may take minutes to its first token).
fn default_timeout_ms(kind: &BackendKind) -> Option<u64> {
    matches!(kind, BackendKind::Model { .. }).then_some(model::DEFAULT_MODEL_TIMEOUT_MS)
}

/// `Ready` for kinds whose endpoints say it all.
fn ready_condition(kind: &BackendKind, endpoints: u32) -> ConditionSpec {
    match kind {
        BackendKind::Unimplemented { kind } => ConditionSpec::new(
            READY,
            false,
            reason::NOT_IMPLEMENTED,
            format!("the {kind} backend kind is not implemented in this build; requests answer 501"),
        ),
        // A mock has no endpoints to count: the gateway itself answers.
        BackendKind::Mock { status, .. } => ConditionSpec::new(
            READY,
            true,
            reason::READY,
            format!("mock backend; the gateway answers every request itself with status {status}"),
        ),
        _ if endpoints == 0 => ConditionSpec::new(READY, false, reason::NO_ENDPOINTS, "no endpoints are known"),
        _ => ConditionSpec::new(READY, true, reason::READY, format!("{endpoints} endpoint(s)")),
    }
}

fn kind_of(spec: &BackendServiceSpec) -> Result<&'static str, Rejection> {
    match kinds_set(spec).as_slice() {
        [one] => Ok(one),
        [] => Err(Rejection::new(
            reason::INVALID_KIND,
            "no backend kind is set: set exactly one of http, vpc, function, mock, dataService, model, eventBus, registry, gateway",
        )),
        many => Err(Rejection::new(
            reason::INVALID_KIND,
            format!("{} backend kinds are set ({}): set exactly one", many.len(), many.join(", ")),
        )),
    }
}

/// A kind that compiled: either usable (with its endpoint count) or waiting on a reference.
pub(super) enum Resolved {
    Ready(BackendKind, u32),
    /// Usable, with a `Ready` condition of the kind's own (a registry says whether the
    /// registry answers and what it skipped).
    ReadyWith(BackendKind, u32, ConditionSpec),
    Unresolved(Rejection),
}

/// What a kind's compile step may read besides its own spec.
pub(super) struct KindContext<'a> {
    /// The BackendService's namespace and name.
    pub ns: &'a str,
    pub name: &'a str,
    pub resources: &'a Resources,
    pub grants: &'a ByName<VpcGrant>,
}

/// One backend kind's compile step: its spec in, endpoints (or why not yet) out. It may
/// also fill in what routes need from it (`entry`).
pub(super) trait KindCompiler {
    fn compile(&self, cx: &KindContext<'_>, entry: &mut BackendEntry) -> Result<Resolved, Rejection>;
}

/// Runs the compile step of the one kind `kind_of` found.
fn compile_kind(kind: &str, spec: &BackendServiceSpec, cx: &KindContext<'_>, entry: &mut BackendEntry) -> Result<Resolved, Rejection> {
    let compiler: Option<&dyn KindCompiler> = match kind {
        "http" => spec.http.as_ref().map(|k| k as _),
        "vpc" => spec.vpc.as_ref().map(|k| k as _),
        "mock" => spec.mock.as_ref().map(|k| k as _),
        "function" => spec.function.as_ref().map(|k| k as _),
        "model" => spec.model.as_ref().map(|k| k as _),
        "eventBus" => spec.event_bus.as_ref().map(|k| k as _),
        "dataService" => spec.data_service.as_ref().map(|k| k as _),
        "registry" => spec.registry.as_ref().map(|k| k as _),
        "gateway" => spec.gateway.as_ref().map(|k| k as _),
        other => return Ok(Resolved::Ready(BackendKind::Unimplemented { kind: other.to_owned() }, 0)),
    };
    compiler.expect("kind_of found this kind set").compile(cx, entry)
}

/// The backend's TLS trust when one of its endpoints is `https` (checked even when none
/// is yet, so a bad bundle is reported before the first endpoint appears).
fn tls_trust_if_needed(
    resolved: &Resolved,
    options: Option<&switchyard_api::TlsOptions>,
    field: &str,
) -> Result<Option<TlsTrust>, Rejection> {
    let trust = tls::trust(options, field)?;
    let any_https = match resolved {
        Resolved::Ready(kind, _) | Resolved::ReadyWith(kind, ..) => kind.endpoints().iter().any(|e| e.scheme == "https"),
        Resolved::Unresolved(_) => false,
    };
    Ok(any_https.then_some(trust))
}

/// The HTTP version `protocol` asks for, checked against the endpoints' schemes: `H2C`
/// is HTTP/2 in clear text, so every endpoint must be `http`; `H2` is HTTP/2 negotiated
/// in the TLS handshake, so every endpoint must be `https`.
fn upstream_version(protocol: switchyard_api::UpstreamProtocol, resolved: &Resolved, field: &str) -> Result<UpstreamVersion, Rejection> {
    use switchyard_api::UpstreamProtocol;
    let wanted = match protocol {
        UpstreamProtocol::HTTP1 => return Ok(UpstreamVersion::Http1),
        UpstreamProtocol::H2C => "http",
        UpstreamProtocol::H2 => "https",
    };
    let endpoints = match resolved {
        Resolved::Ready(kind, _) | Resolved::ReadyWith(kind, ..) => kind.endpoints(),
        Resolved::Unresolved(_) => &[],
    };
    if let Some(other) = endpoints.iter().find(|e| e.scheme != wanted) {
        let hint = if wanted == "http" { "H2 is HTTP/2 over TLS" } else { "H2C is HTTP/2 without TLS" };
        return Err(Rejection::new(
            reason::INVALID_SPEC,
            format!("{field}: {protocol:?} needs {wanted} endpoints, but {} is {} ({hint})", other.authority, other.scheme),
        ));
    }
    Ok(UpstreamVersion::Http2)
}

fn checked_host_header(value: Option<&String>) -> Result<Option<String>, Rejection> {
    if let Some(host) = value {
        validate::no_line_break("hostHeader", host)
            .and_then(|()| validate::host_header(host).map_err(|e| format!("hostHeader: {e}")))
            .map_err(|e| Rejection::new(reason::INVALID_HOST, e))?;
    }
    Ok(value.cloned())
}
