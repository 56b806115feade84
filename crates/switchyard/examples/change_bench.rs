//! Change to serving at scale, step by step, in one process: N routes are compiled,
//! their statuses recorded, the snapshot published (with its JSON) and built into a
//! proxy's runtime; then one route is added, CHANGE_BENCH_ROUNDS times (default 3), and
//! each step is timed again. That is what a change costs standalone once its file is
//! parsed; a proxy pulling from the snapshot server builds the new snapshot from the
//! deltas since the one it holds (their JSON made, decoded and applied: "delta") and its
//! runtime from that ("apply (pulled)"). The whole snapshot's JSON, which only a proxy
//! without a recent snapshot is sent, is timed too (made and decoded), off the change's path.
//!
//! `cargo run --release -p switchyard --example change_bench -- 100000`
//!
//! For instruction counts, `CHANGE_BENCH_ROUNDS=1 valgrind --tool=callgrind
//! --collect-atstart=no --toggle-collect=change_bench::change ...`: only the change is
//! counted, not the generation or the first build.

use std::sync::Arc;
use std::time::{Duration, Instant};

use switchyard_compile::snapshot::Snapshot;
use switchyard_compile::snapshot::delta::DeltaChain;
use switchyard_compile::{Resources, compile, manifest};
use switchyard_controller::publisher::Publisher;
use switchyard_controller::status::StatusBook;
use switchyard_proxy::Proxy;
use switchyard_proxy::egress::EgressConfig;

#[path = "../../switchyard-compile/examples/support/manifests.rs"]
mod manifests;

/// The `switchyard` binary's allocator, where all of this runs.
#[global_allocator]
static GLOBAL: switchyard_alloc::Allocator = switchyard_alloc::Allocator;

#[derive(Default)]
struct Steps {
    compile: Vec<Duration>,
    statuses: Vec<Duration>,
    publish: Vec<Duration>,
    apply: Vec<Duration>,
    delta: Vec<Duration>,
    apply_pulled: Vec<Duration>,
    serialize: Vec<Duration>,
    decode: Vec<Duration>,
}

struct Gateway {
    publisher: Publisher,
    book: StatusBook,
    standalone: Proxy,
    pulling: Proxy,
}

fn main() {
    let routes: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let rounds: usize = std::env::var("CHANGE_BENCH_ROUNDS").ok().and_then(|r| r.parse().ok()).unwrap_or(3).max(1);
    // Building a runtime may start tasks (health probes, pool reapers): give it a runtime.
    let tokio = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a tokio runtime");
    let _in_tokio = tokio.enter();
    let mut resources = Resources::default();
    manifest::add_yaml(&mut resources, "bench", &manifests::manifests(routes, false));
    let mut registry = prometheus_client::registry::Registry::default();
    let gateway = Gateway {
        publisher: Publisher::starting_at(1),
        book: StatusBook::default(),
        standalone: Proxy::new(&mut registry, EgressConfig::default()),
        pulling: Proxy::new(&mut registry, EgressConfig::default()),
    };
    let mut first = Steps::default();
    change(&gateway, &resources, &mut first);
    whole_json(&gateway, &mut first);
    let mut steps = Steps::default();
    for round in 0..rounds {
        let route = format!(
            "apiVersion: switchyard.dev/v1alpha1\nkind: ApiRoute\nmetadata: {{name: added{round}, namespace: ns0}}\nspec:\n  hosts: [api0.example.com]\n  match: {{path: '/added{round}/items/{{id}}', methods: [GET]}}\n  backendRefs: [{{name: b0}}]\n"
        );
        manifest::add_yaml(&mut resources, "added", &route);
        change(&gateway, &resources, &mut steps);
        whole_json(&gateway, &mut steps);
    }
    let serving = gateway.standalone.runtime().map_or(0, |rt| rt.routes.len());
    assert_eq!(serving, routes + rounds, "every added route is served");
    let json = gateway.publisher.current().map_or(0, |p| p.json().len());
    println!("change bench: {routes} routes, {rounds} changes of one added route; snapshot JSON {:.1} MiB", json as f64 / 1048576.0);
    println!("{:<34} {:>10} {:>14}", "step", "first (ms)", "change min (ms)");
    let rows: [(&str, &Vec<Duration>, &Vec<Duration>); 8] = [
        ("compile", &first.compile, &steps.compile),
        ("statuses (book update)", &first.statuses, &steps.statuses),
        ("publish (compare, delta)", &first.publish, &steps.publish),
        ("apply (standalone proxy)", &first.apply, &steps.apply),
        ("delta (pulling proxy)", &first.delta, &steps.delta),
        ("apply (pulled)", &first.apply_pulled, &steps.apply_pulled),
        ("whole JSON: serialize", &first.serialize, &steps.serialize),
        ("whole JSON: decode", &first.decode, &steps.decode),
    ];
    let ms = |d: &Duration| d.as_secs_f64() * 1e3;
    for (name, first, changes) in rows {
        let first = first.first().map_or("-".to_owned(), |d| format!("{:.1}", ms(d)));
        println!("{name:<34} {first:>10} {:>14.1}", changes.iter().min().map_or(0.0, ms));
    }
    let total = |s: &Steps, i: usize| s.compile[i] + s.statuses[i] + s.publish[i] + s.apply[i];
    let best = (0..rounds).map(|i| total(&steps, i)).min().unwrap_or_default();
    println!("{:<34} {:>10.1} {:>14.1}", "standalone total", ms(&total(&first, 0)), ms(&best));
}

