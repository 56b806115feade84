//! `function` with `invocation: Event`: the request becomes the spec's event JSON
//! ([`event`]), POSTed to the function URL through the `http` runtime (timeouts, retries
//! on connect failure, TLS, egress policy, health), and the function's response JSON
//! ([`response`]) becomes the client's response.
//!
//! Limits: a request body over `max_request` is refused with 413 before the call (the
//! declared length first, then while reading); a response over `max_response` is a 502
//! `D502FL` (the declared length first, then while reading). Both are held in memory,
//! which is why compile caps them at 64 MiB.
//!
//! A response of the function platform that is not 2xx (the platform failed, or refused
//! the call) is not a response JSON: it passes through as it came, as an `http` backend's
//! would. A 2xx is read as the function's answer, whose own 4xx/5xx pass through as its
//! status.

pub(super) mod event;
mod response;
#[cfg(feature = "fuzzing")]
pub use self::response::parse as parse_response;

use bytes::{Bytes, BytesMut};
use http::header::{ACCEPT, CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue, Method, Response};
use http_body_util::BodyExt;
use switchyard_compile::snapshot::{Backend as BackendSpec, Endpoint};

use self::event::EventInput;
pub use self::event::EventSource;
use super::http::{HttpBackend, collect};
use super::{Backend, BuildContext, CallContext, ShapedRequest};
use crate::body::ResponseBody;
use crate::error::GatewayError;
use crate::headers::X_CA_REQUEST_ID;
use crate::request_body::RequestBody;

pub struct EventFunction {
    id: String,
    http: HttpBackend,
    max_request: u64,
    max_response: u64,
    /// What the http runtime appends to the endpoint's base path: nothing, so the POST
    /// goes to the URL itself, or `/` for a URL without a path.
    path: &'static str,
}

impl EventFunction {
    pub fn build(
        spec: &BackendSpec,
        endpoints: &[Endpoint],
        max_request: u64,
        max_response: u64,
        ctx: &BuildContext,
    ) -> Result<Self, String> {
        let path = if endpoints.iter().all(|e| !e.base_path.is_empty()) { "" } else { "/" };
        Ok(Self { id: spec.id.clone(), http: HttpBackend::build(spec, endpoints, ctx)?, max_request, max_response, path })
    }

    pub fn health_report(&self) -> Option<serde_json::Value> {
        self.http.health_report()
    }

    pub fn endpoint_name(&self, i: usize) -> Option<&str> {
        self.http.endpoint_name(i)
    }

    /// The POST carrying the event: to the function URL itself, with the Host the
    /// route's policy chose. Only the gateway's headers go out: the client's are in the
    /// event, not on the platform request.
    fn invocation(&self, request: &ShapedRequest, event: Vec<u8>) -> ShapedRequest {
        let mut headers = HeaderMap::with_capacity(3);
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
        if let Some(id) = request.headers.get(X_CA_REQUEST_ID) {
            headers.insert(X_CA_REQUEST_ID, id.clone());
        }
        ShapedRequest {
            method: Method::POST,
            headers,
            path_and_query: self.path.to_owned(),
            body: RequestBody::full(Bytes::from(event)),
            host: request.host.clone(),
            client_ip: request.client_ip,
            event: None,
            upgrade: None,
        }
    }

    /// The function's response body, at most `max_response` bytes, read within the
    /// route's deadline.
    async fn read_response(&self, body: ResponseBody, declared: Option<u64>, ctx: &CallContext<'_>) -> Result<Bytes, GatewayError> {
        let too_large = || GatewayError::FunctionResponseTooLarge { backend: self.id.clone(), limit: self.max_response };
        if declared.is_some_and(|len| len > self.max_response) {
            return Err(too_large());
        }
        let read = read_at_most(body, self.max_response);
        match tokio::time::timeout_at(ctx.deadline.into(), read).await {
            Err(_) => Err(GatewayError::BackendTimeout { backend: self.id.clone(), timeout_ms: ctx.budget.as_millis() as u64 }),
            Ok(Ok(Some(bytes))) => Ok(bytes),
            Ok(Ok(None)) => Err(too_large()),
            Ok(Err(e)) => Err(GatewayError::BackendFailed {
                backend: self.id.clone(),
                kind: "the response body was cut off".into(),
                detail: e.to_string(),
            }),
        }
    }
}

