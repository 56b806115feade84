//! The generated configuration of the scale benches (`compile_bench`, and `switchyard`'s
//! `change_bench`): N ApiRoutes (templates with a rewrite, two methods, a host each) over
//! N/10 BackendServices in 20 namespaces, as one multi-document YAML stream.

/// With hosts per namespace, each namespace has hosts of its own (half of them wildcards),
/// so that every route is accepted.
pub fn manifests(routes: usize, per_namespace: bool) -> String {
    let backends = (routes / 10).max(1);
    let mut text = String::with_capacity(routes * 200);
    for b in 0..backends {
        text.push_str(&format!(
            "apiVersion: switchyard.dev/v1alpha1\nkind: BackendService\nmetadata: {{name: b{b}, namespace: ns{}}}\nspec: {{http: {{urls: [\"http://10.0.{}.{}:8080\"]}}}}\n---\n",
            b % 20,
            b / 250,
            b % 250
        ));
    }
    for r in 0..routes {
        let b = r % backends;
        let host = match (per_namespace, r % 2) {
            (false, _) => format!("api{}.example.com", r % 50),
            (true, 0) => format!("api{}.ns{}.example.com", r % 50, b % 20),
            (true, _) => format!("'*.w{}.ns{}.example.com'", r % 50, b % 20),
        };
        text.push_str(&format!(
            "apiVersion: switchyard.dev/v1alpha1\nkind: ApiRoute\nmetadata: {{name: r{r}, namespace: ns{}}}\nspec:\n  hosts: [{host}]\n  match: {{path: '/svc{r}/items/{{id}}', methods: [GET, POST]}}\n  backendRefs: [{{name: b{b}}}]\n  rewrite: {{path: '/v1/items/{{id}}'}}\n---\n",
            b % 20
        ));
    }
    text
}
