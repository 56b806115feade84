//! The data plane: serves traffic from the live routing snapshot.
//!
//! `router` matches (pure), `service` runs the request phases, `backends` holds one
//! module per backend kind, `pull` keeps the snapshot fresh in proxy mode.
#![forbid(unsafe_code)]

pub mod access_log;
pub mod admin;
mod admission;
pub mod auth;
mod backends;
mod balance;
pub mod body;
pub mod certificates;
mod client;
pub mod egress;
pub mod error;
pub mod exchange;
mod fast_hash;
#[cfg(test)]
mod future_size;
mod grpc;
mod headers;
mod health;
mod metrics;
mod outlier;
mod proxy;
pub mod pull;
mod query;
mod random_id;
mod request_body;
mod request_id;
mod resolver;
mod retry_budget;
pub mod router;
pub mod runtime;
mod service;
mod shape;
pub mod trace;
pub mod trace_context;
pub mod websocket;
mod weighted;

/// Entry points for `fuzz/` into code that is otherwise private to this crate.
#[cfg(feature = "fuzzing")]
pub mod fuzzing {
    pub use crate::backends::parse_function_response;
    pub use crate::client::fuzzing::{FuzzRead, fuzz_read_response};
}

use std::sync::Arc;

pub use proxy::Proxy;

/// What one worker thread serves with: the shared live state and its own upstream
/// connection pool (connections are used by the thread that opened them).
pub(crate) struct Worker {
    pub(crate) proxy: Arc<Proxy>,
    pub(crate) client: client::UpstreamClient,
}

/// Serves proxy traffic, one worker thread per listener (see
/// [`switchyard_http::run_workers`]), and HTTPS on `https_listeners` (one per worker,
/// certificates from the live snapshot) when given, until `shutdown` is set; returns once
/// drained.
pub fn serve_workers(
    listeners: Vec<std::net::TcpListener>,
    https_listeners: Option<Vec<std::net::TcpListener>>,
    proxy: Arc<Proxy>,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> std::io::Result<Vec<std::thread::JoinHandle<()>>> {
    let limits = proxy.connection_limits.clone();
    let https = match https_listeners {
        Some(listeners) => {
            let acceptor = switchyard_http::https::Acceptor::new(proxy.certificates.clone()).map_err(std::io::Error::other)?;
            Some(switchyard_http::https::Listeners { listeners, acceptor })
        }
        None => None,
    };
    let make_handler = move || {
        // On the worker's thread and runtime: its access log buffer is flushed from here.
        if proxy.access_log != access_log::AccessLogFormat::Off {
            access_log::start_flushing();
        }
        let worker = Arc::new(Worker { proxy: proxy.clone(), client: client::upstream_client() });
        // `handle`'s future itself, not an `async` block around it: the block would copy
        // the whole request future (kilobytes) into its own state once more per request.
        move |request, peer| service::handle(worker.clone(), request, peer)
    };
    switchyard_http::run_workers_with(listeners, https, limits, make_handler, shutdown)
}
