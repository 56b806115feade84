//! The shaping phase: turns the client's request into the backend request (path
//! rewrite, constant parameters, Host policy, forwarding headers, body limit).

use std::net::SocketAddr;
use std::sync::Arc;

use http::header::{CONTENT_LENGTH, FORWARDED, HOST};
use http::request::Parts;
use http::{HeaderMap, HeaderName, HeaderValue};

use crate::auth::strip_app_code;
use crate::backends::{EventSource, ShapedRequest};
use crate::error::GatewayError;
use crate::headers::{X_CA_REQUEST_ID, strip_hop_by_hop};
use crate::request_body::RequestBody;
use crate::runtime::{HostPolicy, RouteRuntime};

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Everything the shaping phase needs besides the request.
pub struct ShapeInput<'a> {
    pub route: &'a RouteRuntime,
    pub host: &'a HostPolicy,
    /// The normalized path when it differs from the request's (None: the request's path
    /// was already normal).
    pub normalized_path: Option<String>,
    /// The request's one host (its authority, else Host), already checked.
    pub client_host: Option<HeaderValue>,
    pub params: &'a [(usize, usize)],
    pub client_addr: SocketAddr,
    /// The client's scheme is https (the request came over TLS).
    pub https: bool,
    pub request_id: &'a HeaderValue,
    /// The route's template parameter names, when the target is an event function: its
    /// event needs the client's path and named parameters. None for every other backend,
    /// which then pays nothing for them.
    pub event_params: Option<&'a [Arc<str>]>,
}

/// Builds the backend request; rejects a declared body over the route's limit before
/// reading a byte of it.
pub fn shape(mut parts: Parts, body: RequestBody, input: ShapeInput<'_>) -> Result<ShapedRequest, GatewayError> {
    let limit = input.route.body_limit;
    if declared_length(&parts.headers).is_some_and(|len| len > limit) {
        return Err(GatewayError::BodyTooLarge { limit });
    }
    let client_host = input.client_host;
    let path = input.normalized_path.as_deref().unwrap_or(parts.uri.path());
    let backend_path = input.route.backend_path(path, input.params)?;
    let event = input.event_params.map(|names| Box::new(EventSource::new(path, names, input.params)));
    let headers = &mut parts.headers;
    let stripped_query = strip_app_code(headers, parts.uri.query());
    let mut query = stripped_query.as_deref().or(parts.uri.query());
    let overridden = query.and_then(|q| without_params(q, &input.route.add_query_names));
    if overridden.is_some() {
        query = overridden.as_deref();
    }
    let path_and_query = join_query(&backend_path, query, input.route.add_query.as_deref());
    // Before the hop-by-hop headers go: the backend decides whether it takes it.
    let upgrade = crate::websocket::take_client_upgrade(&mut parts);
    let headers = &mut parts.headers;
    strip_hop_by_hop(headers);
    // Never passed through as the client wrote it (the spec's forwarding rule).
    headers.remove(FORWARDED);
    headers.remove(HOST);
    for (name, value) in &input.route.add_headers {
        headers.insert(name.clone(), value.clone());
    }
    append_forwarded_for(headers, input.client_addr);
    // The real scheme of the client's connection; a client's own value is overwritten.
    headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(if input.https { "https" } else { "http" }));
    // Set from the one host, or removed: never passed through as the client wrote it.
    match &client_host {
        Some(host) => headers.insert(X_FORWARDED_HOST, host.clone()),
        None => headers.remove(X_FORWARDED_HOST),
    };
    headers.insert(X_CA_REQUEST_ID, input.request_id.clone());
    let host = match input.host {
        HostPolicy::Fixed(value) => Some(value.clone()),
        HostPolicy::Client => client_host,
        HostPolicy::Endpoint => None,
    };
    let client_ip = input.client_addr.ip();
    Ok(ShapedRequest { method: parts.method, headers: parts.headers, path_and_query, body, host, client_ip, event, upgrade })
}

fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers.get(CONTENT_LENGTH)?.to_str().ok()?.parse().ok()
}

