//! The data plane: serves traffic from the live routing snapshot.
//!
//! `router` matches (pure), `service` runs the request phases, `backends` holds one
//! module per backend kind, `pull` keeps the snapshot fresh in proxy mode.
#![forbid(unsafe_code)]

pub mod admin;
mod auth;
mod backends;
pub mod body;
mod client;
pub mod error;
mod metrics;
mod proxy;
pub mod pull;
mod request_id;
pub mod router;
pub mod runtime;
mod service;
mod shape;

use std::future::Future;
use std::sync::Arc;

pub use proxy::Proxy;
pub use service::handle;

/// Serves proxy traffic on `listener` until `shutdown` resolves.
pub async fn serve(listener: tokio::net::TcpListener, proxy: Arc<Proxy>, shutdown: impl Future<Output = ()>) {
    let handler = move |request, client| {
        let proxy = proxy.clone();
        async move { handle(&proxy, request, client).await }
    };
    switchyard_http::serve(listener, handler, shutdown).await;
}
