//! Everything derived from one snapshot, built off the request path when the snapshot
//! arrives and swapped in whole: the router, per-route shaping data with header names
//! and values already parsed, and one runtime per backend.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, HeaderValue};
use switchyard_compile::path_template::{PathTemplate, RewritePart, parse_rewrite};
use switchyard_compile::request_path;
use switchyard_compile::snapshot::{BackendKind, FunctionInvocation, HostRule, PathKind, RetryPolicy, Route, Snapshot};

use crate::admission::Admission;
use crate::auth::Authenticator;
use crate::egress::{DialPolicy, EgressConfig};
use crate::error::GatewayError;

use crate::access_log::Name;
use crate::backends::{BackendRuntime, BuildContext, DEFAULT_TIMEOUT};
use crate::metrics::{BackendMetrics, RuntimeCounters};
use crate::router::Router;
use crate::weighted::WeightedCycle;

/// One [`Admission`] per backend: the previous runtime's for a backend id it had (with
/// the new limit), a new one otherwise.
fn admissions(snapshot: &Snapshot, previous: Option<&Runtime>) -> Vec<Arc<Admission>> {
    let before: HashMap<&str, &Arc<Admission>> =
        previous.map(|p| p.snapshot.backends.iter().map(|b| b.id.as_str()).zip(&p.admissions).collect()).unwrap_or_default();
    let admission = |b: &switchyard_compile::snapshot::Backend| match before.get(b.id.as_str()) {
        Some(&kept) => {
            kept.set_limit(b.max_requests);
            kept.clone()
        }
        None => Arc::new(Admission::new(b.max_requests)),
    };
    snapshot.backends.iter().map(admission).collect()
}

/// One snapshot, ready to serve.
pub struct Runtime {
    pub snapshot: Arc<Snapshot>,
    /// Where this snapshot lets the proxy dial (egress policy, DnsRecords).
    pub dial: Arc<DialPolicy>,
    pub router: Router,
    /// Shared with the previous runtime when a route, the backends it names and the
    /// apps did not change (see [`KeptRoutes`]).
    pub routes: Vec<Arc<RouteRuntime>>,
    /// Shared with the previous runtime when a backend's definition did not change.
    pub backends: Vec<Arc<BackendRuntime>>,
    /// Each backend's in-flight count and limit (by index, as `backends`), shared with
    /// the previous runtime by backend id whatever else changed.
    pub admissions: Vec<Arc<Admission>>,
    /// The metric series of these routes and backends, resolved once here.
    pub counters: RuntimeCounters,
    /// Which names the access log can copy without escaping, judged once here.
    pub log_names: crate::access_log::PlainNames,
}

/// Per-route data the request phases use.
pub struct RouteRuntime {
    pub id: Arc<str>,
    pub rewrite: Option<Rewrite>,
    pub add_headers: Vec<(HeaderName, HeaderValue)>,
    /// Constant query parameters, already encoded (`a=1&b=2`).
    pub add_query: Option<String>,
    /// Their names: a client's parameter of the same name is dropped, so the constant is
    /// the only value the backend sees (as constant headers replace the client's).
    pub add_query_names: Vec<String>,
    pub auth: Authenticator,
    pub timeout: Duration,
    pub retries: Option<RetryPolicy>,
    pub body_limit: u64,
    /// Which client connections the route serves (plain HTTP, HTTPS or both).
    pub protocols: switchyard_compile::snapshot::Protocols,
    /// The path template's parameter names in order (empty unless a Template route),
    /// parsed once here for event functions' `pathParameters`.
    pub param_names: Box<[Arc<str>]>,
    targets: WeightedCycle<Target>,
}

/// A backend of a route, with the Host rule for the pair.
pub struct Target {
    pub backend: usize,
    pub host: HostPolicy,
    /// The backend is an event function: shaping keeps the client's path and the named
    /// path parameters for its event.
    pub event: bool,
}

