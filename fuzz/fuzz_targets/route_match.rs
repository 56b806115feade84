//! Route matching against a reference: the router answers a route exactly when some route
//! matches the path (exact, prefix on a segment boundary, or template), the route it picks
//! does match, an exact route beats the rest, and every captured parameter is the
//! non-empty segment of the path its template names.
//!
//! Input: the request path on the first line, then one route per line, `E`, `P` or `T`
//! (exact, prefix, template) followed by its path.
#![no_main]

use http::{HeaderMap, Method};
use libfuzzer_sys::fuzz_target;
use switchyard_compile::path_template::{PathTemplate, Segment};
use switchyard_compile::snapshot::{PathKind, Route};
use switchyard_proxy::router::{RequestView, Router};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let mut lines = text.lines();
    let Some(path) = lines.next() else { return };
    let mut routes = Vec::new();
    for (i, line) in lines.take(8).enumerate() {
        let kind = match line.as_bytes().first() {
            Some(b'E') => PathKind::Exact,
            Some(b'P') => PathKind::Prefix,
            Some(b'T') => PathKind::Template,
            _ => continue,
        };
        let route_path = &line[1..];
        if !route_path.starts_with('/') || (kind == PathKind::Template && PathTemplate::parse(route_path).is_err()) {
            continue;
        }
        routes.push(route(i, route_path, kind));
    }
    let Ok(router) = Router::build(&routes, &[]) else { return };
    let headers = HeaderMap::new();
    let request = RequestView { host: "fuzz.test", method: &Method::GET, path, query: None, headers: &headers };
    let any_matches = routes.iter().any(|r| matches(r, path).is_some());
    match router.find(&request) {
        Ok(found) => {
            let route = &routes[found.route];
            let expected = matches(route, path).unwrap_or_else(|| panic!("{path:?} got route {route:?}, which does not match it"));
            assert_eq!(found.params, expected, "{path:?} against {:?}", route.path);
            for &(start, end) in &found.params {
                let value = &path[start..end];
                assert!(!value.is_empty() && !value.contains('/'), "a parameter is one non-empty segment: {value:?}");
            }
            let exact_exists = routes.iter().any(|r| r.path_type == PathKind::Exact && r.path == path);
            if exact_exists {
                assert!(
                    found.params.is_empty() && route.path == path && route.path_type != PathKind::Prefix,
                    "an exact route wins for {path:?}, got {:?}",
                    route.path
                );
            }
        }
        Err(_) => assert!(!any_matches, "{path:?} matches a route but the router found none"),
    }
});

fn route(i: usize, path: &str, path_type: PathKind) -> Route {
    let json = serde_json::json!({
        "id": format!("fuzz/r{i}"),
        "path": path,
        "path_type": path_type,
        "backends": [],
        "auth": {"type": "Anonymous"},
        "body_limit": 0,
    });
    serde_json::from_value(json).expect("a route")
}

/// The reference matcher: the parameter ranges when `route` matches `path`.
fn matches(route: &Route, path: &str) -> Option<Vec<(usize, usize)>> {
    match route.path_type {
        PathKind::Exact => (route.path == path).then(Vec::new),
        PathKind::Prefix => {
            let prefix = route.path.trim_end_matches('/');
            let rest = path.strip_prefix(prefix)?;
            (rest.is_empty() || rest.starts_with('/') || rest.starts_with(';')).then(Vec::new)
        }
        PathKind::Template => {
            let template = PathTemplate::parse(&route.path).ok()?;
            let wanted: Vec<&str> = path.strip_prefix('/')?.split('/').collect();
            if wanted.len() != template.segments.len() {
                return None;
            }
            let mut params = Vec::new();
            let mut offset = 1;
            for (segment, part) in template.segments.iter().zip(&wanted) {
                match segment {
                    Segment::Literal(literal) if literal == part => {}
                    Segment::Param(_) if !part.is_empty() => params.push((offset, offset + part.len())),
                    _ => return None,
                }
                offset += part.len() + 1;
            }
            Some(params)
        }
    }
}
