//! The indexed table (exact map, template trie, prefix map) against the linear matcher it
//! replaced, on generated route sets: same route, same parameters, and on a miss the same
//! 405 methods. Fixed seeds, so a failure reproduces; the vocabulary is small so that
//! routes overlap (shared literals, templates against literals, nested prefixes, equal
//! paths with different matchers and methods) and every precedence rule is exercised.

use super::*;
use switchyard_compile::snapshot::{Auth, KeyMatch};

/// The matcher before the index: every candidate in one sorted list per path kind, tried
/// one by one (kept verbatim as the reference).
#[derive(Default)]
struct LinearTable {
    exact: HashMap<Box<str>, Vec<Candidate>>,
    templates: Vec<Candidate>,
    prefixes: Vec<Candidate>,
}

impl LinearTable {
    fn insert(&mut self, candidate: Candidate, path: &str, kind: PathKind) {
        match (kind, &candidate.path) {
            (PathKind::Exact, _) | (PathKind::Template, PathMatcher::Exact) => self.exact.entry(path.into()).or_default().push(candidate),
            (PathKind::Template, _) => self.templates.push(candidate),
            (PathKind::Prefix, _) => self.prefixes.push(candidate),
        }
    }

    fn sort(&mut self) {
        for list in self.exact.values_mut() {
            list.sort_by(|a, b| a.precedence.cmp(&b.precedence));
        }
        self.templates.sort_by(|a, b| a.precedence.cmp(&b.precedence));
        self.prefixes.sort_by(|a, b| a.precedence.cmp(&b.precedence));
    }

    fn find(&self, request: &RequestView<'_>, method_mismatch: &mut bool, allowed: &mut AllowedMethods) -> Option<RouteMatch> {
        let exact = self.exact.get(request.path).map(Vec::as_slice).unwrap_or_default();
        for candidate in exact.iter().chain(&self.templates).chain(&self.prefixes) {
            let Some(params) = candidate.path_matches(request.path) else { continue };
            if !candidate.headers_match(request.headers) || !candidate.query_matches(request.query) {
                continue;
            }
            if !candidate.method_matches(request.method) {
                *method_mismatch = true;
                allowed.add(candidate);
                continue;
            }
            return Some(RouteMatch { route: candidate.route, params });
        }
        None
    }
}

/// xorshift64*: small, deterministic, good enough to spread choices.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }

    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
}

const WORDS: [&str; 4] = ["a", "b", "users", "v1"];

fn generated_route(rng: &mut Rng, index: usize) -> Route {
    let depth = 1 + rng.below(4);
    let kind = [PathKind::Exact, PathKind::Template, PathKind::Template, PathKind::Prefix][rng.below(4)];
    let mut path = String::new();
    for at in 0..depth {
        path.push('/');
        if kind == PathKind::Template && rng.chance(45) {
            path.push_str(&format!("{{p{at}}}"));
        } else {
            path.push_str(rng.pick(&WORDS));
        }
    }
    if kind == PathKind::Prefix && rng.chance(30) {
        path.push('/');
    }
    if kind == PathKind::Prefix && rng.chance(10) {
        path = "/".into();
    }
    let methods: &[&str] = [&[][..], &["GET"], &["POST", "PUT"], &["PURGE"], &["GET", "LINK"]][rng.below(5)];
    let mut headers = Vec::new();
    if rng.chance(25) {
        headers.push(KeyMatch { name: "x-env".into(), value: rng.chance(50).then(|| "canary".into()) });
    }
    let mut query_params = Vec::new();
    if rng.chance(15) {
        query_params.push(KeyMatch { name: "debug".into(), value: None });
    }
    Route {
        id: format!("ns/r{index}"),
        hosts: Vec::new(),
        path,
        path_type: kind,
        methods: methods.iter().map(|m| (*m).to_owned()).collect(),
        headers,
        query_params,
        backends: Vec::new(),
        rewrite_path: None,
        add_headers: Vec::new(),
        add_query: Vec::new(),
        auth: Auth::Anonymous,
        timeout_ms: None,
        retries: None,
        body_limit: 1024,
        protocols: Default::default(),
    }
}

