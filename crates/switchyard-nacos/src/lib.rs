//! A thin Nacos 2 client: [`watch`] follows one Nacos service over gRPC and reports its
//! serving instances as a [`Discovered`], the input `registry` backends compile from.
//!
//! # Why not the `nacos-sdk` crate
//!
//! The official SDK was the alternative. It hides the connection: it reconnects and
//! re-subscribes on its own and keeps serving its cache, with no way to learn that the
//! server stopped answering — and the gateway must report exactly that
//! ([`switchyard_compile::SyncState::Unreachable`], with the time of the last good read). It also brings its
//! own runtime plumbing, config-center code and dependencies. What one watch needs is
//! small — a handful of JSON messages over two gRPC methods — so this crate speaks the
//! protocol itself, and every state change is visible.
//!
//! # Protocol, in short
//!
//! Per server (`spec.servers` name HTTP ports; gRPC is the HTTP port + 1000): log in over
//! HTTP when credentials are set, open one HTTP/2 connection, `ServerCheckRequest`, open
//! the bidirectional stream with `ConnectionSetupRequest` (this binds the connection to
//! a Nacos client), wait until a `HealthCheckRequest` succeeds (the server registers the
//! connection asynchronously), `SubscribeServiceRequest` (a full read), then follow
//! `NotifySubscriberRequest` pushes, re-read with `ServiceQueryRequest` every
//! `resync_interval_ms` as a safety net, and health-check every few seconds. Any failure
//! marks the watch unreachable and reconnects, to the next server, with a capped,
//! jittered backoff.
//!
//! # Limits
//!
//! Messages from the server are at most 16 MiB; at most 10,000 instances of a service
//! are read (the rest are reported as one skipped entry); error texts from the server
//! are shortened and never repeat the access token.
//!
//! # Tests
//!
//! The `test-server` feature adds `testing::NacosServer`: a real rnacos
//! server per test, for this crate's integration tests and other crates'.

mod auth;
mod backoff;
mod connection;
mod http;
mod messages;
mod proto;
mod publish;
mod select;
mod session;
#[cfg(feature = "test-server")]
pub mod testing;

/// Entry points for `fuzz/` into code that is otherwise private to this crate.
#[cfg(feature = "fuzzing")]
pub mod fuzzing {
    pub use crate::select::{Hosts, MAX_INSTANCES, Selection, select};
}

use switchyard_compile::{Discovered, NacosWatch};
use tokio::sync::watch as channel;

use crate::backoff::Backoff;
use crate::session::End;

/// Watches the Nacos service `spec` names and keeps `out` current. Runs until every
/// receiver of `out` is dropped (or the task is aborted).
///
/// `out` starts as [`Discovered::default()`] ([`switchyard_compile::SyncState::Pending`]). Every full read
/// and every push replaces `instances` and `skipped` and sets [`switchyard_compile::SyncState::Synced`];
/// when the server does not answer, the instances stay and the state becomes
/// [`switchyard_compile::SyncState::Unreachable`] until a reconnect (to the next server in turn) succeeds.
/// Only healthy, enabled instances with a weight above 0, in `spec.clusters` when that
/// is non-empty, serve; malformed ones are `skipped` and counted in `malformed_total`.
pub async fn watch(spec: NacosWatch, out: channel::Sender<Discovered>) {
    tokio::select! {
        () = follow_servers(&spec, &out) => {}
        () = out.closed() => {}
    }
}

async fn follow_servers(spec: &NacosWatch, out: &channel::Sender<Discovered>) {
    if spec.servers.is_empty() {
        let _ = publish::unreachable(out, "no Nacos server is configured".to_owned());
        return std::future::pending().await;
    }
    let http = http::client();
    let mut backoff = Backoff::default();
    for server in spec.servers.iter().cycle() {
        let outcome = session::run(spec, server, &http, out).await;
        if outcome.synced {
            backoff.reset();
        }
        match outcome.end {
            // A graceful hand-off is not an outage: the state stays until a reconnect fails.
            End::ResetByServer => tracing::info!(%server, service = %spec.service, "Nacos server asked to reconnect"),
            End::Failed(error) => {
                // Logged when it changes, not on every retry of a server that stays down.
                if publish::unreachable(out, format!("{server}: {error}")) {
                    tracing::warn!(%server, service = %spec.service, %error, "Nacos watch interrupted");
                } else {
                    tracing::debug!(%server, service = %spec.service, %error, "Nacos server still unreachable");
                }
            }
        }
        tokio::time::sleep(backoff.next_delay()).await;
    }
}