/// Which Host header the backend request carries.
#[derive(Clone, Debug)]
pub enum HostPolicy {
    Fixed(HeaderValue),
    Client,
    Endpoint,
}

/// How the backend path is derived from the client's.
pub enum Rewrite {
    /// Replace the whole path (Exact and Template routes), filling parameters.
    Template(Vec<RewritePart>),
    /// Replace the matched prefix (Prefix routes).
    Prefix { matched: Box<str>, replacement: Box<str> },
}

impl Runtime {
    /// Builds the runtime; an inconsistent snapshot (which compile never publishes, but
    /// the wire could carry) is refused so the proxy keeps the one it has.
    pub fn build(
        snapshot: Arc<Snapshot>,
        egress: &EgressConfig,
        metrics: &BackendMetrics,
        previous: Option<&Runtime>,
    ) -> Result<Self, String> {
        let router = Router::build(&snapshot.routes, &snapshot.host_owners)?;
        // Routes before backends: a snapshot refused here must not have started any
        // backend's health probes.
        let mut kept = previous.and_then(|p| KeptRoutes::of(p, &snapshot));
        let routes = snapshot
            .routes
            .iter()
            .map(|r| match kept.as_mut().and_then(|k| k.unchanged(r)) {
                Some(route) => Ok(route),
                None => RouteRuntime::build(r, &snapshot).map(Arc::new),
            })
            .collect::<Result<Vec<_>, String>>()?;
        // Backends (and their health probes) dial through this policy: they can be kept
        // only while what it is built from, the DnsRecords, stays the same.
        let reusable = previous.filter(|p| p.snapshot.dns_records == snapshot.dns_records);
        let dial = match reusable {
            Some(p) => p.dial.clone(),
            None => Arc::new(DialPolicy::build(egress, &snapshot)),
        };
        let ctx = BuildContext { dial: dial.clone(), metrics: metrics.clone() };
        let kept: HashMap<&str, usize> =
            reusable.map(|p| p.snapshot.backends.iter().enumerate().map(|(i, b)| (b.id.as_str(), i)).collect()).unwrap_or_default();
        let backends: Vec<_> = snapshot
            .backends
            .iter()
            .map(|b| match (reusable, kept.get(b.id.as_str())) {
                (Some(p), Some(&i)) if p.snapshot.backends[i] == *b => p.backends[i].clone(),
                _ => Arc::new(BackendRuntime::build(b, &ctx)),
            })
            .collect();
        let admissions = admissions(&snapshot, previous);
        let counters = metrics.traffic.resolve(&snapshot);
        let log_names = crate::access_log::PlainNames::of(
            routes.iter().map(|r| &*r.id),
            snapshot.backends.iter().map(|b| b.id.as_str()),
            backends.iter().map(|b| (0..).map_while(move |i| b.endpoint_name(i))),
        );
        Ok(Self { snapshot, dial, router, routes, backends, admissions, counters, log_names })
    }

    /// Endpoint health of every backend that checks it (for `/config_dump`).
    pub fn endpoint_health(&self) -> Vec<serde_json::Value> {
        self.backends.iter().filter_map(|b| b.health_report()).collect()
    }
}

/// The previous runtime's route runtimes a new snapshot can keep: a route runtime is made
/// from its route, the backends it names (their kind and timeout) and the apps, so one
/// whose route is the same, at the same backend indices, with those backends the same, and
/// the same apps, would be built the same. Kept, it also keeps its weighted cycle's place.
/// At 100,000 routes a change of one route otherwise rebuilds 100,000 of them
/// (docs/benchmarks.md, "Change to serving").
struct KeptRoutes<'a> {
    previous: &'a Runtime,
    /// By backend index: the new snapshot's backend equals the previous one's there.
    same_backend: Vec<bool>,
    /// The previous route after the last one found: routes mostly come in the same order.
    cursor: usize,
    /// The previous routes by id, made the first time the order does not give the route.
    by_id: Option<HashMap<&'a str, usize>>,
}