/// A request path near the routes: their words, parameter values, empty segments,
/// `;` parameters and trailing slashes.
fn generated_path(rng: &mut Rng) -> String {
    let depth = 1 + rng.below(5);
    let mut path = String::new();
    for _ in 0..depth {
        path.push('/');
        match rng.below(10) {
            0 => {}
            1 => path.push_str("42"),
            2 => path.push_str("a;jsessionid=1"),
            _ => path.push_str(rng.pick(&WORDS)),
        }
    }
    if rng.chance(10) {
        path.push('/');
    }
    path
}

fn build<T: Default>(routes: &[Route], mut insert: impl FnMut(&mut T, Candidate, &str, PathKind)) -> T {
    let mut table = T::default();
    for (index, route) in routes.iter().enumerate() {
        insert(&mut table, candidate(index, route).unwrap(), &route.path, route.path_type);
    }
    table
}

#[test]
fn the_index_picks_the_same_route_as_the_linear_matcher_on_generated_route_sets() {
    let methods = [Method::GET, Method::POST, Method::DELETE, Method::from_bytes(b"PURGE").unwrap()];
    let (mut hits, mut refusals) = (0, 0);
    for seed in 1..=300u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
        let routes: Vec<Route> = (0..1 + rng.below(40)).map(|i| generated_route(&mut rng, i)).collect();
        let mut indexed: Table = build(&routes, Table::insert);
        indexed.sort();
        let mut linear: LinearTable = build(&routes, LinearTable::insert);
        linear.sort();
        for _ in 0..60 {
            let path = generated_path(&mut rng);
            let mut headers = HeaderMap::new();
            if rng.chance(40) {
                headers.insert("x-env", HeaderValue::from_static(if rng.chance(50) { "canary" } else { "prod" }));
            }
            let query = rng.chance(20).then_some("debug=1");
            let method = &methods[rng.below(methods.len())];
            let request = RequestView { host: "h", method, path: &path, query, headers: &headers };
            let (mut indexed_mismatch, mut indexed_allowed) = (false, AllowedMethods::default());
            let (mut linear_mismatch, mut linear_allowed) = (false, AllowedMethods::default());
            let got = indexed.find(&request, &mut indexed_mismatch, &mut indexed_allowed);
            let want = linear.find(&request, &mut linear_mismatch, &mut linear_allowed);
            let context = || format!("seed {seed}, {method} {path} {query:?} {headers:?}, routes {:#?}", route_lines(&routes));
            assert_eq!(got, want, "{}", context());
            if want.is_none() {
                assert_eq!((indexed_mismatch, &indexed_allowed), (linear_mismatch, &linear_allowed), "{}", context());
                refusals += usize::from(linear_mismatch);
            } else {
                hits += 1;
            }
        }
    }
    // The generator must actually reach both outcomes, or the comparison says little.
    assert!(hits > 3_000 && refusals > 300, "hits {hits}, 405s {refusals}");
}

fn route_lines(routes: &[Route]) -> Vec<String> {
    routes
        .iter()
        .map(|r| format!("{} {:?} {} {:?} h{:?} q{:?}", r.id, r.path_type, r.path, r.methods, r.headers.len(), r.query_params.len()))
        .collect()
}

#[test]
fn the_template_index_prefers_more_literals_over_an_earlier_literal() {
    // `/a/{x}/{y}` has its literal first but one literal; `/{x}/b/c` has two and wins.
    let routes = [
        generated_like("early", "/a/{x}/{y}", PathKind::Template),
        generated_like("more", "/{x}/b/c", PathKind::Template),
        generated_like("fewest", "/{x}/{y}/{z}", PathKind::Template),
    ];
    let mut table: Table = build(&routes, Table::insert);
    table.sort();
    let headers = HeaderMap::new();
    let find = |path: &str| {
        let request = RequestView { host: "h", method: &Method::GET, path, query: None, headers: &headers };
        table.find(&request, &mut false, &mut AllowedMethods::default()).map(|m| routes[m.route].id.clone())
    };
    assert_eq!(find("/a/b/c").as_deref(), Some("more"));
    assert_eq!(find("/a/b/d").as_deref(), Some("early"));
    assert_eq!(find("/q/b/d").as_deref(), Some("fewest"));
}

fn generated_like(id: &str, path: &str, kind: PathKind) -> Route {
    let mut route = generated_route(&mut Rng(1), 0);
    route.id = id.into();
    route.path = path.into();
    route.path_type = kind;
    route.methods.clear();
    route.headers.clear();
    route.query_params.clear();
    route
}
