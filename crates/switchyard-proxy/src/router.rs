//! Route matching: synchronous and free of I/O, built once per snapshot off the request
//! path and then only read.
//!
//! Precedence, highest first (each rule has its own test below):
//! 1. Host: an exact host beats the longest matching `*.suffix`, which beats routes
//!    with no hosts. A host bucket with no matching route falls through to the next.
//! 2. Path kind: Exact, then Template, then Prefix.
//! 3. Within templates: more literal segments first, then a literal earlier in the path.
//!    Within prefixes: the longer prefix first.
//! 4. More header and query matchers first.
//! 5. A route naming methods beats one that takes any method.
//! 6. The older route (snapshot order) first.
//!
//! Lookup cost does not grow with the number of routes: hosts are hash lookups (one per
//! label of the request's host for wildcards), and each host's table indexes its routes by
//! path (exact paths by text, templates in a segment trie (`router/templates.rs`), prefixes
//! by text at each segment boundary), so a request costs its host's labels and its path's
//! segments. `router/equivalence_tests.rs` checks the index against the linear matcher it
//! replaced on generated route sets.
//!
//! A path that matches only with another method answers 405 with the methods that would
//! have matched (the `Allow` header); anything else 404.
//!
//! Hosts per namespace: when the snapshot lists host owners, a request for an owned host
//! (its exact owner, else the longest owned wildcard covering it) is matched only against
//! tables of the owner's namespace, and routes with no hosts serve only hosts nobody owns.

use std::cmp::Reverse;
use std::collections::HashMap;

use http::{HeaderMap, HeaderName, HeaderValue, Method};
use switchyard_compile::path_template::{PathTemplate, Segment};
use switchyard_compile::snapshot::{HostOwner, PathKind, Route};

use self::templates::TemplateTrie;

mod templates;

/// A matched route and the byte ranges of its template parameters in the path.
#[derive(Debug, PartialEq, Eq)]
pub struct RouteMatch {
    pub route: usize,
    pub params: Vec<(usize, usize)>,
}

/// Why nothing matched.
#[derive(Debug, PartialEq, Eq)]
pub enum NoMatch {
    NotFound,
    /// Routes match the path (hosts, headers and query too) but not the method; these
    /// are the methods they accept.
    MethodNotAllowed(AllowedMethods),
}

/// The union of the methods named by routes that matched a request except for its method.
/// Built only on the way to a 405: a successful match never touches it (and an empty one
/// holds no allocation).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct AllowedMethods {
    /// Bits per [`method_bit`].
    bits: u16,
    /// Methods outside the known set, sorted (so the header does not depend on the order
    /// the index visits routes in).
    other: Vec<Method>,
}

impl AllowedMethods {
    fn add(&mut self, candidate: &Candidate) {
        self.bits |= candidate.methods;
        for method in &candidate.other_methods {
            if let Err(at) = self.other.binary_search_by(|m| m.as_str().cmp(method.as_str())) {
                self.other.insert(at, method.clone());
            }
        }
    }

    /// The methods, the known ones in a fixed order (GET, HEAD, POST, PUT, DELETE, PATCH,
    /// OPTIONS) and then any others by name.
    pub fn methods(&self) -> impl Iterator<Item = &Method> {
        KNOWN_METHODS.iter().filter(|m| method_bit(m).is_some_and(|bit| self.bits & bit != 0)).chain(&self.other)
    }

    /// The value of an `Allow` header: `GET, HEAD`.
    pub fn header_value(&self) -> String {
        let names: Vec<&str> = self.methods().map(Method::as_str).collect();
        names.join(", ")
    }
}

const KNOWN_METHODS: [Method; 7] = [Method::GET, Method::HEAD, Method::POST, Method::PUT, Method::DELETE, Method::PATCH, Method::OPTIONS];

/// The parts of a request matching looks at.
pub struct RequestView<'a> {
    /// Host without port, any case.
    pub host: &'a str,
    pub method: &'a Method,
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub headers: &'a HeaderMap,
}

#[derive(Default)]
pub struct Router {
    exact_hosts: HashMap<Box<str>, HostTable>,
    /// `".example.com" -> table`: looked up per `.` of the request's host, leftmost
    /// (longest suffix) first, so the cost is the host's labels, not the number of patterns.
    wildcard_hosts: HashMap<Box<str>, HostTable>,
    any_host: Table,
    /// True when hosts belong to namespaces (the snapshot lists owners).
    owned: bool,
}

/// The routes naming one host pattern, and the namespace owning it (by index).
#[derive(Default)]
struct HostTable {
    owner: Option<u32>,
    table: Table,
}

