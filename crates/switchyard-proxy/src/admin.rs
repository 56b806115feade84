//! The admin listener: `/healthz`, `/readyz`, `/metrics`, `/config_dump`, `/status`.
//! What it shows comes from an [`AdminView`], so the proxy, the controller and
//! standalone (both in one process) share one implementation.

use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use prometheus_client::registry::Registry;

/// What the admin endpoints report.
pub trait AdminView: Send + Sync + 'static {
    /// Ready to take traffic (a snapshot is loaded).
    fn ready(&self) -> bool;
    /// The live snapshot as JSON.
    fn config_dump(&self) -> Bytes;
    /// Every resource's conditions as JSON.
    fn status(&self) -> Bytes;
}

/// Answers one admin request.
pub fn respond<B>(view: &dyn AdminView, registry: &Registry, request: &Request<B>) -> Response<Full<Bytes>> {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return plain(StatusCode::METHOD_NOT_ALLOWED, "admin endpoints answer GET only\n");
    }
    match request.uri().path() {
        "/healthz" => plain(StatusCode::OK, "ok\n"),
        "/readyz" if view.ready() => plain(StatusCode::OK, "ready\n"),
        "/readyz" => plain(StatusCode::SERVICE_UNAVAILABLE, "no routing snapshot loaded yet\n"),
        "/metrics" => metrics(registry),
        "/config_dump" => json(view.config_dump()),
        "/status" => json(view.status()),
        _ => plain(StatusCode::NOT_FOUND, "admin endpoints: /healthz /readyz /metrics /config_dump /status\n"),
    }
}

/// A handler for [`switchyard_http::serve`].
pub fn handler(
    view: Arc<dyn AdminView>,
    registry: Arc<Registry>,
) -> impl Fn(Request<hyper::body::Incoming>, std::net::SocketAddr) -> std::future::Ready<Response<Full<Bytes>>> + Clone + Send + Sync + 'static
{
    move |request, _| std::future::ready(respond(&*view, &registry, &request))
}

fn metrics(registry: &Registry) -> Response<Full<Bytes>> {
    let mut text = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut text, registry) {
        return plain(StatusCode::INTERNAL_SERVER_ERROR, &format!("encoding metrics failed: {e}\n"));
    }
    let mut response = Response::new(Full::new(Bytes::from(text)));
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, header::HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"));
    response
}

fn json(body: Bytes) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body));
    response.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static("application/json"));
    response
}

fn plain(status: StatusCode, text: &str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::copy_from_slice(text.as_bytes())));
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static("text/plain; charset=utf-8"));
    response
}