/// `query` without the parameters named in `names` (compared decoded), when it has any.
fn without_params(query: &str, names: &[String]) -> Option<String> {
    if names.is_empty() {
        return None;
    }
    crate::query::without_pairs(query, |pair| {
        let key = pair.split('=').next().unwrap_or(pair);
        form_urlencoded::parse(key.as_bytes()).next().is_some_and(|(k, _)| names.iter().any(|n| *n == k))
    })
}

/// The backend's path and query, allocated at its exact length: the `http` kind turns it
/// into the request's URI without copying it again (a `Bytes` made from a full `String`).
fn join_query(path: &str, query: Option<&str>, constant: Option<&str>) -> String {
    let parts = || [query, constant].into_iter().flatten().filter(|q| !q.is_empty());
    let mut out = String::with_capacity(path.len() + parts().map(|q| q.len() + 1).sum::<usize>());
    out.push_str(path);
    let mut separator = '?';
    for part in parts() {
        out.push(separator);
        out.push_str(part);
        separator = '&';
    }
    out
}

fn append_forwarded_for(headers: &mut HeaderMap, client: SocketAddr) {
    use std::io::Write;
    // An address fits in 45 bytes: format it on the stack.
    let mut buf = [0u8; 64];
    let mut cursor = std::io::Cursor::new(&mut buf[..]);
    let _ = write!(cursor, "{}", client.ip());
    let len = cursor.position() as usize;
    let ip = &buf[..len];
    // Every incoming line is kept, in order (as nginx's `$proxy_add_x_forwarded_for`).
    let mut joined: Vec<u8> = Vec::new();
    for line in headers.get_all(&X_FORWARDED_FOR) {
        joined.extend_from_slice(line.as_bytes());
        joined.extend_from_slice(b", ");
    }
    let value = if joined.is_empty() {
        HeaderValue::from_bytes(ip)
    } else {
        joined.extend_from_slice(ip);
        HeaderValue::from_bytes(&joined)
    };
    if let Ok(value) = value {
        headers.insert(X_FORWARDED_FOR, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_and_constant_queries_are_joined_in_order() {
        assert_eq!(join_query("/a", None, None), "/a");
        assert_eq!(join_query("/a", Some("x=1"), None), "/a?x=1");
        assert_eq!(join_query("/a", None, Some("s=g")), "/a?s=g");
        assert_eq!(join_query("/a", Some("x=1"), Some("s=g")), "/a?x=1&s=g");
        assert_eq!(join_query("/a", Some(""), Some("s=g")), "/a?s=g");
        for joined in [join_query("/a", Some("x=1"), Some("s=g")), join_query("/a", None, None), join_query("/a", Some(""), None)] {
            assert_eq!(joined.capacity(), joined.len(), "{joined}: allocated at its length");
        }
    }

    #[test]
    fn a_client_parameter_named_like_a_constant_is_dropped() {
        let names = vec!["tenant".to_owned()];
        assert_eq!(without_params("tenant=b&x=1&ten%61nt=c", &names).as_deref(), Some("x=1"));
        assert_eq!(without_params("x=1", &names), None, "nothing to drop: forwarded as it is");
        assert_eq!(without_params("tenant=b", &[]), None);
    }

    #[test]
    fn forwarded_for_appends_the_client_address() {
        let mut headers = HeaderMap::new();
        append_forwarded_for(&mut headers, "10.1.2.3:5000".parse().unwrap());
        append_forwarded_for(&mut headers, "127.0.0.1:1".parse().unwrap());
        assert_eq!(headers[X_FORWARDED_FOR], "10.1.2.3, 127.0.0.1");
    }

    #[test]
    fn forwarded_for_keeps_every_incoming_line_in_order() {
        let mut headers = HeaderMap::new();
        headers.append(X_FORWARDED_FOR, HeaderValue::from_static("1.1.1.1, 2.2.2.2"));
        headers.append(X_FORWARDED_FOR, HeaderValue::from_static("3.3.3.3"));
        append_forwarded_for(&mut headers, "10.0.0.9:1".parse().unwrap());
        assert_eq!(headers.get_all(X_FORWARDED_FOR).iter().collect::<Vec<_>>(), ["1.1.1.1, 2.2.2.2, 3.3.3.3, 10.0.0.9"]);
    }
}
