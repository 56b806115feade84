use std::collections::BTreeMap;

use switchyard_api::condition_type::{ACCEPTED, PROGRAMMED, RESOLVED_REFS};
use switchyard_api::{ApiRoute, ApiRouteSpec, AuthType, ParameterLocation, PathType};

use super::backends::{BackendTable, retry_policy};
use super::{Rejection, age_key, duration_ms, name, namespace, status_for};
use crate::path_template::{PathTemplate, parse_rewrite};
use crate::snapshot::{App, Auth, HostRule, KeyMatch, PathKind, Route, RouteBackend};
use crate::{ConditionSpec, ResourceKind, ResourceStatus, reason, units, validate};

/// Default request body limit (the spec's 32 MiB).
pub const DEFAULT_BODY_LIMIT: u64 = 32 << 20;
/// No route may accept more than this.
const MAX_BODY_LIMIT: u64 = 1 << 30;

/// A route that passed validation, before references and conflicts are checked.
struct Candidate<'a> {
    source: &'a ApiRoute,
    route: Route,
    /// The `host` header parameter (Host priority 5).
    host_parameter: Option<String>,
}

pub(super) fn compile_all(routes: &[ApiRoute], backends: &BackendTable, apps: &[App], statuses: &mut Vec<ResourceStatus>) -> Vec<Route> {
    let mut sorted: Vec<&ApiRoute> = routes.iter().collect();
    sorted.sort_by(|a, b| age_key(&a.metadata).cmp(&age_key(&b.metadata)));
    let mut claimed: BTreeMap<ConflictKey, String> = BTreeMap::new();
    let mut programmed = Vec::new();
    for source in sorted {
        let mut status = status_for(ResourceKind::ApiRoute, &source.metadata, true);
        if let Some(route) = compile_one(source, backends, apps, &mut claimed, &mut status) {
            programmed.push(route);
        }
        statuses.push(status);
    }
    programmed
}

/// Runs the checks in order and records each outcome; returns the route when programmed.
fn compile_one(
    source: &ApiRoute,
    backends: &BackendTable,
    apps: &[App],
    claimed: &mut BTreeMap<ConflictKey, String>,
    status: &mut ResourceStatus,
) -> Option<Route> {
    let not_programmed = |status: &mut ResourceStatus, why: &str| {
        status.set(ConditionSpec::new(PROGRAMMED, false, reason::NOT_ACCEPTED, why));
    };
    let candidate = match validate_route(source) {
        Ok(c) => c,
        Err(why) => {
            status.set(ConditionSpec::new(ACCEPTED, false, why.reason, why.message));
            not_programmed(status, "the route is not accepted");
            return None;
        }
    };
    let route = match resolve_refs(candidate, backends, apps) {
        Ok(route) => route,
        Err(why) => {
            status.set(ConditionSpec::new(ACCEPTED, true, reason::ACCEPTED, "the route is valid"));
            status.set(ConditionSpec::new(RESOLVED_REFS, false, why.reason, why.message));
            status.set(ConditionSpec::new(PROGRAMMED, false, reason::REFS_NOT_RESOLVED, "references are not resolved"));
            return None;
        }
    };
    if let Err(why) = claim(&route, claimed) {
        status.set(ConditionSpec::new(ACCEPTED, false, why.reason, why.message));
        not_programmed(status, "the route conflicts with an older route");
        return None;
    }
    status.set(ConditionSpec::new(ACCEPTED, true, reason::ACCEPTED, "the route is valid"));
    status.set(ConditionSpec::new(RESOLVED_REFS, true, reason::RESOLVED_REFS, "all references resolved"));
    status.set(ConditionSpec::new(PROGRAMMED, true, reason::PROGRAMMED, "the route is in the published snapshot"));
    Some(route)
}

fn validate_route(source: &ApiRoute) -> Result<Candidate<'_>, Rejection> {
    let spec = &source.spec;
    let hosts = spec
        .hosts
        .iter()
        .map(|h| validate::route_host(h))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Rejection::new(reason::INVALID_HOST, format!("hosts: {e}")))?;
    let (path_type, rewrite_path) = validate_path(spec)?;
    let (headers, query_params) = validate_matchers(spec)?;
    let (add_headers, add_query, host_parameter) = validate_parameters(spec)?;
    if let Some(host) = &spec.host_override {
        validate::host_header(host).map_err(|e| Rejection::new(reason::INVALID_HOST, format!("hostOverride: {e}")))?;
    }
    let body_limit = match &spec.request_body_limit {
        Some(text) => units::parse_size(text).map_err(|e| Rejection::new(reason::INVALID_SIZE, format!("requestBodyLimit: {e}")))?,
        None => DEFAULT_BODY_LIMIT,
    };
    if body_limit > MAX_BODY_LIMIT {
        return Err(Rejection::new(reason::INVALID_SIZE, "requestBodyLimit: at most 1Gi"));
    }
    let mut methods: Vec<String> = spec.match_.methods.iter().map(|m| m.as_str().to_owned()).collect();
    methods.sort();
    methods.dedup();
    let route = Route {
        id: format!("{}/{}", namespace(&source.metadata), name(&source.metadata)),
        hosts,
        path: spec.match_.path.clone(),
        path_type,
        methods,
        headers,
        query_params,
        backends: Vec::new(),
        rewrite_path,
        add_headers,
        add_query,
        auth: Auth::Anonymous,
        timeout_ms: duration_ms("timeout", spec.timeout.as_ref())?,
        retries: spec.retries.as_ref().map(retry_policy).transpose()?,
        body_limit,
    };
    Ok(Candidate { source, route, host_parameter })
}