impl<'a> KeptRoutes<'a> {
    fn of(previous: &'a Runtime, snapshot: &Snapshot) -> Option<Self> {
        if previous.snapshot.apps != snapshot.apps {
            return None;
        }
        let same_backend = snapshot.backends.iter().enumerate().map(|(i, b)| previous.snapshot.backends.get(i) == Some(b)).collect();
        Some(Self { previous, same_backend, cursor: 0, by_id: None })
    }

    /// The previous runtime of `route`, if it would be built the same.
    fn unchanged(&mut self, route: &Route) -> Option<Arc<RouteRuntime>> {
        let before = &self.previous.snapshot.routes;
        let at = match before.get(self.cursor) {
            Some(r) if r.id == route.id => self.cursor,
            _ => {
                let by_id = self.by_id.get_or_insert_with(|| before.iter().enumerate().map(|(i, r)| (r.id.as_str(), i)).collect());
                *by_id.get(route.id.as_str())?
            }
        };
        self.cursor = at + 1;
        let same = before[at] == *route && route.backends.iter().all(|b| self.same_backend.get(b.backend) == Some(&true));
        same.then(|| self.previous.routes[at].clone())
    }
}

/// A route's total budget when it sets no `timeout`: the gateway's default, or longer
/// when one of its backends allows an attempt longer than that (a model's five minutes to
/// the first token must not be cut at 30 s by a route that never asked for less).
fn default_route_timeout(route: &Route, snapshot: &Snapshot) -> Duration {
    let longest_attempt = route.backends.iter().filter_map(|b| snapshot.backends.get(b.backend)?.timeout_ms).max();
    longest_attempt.map_or(DEFAULT_TIMEOUT, Duration::from_millis).max(DEFAULT_TIMEOUT)
}

impl RouteRuntime {
    fn build(route: &Route, snapshot: &Snapshot) -> Result<Self, String> {
        let bad = |e: &dyn std::fmt::Display| format!("route {}: {e}", route.id);
        let mut targets = Vec::with_capacity(route.backends.len());
        for b in &route.backends {
            if b.backend >= snapshot.backends.len() || b.weight == 0 {
                return Err(bad(&"backend index out of range or zero weight"));
            }
            let host = match &b.host {
                HostRule::Fixed(v) => HostPolicy::Fixed(HeaderValue::from_str(v).map_err(|e| bad(&e))?),
                HostRule::Client => HostPolicy::Client,
                HostRule::Endpoint => HostPolicy::Endpoint,
            };
            let event = matches!(
                snapshot.backends[b.backend].kind,
                BackendKind::Function { invocation: FunctionInvocation::Event { .. }, .. }
                    | BackendKind::EventBus { .. }
                    | BackendKind::DataService(_)
            );
            targets.push((Target { backend: b.backend, host, event }, b.weight));
        }
        let targets = WeightedCycle::new(targets).ok_or_else(|| bad(&"no backends, or weights overflow"))?;
        let add_headers = route
            .add_headers
            .iter()
            .map(|(n, v)| Ok((HeaderName::from_bytes(n.as_bytes())?, HeaderValue::from_str(v)?)))
            .collect::<Result<Vec<_>, Box<dyn std::error::Error>>>()
            .map_err(|e| bad(&e))?;
        // One parse of a Template route's path gives both its parameter names and what
        // its rewrite refers to.
        let template = match route.path_type {
            PathKind::Template => Some(PathTemplate::parse(&route.path).map_err(|e| bad(&e))?),
            _ => None,
        };
        let names: Vec<&str> = template.iter().flat_map(PathTemplate::param_names).collect();
        let add_query = (!route.add_query.is_empty())
            .then(|| form_urlencoded::Serializer::new(String::new()).extend_pairs(route.add_query.iter()).finish());
        Ok(Self {
            id: route.id.as_str().into(),
            rewrite: rewrite(route, &names).map_err(|e| bad(&e))?,
            add_headers,
            add_query,
            add_query_names: route.add_query.iter().map(|(name, _)| name.clone()).collect(),
            auth: Authenticator::build(&route.auth, &route.id, snapshot),
            timeout: route.timeout_ms.map_or_else(|| default_route_timeout(route, snapshot), Duration::from_millis),
            retries: route.retries.clone(),
            body_limit: route.body_limit,
            protocols: route.protocols,
            param_names: names.iter().map(|&name| Arc::from(name)).collect(),
            targets,
        })
    }

