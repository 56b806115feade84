use std::net::IpAddr;

use switchyard_api::condition_type::{READY, RESOLVED_REFS};
use switchyard_api::{
    BackendService, BackendServiceSpec, HttpBackend, LoadBalancing, LoadBalancingPolicy, MockBackend, PassiveHealthCheck, Retries, RetryOn,
};

use super::{ByName, Rejection, accept, duration_ms, name, namespace, reject, status_for, tls};
use crate::snapshot::{
    ActiveHealthPolicy, Backend, BackendKind, DialGrant, Endpoint, HashKey, LoadBalancer, OutlierPolicy, RetryPolicy, TlsTrust, VpcGrant,
    VpcGrantTarget,
};
use crate::{ConditionSpec, ResourceKind, ResourceStatus, Resources, reason, validate};

/// Mock bodies are served from memory on every request: keep them small.
const MAX_MOCK_BODY: usize = 50 * 1024;

/// What routes need to know about each BackendService, accepted or not.
pub(super) struct BackendTable {
    entries: ByName<BackendEntry>,
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
}

impl BackendTable {
    pub fn get(&self, namespace: &str, name: &str) -> Option<&BackendEntry> {
        self.entries.get(&(namespace.to_owned(), name.to_owned()))
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
    let mut table = BackendTable { entries: ByName::new(), list: Vec::new() };
    for backend in sorted {
        let mut status = status_for(ResourceKind::BackendService, &backend.metadata, true);
        let entry = compile_one(backend, resources, grants, &mut status, &mut table.list);
        let key = (namespace(&backend.metadata).to_owned(), name(&backend.metadata).to_owned());
        table.entries.insert(key, entry);
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
    };
    let compiled = kind_of(spec)
        .inspect(|kind| status.backend_kind = Some((*kind).to_owned()))
        .and_then(|kind| common_policy(spec).map(|policy| (kind, policy)))
        .and_then(|(kind, policy)| compile_kind(kind, spec, ns, resources, grants, &mut entry).map(|k| (k, policy)));
    match compiled {
        Ok((Resolved::Ready(kind, endpoints), CommonPolicy { timeout_ms, retries, load_balancer, outlier, active_health })) => {
            accept(status);
            status.set(ConditionSpec::new(RESOLVED_REFS, true, reason::RESOLVED_REFS, "all references resolved"));
            set_ready(status, &kind, endpoints);
            entry.index = Some(list.len());
            let id = format!("{ns}/{}", name(&backend.metadata));
            let (dial_grant, tls) = (entry.dial_grant.clone(), entry.tls.clone());
            list.push(Backend { id, kind, timeout_ms, retries, load_balancer, dial_grant, outlier, active_health, tls });
        }
        Ok((Resolved::Unresolved(why), policy)) => {
            accept(status);
            status.set(ConditionSpec::new(RESOLVED_REFS, false, why.reason, why.message.clone()));
            status.set(ConditionSpec::new(READY, false, reason::REFS_NOT_RESOLVED, "references are not resolved"));
            let kind = BackendKind::Unavailable { reason: why.reason.to_owned(), message: why.message };
            entry.index = Some(list.len());
            let id = format!("{ns}/{}", name(&backend.metadata));
            let backend = Backend { timeout_ms: policy.timeout_ms, retries: policy.retries, ..Backend::with_defaults(id, kind) };
            list.push(backend);
        }
        Err(why) => {
            entry.unusable = Some(format!("it is not accepted: {}", why.message));
            reject(status, why);
        }
    }
    entry
}

fn set_ready(status: &mut ResourceStatus, kind: &BackendKind, endpoints: u32) {
    status.endpoints = Some(endpoints);
    let ready = match kind {
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
    };
    status.set(ready);
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

/// Timeout, retries and load balancing: the policy every kind shares.
struct CommonPolicy {
    timeout_ms: Option<u64>,
    retries: RetryPolicy,
    load_balancer: LoadBalancer,
    outlier: Option<OutlierPolicy>,
    active_health: Option<ActiveHealthPolicy>,
}

fn common_policy(spec: &BackendServiceSpec) -> Result<CommonPolicy, Rejection> {
    Ok(CommonPolicy {
        timeout_ms: duration_ms("timeout", spec.timeout.as_ref())?,
        retries: spec.retries.as_ref().map(retry_policy).transpose()?.unwrap_or_default(),
        load_balancer: spec.load_balancing.as_ref().map(load_balancer).transpose()?.unwrap_or_default(),
        outlier: spec.health_check.as_ref().and_then(|h| h.passive.as_ref()).map(outlier_policy).transpose()?,
        active_health: spec.health_check.as_ref().and_then(|h| h.active.as_ref()).map(active_health_policy).transpose()?,
    })
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
pub(super) fn retry_policy(retries: &Retries) -> Result<RetryPolicy, Rejection> {
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

/// A kind that compiled: either usable (with its endpoint count) or waiting on a reference.
enum Resolved {
    Ready(BackendKind, u32),
    Unresolved(Rejection),
}

fn compile_kind(
    kind: &str,
    spec: &BackendServiceSpec,
    ns: &str,
    resources: &Resources,
    grants: &ByName<VpcGrant>,
    entry: &mut BackendEntry,
) -> Result<Resolved, Rejection> {
    match kind {
        "http" => {
            let http = spec.http.as_ref().expect("kind_of said http");
            entry.host_header = checked_host_header(http.host_header.as_ref())?;
            let resolved = http_kind(http, ns, resources)?;
            entry.tls = tls_trust_if_needed(&resolved, http.tls.as_ref(), "http.tls")?;
            Ok(resolved)
        }
        "mock" => mock_kind(spec.mock.as_ref().expect("kind_of said mock")).map(|k| Resolved::Ready(k, 1)),
        "vpc" => {
            let vpc = spec.vpc.as_ref().expect("kind_of said vpc");
            entry.host_header = checked_host_header(vpc.host_header.as_ref())?;
            let key = (ns.to_owned(), vpc.authorization_ref.clone());
            let Some(grant) = grants.get(&key) else {
                return Ok(Resolved::Unresolved(Rejection::new(
                    reason::AUTHORIZATION_NOT_FOUND,
                    format!("VpcAuthorization {ns}/{} does not exist or is not accepted", vpc.authorization_ref),
                )));
            };
            if !grant.ports.contains(&vpc.port) {
                return Ok(Resolved::Unresolved(Rejection::new(
                    reason::REF_NOT_PERMITTED,
                    format!("port {} is not authorized by VpcAuthorization {} (ports {:?})", vpc.port, grant.id, grant.ports),
                )));
            }
            entry.authorization_host = grant.host_name.clone();
            let resolved = vpc_kind(vpc, grant, ns, resources, &mut entry.dial_grant)?;
            entry.tls = tls_trust_if_needed(&resolved, vpc.tls.as_ref(), "vpc.tls")?;
            Ok(resolved)
        }
        other => Ok(Resolved::Ready(BackendKind::Unimplemented { kind: other.to_owned() }, 0)),
    }
}

/// A vpc backend dials only what its authorization names: the address, the host (at
/// its verified addresses), or the Service's ready endpoints, on the backend's
/// (authorized) port. `dial_grant` gets those addresses, enforced again at dial time.
fn vpc_kind(
    vpc: &switchyard_api::VpcBackend,
    grant: &VpcGrant,
    ns: &str,
    resources: &Resources,
    dial_grant: &mut Option<DialGrant>,
) -> Result<Resolved, Rejection> {
    // The sockets dialled: the authorized port, or each Service endpoint's target port.
    let (sockets, bypass_egress): (Vec<(IpAddr, u16)>, bool) = match &grant.target {
        VpcGrantTarget::Address(ip) => (vec![(*ip, vpc.port)], true),
        VpcGrantTarget::Host(host) => {
            if grant.addresses.is_empty() {
                return Ok(Resolved::Unresolved(unverified_host(host, grant, ns, resources)));
            }
            (grant.addresses.iter().map(|ip| (*ip, vpc.port)).collect(), false)
        }
        VpcGrantTarget::Service(name) => {
            let Some(ready) = resources.service_endpoints.get(&(ns.to_owned(), name.clone())) else {
                return Ok(Resolved::Unresolved(Rejection::new(
                    reason::SERVICE_NOT_FOUND,
                    format!("Service {ns}/{name} named by VpcAuthorization {} is not known", grant.id),
                )));
            };
            (ready.iter().filter_map(|ep| ep.target(Some(vpc.port), None).map(|t| (ep.address, t))).collect(), false)
        }
    };
    let endpoints = match &grant.target {
        // One endpoint: the name, resolved at dial time (and checked against the grant).
        VpcGrantTarget::Host(host) => vec![Endpoint {
            scheme: "http".into(),
            authority: format!("{host}:{}", vpc.port),
            host: host_with_port(host, vpc.port, "http"),
            base_path: String::new(),
            tls_server_name: None,
            weight: 1,
        }],
        _ => sockets.iter().map(|(ip, port)| endpoint_for(*ip, *port)).collect(),
    };
    let mut addresses: Vec<IpAddr> = sockets.iter().map(|(ip, _)| *ip).collect();
    let mut ports: Vec<u16> = sockets.iter().map(|(_, port)| *port).collect();
    addresses.sort_unstable();
    addresses.dedup();
    ports.sort_unstable();
    ports.dedup();
    *dial_grant = Some(DialGrant { authorization: grant.id.clone(), addresses, ports, bypass_egress });
    let endpoints = if vpc.scheme == switchyard_api::Scheme::Https {
        // SNI: the backend's own setting, else the authorization's hostName, else the
        // target's name (a host, or the Service's DNS name); an address stays an address.
        let service_name = match &grant.target {
            VpcGrantTarget::Service(name) => Some(format!("{name}.{ns}.svc")),
            _ => None,
        };
        let sni = vpc.tls.as_ref().and_then(|t| t.sni.clone()).or_else(|| grant.host_name.clone()).or(service_name);
        endpoints.into_iter().map(|e| tls::secure(e, sni.as_deref())).collect::<Result<_, _>>()?
    } else {
        endpoints
    };
    let count = endpoints.len() as u32;
    Ok(Resolved::Ready(BackendKind::Http { endpoints }, count))
}

/// Why a host target is not usable yet: no connectivity test has resolved the name (or
/// the last one could not).
fn unverified_host(host: &str, grant: &VpcGrant, ns: &str, resources: &Resources) -> Rejection {
    let auth_name = grant.id.rsplit_once('/').map_or(grant.id.as_str(), |(_, n)| n);
    let why = match resources.connectivity.get(&(ns.to_owned(), auth_name.to_owned())) {
        Some(test) => format!("the last connectivity test resolved no address: {}", test.message),
        None => "no connectivity test has resolved it yet".to_owned(),
    };
    Rejection::new(reason::ADDRESSES_NOT_VERIFIED, format!("the addresses of {host} (VpcAuthorization {}) are not known: {why}", grant.id))
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
        Resolved::Ready(BackendKind::Http { endpoints }, _) => endpoints.iter().any(|e| e.scheme == "https"),
        _ => false,
    };
    Ok(any_https.then_some(trust))
}

fn checked_host_header(value: Option<&String>) -> Result<Option<String>, Rejection> {
    if let Some(host) = value {
        validate::no_line_break("hostHeader", host)
            .and_then(|()| validate::host_header(host).map_err(|e| format!("hostHeader: {e}")))
            .map_err(|e| Rejection::new(reason::INVALID_HOST, e))?;
    }
    Ok(value.cloned())
}

fn http_kind(http: &HttpBackend, ns: &str, resources: &Resources) -> Result<Resolved, Rejection> {
    if let Some(urls) = &http.urls {
        if http.service.is_some() {
            return Err(Rejection::new(reason::INVALID_SPEC, "http: set either urls or service, not both"));
        }
        if urls.is_empty() {
            return Err(Rejection::new(reason::INVALID_URL, "http.urls: list at least one URL"));
        }
        let sni = http.tls.as_ref().and_then(|t| t.sni.as_deref());
        let endpoints = urls
            .iter()
            .map(|u| parse_url(u).and_then(|e| if e.scheme == "https" { tls::secure(e, sni) } else { Ok(e) }))
            .collect::<Result<Vec<_>, _>>()?;
        let count = endpoints.len() as u32;
        return Ok(Resolved::Ready(BackendKind::Http { endpoints }, count));
    }
    let Some(service) = &http.service else {
        return Err(Rejection::new(reason::INVALID_SPEC, "http: set urls or service"));
    };
    let svc_ns = service.namespace.as_deref().unwrap_or(ns);
    let (port, port_name) = match (service.port, service.port_name.as_deref()) {
        (Some(_), Some(_)) => return Err(Rejection::new(reason::INVALID_SPEC, "http.service: set port or portName, not both")),
        (None, None) => return Err(Rejection::new(reason::INVALID_SPEC, "http.service: set port (number) or portName")),
        pair => pair,
    };
    let Some(ready) = resources.service_endpoints.get(&(svc_ns.to_owned(), service.name.clone())) else {
        return Ok(Resolved::Unresolved(Rejection::new(
            reason::SERVICE_NOT_FOUND,
            format!("Service {svc_ns}/{} is not known (standalone mode has no Kubernetes Services)", service.name),
        )));
    };
    let endpoints = ready.iter().filter_map(|ep| ep.target(port, port_name).map(|target| endpoint_for(ep.address, target)));
    // With `tls`, a Service is dialled over TLS, verified as its cluster DNS name.
    let endpoints: Vec<Endpoint> = match &http.tls {
        Some(tls) => {
            let sni = tls.sni.clone().unwrap_or_else(|| format!("{}.{svc_ns}.svc", service.name));
            endpoints.map(|e| tls::secure(e, Some(&sni))).collect::<Result<_, _>>()?
        }
        None => endpoints.collect(),
    };
    let count = endpoints.len() as u32;
    Ok(Resolved::Ready(BackendKind::Http { endpoints }, count))
}

/// A plain `http` endpoint at an address.
fn endpoint_for(address: IpAddr, port: u16) -> Endpoint {
    let host = match address {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    };
    Endpoint {
        scheme: "http".into(),
        authority: format!("{host}:{port}"),
        host: host_with_port(&host, port, "http"),
        base_path: String::new(),
        tls_server_name: None,
        weight: 1,
    }
}

fn host_with_port(host: &str, port: u16, scheme: &str) -> String {
    let default = if scheme == "https" { 443 } else { 80 };
    if port == default { host.to_owned() } else { format!("{host}:{port}") }
}

/// Parses `http://host[:port][/base]`; no user info, query or fragment.
pub(crate) fn parse_url(url: &str) -> Result<Endpoint, Rejection> {
    let bad = |why: &str| Rejection::new(reason::INVALID_URL, format!("url {url:?}: {why}"));
    let (scheme, rest) = url.split_once("://").ok_or_else(|| bad("expected scheme://host[:port][/path]"))?;
    let default_port = match scheme {
        "http" => 80,
        "https" => 443,
        _ => return Err(bad("the scheme must be http or https")),
    };
    if rest.contains(['?', '#', '@']) {
        return Err(bad("user info, query and fragment are not allowed"));
    }
    let (authority, path) = rest.find('/').map_or((rest, ""), |i| rest.split_at(i));
    let (host, port) = split_host_port(authority).ok_or_else(|| bad("invalid host or port"))?;
    let port = port.unwrap_or(default_port);
    let valid_host = if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        v6.parse::<std::net::Ipv6Addr>().is_ok()
    } else {
        host.parse::<std::net::Ipv4Addr>().is_ok() || validate::dns_name(host).is_ok()
    };
    if !valid_host {
        return Err(bad("invalid host"));
    }
    if !path.is_empty() {
        // A base path prefixes every forwarded path: it must reach the wire as written and
        // be normalized, or `/a/..` would climb out of it.
        validate::wire_path(path).map_err(|e| bad(&e))?;
        match crate::request_path::normalize(path) {
            Ok(normal) if normal == path => {}
            Ok(normal) => return Err(bad(&format!("the path is not in normalized form; write {normal:?}"))),
            Err(refusal) => return Err(bad(refusal.message())),
        }
    }
    let host = host.to_ascii_lowercase();
    Ok(Endpoint {
        scheme: scheme.to_owned(),
        authority: format!("{host}:{port}"),
        host: host_with_port(&host, port, scheme),
        base_path: path.trim_end_matches('/').to_owned(),
        // Unbracketed, as a certificate names it; `tls::secure` may override it.
        tls_server_name: (scheme == "https").then(|| host.trim_start_matches('[').trim_end_matches(']').to_owned()),
        weight: 1,
    })
}

fn split_host_port(authority: &str) -> Option<(&str, Option<u16>)> {
    let (host, port) = if authority.starts_with('[') {
        let end = authority.find(']')? + 1;
        let rest = &authority[end..];
        (&authority[..end], if rest.is_empty() { None } else { Some(rest.strip_prefix(':')?) })
    } else {
        match authority.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    let port = match port {
        Some(p) => Some(p.parse::<u16>().ok().filter(|p| *p != 0)?),
        None => None,
    };
    (!host.is_empty()).then_some((host, port))
}

fn mock_kind(mock: &MockBackend) -> Result<BackendKind, Rejection> {
    if !(100..=599).contains(&mock.status_code) {
        return Err(Rejection::new(reason::INVALID_SPEC, format!("mock.statusCode {} is not in 100-599", mock.status_code)));
    }
    if mock.body.len() > MAX_MOCK_BODY {
        return Err(Rejection::new(reason::INVALID_SPEC, format!("mock.body is {} bytes; the limit is 50 KiB", mock.body.len())));
    }
    let mut headers = Vec::with_capacity(mock.headers.len());
    for (i, h) in mock.headers.iter().enumerate() {
        validate::header_name(&h.name)
            .and_then(|()| validate::header_value(&h.value))
            .map_err(|e| Rejection::new(reason::INVALID_SPEC, format!("mock.headers[{i}]: {e}")))?;
        headers.push((h.name.to_ascii_lowercase(), h.value.clone()));
    }
    Ok(BackendKind::Mock { status: mock.status_code, headers, body: mock.body.clone() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_base_path_must_be_normalized_and_wire_safe() {
        for bad in ["http://svc/a/..", "http://svc/a//b", "http://svc/%2e%2e/x", "http://svc/a b", "http://svc/a\r\nX: 1"] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_url("http://svc/api/").unwrap().base_path, "/api");
    }

    #[test]
    fn urls_give_dial_authority_host_header_and_base_path() {
        let ep = parse_url("http://Orders.Internal:8080/api/").unwrap();
        assert_eq!(ep.authority, "orders.internal:8080");
        assert_eq!(ep.host, "orders.internal:8080");
        assert_eq!(ep.base_path, "/api");
        let ep = parse_url("http://10.0.0.5").unwrap();
        assert_eq!((ep.authority.as_str(), ep.host.as_str()), ("10.0.0.5:80", "10.0.0.5"));
        let ep = parse_url("http://[::1]:9000").unwrap();
        assert_eq!(ep.authority, "[::1]:9000");
    }

    fn service_backend(port: &str) -> Resources {
        let mut resources = Resources::default();
        let yaml = format!(
            "apiVersion: switchyard.dev/v1alpha1\nkind: BackendService\nmetadata: {{name: b, namespace: shop}}\nspec: {{http: {{service: {{name: orders, {port}}}}}}}\n"
        );
        crate::manifest::add_yaml(&mut resources, "t", &yaml);
        let target = crate::ServicePortTarget { port: 80, name: "http".into(), target: 8080 };
        let endpoint = crate::ServiceEndpoint { address: "10.0.0.7".parse().unwrap(), ports: vec![target] };
        resources.service_endpoints.insert(("shop".into(), "orders".into()), vec![endpoint]);
        resources
    }

    fn endpoints_of(resources: &Resources) -> Vec<String> {
        let compiled = crate::compile(resources);
        match compiled.snapshot.backends.first().map(|b| &b.kind) {
            Some(BackendKind::Http { endpoints }) => endpoints.iter().map(|e| e.authority.clone()).collect(),
            _ => Vec::new(),
        }
    }

    #[test]
    fn a_service_port_is_found_by_number_or_by_name() {
        assert_eq!(endpoints_of(&service_backend("port: 80")), ["10.0.0.7:8080"]);
        assert_eq!(endpoints_of(&service_backend("portName: http")), ["10.0.0.7:8080"]);
        assert!(endpoints_of(&service_backend("port: 81")).is_empty(), "no endpoint serves another port");
        let both = crate::compile(&service_backend("port: 80, portName: http"));
        assert_eq!(both.statuses[0].condition("Accepted").unwrap().reason, reason::INVALID_SPEC);
    }

    fn host_target(connectivity: Option<crate::Connectivity>) -> Resources {
        let mut resources = Resources::default();
        let yaml = "apiVersion: switchyard.dev/v1alpha1\nkind: VpcAuthorization\nmetadata: {name: a, namespace: shop}\n\
                    spec: {target: {host: orders.test}, ports: [8080]}\n---\n\
                    apiVersion: switchyard.dev/v1alpha1\nkind: BackendService\nmetadata: {name: b, namespace: shop}\n\
                    spec: {vpc: {authorizationRef: a, port: 8080}}\n";
        crate::manifest::add_yaml(&mut resources, "t", yaml);
        if let Some(test) = connectivity {
            resources.connectivity.insert(("shop".into(), "a".into()), test);
        }
        resources
    }

    #[test]
    fn a_host_target_is_dialled_only_at_the_addresses_its_connectivity_test_resolved() {
        let resolved = crate::Connectivity {
            connected: true,
            message: "10.0.3.15:8080 connected in 1.0 ms".into(),
            requested: None,
            addresses: vec!["10.0.3.15".parse().unwrap()],
        };
        let compiled = crate::compile(&host_target(Some(resolved)));
        let backend = &compiled.snapshot.backends[0];
        let grant = backend.dial_grant.as_ref().expect("a vpc backend always has a grant");
        assert_eq!(grant.addresses, ["10.0.3.15".parse::<IpAddr>().unwrap()]);
        assert!(!grant.bypass_egress, "a host target gets no egress exception");
        assert!(matches!(&backend.kind, BackendKind::Http { endpoints } if endpoints[0].authority == "orders.test:8080"));

        let failed = crate::Connectivity {
            connected: false,
            message: "resolving orders.test: no record found".into(),
            requested: None,
            addresses: vec![],
        };
        for (test, why) in [(None, "no connectivity test has resolved it yet"), (Some(failed), "resolving orders.test: no record found")] {
            let compiled = crate::compile(&host_target(test));
            let BackendKind::Unavailable { reason, message } = &compiled.snapshot.backends[0].kind else { panic!("not unavailable") };
            assert_eq!(reason, reason::ADDRESSES_NOT_VERIFIED);
            assert!(message.contains(why), "{message}");
        }
    }

    #[test]
    fn a_service_target_grants_exactly_its_ready_endpoints() {
        let mut resources = Resources::default();
        let yaml = "apiVersion: switchyard.dev/v1alpha1\nkind: VpcAuthorization\nmetadata: {name: a, namespace: shop}\n\
                    spec: {target: {service: {name: orders}}, ports: [80]}\n---\n\
                    apiVersion: switchyard.dev/v1alpha1\nkind: BackendService\nmetadata: {name: b, namespace: shop}\n\
                    spec: {vpc: {authorizationRef: a, port: 80}}\n";
        crate::manifest::add_yaml(&mut resources, "t", yaml);
        let target = crate::ServicePortTarget { port: 80, name: "http".into(), target: 8080 };
        let endpoints =
            ["10.0.0.7", "10.0.0.8"].map(|a| crate::ServiceEndpoint { address: a.parse().unwrap(), ports: vec![target.clone()] });
        resources.service_endpoints.insert(("shop".into(), "orders".into()), endpoints.to_vec());
        let compiled = crate::compile(&resources);
        let grant = compiled.snapshot.backends[0].dial_grant.clone().unwrap();
        assert_eq!(grant.addresses, ["10.0.0.7".parse::<IpAddr>().unwrap(), "10.0.0.8".parse().unwrap()]);
        assert_eq!(grant.ports, [8080], "the Service's target port is what is dialled");
        assert!(!grant.bypass_egress);
    }

    #[test]
    fn malformed_urls_are_rejected_with_a_reason() {
        for bad in [
            "10.0.0.5:80",
            "ftp://a",
            "http://",
            "http://a:0",
            "http://a:99999",
            "http://u@a",
            "http://a/?q",
            "http://a b",
            "http://[zz]:80",
        ] {
            let err = parse_url(bad).unwrap_err();
            assert_eq!(err.reason, reason::INVALID_URL, "{bad}");
        }
        let secure = parse_url("https://Orders.Internal/api").unwrap();
        assert_eq!((secure.authority.as_str(), secure.host.as_str()), ("orders.internal:443", "orders.internal"));
        assert_eq!(secure.tls_server_name.as_deref(), Some("orders.internal"));
    }
}
