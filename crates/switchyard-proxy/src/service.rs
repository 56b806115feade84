//! The request path as named phases over one request, each able to answer itself:
//!
//! 1. `check_limits`  — URL plus headers within 8 KiB (431 otherwise).
//! 2. `match_route`   — host, path, method, headers, query (404 / 405).
//! 3. `authenticate`  — the route's auth (401).
//! 4. `choose_backend`— weighted pick among the route's backends.
//! 5. `shape`         — rewrite, constant parameters, Host, forwarding headers, body limit.
//! 6. `call_backend`  — the backend kind serves it (timeouts, retries, 5xx codes).
//! 7. `finish`        — request id on every response, metrics.
//!
//! The snapshot is loaded once at the start: a request finishes on the snapshot it
//! started with even if a new one is swapped in meanwhile.

use std::net::SocketAddr;
use std::time::Instant;

use http::{Request, Response};
use hyper::body::Incoming;

use crate::backends::CallContext;
use crate::body::ResponseBody;
use crate::client::UpstreamClient;
use crate::error::GatewayError;
use crate::proxy::Proxy;
use crate::router::{NoMatch, RequestView};
use crate::runtime::Runtime;
use crate::shape::{ShapeInput, X_CA_REQUEST_ID, shape};

/// Largest request line plus headers accepted.
pub const MAX_HEADER_BYTES: usize = 8 * 1024;

/// Serves one client request; never fails: errors become gateway responses.
pub async fn handle(proxy: &Proxy, client: &UpstreamClient, request: Request<Incoming>, client_addr: SocketAddr) -> Response<ResponseBody> {
    let started = Instant::now();
    let request_id = crate::request_id::next();
    let outcome = match proxy.runtime() {
        Some(runtime) => serve(&runtime, client, request, client_addr, &request_id).await,
        None => Err(GatewayError::NotReady),
    };
    let (mut response, code) = match outcome {
        Ok(response) => (response, None),
        Err(error) => {
            let code = error.code();
            tracing::debug!(code, %error, "gateway error");
            (error.into_response(), Some(code))
        }
    };
    response.headers_mut().insert(X_CA_REQUEST_ID, request_id);
    proxy.metrics.observe(response.status().as_u16(), code, started.elapsed());
    response
}

async fn serve(
    runtime: &Runtime,
    client: &UpstreamClient,
    request: Request<Incoming>,
    client_addr: SocketAddr,
    request_id: &http::HeaderValue,
) -> Result<Response<ResponseBody>, GatewayError> {
    check_limits(&request)?;
    let (parts, body) = request.into_parts();
    let matched = {
        let host = request_host(&parts);
        let view = RequestView { host, method: &parts.method, path: parts.uri.path(), query: parts.uri.query(), headers: &parts.headers };
        runtime.router.find(&view).map_err(|why| no_match(why, &view))?
    };
    let route = &runtime.routes[matched.route];
    route.auth.check(&parts.headers, parts.uri.query())?;
    let target = route.pick();
    let deadline = Instant::now() + route.timeout;
    let input = ShapeInput { route, host: &target.host, params: &matched.params, client_addr, request_id };
    let shaped = shape(parts, body, input)?;
    let ctx = CallContext { client, dial: &runtime.dial, budget: route.timeout, deadline, route_retries: route.retries.as_ref() };
    runtime.backends[target.backend].serve(shaped, &ctx).await
}

fn check_limits(request: &Request<Incoming>) -> Result<(), GatewayError> {
    let uri = request.uri();
    let mut size = uri.path_and_query().map_or(0, |p| p.as_str().len()) + uri.authority().map_or(0, |a| a.as_str().len());
    for (name, value) in request.headers() {
        size += name.as_str().len() + value.len() + 4;
    }
    if size > MAX_HEADER_BYTES {
        return Err(GatewayError::HeadersTooLarge { size, limit: MAX_HEADER_BYTES });
    }
    Ok(())
}

/// The host the client addressed, without a port.
fn request_host(parts: &http::request::Parts) -> &str {
    let raw = parts.uri.host().or_else(|| parts.headers.get(http::header::HOST).and_then(|v| v.to_str().ok())).unwrap_or("");
    strip_port(raw)
}

fn strip_port(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    host.rsplit_once(':').map_or(host, |(h, port)| if port.bytes().all(|b| b.is_ascii_digit()) { h } else { host })
}

fn no_match(why: NoMatch, view: &RequestView<'_>) -> GatewayError {
    match why {
        NoMatch::NotFound => {
            GatewayError::RouteNotFound { method: view.method.to_string(), host: view.host.to_owned(), path: view.path.to_owned() }
        }
        NoMatch::MethodNotAllowed => GatewayError::MethodNotAllowed { method: view.method.to_string(), path: view.path.to_owned() },
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn ports_are_stripped_from_hosts_including_ipv6_literals() {
        assert_eq!(super::strip_port("api.example.com:8080"), "api.example.com");
        assert_eq!(super::strip_port("api.example.com"), "api.example.com");
        assert_eq!(super::strip_port("[::1]:8080"), "::1");
        assert_eq!(super::strip_port("127.0.0.1"), "127.0.0.1");
    }
}