/// The routes of one host bucket, indexed by path so that a lookup costs the path's
/// length, not the number of routes: exact paths by text, templates in a segment trie,
/// prefixes by text (one lookup per `/` or `;` boundary of the path, longest first).
#[derive(Default)]
struct Table {
    exact: HashMap<Box<str>, Vec<Candidate>>,
    templates: TemplateTrie,
    /// Keyed without the trailing slash (empty for `/`).
    prefixes: HashMap<Box<str>, Vec<Candidate>>,
    /// The longest key of `prefixes`: boundaries past it need no lookup.
    longest_prefix: usize,
}

struct Candidate {
    route: usize,
    /// Bit per [`method_bit`]; 0 means any method.
    methods: u16,
    /// A method outside the known set (matched by comparison).
    other_methods: Vec<Method>,
    headers: Vec<(HeaderName, Option<HeaderValue>)>,
    query: Vec<(String, Option<String>)>,
    path: PathMatcher,
    precedence: Precedence,
}

enum PathMatcher {
    Exact,
    Template(Vec<Segment>),
    /// Without a trailing slash (empty for `/`).
    Prefix(Box<str>),
}

/// Sort key inside one list; smaller sorts first.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct Precedence {
    specificity: Reverse<usize>,
    /// Template segment shape: literal (0) before parameter (1), left to right.
    shape: Vec<u8>,
    matchers: Reverse<usize>,
    any_method: bool,
    age: usize,
}

impl Router {
    /// Builds the router from the snapshot's routes (already validated by compile) and
    /// host owners (empty when hosts are shared).
    pub fn build(routes: &[Route], owners: &[HostOwner]) -> Result<Self, String> {
        let mut router = Router { owned: !owners.is_empty(), ..Router::default() };
        // Namespaces by index, one order for owners and routes alike.
        let mut namespaces: Vec<&str> = Vec::new();
        let owner_ids: Vec<u32> = owners.iter().map(|o| intern(&mut namespaces, &o.namespace)).collect();
        let route_ids: Vec<u32> = routes.iter().map(|r| intern(&mut namespaces, r.id.split('/').next().unwrap_or_default())).collect();
        for (owner, id) in owners.iter().zip(owner_ids) {
            router.host_table(&owner.host).owner = Some(id);
        }
        for (index, route) in routes.iter().enumerate() {
            if route.hosts.is_empty() {
                router.any_host.insert(candidate(index, route)?, &route.path, route.path_type);
            }
            for host in &route.hosts {
                let entry = router.host_table(host);
                if entry.owner.is_some_and(|owner| owner != route_ids[index]) {
                    return Err(format!("route {} names host {host}, which another namespace owns", route.id));
                }
                entry.table.insert(candidate(index, route)?, &route.path, route.path_type);
            }
        }
        for table in router.tables_mut() {
            table.sort();
        }
        Ok(router)
    }

    /// The table of an exact host or a `*.suffix` pattern, created empty when new.
    fn host_table(&mut self, host: &str) -> &mut HostTable {
        match host.strip_prefix('*') {
            Some(suffix) => self.wildcard_hosts.entry(suffix.into()).or_default(),
            None => self.exact_hosts.entry(host.into()).or_default(),
        }
    }

    fn tables_mut(&mut self) -> impl Iterator<Item = &mut Table> {
        self.exact_hosts
            .values_mut()
            .chain(self.wildcard_hosts.values_mut())
            .map(|t| &mut t.table)
            .chain(std::iter::once(&mut self.any_host))
    }

    /// Finds the route for a request.
    pub fn find(&self, request: &RequestView<'_>) -> Result<RouteMatch, NoMatch> {
        // Filled only by candidates whose method does not match: no allocation unless a
        // route names a method outside the known set.
        let mut allowed = AllowedMethods::default();
        let mut method_mismatch = false;
        let lowered;
        let host = if request.host.bytes().any(|b| b.is_ascii_uppercase()) {
            lowered = request.host.to_ascii_lowercase();
            lowered.as_str()
        } else {
            request.host
        };
        let exact = self.exact_hosts.get(host);
        // A wildcard needs a label before its suffix: no lookup at offset 0.
        let wildcards = || {
            let dots = if self.wildcard_hosts.is_empty() { "" } else { host };
            dots.char_indices().filter(|&(at, c)| at > 0 && c == '.').filter_map(|(at, _)| self.wildcard_hosts.get(&host[at..]))
        };
        // Shared hosts: every owner is None, so every table is consulted.
        let owner = if self.owned { exact.and_then(|t| t.owner).or_else(|| wildcards().find_map(|t| t.owner)) } else { None };
        let named = exact.into_iter().chain(wildcards()).filter(|t| t.owner == owner).map(|t| &t.table);
        let unnamed = owner.is_none().then_some(&self.any_host);
        for table in named.chain(unnamed) {
            if let Some(found) = table.find(request, &mut method_mismatch, &mut allowed) {
                return Ok(found);
            }
        }
        Err(if method_mismatch { NoMatch::MethodNotAllowed(allowed) } else { NoMatch::NotFound })
    }
}

