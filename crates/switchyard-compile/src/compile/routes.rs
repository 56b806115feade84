use std::collections::HashMap;
use std::collections::hash_map::{DefaultHasher, RandomState};
use std::hash::{BuildHasher, BuildHasherDefault, Hash, Hasher};

use switchyard_api::condition_type::{ACCEPTED, PROGRAMMED, RESOLVED_REFS};
use switchyard_api::{ApiRoute, ApiRouteSpec, AuthType, ParameterLocation, PathType, RouteProtocol};

use super::backends::{BackendTable, retry_policy};
use super::ownership::HostOwners;
use super::{Rejection, age_key, duration_ms, name, namespace, status_for};
use crate::path_template::{PathTemplate, parse_rewrite};
use crate::resources::HostOwnership;
use crate::snapshot::{App, Auth, HostOwner, HostRule, KeyMatch, PathKind, Protocols, Route, RouteBackend};
use crate::{ConditionSpec, ResourceKind, ResourceStatus, reason, request_path, units, validate};

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
    /// The path as conflicts compare it (see [`normalized_path`]).
    conflict_path: String,
}

pub(super) fn compile_all(
    routes: &[ApiRoute],
    backends: &BackendTable,
    apps: &[App],
    ownership: HostOwnership,
    statuses: &mut Vec<ResourceStatus>,
) -> (Vec<Route>, Vec<HostOwner>) {
    let mut sorted: Vec<&ApiRoute> = routes.iter().collect();
    sorted.sort_by(|a, b| age_key(&a.metadata).cmp(&age_key(&b.metadata)));
    let mut claimed = Claims { paths: PathClaims::default(), hosts: HostOwners::new(ownership), programmed: Vec::new() };
    claimed.programmed.reserve(sorted.len());
    claimed.paths.reserve(sorted.len());
    statuses.reserve(sorted.len());
    for source in sorted {
        let mut status = status_for(ResourceKind::ApiRoute, &source.metadata, true);
        if let Some(route) = compile_one(source, backends, apps, &mut claimed, &mut status) {
            claimed.programmed.push(route);
        }
        statuses.push(status);
    }
    (claimed.programmed, claimed.hosts.into_snapshot())
}

/// What older routes have taken: their (host, method, path, matchers) and their hosts.
struct Claims {
    paths: PathClaims,
    hosts: HostOwners,
    /// The programmed routes, in age order; [`PathClaims`] points into them.
    programmed: Vec<Route>,
}

/// Runs the checks in order and records each outcome; returns the route when programmed.
fn compile_one(
    source: &ApiRoute,
    backends: &BackendTable,
    apps: &[App],
    claimed: &mut Claims,
    status: &mut ResourceStatus,
) -> Option<Route> {
    let not_accepted = |status: &mut ResourceStatus, why: Rejection, programmed: &str| {
        status.set(ConditionSpec::new(ACCEPTED, false, why.reason, why.message));
        status.set(ConditionSpec::new(PROGRAMMED, false, reason::NOT_ACCEPTED, programmed));
    };
    let candidate = match validate_route(source) {
        Ok(c) => c,
        Err(why) => {
            not_accepted(status, why, "the route is not accepted");
            return None;
        }
    };
    let route_ns = namespace(&source.metadata);
    if let Err(why) = claimed.hosts.check(route_ns, &candidate.route.hosts) {
        not_accepted(status, why, "the route names a host of another namespace");
        return None;
    }
    let Candidate { source, mut route, host_parameter, conflict_path } = candidate;
    let auth_problem = match resolve_refs(source, &mut route, host_parameter.as_ref(), backends, apps) {
        Ok(problem) => problem,
        Err(why) => {
            // Accepted, so it owns its hosts even while it cannot be programmed.
            claimed.hosts.claim(route_ns, &route.id, &route.hosts);
            status.set(ConditionSpec::new(ACCEPTED, true, reason::ACCEPTED, "the route is valid"));
            status.set(ConditionSpec::new(RESOLVED_REFS, false, why.reason, why.message));
            status.set(ConditionSpec::new(PROGRAMMED, false, reason::REFS_NOT_RESOLVED, "references are not resolved"));
            return None;
        }
    };
    if let Err(why) = claimed.paths.claim(&route, conflict_path, &claimed.programmed) {
        not_accepted(status, why, "the route conflicts with an older route");
        return None;
    }
    claimed.hosts.claim(route_ns, &route.id, &route.hosts);
    status.set(ConditionSpec::new(ACCEPTED, true, reason::ACCEPTED, "the route is valid"));
    match auth_problem {
        // Fail closed: programmed, answering 503, so no broader route takes its paths.
        Some(why) => {
            status.set(ConditionSpec::new(RESOLVED_REFS, false, why.reason, why.message));
            status.set(ConditionSpec::new(
                PROGRAMMED,
                true,
                reason::PROGRAMMED,
                "the route is in the published snapshot and answers 503 A503AU until its apps resolve",
            ));
        }
        None => {
            status.set(ConditionSpec::new(RESOLVED_REFS, true, reason::RESOLVED_REFS, "all references resolved"));
            status.set(ConditionSpec::new(PROGRAMMED, true, reason::PROGRAMMED, "the route is in the published snapshot"));
        }
    }
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
    let (path_type, rewrite_path, conflict_path) = validate_path(spec)?;
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
        protocols: protocols(&spec.protocols),
    };
    Ok(Candidate { source, route, host_parameter, conflict_path })
}

