//! Where a standalone gateway's memory goes: the steps `switchyard standalone` takes for
//! a folder of manifests (scan, compile, status book, publish, proxy runtime), each
//! followed by the heap bytes live (counted by a wrapping global allocator: what the
//! program asked for, before any allocator overhead) and the peak during the step.
//!
//! `cargo run --release -p switchyard --example memory_breakdown -- DIR`
//! (DIR: e.g. the `config-10000` folder bench/routes.sh writes).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use switchyard_controller::folder::FolderSource;
use switchyard_controller::publisher::Publisher;
use switchyard_controller::status::StatusBook;

/// The system allocator, counting live bytes and their high-water mark.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
        PEAK.fetch_max(live, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let live = if new_size >= layout.size() {
            LIVE.fetch_add(new_size - layout.size(), Ordering::Relaxed) + new_size - layout.size()
        } else {
            LIVE.fetch_sub(layout.size() - new_size, Ordering::Relaxed) - (layout.size() - new_size)
        };
        PEAK.fetch_max(live, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn mib(bytes: usize) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// Prints the step's change in live bytes and the peak reached during it.
struct Step {
    before: usize,
}

impl Step {
    fn start() -> Self {
        PEAK.store(LIVE.load(Ordering::Relaxed), Ordering::Relaxed);
        Self { before: LIVE.load(Ordering::Relaxed) }
    }
    fn done(self, what: &str) {
        let (live, peak) = (LIVE.load(Ordering::Relaxed), PEAK.load(Ordering::Relaxed));
        let delta = live as f64 - self.before as f64;
        println!("{what:<58} {:>+9.1} {:>9.1} {:>9.1}", delta / (1024.0 * 1024.0), mib(live), mib(peak));
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let dir = std::env::args().nth(1).expect("usage: memory_breakdown DIR");
    println!("{:<58} {:>9} {:>9} {:>9}", "step (MiB of heap asked for)", "change", "live", "peak");
    let step = Step::start();
    let mut source = FolderSource::new(&dir);
    let mut resources = switchyard_compile::Resources::default();
    assert!(source.scan(&mut resources), "a first scan always reads");
    step.done("scan: the parsed resources");
    let step = Step::start();
    let compiled = switchyard_compile::compile(&resources);
    step.done("compile: snapshot + statuses");
    let book = StatusBook::default();
    let step = Step::start();
    book.update(&compiled.statuses, "2026-12-02T00:00:00Z");
    step.done("status book");
    let step = Step::start();
    book.update(&compiled.statuses, "2026-12-02T00:00:01Z");
    step.done("status book updated again (the same statuses)");
    let step = Step::start();
    drop(compiled.statuses);
    step.done("the pass's statuses dropped");
    let publisher = Publisher::new();
    let step = Step::start();
    publisher.publish(compiled.snapshot);
    step.done("publish: snapshot moved in + its JSON");
    let published = publisher.current().expect("published");
    println!("  (JSON {:.1} MiB)", mib(published.json().len()));
    let step = Step::start();
    let router =
        switchyard_proxy::router::Router::build(&published.snapshot.routes, &published.snapshot.host_owners).expect("routes build");
    step.done("  of which the router alone (built again, then dropped)");
    drop(router);
    let mut registry = prometheus_client::registry::Registry::default();
    let proxy = switchyard_proxy::Proxy::new(&mut registry, Default::default());
    let step = Step::start();
    proxy.apply(Arc::clone(&published.snapshot)).expect("the snapshot applies");
    step.done("proxy runtime (router, backends)");
    let step = Step::start();
    drop(source);
    step.done("folder source dropped (what each file holds)");
    let step = Step::start();
    drop(resources);
    step.done("parsed resources dropped");
    println!("{:<58} {:>9} {:>9.1}", "live at the end (book, publisher, proxy)", "", mib(LIVE.load(Ordering::Relaxed)));
    drop((book, proxy, published, publisher));
}