    /// Picks a backend by weight, exactly (see [`WeightedCycle`]).
    pub fn pick(&self) -> &Target {
        self.targets.pick()
    }

    /// The backend path for a request: rewritten, or the client's (normalized) path
    /// unchanged. A rewrite can never produce a dot segment: compile refuses them in the
    /// target and normalization removes them from captures; the check here keeps that
    /// true whatever a snapshot says.
    pub fn backend_path<'a>(&self, path: &'a str, params: &[(usize, usize)]) -> Result<std::borrow::Cow<'a, str>, GatewayError> {
        let rewritten = self.rewritten(path, params);
        if self.rewrite.is_some() && request_path::has_dot_segment(&rewritten) {
            return Err(GatewayError::PathRefused("the rewritten path would hold a dot segment"));
        }
        Ok(rewritten)
    }

    fn rewritten<'a>(&self, path: &'a str, params: &[(usize, usize)]) -> std::borrow::Cow<'a, str> {
        match &self.rewrite {
            None => path.into(),
            Some(Rewrite::Template(parts)) => {
                let mut out = String::with_capacity(path.len() + 16);
                for part in parts {
                    match part {
                        RewritePart::Literal(l) => out.push_str(l),
                        RewritePart::Param(i) => {
                            let (s, e) = params[*i];
                            out.push_str(&path[s..e]);
                        }
                    }
                }
                out.into()
            }
            Some(Rewrite::Prefix { matched, replacement }) => {
                let rest = &path[matched.len().min(path.len())..];
                let mut out = String::with_capacity(replacement.len() + rest.len() + 1);
                out.push_str(replacement);
                if !rest.is_empty() && !rest.starts_with('/') && !out.ends_with('/') {
                    out.push('/');
                }
                if out.ends_with('/') && rest.starts_with('/') {
                    out.push_str(&rest[1..]);
                } else {
                    out.push_str(rest);
                }
                if out.is_empty() {
                    out.push('/');
                }
                out.into()
            }
        }
    }
}

/// The route's rewrite; `params` are a Template route's parameter names, in the order
/// the router reports their ranges (empty for the other kinds).
fn rewrite(route: &Route, params: &[&str]) -> Result<Option<Rewrite>, String> {
    let Some(target) = &route.rewrite_path else { return Ok(None) };
    Ok(Some(match route.path_type {
        PathKind::Prefix => Rewrite::Prefix { matched: route.path.trim_end_matches('/').into(), replacement: target.as_str().into() },
        PathKind::Exact | PathKind::Template => Rewrite::Template(parse_rewrite(target, params)?),
    }))
}

