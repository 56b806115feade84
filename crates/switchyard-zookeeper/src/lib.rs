//! Watches one ZooKeeper registration path and reports the instances registered there.
//!
//! [`watch`] keeps a [`Discovered`] up to date for one [`ZooKeeperWatch`]: it holds one
//! session, is told of every change by a watch (a persistent recursive watch on ZooKeeper
//! 3.6+, child and data watches on older servers; never polling), re-reads the path on
//! each change, and says `Unreachable` (keeping the last instances) while the ensemble does
//! not answer. The registration layouts (Spring Cloud, Dubbo, plain) are in [`layout`].

mod backoff;
pub mod layout;
mod publish;
mod read;
mod session;
#[cfg(feature = "test-server")]
pub mod testing;

use switchyard_compile::{Discovered, ZooKeeperWatch};

pub use read::MAX_CHILDREN;

/// Watches `spec` and publishes what it finds to `out`.
///
/// After every full read the instances (sorted, one per address) and skipped entries are
/// replaced and `sync` is `Synced`; a path that does not exist (yet) is zero instances.
/// While ZooKeeper does not answer, `sync` is `Unreachable` with the last instances kept,
/// and a new session is tried with a backoff (200 ms doubling to 5 s).
///
/// Runs until every receiver of `out` is dropped (or the task is aborted).
pub async fn watch(spec: ZooKeeperWatch, out: tokio::sync::watch::Sender<Discovered>) {
    session::run(spec, out, session::Strategy::PreferPersistent).await;
}