fn validate_path(spec: &ApiRouteSpec) -> Result<(PathKind, Option<String>), Rejection> {
    let path = &spec.match_.path;
    if !path.starts_with('/') {
        return Err(Rejection::new(reason::INVALID_PATH, format!("match.path {path:?} must start with /")));
    }
    if path.contains(['?', '#']) || path.bytes().any(|b| b.is_ascii_control() || b == b' ') {
        return Err(Rejection::new(
            reason::INVALID_PATH,
            format!("match.path {path:?} may not contain ?, #, spaces or control characters"),
        ));
    }
    let rewrite = spec.rewrite.as_ref().and_then(|r| r.path.clone());
    let kind = match spec.match_.path_type {
        PathType::Exact => PathKind::Exact,
        PathType::Prefix => PathKind::Prefix,
        PathType::Template => PathKind::Template,
    };
    let params: Vec<String> = if kind == PathKind::Template {
        let template = PathTemplate::parse(path).map_err(|e| Rejection::new(reason::INVALID_PATH_TEMPLATE, e))?;
        template.param_names().map(str::to_owned).collect()
    } else {
        Vec::new()
    };
    if let Some(target) = &rewrite {
        let names: Vec<&str> = params.iter().map(String::as_str).collect();
        parse_rewrite(target, &names).map_err(|e| Rejection::new(reason::INVALID_REWRITE, e))?;
    }
    Ok((kind, rewrite))
}

fn validate_matchers(spec: &ApiRouteSpec) -> Result<(Vec<KeyMatch>, Vec<KeyMatch>), Rejection> {
    let mut headers = Vec::new();
    for (i, h) in spec.match_.headers.iter().enumerate() {
        validate::header_name(&h.name)
            .and_then(|()| h.value.as_deref().map_or(Ok(()), validate::header_value))
            .map_err(|e| Rejection::new(reason::INVALID_MATCH, format!("match.headers[{i}]: {e}")))?;
        headers.push(KeyMatch { name: h.name.to_ascii_lowercase(), value: h.value.clone() });
    }
    let mut query = Vec::new();
    for (i, q) in spec.match_.query_params.iter().enumerate() {
        if q.name.is_empty() {
            return Err(Rejection::new(reason::INVALID_MATCH, format!("match.queryParams[{i}]: name is empty")));
        }
        query.push(KeyMatch { name: q.name.clone(), value: q.value.clone() });
    }
    headers.sort();
    query.sort();
    Ok((headers, query))
}

type Parameters = (Vec<(String, String)>, Vec<(String, String)>, Option<String>);

fn validate_parameters(spec: &ApiRouteSpec) -> Result<Parameters, Rejection> {
    let (mut headers, mut query, mut host) = (Vec::new(), Vec::new(), None);
    for (i, p) in spec.parameters.iter().enumerate() {
        let bad = |e: String| Rejection::new(reason::INVALID_PARAMETER, format!("parameters[{i}]: {e}"));
        match p.in_ {
            ParameterLocation::Header => {
                validate::header_name(&p.name).and_then(|()| validate::header_value(&p.value)).map_err(bad)?;
                let lower = p.name.to_ascii_lowercase();
                if lower == "host" {
                    validate::host_header(&p.value).map_err(bad)?;
                    host = Some(p.value.clone());
                } else {
                    headers.push((lower, p.value.clone()));
                }
            }
            ParameterLocation::Query if p.name.is_empty() => return Err(bad("name is empty".into())),
            ParameterLocation::Query => query.push((p.name.clone(), p.value.clone())),
        }
    }
    Ok((headers, query, host))
}

/// Resolves backendRefs (existence, namespace grants, weights) and auth apps.
fn resolve_refs(candidate: Candidate<'_>, backends: &BackendTable, apps: &[App]) -> Result<Route, Rejection> {
    let Candidate { source, mut route, host_parameter } = candidate;
    let spec = &source.spec;
    let route_ns = namespace(&source.metadata);
    for r in &spec.backend_refs {
        let ns = r.namespace.as_deref().unwrap_or(route_ns);
        let entry = backends
            .get(ns, &r.name)
            .ok_or_else(|| Rejection::new(reason::BACKEND_NOT_FOUND, format!("BackendService {ns}/{} does not exist", r.name)))?;
        if ns != route_ns && !entry.allowed_route_namespaces.iter().any(|a| a == "*" || a == route_ns) {
            return Err(Rejection::new(
                reason::REF_NOT_PERMITTED,
                format!("BackendService {ns}/{} does not list namespace {route_ns} in allowedRouteNamespaces", r.name),
            ));
        }
        let index = entry.index.ok_or_else(|| {
            let why = entry.unusable.as_deref().unwrap_or("it is not usable");
            Rejection::new(reason::BACKEND_NOT_ACCEPTED, format!("BackendService {ns}/{} cannot serve: {why}", r.name))
        })?;
        let weight = r.weight.unwrap_or(1);
        if weight > 0 {
            let host = host_rule(spec, entry.host_header.as_ref(), entry.authorization_host.as_ref(), host_parameter.as_ref());
            route.backends.push(RouteBackend { backend: index, weight, host });
        }
    }
    if route.backends.is_empty() {
        return Err(Rejection::new(reason::INVALID_BACKEND_REFS, "every backendRef has weight 0: the route would serve nothing"));
    }
    route.auth = resolve_auth(spec, route_ns, apps)?;
    Ok(route)
}