impl Backend for EventFunction {
    async fn serve(&self, mut request: ShapedRequest, ctx: &CallContext<'_>) -> Result<Response<ResponseBody>, GatewayError> {
        if declared_length(&request.headers).is_some_and(|len| len > self.max_request) {
            return Err(GatewayError::BodyTooLarge { limit: self.max_request });
        }
        let body = std::mem::replace(&mut request.body, RequestBody::full(Bytes::new()));
        let body = collect(within(body, self.max_request)?, ctx).await?;
        let input = EventInput {
            source: request.event.as_deref(),
            method: &request.method,
            headers: &request.headers,
            path_and_query: &request.path_and_query,
            body: &body,
        };
        let event = event::build(&input);
        drop(body);
        let call = self.invocation(&request, event);
        let platform = self.http.serve(call, ctx).await?;
        if !platform.status().is_success() {
            let request_id = request.headers.get(X_CA_REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or("");
            tracing::debug!(request_id, backend = %self.id, status = platform.status().as_u16(), "the function platform answered non-2xx; passed through");
            return Ok(platform);
        }
        let declared = declared_length(platform.headers());
        let bytes = self.read_response(platform.into_body(), declared, ctx).await?;
        response::parse(&bytes, &self.id)
    }
}

fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers.get(CONTENT_LENGTH)?.to_str().ok()?.trim().parse().ok()
}

/// The body with the function's limit enforced on top of the route's (the smaller one
/// is hit first). A body already read (for a signature) is checked as it is.
fn within(body: RequestBody, limit: u64) -> Result<RequestBody, GatewayError> {
    match body {
        RequestBody::Streaming { inner, seen, limit: route_limit, watch, tally } => {
            Ok(RequestBody::Streaming { inner, seen, limit: route_limit.min(limit), watch, tally })
        }
        full => {
            let size = http_body::Body::size_hint(&full).upper().unwrap_or(u64::MAX);
            if size > limit { Err(GatewayError::BodyTooLarge { limit }) } else { Ok(full) }
        }
    }
}

/// The whole body, or None as soon as it grows past `limit` (the rest is never read).
async fn read_at_most<B: http_body::Body<Data = Bytes>>(body: B, limit: u64) -> Result<Option<Bytes>, B::Error> {
    let mut body = std::pin::pin!(body);
    let mut out = BytesMut::new();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            if (out.len() + data.len()) as u64 > limit {
                return Ok(None);
            }
            out.extend_from_slice(&data);
        }
    }
    Ok(Some(out.freeze()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn function(url_path: &str) -> EventFunction {
        let endpoint = Endpoint {
            scheme: "http".into(),
            authority: "127.0.0.1:9".into(),
            host: "127.0.0.1".into(),
            base_path: url_path.into(),
            tls_server_name: None,
            weight: 1,
        };
        let kind = switchyard_compile::snapshot::BackendKind::Http { endpoints: vec![endpoint.clone()] };
        let spec = BackendSpec::with_defaults("shop/fn", kind);
        let ctx = BuildContext { dial: std::sync::Arc::new(Default::default()), metrics: Default::default() };
        EventFunction::build(&spec, &[endpoint], 10, 10, &ctx).unwrap()
    }

    #[test]
    fn the_event_is_posted_to_the_function_url_itself() {
        // The http runtime appends the request's path to the URL's (base) path, and an
        // empty request target is not one.
        assert_eq!(function("/invoke").path, "", "POST /invoke, not /invoke/");
        assert_eq!(function("").path, "/", "a URL without a path: POST /");
        assert!(http::uri::PathAndQuery::try_from("").is_err());
    }

    #[test]
    fn a_buffered_body_over_the_limit_is_refused_and_one_within_passes() {
        let error = within(RequestBody::full(Bytes::from_static(b"12345")), 4).err().unwrap();
        assert_eq!((error.code(), error.status().as_u16()), ("A413BL", 413));
        assert!(within(RequestBody::full(Bytes::from_static(b"1234")), 4).is_ok());
    }

    #[tokio::test]
    async fn a_response_is_read_up_to_its_limit_and_no_further() {
        assert_eq!(read_at_most(ResponseBody::full(Bytes::from_static(b"abcd")), 4).await.unwrap().as_deref(), Some(&b"abcd"[..]));
        assert_eq!(read_at_most(ResponseBody::full(Bytes::from_static(b"abcde")), 4).await.unwrap(), None);
        assert_eq!(read_at_most(ResponseBody::full(Bytes::new()), 4).await.unwrap().as_deref(), Some(&b""[..]));
    }

    #[test]
    fn a_declared_length_is_read_leniently_and_garbage_is_no_length() {
        let with = |v: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(CONTENT_LENGTH, HeaderValue::from_static(v));
            declared_length(&h)
        };
        assert_eq!((with("12"), with(" 7 "), with("x"), declared_length(&HeaderMap::new())), (Some(12), Some(7), None, None));
    }
}
