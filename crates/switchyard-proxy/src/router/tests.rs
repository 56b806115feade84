use super::*;
use switchyard_compile::snapshot::{Auth, KeyMatch};

fn route(id: &str, hosts: &[&str], path: &str, kind: PathKind) -> Route {
    Route {
        id: id.into(),
        hosts: hosts.iter().map(|h| (*h).to_owned()).collect(),
        path: path.into(),
        path_type: kind,
        methods: Vec::new(),
        headers: Vec::new(),
        query_params: Vec::new(),
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

fn with_methods(mut r: Route, methods: &[&str]) -> Route {
    r.methods = methods.iter().map(|m| (*m).to_owned()).collect();
    r
}

fn with_header(mut r: Route, name: &str, value: Option<&str>) -> Route {
    r.headers.push(KeyMatch { name: name.into(), value: value.map(str::to_owned) });
    r
}

fn with_query(mut r: Route, name: &str, value: Option<&str>) -> Route {
    r.query_params.push(KeyMatch { name: name.into(), value: value.map(str::to_owned) });
    r
}

struct Req {
    host: &'static str,
    method: Method,
    path: &'static str,
    query: Option<&'static str>,
    headers: HeaderMap,
}

fn get(host: &'static str, path: &'static str) -> Req {
    Req { host, method: Method::GET, path, query: None, headers: HeaderMap::new() }
}

/// The id of the route a request reaches.
fn find<'a>(routes: &'a [Route], req: &Req) -> Result<&'a str, NoMatch> {
    let router = Router::build(routes, &[]).unwrap();
    let view = RequestView { host: req.host, method: &req.method, path: req.path, query: req.query, headers: &req.headers };
    router.find(&view).map(|m| routes[m.route].id.as_str())
}

#[test]
fn an_exact_host_beats_a_wildcard_which_beats_any_host() {
    let routes = [
        route("any", &[], "/x", PathKind::Exact),
        route("wild", &["*.example.com"], "/x", PathKind::Exact),
        route("exact", &["api.example.com"], "/x", PathKind::Exact),
    ];
    assert_eq!(find(&routes, &get("api.example.com", "/x")), Ok("exact"));
    assert_eq!(find(&routes, &get("web.example.com", "/x")), Ok("wild"));
    assert_eq!(find(&routes, &get("other.org", "/x")), Ok("any"));
}

#[test]
fn the_longest_wildcard_suffix_wins_and_a_wildcard_needs_a_label_before_it() {
    let routes = [route("short", &["*.example.com"], "/", PathKind::Exact), route("long", &["*.shop.example.com"], "/", PathKind::Exact)];
    assert_eq!(find(&routes, &get("a.shop.example.com", "/")), Ok("long"));
    assert_eq!(find(&routes, &get("a.b.example.com", "/")), Ok("short"));
    assert_eq!(find(&routes, &get("example.com", "/")), Err(NoMatch::NotFound));
}

#[test]
fn hosts_match_case_insensitively() {
    let routes = [route("r", &["api.example.com"], "/", PathKind::Exact)];
    assert_eq!(find(&routes, &get("API.Example.COM", "/")), Ok("r"));
}

#[test]
fn a_host_bucket_without_a_matching_path_falls_through_to_less_specific_hosts() {
    let routes = [route("exact", &["api.example.com"], "/a", PathKind::Exact), route("any", &[], "/b", PathKind::Exact)];
    assert_eq!(find(&routes, &get("api.example.com", "/b")), Ok("any"));
}

#[test]
fn an_exact_path_beats_a_template_which_beats_a_prefix() {
    let routes = [
        route("prefix", &[], "/users", PathKind::Prefix),
        route("template", &[], "/users/{id}", PathKind::Template),
        route("exact", &[], "/users/me", PathKind::Exact),
    ];
    assert_eq!(find(&routes, &get("h", "/users/me")), Ok("exact"));
    assert_eq!(find(&routes, &get("h", "/users/42")), Ok("template"));
    assert_eq!(find(&routes, &get("h", "/users/42/orders")), Ok("prefix"));
}

#[test]
fn a_template_with_more_literal_segments_wins() {
    let routes = [route("one-literal", &[], "/a/{x}/{y}", PathKind::Template), route("two-literals", &[], "/a/{x}/c", PathKind::Template)];
    assert_eq!(find(&routes, &get("h", "/a/b/c")), Ok("two-literals"));
    assert_eq!(find(&routes, &get("h", "/a/b/d")), Ok("one-literal"));
}

#[test]
fn between_equally_literal_templates_the_earlier_literal_wins() {
    let routes = [route("late", &[], "/{x}/b/c", PathKind::Template), route("early", &[], "/a/{y}/c", PathKind::Template)];
    assert_eq!(find(&routes, &get("h", "/a/b/c")), Ok("early"));
}