/// The names an access log line shows, looked up in this runtime when the line is written.
impl crate::access_log::LineNames for Runtime {
    fn route(&self, route: usize) -> Option<Name<'_>> {
        Some(self.log_names.route(route, &self.routes.get(route)?.id))
    }

    fn backend(&self, backend: usize) -> Option<Name<'_>> {
        Some(self.log_names.backend(backend, self.snapshot.backends.get(backend)?.id.as_str()))
    }

    fn upstream(&self, backend: usize, endpoint: usize) -> Option<Name<'_>> {
        // `backends` is built one for one from the snapshot's: no second bounds check.
        Some(self.log_names.endpoint(backend, self.backends.get(backend)?.endpoint_name(endpoint)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_compile::snapshot::{Auth, Backend, BackendKind, RouteBackend};

    fn snapshot_with(route: Route, backends: usize) -> Snapshot {
        let backend = |i: usize| {
            Backend::with_defaults(format!("default/b{i}"), BackendKind::Mock { status: 200, headers: vec![], body: String::new() })
        };
        Snapshot { routes: vec![route], backends: (0..backends).map(backend).collect(), ..Snapshot::default() }
    }

    fn route(path: &str, kind: PathKind, rewrite: Option<&str>) -> Route {
        Route {
            id: "default/r".into(),
            hosts: vec![],
            path: path.into(),
            path_type: kind,
            methods: vec![],
            headers: vec![],
            query_params: vec![],
            backends: vec![RouteBackend { backend: 0, weight: 1, host: HostRule::Endpoint }],
            rewrite_path: rewrite.map(str::to_owned),
            add_headers: vec![],
            add_query: vec![("source".into(), "gate way".into())],
            auth: Auth::Anonymous,
            timeout_ms: None,
            retries: None,
            body_limit: 10,
            protocols: Default::default(),
        }
    }

    fn runtime(route: Route, backends: usize) -> Runtime {
        Runtime::build(Arc::new(snapshot_with(route, backends)), &EgressConfig::default(), &BackendMetrics::default(), None).unwrap()
    }

    /// A rebuild shares the route runtimes that would be built the same (and their
    /// weighted cycles' places), found by id in any order, and builds the others anew.
    #[test]
    fn a_rebuild_keeps_the_route_runtimes_of_routes_that_did_not_change() {
        let named = |id: &str, backend: usize| Route {
            id: id.into(),
            backends: vec![RouteBackend { backend, weight: 1, host: HostRule::Endpoint }],
            ..route(&format!("/{id}"), PathKind::Exact, None)
        };
        let mut first = snapshot_with(named("d/a", 0), 2);
        first.routes.extend([named("d/b", 1), named("d/c", 0)]);
        let build = |s: &Snapshot, previous: Option<&Runtime>| {
            Runtime::build(Arc::new(s.clone()), &EgressConfig::default(), &BackendMetrics::default(), previous).unwrap()
        };
        let before = build(&first, None);
        let same = |a: &Runtime, i: usize, b: &Runtime, j: usize| Arc::ptr_eq(&a.routes[i], &b.routes[j]);

        // A new route in front, "d/c" moved before "d/b", "d/b" changed.
        let mut second = first.clone();
        second.routes = vec![named("d/new", 0), named("d/a", 0), named("d/c", 0), Route { timeout_ms: Some(5), ..named("d/b", 1) }];
        let after = build(&second, Some(&before));
        assert!(same(&after, 1, &before, 0) && same(&after, 2, &before, 2), "d/a and d/c are kept");
        assert!(!same(&after, 3, &before, 1), "the changed d/b is built anew");
        assert_eq!(after.routes[3].timeout, Duration::from_millis(5));
        assert_eq!(&*after.routes[0].id, "d/new");

        // A changed backend rebuilds the routes that name it (its kind and timeout are in
        // their runtimes), not the others.
        let mut third = second.clone();
        third.backends[1].timeout_ms = Some(90_000);
        let again = build(&third, Some(&after));
        assert!(same(&again, 1, &after, 1), "d/a names backend 0 only");
        assert!(!same(&again, 3, &after, 3), "d/b names the changed backend 1");
        assert_eq!(again.routes[3].timeout, Duration::from_millis(5));

        // Changed apps rebuild every route (their authenticators are made from the apps).
        let mut fourth = third.clone();
        fourth.apps.push(switchyard_compile::snapshot::App {
            namespace: "d".into(),
            name: "app".into(),
            app_key: String::new(),
            app_secret: String::new(),
            app_code: "code".into(),
        });
        let rebuilt = build(&fourth, Some(&again));
        assert!((0..4).all(|i| !same(&rebuilt, i, &again, i)));
    }

    #[test]
    fn a_template_rewrite_fills_parameters_from_the_request_path() {
        let rt = runtime(route("/orders/{id}/items/{item}", PathKind::Template, Some("/v1/{item}/of/{id}")), 1);
        let path = "/orders/42/items/7";
        assert_eq!(rt.routes[0].backend_path(path, &[(8, 10), (17, 18)]).unwrap(), "/v1/7/of/42");
    }

    #[test]
    fn a_prefix_rewrite_replaces_only_the_matched_prefix() {
        let rt = runtime(route("/api/", PathKind::Prefix, Some("/internal")), 1);
        let r = &rt.routes[0];
        assert_eq!(r.backend_path("/api/users/1", &[]).unwrap(), "/internal/users/1");
        assert_eq!(r.backend_path("/api", &[]).unwrap(), "/internal");
        let rt = runtime(route("/api", PathKind::Prefix, Some("/")), 1);
        assert_eq!(rt.routes[0].backend_path("/api/users", &[]).unwrap(), "/users");
        assert_eq!(rt.routes[0].backend_path("/api", &[]).unwrap(), "/");
    }

    #[test]
    fn a_rewrite_that_would_produce_a_dot_segment_is_refused() {
        // Compile refuses such a target; a snapshot from elsewhere is checked anyway.
        let rt = runtime(route("/files/{name}", PathKind::Template, Some("/x/{name}/..")), 1);
        let err = rt.routes[0].backend_path("/files/a", &[(7, 8)]).unwrap_err();
        assert_eq!(err.code(), "A400PR");
    }

    #[test]
    fn normalized_paths_never_climb_out_of_a_prefix_rewrite_or_a_template_capture() {
        let prefix = runtime(route("/static", PathKind::Prefix, Some("/public")), 1);
        let template = runtime(route("/files/{name}", PathKind::Template, Some("/store/{name}.bin")), 1);
        let attacks = [
            "/static/../private/x",
            "/static/%2e%2e/private",
            "/static/.%2E/%2e%2e/x",
            "/static//..//x",
            "/static/./../../x",
            "/files/..",
            "/files/%2E%2E",
            "/files/..%2F..%2Fetc",
            "/files/..%5C..%5Cetc",
            "/files/%00",
            "/static/a/b/../../..",
            "/static/./a/../b",
            "/files/%2e%2e%2e",
        ];
        let mut rewritten = 0;
        for raw in attacks {
            let Ok(path) = request_path::normalize(raw) else { continue };
            if path == "/static" || path.starts_with("/static/") {
                let out = prefix.routes[0].backend_path(&path, &[]).unwrap();
                assert!(out.starts_with("/public") && !request_path::has_dot_segment(&out), "{raw} -> {out}");
                rewritten += 1;
            }
            let segments: Vec<&str> = path.split('/').collect();
            if let ["", "files", name] = segments.as_slice() {
                assert!(!name.is_empty() && *name != "." && *name != "..", "{raw}: a capture is one plain segment");
                let out = template.routes[0].backend_path(&path, &[(7, path.len())]).unwrap();
                assert!(out.starts_with("/store/") && !request_path::has_dot_segment(&out), "{raw} -> {out}");
                rewritten += 1;
            }
        }
        assert_eq!(rewritten, 2, "the cases that still match are rewritten safely");
    }

    #[test]
    fn constant_query_parameters_are_encoded_once_at_build_time() {
        let rt = runtime(route("/x", PathKind::Exact, None), 1);
        assert_eq!(rt.routes[0].add_query.as_deref(), Some("source=gate+way"));
    }

    #[test]
    fn weighted_choice_splits_exactly_by_weight() {
        let mut r = route("/x", PathKind::Exact, None);
        r.backends = vec![
            RouteBackend { backend: 0, weight: 3, host: HostRule::Endpoint },
            RouteBackend { backend: 1, weight: 1, host: HostRule::Endpoint },
        ];
        let rt = runtime(r, 2);
        let mut counts = [0; 2];
        for _ in 0..400 {
            counts[rt.routes[0].pick().backend] += 1;
        }
        assert_eq!(counts, [300, 100]);
    }

    #[test]
    fn backends_whose_definition_did_not_change_keep_their_runtime_across_snapshots() {
        let first = runtime(route("/x", PathKind::Exact, None), 2);
        let mut changed = snapshot_with(route("/x", PathKind::Exact, None), 2);
        changed.backends[1].timeout_ms = Some(1234);
        let second = Runtime::build(Arc::new(changed.clone()), &EgressConfig::default(), &BackendMetrics::default(), Some(&first)).unwrap();
        assert!(Arc::ptr_eq(&first.backends[0], &second.backends[0]), "unchanged: health and outlier state are kept");
        assert!(!Arc::ptr_eq(&first.backends[1], &second.backends[1]), "changed: rebuilt");
        changed.dns_records.push(switchyard_compile::snapshot::DnsEntry { domain: "a.internal".into(), records: vec![] });
        let third = Runtime::build(Arc::new(changed), &EgressConfig::default(), &BackendMetrics::default(), Some(&second)).unwrap();
        assert!(!Arc::ptr_eq(&second.backends[0], &third.backends[0]), "new DnsRecords: every backend dials through a new policy");
    }

    #[test]
    fn only_event_function_targets_keep_the_event_source_and_template_names_are_parsed_once() {
        use switchyard_compile::snapshot::FunctionInvocation;
        let mut r = route("/users/{id}/orders/{order}", PathKind::Template, None);
        r.backends = vec![
            RouteBackend { backend: 0, weight: 1, host: HostRule::Endpoint },
            RouteBackend { backend: 1, weight: 1, host: HostRule::Endpoint },
            RouteBackend { backend: 2, weight: 1, host: HostRule::Endpoint },
        ];
        let mut snapshot = snapshot_with(r, 3);
        let event = FunctionInvocation::Event { max_request_bytes: 1, max_response_bytes: 1 };
        snapshot.backends[1].kind = BackendKind::Function { endpoints: vec![], invocation: event };
        snapshot.backends[2].kind = BackendKind::Function { endpoints: vec![], invocation: FunctionInvocation::Http };
        let rt = Runtime::build(Arc::new(snapshot), &EgressConfig::default(), &BackendMetrics::default(), None).unwrap();
        let mut flags = [None; 3];
        for _ in 0..3 {
            let target = rt.routes[0].pick();
            flags[target.backend] = Some(target.event);
        }
        assert_eq!(flags, [Some(false), Some(true), Some(false)], "mock, Event function, Http function");
        let names: Vec<&str> = rt.routes[0].param_names.iter().map(|n| &**n).collect();
        assert_eq!(names, ["id", "order"]);
        assert!(runtime(route("/x/", PathKind::Prefix, None), 1).routes[0].param_names.is_empty());
    }

    #[test]
    fn a_snapshot_pointing_at_a_missing_backend_is_refused() {
        let mut r = route("/x", PathKind::Exact, None);
        r.backends[0].backend = 5;
        assert!(Runtime::build(Arc::new(snapshot_with(r, 1)), &EgressConfig::default(), &BackendMetrics::default(), None).is_err());
    }

    #[test]
    fn a_backend_this_proxy_cannot_build_is_unavailable_and_the_rest_of_the_snapshot_loads() {
        let mut snapshot = snapshot_with(route("/x", PathKind::Exact, None), 2);
        let endpoint = switchyard_compile::snapshot::Endpoint {
            scheme: "https".into(),
            authority: "10.0.0.5:443".into(),
            host: "10.0.0.5".into(),
            base_path: String::new(),
            tls_server_name: Some("not a server name:443".into()),
            weight: 1,
        };
        snapshot.backends[1].kind = BackendKind::Http { endpoints: vec![endpoint] };
        let rt = Runtime::build(Arc::new(snapshot), &EgressConfig::default(), &BackendMetrics::default(), None).unwrap();
        assert!(matches!(*rt.backends[0], BackendRuntime::Mock(_)), "the good backend is built");
        assert!(matches!(*rt.backends[1], BackendRuntime::Unavailable(_)), "the bad one answers 503 instead of failing the snapshot");
    }
}
