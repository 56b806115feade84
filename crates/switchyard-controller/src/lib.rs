//! The control side: sources feed resources to the pure compile step, whose snapshot
//! is published to proxies and whose statuses go to the status book.
//!
//! `folder` is the standalone source; `publisher` numbers and fans out snapshots;
//! `snapshot_server` serves them to remote proxies; `status` keeps conditions.
#![forbid(unsafe_code)]

pub mod buses;
pub mod connectivity;
pub mod databases;
pub mod discovery;
pub mod folder;
pub mod kubernetes;
pub mod metrics;
pub mod monitors;
pub mod publisher;
pub mod snapshot_server;
pub mod status;

use std::sync::Arc;
use std::time::Duration;

use switchyard_compile::compile;

use crate::folder::FolderSource;
use crate::publisher::Publisher;
use crate::status::{Change, StatusBook};

/// How often standalone rescans its folder: changes apply well within a second.
pub const FOLDER_SCAN_INTERVAL: Duration = Duration::from_millis(250);

/// What one compile pass did.
pub struct Pass {
    /// Conditions that appeared or changed.
    pub changes: Vec<Change>,
    /// The new snapshot version; None when the snapshot did not change.
    pub version: Option<u64>,
    /// Every object's status as compile computed it.
    pub statuses: Vec<switchyard_compile::ResourceStatus>,
}

/// One compile pass, whatever the source: compile, record statuses, publish.
/// `now` stamps the conditions that change in this pass.
pub fn compile_and_publish(resources: &switchyard_compile::Resources, publisher: &Publisher, book: &StatusBook, now: &str) -> Pass {
    let compiled = compile(resources);
    let changes = book.update(&compiled.statuses, now);
    let version = publisher.publish(compiled.snapshot);
    Pass { changes, version, statuses: compiled.statuses }
}

/// Watches the folder until the task is dropped; prints every status change. Also runs
/// the VpcAuthorization connectivity tests and the registry watches, and recompiles when
/// a result changes. `options` (command line) go with every compile and every
/// connectivity test.
pub async fn watch_folder(
    dir: std::path::PathBuf,
    options: switchyard_compile::CompileOptions,
    publisher: Arc<Publisher>,
    book: Arc<StatusBook>,
    mut discovery: discovery::Discovery,
) {
    let mut source = Some(FolderSource::new(dir).with_options(options));
    let mut prober = connectivity::Prober::default();
    let mut latest = switchyard_compile::Resources::default();
    let registry_changed = discovery.changed.clone();
    let mut discovered = false;
    let mut published_once = false;
    loop {
        let mut scanning = source.take().expect("source is put back after every scan");
        // The scan takes the last resources back: unchanged files' objects move, not copy.
        let (scanning, resources, scanned) = tokio::task::spawn_blocking(move || {
            let scanned = scanning.scan(&mut latest);
            (scanning, latest, scanned)
        })
        .await
        .expect("folder scan does not panic");
        source = Some(scanning);
        latest = resources;
        if scanned && discovery.reconcile(&latest) && !published_once {
            discovery.first_reads(discovery::FIRST_READ_WAIT).await;
        }
        prober.start_due(&latest);
        latest.clock = Some(std::time::SystemTime::now());
        if scanned || prober.collect() || discovered || certificate_expired(&publisher) {
            latest.connectivity = prober.results();
            latest.registry = discovery.results();
            latest.buses = discovery.bus_results();
            latest.databases = discovery.database_results();
            let pass = compile_and_publish(&latest, &publisher, &book, &now_rfc3339());
            published_once = true;
            for change in pass.changes {
                status::print_change(&change);
            }
            if let Some(version) = pass.version {
                tracing::info!(version, "published snapshot");
            }
        }
        // A registry change is compiled at once; the folder is rescanned on the interval.
        discovered = tokio::select! {
            () = tokio::time::sleep(FOLDER_SCAN_INTERVAL) => false,
            () = registry_changed.notified() => true,
        };
    }
}

/// Whether a certificate the live snapshot serves has expired since it was compiled: the
/// folder may not change, so this recompiles to take it out (`Accepted=False`).
fn certificate_expired(publisher: &Publisher) -> bool {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
    publisher.current().is_some_and(|p| p.snapshot.certificates.iter().any(|c| c.not_after < now))
}

pub fn now_rfc3339() -> String {
    k8s_openapi::jiff::Timestamp::now().round(k8s_openapi::jiff::Unit::Second).map(|t| t.to_string()).unwrap_or_default()
}