/// The spec's Host header priority, highest first, for one route and backend.
pub(super) fn host_rule(
    spec: &ApiRouteSpec,
    backend_host_header: Option<&String>,
    authorization_host: Option<&String>,
    host_parameter: Option<&String>,
) -> HostRule {
    let fixed = |h: &String| HostRule::Fixed(h.clone());
    spec.host_override
        .as_ref()
        .filter(|h| !h.is_empty())
        .map(fixed)
        .or_else(|| backend_host_header.map(fixed))
        .or_else(|| authorization_host.map(fixed))
        .or_else(|| spec.pass_host_header.then_some(HostRule::Client))
        .or_else(|| host_parameter.map(fixed))
        .unwrap_or(HostRule::Endpoint)
}

fn resolve_auth(spec: &ApiRouteSpec, ns: &str, apps: &[App]) -> Result<Auth, Rejection> {
    let Some(auth) = &spec.auth else { return Ok(Auth::Anonymous) };
    if auth.type_ == AuthType::Anonymous {
        return Ok(Auth::Anonymous);
    }
    if auth.apps.is_empty() {
        return Err(Rejection::new(reason::INVALID_AUTH, "auth.apps: AppCode and Signature auth need at least one app"));
    }
    for app in &auth.apps {
        if !apps.iter().any(|a| a.namespace == ns && &a.name == app) {
            return Err(Rejection::new(
                reason::APP_NOT_FOUND,
                format!("app {ns}/{app} does not exist (a Secret labelled switchyard.dev/app with appKey, appSecret, appCode)"),
            ));
        }
    }
    let apps = auth.apps.clone();
    Ok(match auth.type_ {
        AuthType::AppCode => Auth::AppCode { apps },
        _ => Auth::Signature { apps },
    })
}

/// Two routes collide when a request could match both with equal precedence: same host,
/// method, path (parameter names aside) and matchers.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct ConflictKey {
    host: String,
    method: String,
    path: String,
    headers: Vec<KeyMatch>,
    query: Vec<KeyMatch>,
}

fn claim(route: &Route, claimed: &mut BTreeMap<ConflictKey, String>) -> Result<(), Rejection> {
    let keys = conflict_keys(route);
    if let Some((key, owner)) = keys.iter().find_map(|k| claimed.get(k).map(|o| (k, o))) {
        let host = if key.host.is_empty() { "any host" } else { &key.host };
        let method = if key.method.is_empty() { "any method" } else { &key.method };
        return Err(Rejection::new(
            reason::CONFLICTED,
            format!("{host} {method} {} is already served by the older ApiRoute {owner}", route.path),
        ));
    }
    for key in keys {
        claimed.insert(key, route.id.clone());
    }
    Ok(())
}

fn conflict_keys(route: &Route) -> Vec<ConflictKey> {
    let path = normalized_path(route);
    let hosts: Vec<&str> = if route.hosts.is_empty() { vec![""] } else { route.hosts.iter().map(String::as_str).collect() };
    let methods: Vec<&str> = if route.methods.is_empty() { vec![""] } else { route.methods.iter().map(String::as_str).collect() };
    let mut keys = Vec::with_capacity(hosts.len() * methods.len());
    for host in &hosts {
        for method in &methods {
            keys.push(ConflictKey {
                host: (*host).to_owned(),
                method: (*method).to_owned(),
                path: path.clone(),
                headers: route.headers.clone(),
                query: route.query_params.clone(),
            });
        }
    }
    keys
}

/// `/users/{id}` and `/users/{userId}` are the same path; Exact `/a` and Template `/a`
/// match the same requests too.
fn normalized_path(route: &Route) -> String {
    match route.path_type {
        PathKind::Prefix => format!("prefix:{}", route.path),
        PathKind::Exact => format!("path:{}", route.path),
        PathKind::Template => {
            let template = PathTemplate::parse(&route.path).expect("validated before");
            let segments: Vec<&str> = template
                .segments
                .iter()
                .map(|s| match s {
                    crate::path_template::Segment::Literal(l) => l.as_str(),
                    crate::path_template::Segment::Param(_) => "{}",
                })
                .collect();
            format!("path:/{}", segments.join("/"))
        }
    }
}
