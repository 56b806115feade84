//! The proxy's top-level modules form layers: no module reaches back to one that depends
//! on it. Read from the sources (every `crate::name` outside comments and tests), so a new
//! `use` that closes a circle fails here, named, instead of quietly tangling the crate.
//! The layering and why: docs/architecture.md, "The proxy crate's modules".

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

type Graph = BTreeMap<String, BTreeSet<String>>;

#[test]
fn the_proxy_modules_import_each_other_without_a_circle() {
    let graph = module_graph(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    assert!(graph.len() > 20, "the sources were read: {:?}", graph.keys());
    assert!(graph["runtime"].contains("backends"), "the graph sees `use crate::...` lines");
    let circles = circles(&graph);
    assert!(circles.is_empty(), "modules that import each other (directly or through others): {circles:?}");
}

#[test]
fn the_upstream_client_and_the_backends_stay_below_the_request_path() {
    let graph = module_graph(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    for (module, must_not_reach) in [
        ("client", ["body", "backends", "runtime", "service"]),
        ("egress", ["client", "body", "backends", "runtime"]),
        ("backends", ["runtime", "shape", "service", "access_log"]),
        ("request_body", ["body", "client", "error", "backends"]),
    ] {
        let reached = reachable(&graph, module);
        for other in must_not_reach {
            assert!(!reached.contains(other), "{module} reaches {other}");
        }
    }
}

#[test]
fn a_circle_is_found_however_long() {
    let edges = |pairs: &[(&str, &str)]| {
        let mut graph = Graph::new();
        for (from, to) in pairs {
            graph.entry(from.to_string()).or_default().insert(to.to_string());
            graph.entry(to.to_string()).or_default();
        }
        graph
    };
    assert!(circles(&edges(&[("a", "b"), ("b", "c"), ("a", "c")])).is_empty());
    assert_eq!(circles(&edges(&[("a", "b"), ("b", "c"), ("c", "a"), ("c", "d")])), vec![vec!["a", "b", "c"]]);
    let source =
        "use crate::{body::X, client};\n// crate::runtime in a comment\nfn f() { crate::egress::g() }\n#[cfg(test)]\nuse crate::shape;";
    assert_eq!(imports(source), BTreeSet::from(["body".into(), "client".into(), "egress".into()]));
}

/// Each top-level module (a `src/NAME.rs` with its `src/NAME/` folder) and the top-level
/// modules it names.
fn module_graph(src: &Path) -> Graph {
    let mut graph = Graph::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let relative = path.strip_prefix(src).unwrap();
            let top = relative.components().next().unwrap().as_os_str().to_str().unwrap().trim_end_matches(".rs").to_owned();
            if top == "lib" || top == "main" || top.ends_with("_tests") {
                continue;
            }
            let mut named = imports(&std::fs::read_to_string(&path).unwrap());
            named.remove(&top);
            graph.entry(top).or_default().extend(named);
        }
    }
    graph
}

/// The top-level modules `source` names as `crate::NAME` or in `crate::{NAME, ...}`,
/// outside comments and before its first `#[cfg(test)]`.
fn imports(source: &str) -> BTreeSet<String> {
    let code = source.split("#[cfg(test)]").next().unwrap_or_default();
    let mut named = BTreeSet::new();
    for line in code.lines().map(str::trim_start).filter(|l| !l.starts_with("//")) {
        let mut rest = line;
        while let Some(at) = rest.find("crate::") {
            rest = &rest[at + "crate::".len()..];
            if let Some(group) = rest.strip_prefix('{') {
                let group = &group[..group.find('}').unwrap_or(group.len())];
                named.extend(group.split(',').filter_map(|item| first_ident(item.trim())));
            } else {
                named.extend(first_ident(rest));
            }
        }
    }
    named
}

fn first_ident(text: &str) -> Option<String> {
    let end = text.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(text.len());
    // Lowercase: a module, not a type re-exported at the crate root (`crate::Worker`).
    (end > 0 && text[..end].starts_with(|c: char| c.is_ascii_lowercase())).then(|| text[..end].to_owned())
}

fn reachable(graph: &Graph, from: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut stack = vec![from.to_owned()];
    while let Some(module) = stack.pop() {
        for next in graph.get(&module).into_iter().flatten() {
            if seen.insert(next.clone()) {
                stack.push(next.clone());
            }
        }
    }
    seen
}

/// The groups of two or more modules that reach each other, each sorted.
fn circles(graph: &Graph) -> Vec<Vec<String>> {
    let mut found: BTreeSet<Vec<String>> = BTreeSet::new();
    for module in graph.keys() {
        let reached = reachable(graph, module);
        if !reached.contains(module) {
            continue;
        }
        let group: Vec<String> =
            graph.keys().filter(|other| reached.contains(*other) && reachable(graph, other).contains(module)).cloned().collect();
        found.insert(group);
    }
    found.into_iter().collect()
}