/// One controller pass and both proxies' applies, each step timed into `steps`.
#[inline(never)]
fn change(gateway: &Gateway, resources: &Resources, steps: &mut Steps) {
    let timed = |into: &mut Vec<Duration>, started: Instant| into.push(started.elapsed());
    let started = Instant::now();
    let compiled = compile(resources);
    timed(&mut steps.compile, started);
    let started = Instant::now();
    gateway.book.update(&compiled.statuses, "2026-12-03T00:00:00Z");
    timed(&mut steps.statuses, started);
    let started = Instant::now();
    gateway.publisher.publish(compiled.snapshot).expect("every round changes the snapshot");
    timed(&mut steps.publish, started);
    let published = gateway.publisher.current().expect("published");
    let started = Instant::now();
    gateway.standalone.apply(published.snapshot.clone()).expect("the snapshot builds");
    timed(&mut steps.apply, started);
    // The pulling proxy: the first time the whole snapshot, then the deltas since the one it
    // holds, through their wire form.
    let pulled = match gateway.pulling.runtime() {
        Some(held) => {
            let started = Instant::now();
            let from = held.snapshot.version;
            let deltas = gateway.publisher.deltas(from, published.snapshot.version).expect("the deltas since the held version are kept");
            let chain = DeltaChain { stream: gateway.publisher.stream().into(), steps: deltas.iter().map(|d| (**d).clone()).collect() };
            let wire = serde_json::to_vec(&chain).expect("deltas serialize");
            let chain: DeltaChain = serde_json::from_slice(&wire).expect("the delta JSON decodes");
            let pulled = chain.apply(from, &held.snapshot).expect("the deltas apply");
            timed(&mut steps.delta, started);
            pulled
        }
        None => serde_json::from_slice(published.json()).expect("the JSON decodes"),
    };
    let started = Instant::now();
    gateway.pulling.apply(Arc::new(pulled)).expect("the pulled snapshot builds");
    timed(&mut steps.apply_pulled, started);
}

/// The whole snapshot's wire form, for a proxy that holds no recent version: made and
/// decoded (outside [`change`], so its instruction count is the change's own).
#[inline(never)]
fn whole_json(gateway: &Gateway, steps: &mut Steps) {
    let timed = |into: &mut Vec<Duration>, started: Instant| into.push(started.elapsed());
    let published = gateway.publisher.current().expect("published");
    let started = Instant::now();
    let json = serde_json::to_vec(&*published.snapshot).expect("snapshots serialize");
    timed(&mut steps.serialize, started);
    let started = Instant::now();
    let decoded: Snapshot = serde_json::from_slice(&json).expect("the JSON decodes");
    timed(&mut steps.decode, started);
    assert_eq!(decoded, *published.snapshot);
}
