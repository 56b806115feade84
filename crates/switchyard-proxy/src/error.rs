//! Gateway-made errors. Every cause has one short code (`X-Ca-Error-Code`), one status
//! and a human message (`X-Ca-Error-Message`); this is the one place they turn into
//! responses, so codes and statuses cannot drift apart.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode};

use crate::body::ResponseBody;

pub const X_CA_ERROR_CODE: &str = "x-ca-error-code";
pub const X_CA_ERROR_MESSAGE: &str = "x-ca-error-message";

/// Why the gateway answered instead of a backend.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("no route matches {method} {host}{path}")]
    RouteNotFound { method: String, host: String, path: String },
    #[error("{method} is not allowed on {path}")]
    MethodNotAllowed { method: String, path: String },
    #[error("the request line and headers are {size} bytes; the limit is {limit}")]
    HeadersTooLarge { size: usize, limit: usize },
    #[error("the request body is larger than the route's limit of {limit} bytes")]
    BodyTooLarge { limit: u64 },
    #[error("bad request: {0}")]
    BadRequest(String),
    #[error("the request path is refused: {0}")]
    PathRefused(&'static str),
    #[error("the Host header {host:?} disagrees with the request's authority {authority:?}")]
    HostMismatch { host: String, authority: String },
    #[error("route {route} cannot authenticate requests: {why}")]
    AuthUnavailable { route: String, why: String },
    #[error("authentication failed: {0}")]
    AuthFailed(String),
    #[error("the gateway has no routing snapshot yet")]
    NotReady,
    #[error("backend {backend} did not answer within {timeout_ms} ms")]
    BackendTimeout { backend: String, timeout_ms: u64 },
    #[error("could not connect to backend {backend}: {detail}")]
    BackendConnect { backend: String, detail: String },
    #[error("backend {backend} failed: {detail}")]
    BackendFailed { backend: String, detail: String },
    #[error("TLS with backend {backend} failed: {detail}")]
    BackendTls { backend: String, detail: String },
    #[error("backend {backend} may not be dialled: {detail}")]
    EgressDenied { backend: String, detail: String },
    #[error("backend {backend} is unavailable: {why}")]
    BackendUnavailable { backend: String, why: String },
    #[error("backend {backend} has no endpoints")]
    NoEndpoints { backend: String },
    #[error("backend kind {kind} is not implemented yet (backend {backend})")]
    NotImplemented { kind: String, backend: String },
}

impl GatewayError {
    /// The short code: `A` for errors on the client's side of the gateway, `D` for the
    /// backend's side, then the status, then two letters naming the cause.
    pub fn code(&self) -> &'static str {
        match self {
            Self::RouteNotFound { .. } => "A404NF",
            Self::MethodNotAllowed { .. } => "A405MN",
            Self::HeadersTooLarge { .. } => "A431HL",
            Self::BodyTooLarge { .. } => "A413BL",
            Self::BadRequest(_) => "A400BR",
            Self::PathRefused(_) => "A400PR",
            Self::HostMismatch { .. } => "A400HM",
            Self::AuthUnavailable { .. } => "A503AU",
            Self::AuthFailed(_) => "A401AF",
            Self::NotReady => "A503NR",
            Self::BackendTimeout { .. } => "D504TO",
            Self::BackendConnect { .. } => "D502CF",
            Self::BackendFailed { .. } => "D502BF",
            Self::BackendTls { .. } => "D502TL",
            Self::NoEndpoints { .. } => "D503NE",
            Self::BackendUnavailable { .. } => "D503BU",
            Self::EgressDenied { .. } => "D502ED",
            Self::NotImplemented { .. } => "D501NI",
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::RouteNotFound { .. } => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Self::HeadersTooLarge { .. } => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Self::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::BadRequest(_) | Self::PathRefused(_) | Self::HostMismatch { .. } => StatusCode::BAD_REQUEST,
            Self::AuthFailed(_) => StatusCode::UNAUTHORIZED,
            Self::NotReady | Self::NoEndpoints { .. } | Self::BackendUnavailable { .. } | Self::AuthUnavailable { .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::BackendTimeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            Self::BackendConnect { .. } | Self::BackendFailed { .. } | Self::BackendTls { .. } | Self::EgressDenied { .. } => {
                StatusCode::BAD_GATEWAY
            }
            Self::NotImplemented { .. } => StatusCode::NOT_IMPLEMENTED,
        }
    }

    /// The response the client sees: status, code and message headers, and a small
    /// JSON body with the same facts for clients that only log bodies.
    pub fn into_response(self) -> Response<ResponseBody> {
        let message = self.to_string();
        let body = serde_json::json!({"code": self.code(), "message": message}).to_string();
        let mut response = Response::new(ResponseBody::full(Bytes::from(body)));
        *response.status_mut() = self.status();
        let headers = response.headers_mut();
        headers.insert(X_CA_ERROR_CODE, HeaderValue::from_static(self.code()));
        headers.insert(X_CA_ERROR_MESSAGE, header_safe(&message));
        headers.insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        response
    }
}

/// Header values must be visible ASCII: replace anything else so a message can never
/// fail to become a header (or smuggle one).
fn header_safe(message: &str) -> HeaderValue {
    let cleaned: String = message.chars().map(|c| if (' '..='~').contains(&c) { c } else { '?' }).take(512).collect();
    HeaderValue::from_str(&cleaned).unwrap_or_else(|_| HeaderValue::from_static("error"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_maps_to_its_own_code_and_a_matching_status() {
        let errors = [
            GatewayError::RouteNotFound { method: "GET".into(), host: "h".into(), path: "/".into() },
            GatewayError::MethodNotAllowed { method: "GET".into(), path: "/".into() },
            GatewayError::HeadersTooLarge { size: 9000, limit: 8192 },
            GatewayError::BodyTooLarge { limit: 1 },
            GatewayError::BadRequest("x".into()),
            GatewayError::PathRefused("a dot segment climbs above the root"),
            GatewayError::HostMismatch { host: "a".into(), authority: "b".into() },
            GatewayError::AuthUnavailable { route: "r".into(), why: "AppNotFound".into() },
            GatewayError::AuthFailed("x".into()),
            GatewayError::NotReady,
            GatewayError::BackendTimeout { backend: "b".into(), timeout_ms: 1 },
            GatewayError::BackendConnect { backend: "b".into(), detail: "refused".into() },
            GatewayError::BackendFailed { backend: "b".into(), detail: "reset".into() },
            GatewayError::BackendTls { backend: "b".into(), detail: "certificate not trusted".into() },
            GatewayError::NoEndpoints { backend: "b".into() },
            GatewayError::BackendUnavailable { backend: "b".into(), why: "AuthorizationNotFound: x".into() },
            GatewayError::EgressDenied { backend: "b".into(), detail: "link-local".into() },
            GatewayError::NotImplemented { kind: "model".into(), backend: "b".into() },
        ];
        let mut codes: Vec<&str> = errors.iter().map(GatewayError::code).collect();
        for e in &errors {
            assert_eq!(&e.code()[1..4], e.status().as_str(), "{e:?}");
        }
        codes.sort();
        codes.dedup();
        assert_eq!(codes.len(), errors.len(), "codes must be unique");
    }

    #[test]
    fn messages_with_control_characters_cannot_inject_headers() {
        let value = header_safe("bad\r\nx-injected: 1");
        assert_eq!(value.to_str().unwrap(), "bad??x-injected: 1");
    }
}