/// `protocols: [HTTP, HTTPS]`, empty or both listed: both.
fn protocols(listed: &[RouteProtocol]) -> Protocols {
    match (listed.contains(&RouteProtocol::HTTP), listed.contains(&RouteProtocol::HTTPS)) {
        (true, false) => Protocols::HttpOnly,
        (false, true) => Protocols::HttpsOnly,
        _ => Protocols::Both,
    }
}

/// The path kind, the rewrite target and the path as conflicts compare it.
fn validate_path(spec: &ApiRouteSpec) -> Result<(PathKind, Option<String>, String), Rejection> {
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
    if let Err(normal) = normalized_form(path) {
        return Err(Rejection::new(reason::INVALID_PATH, format!("match.path {path:?}: {normal}")));
    }
    let rewrite = spec.rewrite.as_ref().and_then(|r| r.path.clone());
    if let Some(target) = &rewrite {
        validate::wire_path(target).map_err(|e| Rejection::new(reason::INVALID_REWRITE, format!("rewrite.path: {e}")))?;
        normalized_form(target).map_err(|e| Rejection::new(reason::INVALID_REWRITE, format!("rewrite.path {target:?}: {e}")))?;
    }
    let kind = match spec.match_.path_type {
        PathType::Exact => PathKind::Exact,
        PathType::Prefix => PathKind::Prefix,
        PathType::Template => PathKind::Template,
    };
    let template = match kind {
        PathKind::Template => Some(PathTemplate::parse(path).map_err(|e| Rejection::new(reason::INVALID_PATH_TEMPLATE, e))?),
        PathKind::Exact | PathKind::Prefix => None,
    };
    if let Some(target) = &rewrite {
        let names: Vec<&str> = template.iter().flat_map(|t| t.param_names()).collect();
        parse_rewrite(target, &names).map_err(|e| Rejection::new(reason::INVALID_REWRITE, e))?;
    }
    Ok((kind, rewrite, normalized_path(kind, path, template.as_ref())))
}

/// Requests are matched and forwarded in normalized form (see [`request_path`]), so a
/// route's own paths must already be in it: a path that is not could never match, and a
/// rewrite must not be able to climb out of a backend's base path.
fn normalized_form(path: &str) -> Result<(), String> {
    match request_path::normalize(path) {
        Ok(normal) if normal == path => Ok(()),
        Ok(normal) => Err(format!("is not in normalized form (dot segments, repeated slashes or escaped letters); write {normal:?}")),
        Err(refusal) => Err(refusal.to_string()),
    }
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

/// Resolves backendRefs (existence, namespace grants, weights) and auth apps. An app
/// that does not resolve is not an error here: the route is programmed failing closed
/// and the problem is returned for its `ResolvedRefs` condition.
fn resolve_refs(
    source: &ApiRoute,
    route: &mut Route,
    host_parameter: Option<&String>,
    backends: &BackendTable,
    apps: &[App],
) -> Result<Option<Rejection>, Rejection> {
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
            let host = host_rule(spec, entry.host_header.as_ref(), entry.authorization_host.as_ref(), host_parameter);
            route.backends.push(RouteBackend { backend: index, weight, host });
        }
    }
    if route.backends.is_empty() {
        return Err(Rejection::new(reason::INVALID_BACKEND_REFS, "every backendRef has weight 0: the route would serve nothing"));
    }
    let (auth, problem) = resolve_auth(spec, route_ns, apps)?;
    route.auth = auth;
    Ok(problem)
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