#[test]
fn a_longer_prefix_wins_and_prefixes_respect_segment_boundaries() {
    let routes = [
        route("root", &[], "/", PathKind::Prefix),
        route("api", &[], "/api", PathKind::Prefix),
        route("v1", &[], "/api/v1/", PathKind::Prefix),
    ];
    assert_eq!(find(&routes, &get("h", "/api/v1/x")), Ok("v1"));
    assert_eq!(find(&routes, &get("h", "/api/v1")), Ok("v1"));
    assert_eq!(find(&routes, &get("h", "/api/v2")), Ok("api"));
    assert_eq!(find(&routes, &get("h", "/apix")), Ok("root"));
}

#[test]
fn a_route_with_more_matchers_wins() {
    let plain = route("plain", &[], "/x", PathKind::Exact);
    let canary = with_header(route("canary", &[], "/x", PathKind::Exact), "x-env", Some("canary"));
    let routes = [plain, canary];
    let mut req = get("h", "/x");
    assert_eq!(find(&routes, &req), Ok("plain"));
    req.headers.insert("x-env", HeaderValue::from_static("canary"));
    assert_eq!(find(&routes, &req), Ok("canary"));
}

#[test]
fn a_route_naming_the_method_beats_one_that_takes_any() {
    let routes = [route("any", &[], "/x", PathKind::Exact), with_methods(route("get", &[], "/x", PathKind::Exact), &["GET"])];
    assert_eq!(find(&routes, &get("h", "/x")), Ok("get"));
    let mut post = get("h", "/x");
    post.method = Method::POST;
    assert_eq!(find(&routes, &post), Ok("any"));
}

#[test]
fn among_equals_the_older_route_wins() {
    let routes = [route("older", &[], "/{a}", PathKind::Template), route("newer", &[], "/{b}", PathKind::Template)];
    assert_eq!(find(&routes, &get("h", "/x")), Ok("older"));
}

#[test]
fn a_path_served_only_for_other_methods_is_method_not_allowed() {
    let routes = [with_methods(route("post", &[], "/x", PathKind::Exact), &["POST", "PUT"])];
    assert!(matches!(find(&routes, &get("h", "/x")), Err(NoMatch::MethodNotAllowed(_))));
    assert_eq!(find(&routes, &get("h", "/y")), Err(NoMatch::NotFound));
}

/// The allowed methods of a request's 405, as its `Allow` header would list them.
fn allowed(routes: &[Route], req: &Req) -> String {
    match find(routes, req) {
        Err(NoMatch::MethodNotAllowed(allowed)) => allowed.header_value(),
        other => panic!("expected a 405, got {other:?}"),
    }
}

#[test]
fn a_method_not_allowed_lists_the_methods_of_every_route_matching_the_path() {
    let routes = [
        with_methods(route("put", &[], "/x", PathKind::Exact), &["PUT", "POST"]),
        with_methods(route("items", &[], "/{id}", PathKind::Template), &["DELETE", "PURGE"]),
        with_methods(route("prefix", &["h"], "/", PathKind::Prefix), &["PATCH"]),
        // Matches the path but not the header: its methods are not offered.
        with_header(with_methods(route("guarded", &[], "/x", PathKind::Exact), &["OPTIONS"]), "x-key", None),
        // Another path.
        with_methods(route("other", &[], "/y/z", PathKind::Exact), &["HEAD"]),
    ];
    // Known methods in a fixed order, then others; each once.
    assert_eq!(allowed(&routes, &get("h", "/x")), "POST, PUT, DELETE, PATCH, PURGE");
    assert_eq!(allowed(&routes, &get("other-host", "/x")), "POST, PUT, DELETE, PURGE");
    assert_eq!(allowed(&routes, &get("other-host", "/q")), "DELETE, PURGE");
    // A route taking any method never gives a 405.
    let any = [with_methods(route("post", &[], "/x", PathKind::Exact), &["POST"]), route("any", &[], "/{p}", PathKind::Template)];
    assert_eq!(find(&any, &get("h", "/x")), Ok("any"));
}

#[test]
fn header_matchers_compare_exact_values_or_presence() {
    let routes = [
        with_header(route("present", &[], "/p", PathKind::Exact), "x-token", None),
        with_header(route("valued", &[], "/v", PathKind::Exact), "x-env", Some("prod")),
    ];
    let mut req = get("h", "/p");
    assert_eq!(find(&routes, &req), Err(NoMatch::NotFound));
    req.headers.insert("x-token", HeaderValue::from_static("anything"));
    assert_eq!(find(&routes, &req), Ok("present"));
    let mut req = get("h", "/v");
    req.headers.insert("x-env", HeaderValue::from_static("Prod"));
    assert_eq!(find(&routes, &req), Err(NoMatch::NotFound), "values are case-sensitive");
}

