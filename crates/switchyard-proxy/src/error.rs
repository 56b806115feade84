//! Gateway-made errors. Every cause has one short code (`X-Ca-Error-Code`), one status
//! and a human message (`X-Ca-Error-Message`); this is the one place they turn into
//! responses, so codes and statuses cannot drift apart.

use std::borrow::Cow;

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode};

use crate::body::ResponseBody;

pub const X_CA_ERROR_CODE: &str = "x-ca-error-code";
pub const X_CA_ERROR_MESSAGE: &str = "x-ca-error-message";

/// Why the gateway answered instead of a backend.
///
/// The message (Display) is what the client sees: it names the route or backend and the
/// kind of failure, never resolved addresses, OS error text or secrets. What an operator
/// needs besides (the error chain, the address) is in `detail` fields, which only the log
/// shows (see [`GatewayError::detail`]).
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// Plain HTTP to an HTTPS-only route: answered 308 with `location` (its https URL).
    #[error("this API is served over HTTPS only: {location}")]
    HttpsRequired { location: String },
    #[error("this API is served over plain HTTP only")]
    HttpOnly,
    #[error("no route matches {method} {host}{path}")]
    RouteNotFound { method: String, host: String, path: String },
    /// `allow` is the `Allow` header's value: the methods the routes matching the path
    /// accept (`GET, HEAD`).
    #[error("{method} is not allowed on {path}")]
    MethodNotAllowed { method: String, path: String, allow: String },
    #[error("the request line and headers are {size} bytes; the limit is {limit}")]
    HeadersTooLarge { size: usize, limit: usize },
    #[error(
        "the request body is larger than the limit of {limit} bytes (the route's requestBodyLimit, or an event function's maxRequestSize)"
    )]
    BodyTooLarge { limit: u64 },
    #[error("bad request: {0}")]
    BadRequest(String),
    /// The client's body was malformed (a bad chunk) or cut off before its end.
    #[error("the request body is malformed or incomplete")]
    MalformedBody { detail: String },
    /// The client did not send its body in time: the gateway was waiting on it, not on
    /// the backend.
    #[error("the request body did not arrive within {timeout_ms} ms")]
    BodyTimeout { timeout_ms: u64 },
    /// A WebSocket handshake to a backend that does not take upgrades.
    #[error("backend {backend} does not take WebSocket upgrades: only http, vpc and registry backends spoken to in HTTP/1.1 do")]
    UpgradeRefused { backend: String },
    #[error("the request path is refused: {0}")]
    PathRefused(&'static str),
    #[error("the Host header {host:?} disagrees with the request's authority {authority:?}")]
    HostMismatch { host: String, authority: String },
    #[error("route {route} cannot authenticate requests: {why}")]
    AuthUnavailable { route: String, why: String },
    #[error("authentication failed: {0}")]
    AuthFailed(String),
    /// Signature auth (`auth::signature`): a header the scheme needs is absent.
    #[error("the request is not signed: the {header} header is missing")]
    SignatureHeaderMissing { header: &'static str },
    #[error("{header} is invalid: {why}")]
    SignatureHeaderInvalid { header: &'static str, why: &'static str },
    #[error("X-Ca-Signature-Method {method:?} is not supported (HmacSHA256, the default, or HmacSHA1)")]
    SignatureMethodUnsupported { method: String },
    /// The timestamp or nonce is not signed: anyone could replay the request with fresh ones.
    #[error("X-Ca-Signature-Headers must list {header}: unsigned, it does not stop a replay")]
    SignatureHeaderUnsigned { header: &'static str },
    /// `skew`: `960.123 s behind` / `ahead of`.
    #[error("X-Ca-Timestamp is {skew} the gateway's clock; requests are accepted within 900 s (15 minutes) of it")]
    TimestampOutsideWindow { skew: String },
    #[error("no app of this API's namespace has the X-Ca-Key {key:?}")]
    AppKeyUnknown { key: String },
    #[error("the app with X-Ca-Key {key:?} is not allowed on route {route}")]
    AppNotAllowed { key: String, route: String },
    #[error("Content-MD5 does not match the body: the body's is {computed}")]
    ContentMd5Mismatch { computed: String },
    /// What the log shows; the client also sees the string the gateway signed (see
    /// [`GatewayError::client_message`]), which holds the request's header and query values.
    #[error("Invalid Signature (X-Ca-Key {key:?})")]
    InvalidSignature { key: String, string_to_sign: String },
    #[error("X-Ca-Nonce was already used within the last 15 minutes: a replay")]
    NonceReplayed,
    /// Fail closed: without the store a replay cannot be told from a first request.
    #[error("the nonce store cannot be reached, so signed requests are refused: {kind}")]
    NonceStoreUnavailable { kind: &'static str, detail: String },
    #[error("the nonce store is full ({capacity} nonces within the window), so signed requests are refused")]
    NonceStoreFull { capacity: usize },
    #[error("the gateway has no routing snapshot yet")]
    NotReady,
    /// The worker this connection reached has `--max-connections-per-worker` open.
    #[error("this gateway worker has {limit} connections open, its cap; retry shortly")]
    TooManyConnections { limit: usize },
    #[error("backend {backend} did not answer within {timeout_ms} ms")]
    BackendTimeout { backend: String, timeout_ms: u64 },
    /// `kind`: connection refused, timed out, the name does not resolve, ...
    #[error("could not connect to backend {backend}: {kind}")]
    BackendConnect { backend: String, kind: Cow<'static, str>, detail: String },
    /// `kind`: connection reset, connection closed before a response, invalid response, ...
    #[error("backend {backend} failed: {kind}")]
    BackendFailed { backend: String, kind: Cow<'static, str>, detail: String },
    /// `kind`: certificate not trusted, expired, not valid for the name, ...
    #[error("TLS with backend {backend} failed: {kind}")]
    BackendTls { backend: String, kind: Cow<'static, str>, detail: String },
    /// `why` is the policy's reason; the refused address is only in `detail`.
    #[error("backend {backend} may not be dialled: {why}")]
    EgressDenied { backend: String, why: Cow<'static, str>, detail: String },
    #[error("backend {backend} is unavailable: {why}")]
    BackendUnavailable { backend: String, why: String },
    #[error("backend {backend} has no endpoints")]
    NoEndpoints { backend: String },
    /// A gRPC request to a backend spoken to in HTTP/1.1, which cannot carry trailers.
    #[error("backend {backend} speaks HTTP/1.1, and gRPC needs HTTP/2: set its protocol to H2C or H2")]
    GrpcNeedsHttp2 { backend: String },
    /// Shed: the backend already has its `circuitBreaker.maxRequests` in flight.
    #[error("backend {backend} is at its limit of {limit} requests in flight (circuitBreaker.maxRequests); retry later")]
    BackendOverloaded { backend: String, limit: u32 },
    #[error("backend kind {kind} is not implemented yet (backend {backend})")]
    NotImplemented { kind: String, backend: String },
    /// `X-Ca-Hops` is not one decimal number.
    #[error("the X-Ca-Hops header must be one decimal number of gateway hops")]
    BadHops,
    /// The request has passed through `hops` gateways already: a loop of gateways.
    #[error("loop detected: the request has made {hops} gateway hops; backend {backend} allows at most {max_hops}")]
    LoopDetected { backend: String, hops: u32, max_hops: u32 },
    // --- `function` with `invocation: Event`: the function's response JSON is wrong ---
    /// `detail`: the JSON parser's message (position and what it expected).
    #[error("function {backend} answered with a body that is not the response JSON (isBase64Encoded, statusCode, headers, body): {detail}")]
    FunctionResponseNotJson { backend: String, detail: String },
    #[error("function {backend} answered without a statusCode")]
    FunctionStatusMissing { backend: String },
    /// `status`: the value as the function wrote it.
    #[error("function {backend} answered with statusCode {status}: a status must be an integer from 100 to 599")]
    FunctionStatusInvalid { backend: String, status: String },
    #[error("function {backend} answered with isBase64Encoded true and a body that is not valid base64: {detail}")]
    FunctionBodyNotBase64 { backend: String, detail: String },
    /// `problem`: which field or header, and why.
    #[error("function {backend} answered with an unusable response: {problem}")]
    FunctionResponseInvalid { backend: String, problem: String },
    #[error("function {backend} answered with more than {limit} bytes (its maxResponseSize)")]
    FunctionResponseTooLarge { backend: String, limit: u64 },
    // --- `model` ---
    /// The request path is not one the backend's protocol serves.
    #[error("{protocol} model backend {backend} does not serve {method} {path}; it serves {serves}")]
    ModelPathNotServed { backend: String, protocol: &'static str, method: String, path: String, serves: &'static str },
    /// A KServe v2 inference request that is not one (`problem` names the field).
    #[error("not a KServe v2 inference request: {problem}")]
    InferenceRequestInvalid { problem: String },
    // --- `eventBus` ---
    /// `why`: not connected, the sink could not be reached, ... (no addresses).
    #[error("event bus {backend} is unavailable: {why}; the event was not published")]
    EventBusUnavailable { backend: String, why: String },
    #[error("event bus {backend} did not acknowledge the event within {timeout_ms} ms; it may not have been published")]
    EventBusTimeout { backend: String, timeout_ms: u64 },
    /// `why`: no stream takes the subject, the sink's status, JetStream's refusal.
    #[error("event bus {backend} refused the event: {why}")]
    EventBusRefused { backend: String, why: String },
    #[error("the event is larger than event bus {backend} accepts (the NATS server's max_payload)")]
    EventTooLarge { backend: String },
    #[error("the {header} header must be 1-128 visible ASCII characters (it becomes the event id)")]
    BadEventId { header: &'static str },
    #[error("the gateway has no randomness for an event id")]
    NoRandomness,
    // --- `dataService` ---
    #[error("data service {backend}: parameter {parameter} is required")]
    DataParameterMissing { backend: String, parameter: String },
    #[error("data service {backend}: parameter {parameter} is invalid: {why}")]
    DataParameterInvalid { backend: String, parameter: String, why: String },
    #[error("{parameter} {why}")]
    DataPageInvalid { parameter: &'static str, why: String },
    #[error("pageSize {size} is above the maximum page size {max}")]
    DataPageTooLarge { size: u64, max: u32 },
    #[error("the request body cannot be read for parameters: {why}")]
    DataBodyInvalid { why: String },
    /// The database refused a bound value as data; `detail` (its words) for the log.
    #[error("data service {backend}: the database refused a parameter value as data")]
    DataValueRefused { backend: String, detail: String },
    #[error("data service {backend}: the query did not finish within {timeout_ms} ms and was cancelled")]
    DataTimeout { backend: String, timeout_ms: u64 },
    #[error("data service {backend}: every database connection stayed busy until the request's deadline")]
    DataPoolExhausted { backend: String },
    #[error("data service {backend}: the database is unavailable")]
    DataUnavailable { backend: String, detail: String },
    #[error("data service {backend}: the database refused the query")]
    DataQueryFailed { backend: String, detail: String },
}

impl GatewayError {
    /// The short code: `A` for errors on the client's side of the gateway, `D` for the
    /// backend's side, then the status, then two letters naming the cause.
    pub fn code(&self) -> &'static str {
        match self {
            Self::HttpsRequired { .. } => "A308HS",
            Self::HttpOnly => "A421HO",
            Self::RouteNotFound { .. } => "A404NF",
            Self::MethodNotAllowed { .. } => "A405MN",
            Self::HeadersTooLarge { .. } => "A431HL",
            Self::BodyTooLarge { .. } => "A413BL",
            Self::BadRequest(_) => "A400BR",
            Self::MalformedBody { .. } => "A400MB",
            Self::BodyTimeout { .. } => "A408BT",
            Self::PathRefused(_) => "A400PR",
            Self::UpgradeRefused { .. } => "A400WS",
            Self::HostMismatch { .. } => "A400HM",
            Self::AuthUnavailable { .. } => "A503AU",
            Self::AuthFailed(_) => "A401AF",
            Self::SignatureHeaderMissing { .. } => "A400SH",
            Self::SignatureHeaderInvalid { .. } => "A400SV",
            Self::SignatureMethodUnsupported { .. } => "A400SM",
            Self::SignatureHeaderUnsigned { .. } => "A400SU",
            Self::TimestampOutsideWindow { .. } => "A401TS",
            Self::AppKeyUnknown { .. } => "A401AK",
            Self::AppNotAllowed { .. } => "A403AP",
            Self::ContentMd5Mismatch { .. } => "A400MD",
            Self::InvalidSignature { .. } => "A401SI",
            Self::NonceReplayed => "A401NR",
            Self::NonceStoreUnavailable { .. } => "A503NS",
            Self::NonceStoreFull { .. } => "A503NF",
            Self::NotReady => "A503NR",
            Self::TooManyConnections { .. } => "A503CL",
            Self::BackendTimeout { .. } => "D504TO",
            Self::BackendConnect { .. } => "D502CF",
            Self::BackendFailed { .. } => "D502BF",
            Self::BackendTls { .. } => "D502TL",
            Self::NoEndpoints { .. } => "D503NE",
            Self::GrpcNeedsHttp2 { .. } => "D502GP",
            Self::BackendOverloaded { .. } => "D503OL",
            Self::BackendUnavailable { .. } => "D503BU",
            Self::EgressDenied { .. } => "D502ED",
            Self::NotImplemented { .. } => "D501NI",
            Self::BadHops => "A400HC",
            Self::LoopDetected { .. } => "D508LD",
            Self::FunctionResponseNotJson { .. } => "D502FJ",
            Self::FunctionStatusMissing { .. } => "D502FN",
            Self::FunctionStatusInvalid { .. } => "D502FS",
            Self::FunctionBodyNotBase64 { .. } => "D502FB",
            Self::FunctionResponseInvalid { .. } => "D502FI",
            Self::FunctionResponseTooLarge { .. } => "D502FL",
            Self::ModelPathNotServed { .. } => "A404MP",
            Self::InferenceRequestInvalid { .. } => "A400IR",
            Self::EventBusUnavailable { .. } => "D503EB",
            Self::EventBusTimeout { .. } => "D503ET",
            Self::EventBusRefused { .. } => "D503ER",
            Self::EventTooLarge { .. } => "A413ET",
            Self::BadEventId { .. } => "A400EK",
            Self::NoRandomness => "D503RN",
            Self::DataParameterMissing { .. } => "A400DM",
            Self::DataParameterInvalid { .. } => "A400DP",
            Self::DataPageInvalid { .. } => "A400DG",
            Self::DataPageTooLarge { .. } => "A400DS",
            Self::DataBodyInvalid { .. } => "A400DB",
            Self::DataValueRefused { .. } => "A400DV",
            Self::DataTimeout { .. } => "D504DT",
            Self::DataPoolExhausted { .. } => "D503DP",
            Self::DataUnavailable { .. } => "D503DU",
            Self::DataQueryFailed { .. } => "D502DQ",
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::HttpsRequired { .. } => StatusCode::PERMANENT_REDIRECT,
            Self::HttpOnly => StatusCode::MISDIRECTED_REQUEST,
            Self::RouteNotFound { .. } => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Self::HeadersTooLarge { .. } => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Self::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::BadRequest(_)
            | Self::MalformedBody { .. }
            | Self::PathRefused(_)
            | Self::HostMismatch { .. }
            | Self::UpgradeRefused { .. } => StatusCode::BAD_REQUEST,
            Self::BodyTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            Self::AuthFailed(_)
            | Self::TimestampOutsideWindow { .. }
            | Self::AppKeyUnknown { .. }
            | Self::InvalidSignature { .. }
            | Self::NonceReplayed => StatusCode::UNAUTHORIZED,
            Self::SignatureHeaderMissing { .. }
            | Self::SignatureHeaderInvalid { .. }
            | Self::SignatureMethodUnsupported { .. }
            | Self::SignatureHeaderUnsigned { .. }
            | Self::ContentMd5Mismatch { .. } => StatusCode::BAD_REQUEST,
            Self::AppNotAllowed { .. } => StatusCode::FORBIDDEN,
            Self::NonceStoreUnavailable { .. } | Self::NonceStoreFull { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::NotReady
            | Self::TooManyConnections { .. }
            | Self::NoEndpoints { .. }
            | Self::BackendOverloaded { .. }
            | Self::BackendUnavailable { .. }
            | Self::AuthUnavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::BackendTimeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            Self::BackendConnect { .. }
            | Self::BackendFailed { .. }
            | Self::BackendTls { .. }
            | Self::EgressDenied { .. }
            | Self::GrpcNeedsHttp2 { .. } => StatusCode::BAD_GATEWAY,
            Self::NotImplemented { .. } => StatusCode::NOT_IMPLEMENTED,
            Self::BadHops => StatusCode::BAD_REQUEST,
            Self::LoopDetected { .. } => StatusCode::LOOP_DETECTED,
            Self::FunctionResponseNotJson { .. }
            | Self::FunctionStatusMissing { .. }
            | Self::FunctionStatusInvalid { .. }
            | Self::FunctionBodyNotBase64 { .. }
            | Self::FunctionResponseInvalid { .. }
            | Self::FunctionResponseTooLarge { .. } => StatusCode::BAD_GATEWAY,
            Self::ModelPathNotServed { .. } => StatusCode::NOT_FOUND,
            Self::InferenceRequestInvalid { .. } => StatusCode::BAD_REQUEST,
            Self::EventBusUnavailable { .. } | Self::EventBusTimeout { .. } | Self::EventBusRefused { .. } | Self::NoRandomness => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::EventTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::BadEventId { .. } => StatusCode::BAD_REQUEST,
            Self::DataParameterMissing { .. }
            | Self::DataParameterInvalid { .. }
            | Self::DataPageInvalid { .. }
            | Self::DataPageTooLarge { .. }
            | Self::DataBodyInvalid { .. }
            | Self::DataValueRefused { .. } => StatusCode::BAD_REQUEST,
            Self::DataTimeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            Self::DataPoolExhausted { .. } | Self::DataUnavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::DataQueryFailed { .. } => StatusCode::BAD_GATEWAY,
        }
    }

    /// The backend the error is about, if any (for the log).
    pub fn backend(&self) -> Option<&str> {
        match self {
            Self::BackendTimeout { backend, .. }
            | Self::BackendConnect { backend, .. }
            | Self::BackendFailed { backend, .. }
            | Self::BackendTls { backend, .. }
            | Self::EgressDenied { backend, .. }
            | Self::BackendUnavailable { backend, .. }
            | Self::NoEndpoints { backend }
            | Self::GrpcNeedsHttp2 { backend }
            | Self::UpgradeRefused { backend }
            | Self::BackendOverloaded { backend, .. }
            | Self::NotImplemented { backend, .. }
            | Self::LoopDetected { backend, .. }
            | Self::FunctionResponseNotJson { backend, .. }
            | Self::FunctionStatusMissing { backend }
            | Self::FunctionStatusInvalid { backend, .. }
            | Self::FunctionBodyNotBase64 { backend, .. }
            | Self::FunctionResponseInvalid { backend, .. }
            | Self::FunctionResponseTooLarge { backend, .. }
            | Self::ModelPathNotServed { backend, .. }
            | Self::EventBusUnavailable { backend, .. }
            | Self::EventBusTimeout { backend, .. }
            | Self::EventBusRefused { backend, .. }
            | Self::EventTooLarge { backend }
            | Self::DataParameterMissing { backend, .. }
            | Self::DataParameterInvalid { backend, .. }
            | Self::DataValueRefused { backend, .. }
            | Self::DataTimeout { backend, .. }
            | Self::DataPoolExhausted { backend }
            | Self::DataUnavailable { backend, .. }
            | Self::DataQueryFailed { backend, .. } => Some(backend),
            _ => None,
        }
    }

    /// What the client is not shown (the error chain, with addresses and OS error
    /// text), for the log only.
    pub fn detail(&self) -> Option<&str> {
        match self {
            Self::MalformedBody { detail }
            | Self::NonceStoreUnavailable { detail, .. }
            | Self::BackendConnect { detail, .. }
            | Self::BackendFailed { detail, .. }
            | Self::BackendTls { detail, .. }
            | Self::EgressDenied { detail, .. }
            | Self::DataValueRefused { detail, .. }
            | Self::DataUnavailable { detail, .. }
            | Self::DataQueryFailed { detail, .. } => Some(detail),
            _ => None,
        }
    }

    /// The message the client sees: the Display, but for a signature mismatch the spec's
    /// `Invalid Signature, Server StringToSign:` with the string the gateway signed (each
    /// `\n` written as `#`), so the client can see what it signed differently. Only the
    /// client gets it: the log shows the Display.
    pub fn client_message(&self) -> String {
        match self {
            Self::InvalidSignature { string_to_sign, .. } => {
                format!("Invalid Signature, Server StringToSign:{}", string_to_sign.replace('\n', "#"))
            }
            _ => self.to_string(),
        }
    }

    /// The response the client sees: status, code and message headers, and a small
    /// JSON body with the same facts for clients that only log bodies.
    pub fn into_response(self) -> Response<ResponseBody> {
        let message = self.client_message();
        let body = serde_json::json!({"code": self.code(), "message": message}).to_string();
        let mut response = Response::new(ResponseBody::full(Bytes::from(body)));
        *response.status_mut() = self.status();
        let headers = response.headers_mut();
        headers.insert(X_CA_ERROR_CODE, HeaderValue::from_static(self.code()));
        headers.insert(X_CA_ERROR_MESSAGE, header_safe(&message));
        headers.insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Self::HttpsRequired { location } = &self {
            // Built from the checked Host and the request target: visible ASCII.
            headers.insert(http::header::LOCATION, header_safe(location));
        }
        if let Self::MethodNotAllowed { allow, .. } = &self {
            // Method names are tokens, so this is always a valid value.
            headers.insert(http::header::ALLOW, header_safe(allow));
        }
        response
    }
}

impl GatewayError {
    /// The response as HTTP/1.1 bytes with `Connection: close`, for answers written
    /// straight to a socket before any request is read (a connection over the cap).
    pub fn http1_bytes(&self) -> Bytes {
        let message = self.client_message();
        let body = serde_json::json!({"code": self.code(), "message": message}).to_string();
        let status = self.status();
        let head = format!(
            "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\n{X_CA_ERROR_CODE}: {}\r\n{X_CA_ERROR_MESSAGE}: {}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
            status.as_u16(),
            status.canonical_reason().unwrap_or(""),
            self.code(),
            header_safe(&message).to_str().unwrap_or("error"),
            body.len(),
        );
        Bytes::from([head.into_bytes(), body.into_bytes()].concat())
    }
}

/// The longest `X-Ca-Error-Message` (a server StringToSign with a few signed headers
/// and parameters fits; the JSON body has the whole message).
const MAX_MESSAGE_HEADER: usize = 2048;

/// Header values must be visible ASCII: replace anything else so a message can never
/// fail to become a header (or smuggle one).
pub(crate) fn header_safe(message: &str) -> HeaderValue {
    let cleaned: String = message.chars().map(|c| if (' '..='~').contains(&c) { c } else { '?' }).take(MAX_MESSAGE_HEADER).collect();
    HeaderValue::from_str(&cleaned).unwrap_or_else(|_| HeaderValue::from_static("error"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_refusal_is_a_complete_http1_response_with_its_code() {
        let bytes = GatewayError::TooManyConnections { limit: 2 }.http1_bytes();
        let text = std::str::from_utf8(&bytes).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 503 Service Unavailable\r\n"), "{head}");
        assert!(head.contains("\r\nx-ca-error-code: A503CL\r\n"), "{head}");
        assert!(head.contains(&format!("\r\ncontent-length: {}\r\n", body.len())), "{head}");
        assert!(head.ends_with("\r\nconnection: close"), "{head}");
        assert_eq!(serde_json::from_str::<serde_json::Value>(body).unwrap()["code"], "A503CL");
    }

    #[test]
    fn every_error_maps_to_its_own_code_and_a_matching_status() {
        let errors = [
            GatewayError::RouteNotFound { method: "GET".into(), host: "h".into(), path: "/".into() },
            GatewayError::MethodNotAllowed { method: "GET".into(), path: "/".into(), allow: "POST".into() },
            GatewayError::HeadersTooLarge { size: 9000, limit: 8192 },
            GatewayError::BodyTooLarge { limit: 1 },
            GatewayError::BadRequest("x".into()),
            GatewayError::MalformedBody { detail: "invalid chunk size line".into() },
            GatewayError::BodyTimeout { timeout_ms: 1 },
            GatewayError::PathRefused("a dot segment climbs above the root"),
            GatewayError::UpgradeRefused { backend: "b".into() },
            GatewayError::HostMismatch { host: "a".into(), authority: "b".into() },
            GatewayError::AuthUnavailable { route: "r".into(), why: "AppNotFound".into() },
            GatewayError::AuthFailed("x".into()),
            GatewayError::SignatureHeaderMissing { header: "X-Ca-Nonce" },
            GatewayError::SignatureHeaderInvalid { header: "X-Ca-Timestamp", why: "x" },
            GatewayError::SignatureMethodUnsupported { method: "HmacMD5".into() },
            GatewayError::SignatureHeaderUnsigned { header: "X-Ca-Nonce" },
            GatewayError::TimestampOutsideWindow { skew: "901.000 s behind".into() },
            GatewayError::AppKeyUnknown { key: "1".into() },
            GatewayError::AppNotAllowed { key: "1".into(), route: "r".into() },
            GatewayError::ContentMd5Mismatch { computed: "x".into() },
            GatewayError::InvalidSignature { key: "1".into(), string_to_sign: "GET\n".into() },
            GatewayError::NonceReplayed,
            GatewayError::NonceStoreUnavailable { kind: "connection refused", detail: "x".into() },
            GatewayError::NonceStoreFull { capacity: 1 },
            GatewayError::NotReady,
            GatewayError::TooManyConnections { limit: 1 },
            GatewayError::BackendTimeout { backend: "b".into(), timeout_ms: 1 },
            GatewayError::BackendConnect { backend: "b".into(), kind: "connection refused".into(), detail: "refused".into() },
            GatewayError::BackendFailed { backend: "b".into(), kind: "connection reset".into(), detail: "reset".into() },
            GatewayError::BackendTls { backend: "b".into(), kind: "certificate not trusted".into(), detail: "UnknownIssuer".into() },
            GatewayError::NoEndpoints { backend: "b".into() },
            GatewayError::GrpcNeedsHttp2 { backend: "b".into() },
            GatewayError::BackendOverloaded { backend: "b".into(), limit: 1 },
            GatewayError::BackendUnavailable { backend: "b".into(), why: "AuthorizationNotFound: x".into() },
            GatewayError::EgressDenied { backend: "b".into(), why: "link-local".into(), detail: "egress to 169.254.169.254:80".into() },
            GatewayError::NotImplemented { kind: "model".into(), backend: "b".into() },
            GatewayError::BadHops,
            GatewayError::LoopDetected { backend: "b".into(), hops: 5, max_hops: 5 },
            GatewayError::DataParameterMissing { backend: "b".into(), parameter: "p".into() },
            GatewayError::DataParameterInvalid { backend: "b".into(), parameter: "p".into(), why: "x".into() },
            GatewayError::DataPageInvalid { parameter: "pageSize", why: "x".into() },
            GatewayError::DataPageTooLarge { size: 2, max: 1 },
            GatewayError::DataBodyInvalid { why: "x".into() },
            GatewayError::DataValueRefused { backend: "b".into(), detail: "x".into() },
            GatewayError::DataTimeout { backend: "b".into(), timeout_ms: 1 },
            GatewayError::DataPoolExhausted { backend: "b".into() },
            GatewayError::DataUnavailable { backend: "b".into(), detail: "x".into() },
            GatewayError::DataQueryFailed { backend: "b".into(), detail: "x".into() },
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
    fn client_messages_name_the_backend_and_the_kind_but_never_the_detail() {
        let detail = "connect error: Connection refused (os error 111) dialling [::1]:19099";
        let errors = [
            GatewayError::BackendConnect { backend: "shop/orders".into(), kind: "connection refused".into(), detail: detail.into() },
            GatewayError::BackendFailed { backend: "shop/orders".into(), kind: "connection reset".into(), detail: detail.into() },
            GatewayError::BackendTls { backend: "shop/orders".into(), kind: "certificate expired".into(), detail: detail.into() },
            GatewayError::EgressDenied { backend: "shop/orders".into(), why: "loopback is refused".into(), detail: detail.into() },
            GatewayError::MalformedBody { detail: detail.into() },
        ];
        for error in errors {
            assert_eq!(error.detail(), Some(detail), "the log keeps the detail");
            let response = error.into_response();
            let message = response.headers()[X_CA_ERROR_MESSAGE].to_str().unwrap().to_owned();
            for leak in ["[::1]", "19099", "os error", "Connection refused"] {
                assert!(!message.contains(leak), "{message:?} shows {leak:?}");
            }
        }
        let refused =
            GatewayError::BackendConnect { backend: "shop/orders".into(), kind: "connection refused".into(), detail: detail.into() };
        assert_eq!(refused.to_string(), "could not connect to backend shop/orders: connection refused");
        assert_eq!(refused.backend(), Some("shop/orders"));
    }

    #[test]
    fn client_body_faults_are_4xx_with_their_own_codes() {
        let malformed = GatewayError::MalformedBody { detail: "x".into() };
        assert_eq!((malformed.status(), malformed.code()), (StatusCode::BAD_REQUEST, "A400MB"));
        let slow = GatewayError::BodyTimeout { timeout_ms: 300 };
        assert_eq!((slow.status(), slow.code()), (StatusCode::REQUEST_TIMEOUT, "A408BT"));
    }

    #[test]
    fn a_method_not_allowed_answer_carries_allow() {
        let error = GatewayError::MethodNotAllowed { method: "GET".into(), path: "/x".into(), allow: "POST, PUT".into() };
        let response = error.into_response();
        assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(response.headers()[http::header::ALLOW], "POST, PUT");
        let not_found = GatewayError::RouteNotFound { method: "GET".into(), host: "h".into(), path: "/".into() }.into_response();
        assert!(!not_found.headers().contains_key(http::header::ALLOW));
    }

    #[test]
    fn messages_with_control_characters_cannot_inject_headers() {
        let value = header_safe("bad\r\nx-injected: 1");
        assert_eq!(value.to_str().unwrap(), "bad??x-injected: 1");
    }
}