/// The route's auth; an app that is missing or has no credential for this kind of auth
/// (an empty `appCode` for AppCode, an empty `appKey` or `appSecret` for Signature)
/// makes it [`Auth::Unresolved`], returned with the reason.
fn resolve_auth(spec: &ApiRouteSpec, ns: &str, apps: &[App]) -> Result<(Auth, Option<Rejection>), Rejection> {
    let Some(auth) = &spec.auth else { return Ok((Auth::Anonymous, None)) };
    if auth.type_ == AuthType::Anonymous {
        return Ok((Auth::Anonymous, None));
    }
    if auth.apps.is_empty() {
        return Err(Rejection::new(reason::INVALID_AUTH, "auth.apps: AppCode and Signature auth need at least one app"));
    }
    let by_code = auth.type_ == AuthType::AppCode;
    for name in &auth.apps {
        let Some(app) = apps.iter().find(|a| a.namespace == ns && &a.name == name) else {
            let why = format!("app {ns}/{name} does not exist (a Secret labelled switchyard.dev/app with appKey, appSecret, appCode)");
            return Ok(unresolved(reason::APP_NOT_FOUND, why));
        };
        // Blank counts as empty: a code of spaces or a newline (a Secret made from a file)
        // would authenticate `?AppCode=+`.
        let missing = if by_code {
            app.app_code.trim().is_empty().then_some("appCode")
        } else {
            [("appKey", &app.app_key), ("appSecret", &app.app_secret)].into_iter().find(|(_, v)| v.trim().is_empty()).map(|(k, _)| k)
        };
        if let Some(field) = missing {
            return Ok(unresolved(reason::APP_NOT_USABLE, format!("app {ns}/{name} has an empty or blank {field}")));
        }
    }
    let apps = auth.apps.clone();
    Ok((if by_code { Auth::AppCode { apps } } else { Auth::Signature { apps } }, None))
}

fn unresolved(reason: &'static str, why: String) -> (Auth, Option<Rejection>) {
    (Auth::Unresolved { why: format!("{reason}: {why}") }, Some(Rejection::new(reason, why)))
}

/// Two routes collide when a request could match both with equal precedence: same host,
/// method, path (parameter names aside) and matchers. Each programmed route claims one
/// key per (host, method) pair; an empty list of hosts or methods counts as one empty
/// entry ("any host", "any method").
///
/// Keys are not copied: the table holds each key's hash and where its parts live (the
/// route's index among the programmed routes, and which of its hosts and methods), and
/// compares the parts themselves when hashes meet. The hash is seeded per compile
/// ([`RandomState`]), so crafted routes cannot make the chains long; what is decided
/// never depends on it.
#[derive(Default)]
struct PathClaims {
    /// Key hash -> the first slot of its chain.
    heads: HashMap<u64, u32, BuildHasherDefault<KeyHashIsHash>>,
    slots: Vec<Slot>,
    /// The conflict path of each programmed route, by index.
    paths: Vec<String>,
    seed: RandomState,
}

/// One claimed key: route `route`'s host `host` and method `method`.
struct Slot {
    route: u32,
    host: u32,
    method: u32,
    /// The next slot with the same hash, or [`Slot::END`].
    next: u32,
}

impl Slot {
    const END: u32 = u32::MAX;
}

/// A route's key parts: its hosts and methods, or one empty entry for none.
fn parts(list: &[String]) -> impl Iterator<Item = (u32, &str)> {
    let none = list.is_empty().then_some((0, ""));
    none.into_iter().chain(list.iter().enumerate().map(|(i, s)| (i as u32, s.as_str())))
}

fn part(list: &[String], index: u32) -> &str {
    list.get(index as usize).map_or("", String::as_str)
}