impl Table {
    fn insert(&mut self, candidate: Candidate, path: &str, kind: PathKind) {
        match (kind, &candidate.path) {
            (PathKind::Exact, _) | (PathKind::Template, PathMatcher::Exact) => self.exact.entry(path.into()).or_default().push(candidate),
            (PathKind::Template, _) => self.templates.insert(candidate),
            (PathKind::Prefix, PathMatcher::Prefix(prefix)) => {
                self.longest_prefix = self.longest_prefix.max(prefix.len());
                self.prefixes.entry(prefix.clone()).or_default().push(candidate);
            }
            (PathKind::Prefix, _) => {}
        }
    }

    fn sort(&mut self) {
        for list in self.exact.values_mut().chain(self.prefixes.values_mut()) {
            list.sort_by(|a, b| a.precedence.cmp(&b.precedence));
            // Most lists hold one route; a push left room for four.
            list.shrink_to_fit();
        }
        self.templates.finish();
    }

    /// The first route in precedence order (exact, template, prefix) matching the request.
    fn find(&self, request: &RequestView<'_>, method_mismatch: &mut bool, allowed: &mut AllowedMethods) -> Option<RouteMatch> {
        if let Some(list) = self.exact.get(request.path)
            && let Some(found) = first_match(list, request, method_mismatch, allowed)
        {
            return Some(RouteMatch { route: found.route, params: Vec::new() });
        }
        if let Some(found) = self.templates.find(request, method_mismatch, allowed) {
            // The trie matched the path already; this only collects the parameters.
            let params = match &found.path {
                PathMatcher::Template(segments) => match_template(segments, request.path).unwrap_or_default(),
                _ => Vec::new(),
            };
            return Some(RouteMatch { route: found.route, params });
        }
        self.find_prefix(request, method_mismatch, allowed).map(|found| RouteMatch { route: found.route, params: Vec::new() })
    }

    /// Tries the path's prefixes that end at a segment boundary (the end, a `/`, or a `;`:
    /// `/admin;x/...` is `/admin/...` to servlet containers, so it must meet the `/admin`
    /// route, not fall through to a broader one), longest first.
    fn find_prefix(&self, request: &RequestView<'_>, method_mismatch: &mut bool, allowed: &mut AllowedMethods) -> Option<&Candidate> {
        if self.prefixes.is_empty() {
            return None;
        }
        let path = request.path;
        let bytes = path.as_bytes();
        let start = path.len().min(self.longest_prefix);
        for end in (0..=start).rev() {
            if end < bytes.len() && bytes[end] != b'/' && bytes[end] != b';' {
                continue;
            }
            // `end` is at an ASCII byte or the end, so a char boundary.
            if let Some(list) = self.prefixes.get(&path[..end])
                && let Some(found) = first_match(list, request, method_mismatch, allowed)
            {
                return Some(found);
            }
        }
        None
    }
}

impl Candidate {
    /// The linear matcher's path test, kept as the reference the index is tested against.
    #[cfg(test)]
    fn path_matches(&self, path: &str) -> Option<Vec<(usize, usize)>> {
        match &self.path {
            PathMatcher::Exact => Some(Vec::new()),
            PathMatcher::Prefix(prefix) => {
                let rest = path.strip_prefix(&**prefix)?;
                // `/admin;x/...` is `/admin/...` to servlet containers: it must meet the
                // `/admin` route, not fall through to a broader one.
                (rest.is_empty() || rest.starts_with('/') || rest.starts_with(';')).then(Vec::new)
            }
            PathMatcher::Template(segments) => match_template(segments, path),
        }
    }

    fn method_matches(&self, method: &Method) -> bool {
        if self.methods == 0 && self.other_methods.is_empty() {
            return true;
        }
        match method_bit(method) {
            Some(bit) => self.methods & bit != 0,
            None => self.other_methods.contains(method),
        }
    }

    fn headers_match(&self, headers: &HeaderMap) -> bool {
        self.headers.iter().all(|(name, want)| match (headers.get(name), want) {
            (Some(_), None) => true,
            (Some(have), Some(want)) => have == want,
            (None, _) => false,
        })
    }