#[test]
fn query_matchers_use_the_first_decoded_value_or_presence() {
    let routes = [with_query(with_query(route("q", &[], "/q", PathKind::Exact), "v", Some("2")), "debug", None)];
    let mut req = get("h", "/q");
    req.query = Some("v=2&debug");
    assert_eq!(find(&routes, &req), Ok("q"));
    req.query = Some("v=3&v=2&debug=1");
    assert_eq!(find(&routes, &req), Err(NoMatch::NotFound));
    req.query = Some("debug&v=%32");
    assert_eq!(find(&routes, &req), Ok("q"));
}

#[test]
fn template_parameters_are_captured_as_byte_ranges() {
    let routes = [route("t", &[], "/users/{id}/orders/{orderId}", PathKind::Template)];
    let router = Router::build(&routes, &[]).unwrap();
    let headers = HeaderMap::new();
    let path = "/users/42/orders/a-7";
    let view = RequestView { host: "h", method: &Method::GET, path, query: None, headers: &headers };
    let found = router.find(&view).unwrap();
    let values: Vec<&str> = found.params.iter().map(|(s, e)| &path[*s..*e]).collect();
    assert_eq!(values, ["42", "a-7"]);
}

#[test]
fn template_parameters_never_match_empty_or_extra_segments() {
    let routes = [route("t", &[], "/users/{id}", PathKind::Template)];
    assert_eq!(find(&routes, &get("h", "/users/")), Err(NoMatch::NotFound));
    assert_eq!(find(&routes, &get("h", "/users/1/x")), Err(NoMatch::NotFound));
    assert_eq!(find(&routes, &get("h", "/users")), Err(NoMatch::NotFound));
}

fn owner(host: &str, namespace: &str) -> HostOwner {
    HostOwner { host: host.into(), namespace: namespace.into() }
}

/// The id of the route a request reaches when hosts belong to namespaces.
fn find_owned<'a>(routes: &'a [Route], owners: &[HostOwner], req: &Req) -> Result<&'a str, NoMatch> {
    let router = Router::build(routes, owners).unwrap();
    let view = RequestView { host: req.host, method: &req.method, path: req.path, query: req.query, headers: &req.headers };
    router.find(&view).map(|m| routes[m.route].id.as_str())
}

#[test]
fn an_owned_host_does_not_fall_through_to_routes_without_hosts() {
    let routes =
        [route("team-a/shop", &["shop.example.com"], "/orders", PathKind::Prefix), route("team-b/any", &[], "/", PathKind::Prefix)];
    let owners = [owner("shop.example.com", "team-a")];
    assert_eq!(find_owned(&routes, &owners, &get("shop.example.com", "/orders/1")), Ok("team-a/shop"));
    assert_eq!(find_owned(&routes, &owners, &get("shop.example.com", "/admin")), Err(NoMatch::NotFound));
    assert_eq!(find_owned(&routes, &owners, &get("free.example.com", "/admin")), Ok("team-b/any"), "unowned hosts still reach it");
    assert_eq!(find(&routes, &get("shop.example.com", "/admin")), Ok("team-b/any"), "shared hosts fall through as before");
}

#[test]
fn an_owned_host_ignores_a_covering_wildcard_of_another_namespace() {
    let routes = [
        route("team-b/shop", &["shop.example.com"], "/a", PathKind::Exact),
        route("team-a/wild", &["*.example.com"], "/", PathKind::Prefix),
    ];
    let owners = [owner("shop.example.com", "team-b"), owner("*.example.com", "team-a")];
    assert_eq!(find_owned(&routes, &owners, &get("shop.example.com", "/b")), Err(NoMatch::NotFound));
    assert_eq!(find_owned(&routes, &owners, &get("www.example.com", "/b")), Ok("team-a/wild"));
}

#[test]
fn a_host_owned_by_a_route_not_programmed_serves_nothing_else() {
    let routes = [route("team-b/any", &[], "/", PathKind::Prefix)];
    let owners = [owner("shop.example.com", "team-a")];
    assert_eq!(find_owned(&routes, &owners, &get("shop.example.com", "/x")), Err(NoMatch::NotFound));
}

#[test]
fn a_snapshot_giving_an_owned_host_to_another_namespace_is_refused() {
    let routes = [route("team-b/shop", &["shop.example.com"], "/", PathKind::Prefix)];
    assert!(Router::build(&routes, &[owner("shop.example.com", "team-a")]).is_err());
}

#[test]
fn a_prefix_followed_by_path_parameters_still_matches_its_prefix_route() {
    let routes = [route("admin", &[], "/admin", PathKind::Prefix), route("any", &[], "/", PathKind::Prefix)];
    assert_eq!(find(&routes, &get("h", "/admin;jsessionid=1/secret")), Ok("admin"));
    assert_eq!(find(&routes, &get("h", "/administrator")), Ok("any"));
}