impl PathClaims {
    /// Claims every key of `route`, the next programmed route (it becomes
    /// `programmed[programmed.len()]`), unless an older route holds one of them: then the
    /// first such key, in order of hosts and then methods, names the older route.
    fn claim(&mut self, route: &Route, path: String, programmed: &[Route]) -> Result<(), Rejection> {
        debug_assert_eq!(self.paths.len(), programmed.len());
        let base = self.hasher(&path, route);
        let mut hashes = Vec::with_capacity(route.hosts.len().max(1) * route.methods.len().max(1));
        for (_, host) in parts(&route.hosts) {
            for (_, method) in parts(&route.methods) {
                let hash = key_hash(&base, host, method);
                hashes.push(hash);
                if let Some(owner) = self.find(hash, host, method, &path, route, programmed) {
                    let host = if host.is_empty() { "any host" } else { host };
                    let method = if method.is_empty() { "any method" } else { method };
                    return Err(Rejection::new(
                        reason::CONFLICTED,
                        format!("{host} {method} {} is already served by the older ApiRoute {}", route.path, owner.id),
                    ));
                }
            }
        }
        let index = programmed.len() as u32;
        let mut hashes = hashes.into_iter();
        for (h, _) in parts(&route.hosts) {
            for (m, _) in parts(&route.methods) {
                let hash = hashes.next().expect("one hash per key");
                let next = self.heads.insert(hash, self.slots.len() as u32).unwrap_or(Slot::END);
                self.slots.push(Slot { route: index, host: h, method: m, next });
            }
        }
        self.paths.push(path);
        Ok(())
    }

    fn reserve(&mut self, routes: usize) {
        self.heads.reserve(routes);
        self.slots.reserve(routes);
        self.paths.reserve(routes);
    }

    /// The hash state after the parts all of a route's keys share: its conflict path and
    /// matchers ([`key_hash`] adds a host and a method).
    fn hasher(&self, path: &str, route: &Route) -> DefaultHasher {
        let mut hasher = self.seed.build_hasher();
        path.hash(&mut hasher);
        for matchers in [&route.headers, &route.query_params] {
            matchers.len().hash(&mut hasher);
            for matcher in matchers {
                (&matcher.name, &matcher.value).hash(&mut hasher);
            }
        }
        hasher
    }

    /// The programmed route holding exactly this key, if any.
    fn find<'p>(&self, hash: u64, host: &str, method: &str, path: &str, route: &Route, programmed: &'p [Route]) -> Option<&'p Route> {
        let mut at = self.heads.get(&hash).copied().unwrap_or(Slot::END);
        while at != Slot::END {
            let slot = &self.slots[at as usize];
            let owner = &programmed[slot.route as usize];
            if part(&owner.hosts, slot.host) == host
                && part(&owner.methods, slot.method) == method
                && self.paths[slot.route as usize] == path
                && owner.headers == route.headers
                && owner.query_params == route.query_params
            {
                return Some(owner);
            }
            at = slot.next;
        }
        None
    }
}

fn key_hash(base: &DefaultHasher, host: &str, method: &str) -> u64 {
    let mut hasher = base.clone();
    (host, method).hash(&mut hasher);
    hasher.finish()
}

/// The keys of [`PathClaims::heads`] are hashes already.
#[derive(Default)]
struct KeyHashIsHash(u64);

impl Hasher for KeyHashIsHash {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only u64 keys are hashed here; fold anything else in all the same.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// `/users/{id}` and `/users/{userId}` are the same path; Exact `/a` and Template `/a`
/// match the same requests too. `template` is the parsed path of a Template route.
fn normalized_path(kind: PathKind, path: &str, template: Option<&PathTemplate>) -> String {
    match (kind, template) {
        (PathKind::Prefix, _) => format!("prefix:{path}"),
        (PathKind::Template, Some(template)) => {
            let mut normal = String::with_capacity(path.len() + 5);
            normal.push_str("path:");
            for segment in &template.segments {
                normal.push('/');
                normal.push_str(match segment {
                    crate::path_template::Segment::Literal(l) => l,
                    crate::path_template::Segment::Param(_) => "{}",
                });
            }
            normal
        }
        (PathKind::Exact | PathKind::Template, _) => format!("path:{path}"),
    }
}

#[cfg(test)]
mod tests {
    use crate::{ResourceKind, Resources, compile, manifest};

