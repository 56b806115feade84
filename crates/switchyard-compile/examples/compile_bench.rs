//! Compile benchmark: N routes over N/10 backends, compiled several times.
//! Prints the fastest and median compile time and the process's peak memory.
//!
//! `cargo run --release -p switchyard-compile --example compile_bench -- 10000 [namespace]`
//! (`namespace`: hosts belong to namespaces, as in Kubernetes mode; default shared, as
//! standalone).
//!
//! `COMPILE_BENCH_ROUNDS=1` compiles once (for callgrind: count the parse with
//! `--toggle-collect='switchyard_compile::manifest::add_yaml'` and the compile with
//! `--toggle-collect='switchyard_compile::compile::compile'`). `COMPILE_BENCH_OUT=FILE`
//! writes the snapshot and the statuses as JSON, to compare two builds byte for byte.

use std::time::{Duration, Instant};

use switchyard_compile::{HostOwnership, Resources, compile, manifest};

#[path = "support/manifests.rs"]
mod manifests;
use manifests::manifests;

/// The allocator of the `switchyard` binary, where compile runs in production (the
/// controller, standalone mode): glibc's malloc would overstate the allocation costs.
#[global_allocator]
static GLOBAL: switchyard_alloc::Allocator = switchyard_alloc::Allocator;

fn peak_memory_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn main() {
    let routes: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let per_namespace = std::env::args().nth(2).as_deref() == Some("namespace");
    let text = manifests(routes, per_namespace);
    let parse_started = Instant::now();
    let mut resources = Resources::default();
    manifest::add_yaml(&mut resources, "bench", &text);
    let parse = parse_started.elapsed();
    if per_namespace {
        resources.options.host_ownership = HostOwnership::PerNamespace;
    }
    let rounds: usize = std::env::var("COMPILE_BENCH_ROUNDS").ok().and_then(|r| r.parse().ok()).unwrap_or(5).max(1);
    let mut times: Vec<Duration> = Vec::new();
    let mut drops: Vec<Duration> = Vec::new();
    let mut last = None;
    for _ in 0..rounds {
        let started = Instant::now();
        let compiled = compile(&resources);
        times.push(started.elapsed());
        assert!(compiled.statuses.iter().all(|s| !s.has_false()), "the generated resources are all valid");
        // What the controller does on every change: the previous result is dropped.
        if let Some(previous) = last.replace(compiled) {
            let started = Instant::now();
            drop(previous);
            drops.push(started.elapsed());
        }
    }
    times.sort();
    drops.sort();
    let compiled = last.expect("at least one round");
    let programmed = compiled.snapshot.routes.len();
    let json = serde_json::to_vec(&compiled.snapshot).unwrap();
    if let Ok(path) = std::env::var("COMPILE_BENCH_OUT") {
        let mut out = json.clone();
        out.push(b'\n');
        out.extend(serde_json::to_vec(&compiled.statuses).unwrap());
        out.push(b'\n');
        std::fs::write(&path, out).expect("COMPILE_BENCH_OUT is writable");
    }
    let mode = if per_namespace { "hosts per namespace" } else { "shared hosts" };
    println!("compile bench: {routes} routes, {} backends, {programmed} programmed, {mode}", resources.backend_services.len());
    println!("  parse YAML:      {:>8.1} ms", parse.as_secs_f64() * 1e3);
    println!("  compile (min):   {:>8.1} ms", times[0].as_secs_f64() * 1e3);
    println!("  compile (median):{:>8.1} ms", times[times.len() / 2].as_secs_f64() * 1e3);
    if let Some(fastest) = drops.first() {
        println!("  drop (min):      {:>8.1} ms (the previous result)", fastest.as_secs_f64() * 1e3);
    }
    println!("  snapshot JSON:   {:>8.1} KiB", json.len() as f64 / 1024.0);
    match peak_memory_kib() {
        Some(kib) => println!("  peak memory:     {:>8.1} MiB (whole process, VmHWM)", kib as f64 / 1024.0),
        None => println!("  peak memory:     unavailable (no /proc)"),
    }
}