    fn query_matches(&self, query: Option<&str>) -> bool {
        if self.query.is_empty() {
            return true;
        }
        let query = query.unwrap_or("");
        self.query.iter().all(|(name, want)| {
            let first = form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k == name);
            match (first, want) {
                (Some(_), None) => true,
                (Some((_, have)), Some(want)) => have == want.as_str(),
                (None, _) => false,
            }
        })
    }
}

/// The first candidate of a sorted list matching headers, query and method.
fn first_match<'t>(
    candidates: &'t [Candidate],
    request: &RequestView<'_>,
    method_mismatch: &mut bool,
    allowed: &mut AllowedMethods,
) -> Option<&'t Candidate> {
    for candidate in candidates {
        if !candidate.headers_match(request.headers) || !candidate.query_matches(request.query) {
            continue;
        }
        if !candidate.method_matches(request.method) {
            // Only a candidate naming methods can miss one, so `allowed` is never empty
            // when this is set.
            *method_mismatch = true;
            allowed.add(candidate);
            continue;
        }
        return Some(candidate);
    }
    None
}

fn intern<'a>(namespaces: &mut Vec<&'a str>, namespace: &'a str) -> u32 {
    let at = namespaces.iter().position(|n| *n == namespace).unwrap_or_else(|| {
        namespaces.push(namespace);
        namespaces.len() - 1
    });
    u32::try_from(at).unwrap_or(u32::MAX)
}

/// Matches `/a/{x}/c` against a path, returning each parameter's byte range.
fn match_template(segments: &[Segment], path: &str) -> Option<Vec<(usize, usize)>> {
    let rest = path.strip_prefix('/')?;
    let mut params = Vec::new();
    let mut offset = 1;
    let mut parts = rest.split('/');
    for segment in segments {
        let part = parts.next()?;
        match segment {
            Segment::Literal(literal) if literal == part => {}
            Segment::Literal(_) => return None,
            Segment::Param(_) if part.is_empty() => return None,
            Segment::Param(_) => params.push((offset, offset + part.len())),
        }
        offset += part.len() + 1;
    }
    parts.next().is_none().then_some(params)
}

fn candidate(index: usize, route: &Route) -> Result<Candidate, String> {
    let (path, specificity, shape) = match route.path_type {
        PathKind::Exact => (PathMatcher::Exact, 0, Vec::new()),
        PathKind::Prefix => {
            let prefix = route.path.trim_end_matches('/');
            (PathMatcher::Prefix(prefix.into()), prefix.len(), Vec::new())
        }
        PathKind::Template => {
            let template = PathTemplate::parse(&route.path)?;
            if template.param_names().next().is_none() {
                (PathMatcher::Exact, 0, Vec::new())
            } else {
                let shape = template.segments.iter().map(|s| u8::from(matches!(s, Segment::Param(_)))).collect();
                let literals = template.literal_count();
                (PathMatcher::Template(template.segments), literals, shape)
            }
        }
    };
    let (methods, other_methods) = methods(&route.methods)?;
    let headers = route
        .headers
        .iter()
        .map(|h| {
            let name = HeaderName::from_bytes(h.name.as_bytes()).map_err(|e| e.to_string())?;
            let value = h.value.as_deref().map(HeaderValue::from_str).transpose().map_err(|e| e.to_string())?;
            Ok((name, value))
        })
        .collect::<Result<Vec<_>, String>>()?;
    let query: Vec<(String, Option<String>)> = route.query_params.iter().map(|q| (q.name.clone(), q.value.clone())).collect();
    let precedence = Precedence {
        specificity: Reverse(specificity),
        shape,
        matchers: Reverse(headers.len() + query.len()),
        any_method: methods == 0 && other_methods.is_empty(),
        age: index,
    };
    Ok(Candidate { route: index, methods, other_methods, headers, query, path, precedence })
}

fn methods(names: &[String]) -> Result<(u16, Vec<Method>), String> {
    let mut bits = 0;
    let mut other = Vec::new();
    for name in names {
        let method = Method::from_bytes(name.as_bytes()).map_err(|e| e.to_string())?;
        match method_bit(&method) {
            Some(bit) => bits |= bit,
            None => other.push(method),
        }
    }
    Ok((bits, other))
}

fn method_bit(method: &Method) -> Option<u16> {
    Some(match *method {
        Method::GET => 1,
        Method::HEAD => 2,
        Method::POST => 4,
        Method::PUT => 8,
        Method::DELETE => 16,
        Method::PATCH => 32,
        Method::OPTIONS => 64,
        _ => return None,
    })
}

#[cfg(test)]
mod equivalence_tests;
#[cfg(test)]
mod tests;