    /// Compiles one backend and the given routes (`name: spec` pairs, created in order);
    /// returns each route's `Accepted` reason and message.
    fn accepted(routes: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut yaml = String::from(
            "apiVersion: switchyard.dev/v1alpha1\nkind: BackendService\nmetadata: {name: b, namespace: shop}\n\
             spec: {http: {urls: [\"http://10.0.0.1:8080\"]}}\n",
        );
        for (i, (name, spec)) in routes.iter().enumerate() {
            yaml.push_str(&format!(
                "---\napiVersion: switchyard.dev/v1alpha1\nkind: ApiRoute\n\
                 metadata: {{name: {name}, namespace: shop, creationTimestamp: '2026-01-01T00:00:{i:02}Z'}}\n\
                 spec: {{backendRefs: [{{name: b}}], {spec}}}\n"
            ));
        }
        let mut resources = Resources::default();
        manifest::add_yaml(&mut resources, "t", &yaml);
        assert!(resources.invalid.is_empty(), "{:?}", resources.invalid);
        let compiled = compile(&resources);
        routes
            .iter()
            .map(|(name, _)| {
                let status = compiled.status(ResourceKind::ApiRoute, Some("shop"), name).expect("a status per route");
                let c = status.condition("Accepted").expect("Accepted is set");
                (c.reason.clone(), c.message.clone())
            })
            .collect()
    }

    #[test]
    fn the_older_route_keeps_a_path_and_the_newer_one_is_conflicted() {
        let out = accepted(&[
            ("a", "hosts: [shop.example.com], match: {path: '/users/{id}', methods: [GET, POST]}"),
            ("b", "hosts: [other.example.com, Shop.example.com], match: {path: '/users/{userId}', methods: [PUT, POST]}"),
        ]);
        assert_eq!(out[0].0, "Accepted");
        assert_eq!(out[1].0, "Conflicted");
        assert_eq!(out[1].1, "shop.example.com POST /users/{userId} is already served by the older ApiRoute shop/a");
    }

    #[test]
    fn routes_differing_in_host_method_kind_or_matchers_do_not_conflict() {
        let out = accepted(&[
            ("base", "hosts: [a.example.com], match: {path: /x, methods: [GET]}"),
            ("host", "hosts: [b.example.com], match: {path: /x, methods: [GET]}"),
            ("method", "hosts: [a.example.com], match: {path: /x, methods: [POST]}"),
            ("prefix", "hosts: [a.example.com], match: {path: /x, pathType: Prefix, methods: [GET]}"),
            ("header", "hosts: [a.example.com], match: {path: /x, methods: [GET], headers: [{name: X-V, value: '2'}]}"),
            ("query", "hosts: [a.example.com], match: {path: /x, methods: [GET], queryParams: [{name: v}]}"),
            ("dup", "hosts: [c.example.com, c.example.com], match: {path: /x, methods: [GET, GET]}"),
        ]);
        assert!(out.iter().all(|(reason, _)| reason == "Accepted"), "{out:?}");
    }

    #[test]
    fn exact_and_template_of_the_same_path_and_empty_lists_conflict() {
        let out = accepted(&[
            ("exact", "match: {path: /a, pathType: Exact}"),
            ("template", "match: {path: /a, pathType: Template, methods: [GET]}"),
            ("any", "match: {path: /a}"),
            ("header", "match: {path: /h, headers: [{name: X-A}, {name: x-b, value: '1'}]}"),
            ("header-again", "match: {path: /h, headers: [{name: X-B, value: '1'}, {name: x-a}]}"),
            ("query-not-header", "match: {path: /h, queryParams: [{name: x-a}, {name: x-b, value: '1'}]}"),
        ]);
        assert_eq!(out[0].0, "Accepted");
        assert_eq!(out[1].0, "Accepted", "GET is not any method: a different key");
        assert_eq!(out[2], ("Conflicted".into(), "any host any method /a is already served by the older ApiRoute shop/exact".into()));
        assert_eq!(out[3].0, "Accepted");
        assert_eq!(out[4].0, "Conflicted", "header names are case-insensitive and their order does not matter");
        assert_eq!(out[5].0, "Accepted", "query parameters are not headers");
    }
}
