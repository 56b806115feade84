//! gRPC on the gateway's side: telling a gRPC request apart, and answering one with a
//! gateway error the way gRPC clients read errors (a trailers-only response: HTTP 200,
//! `grpc-status` and `grpc-message` in the headers, no body). The gateway's own
//! `x-ca-error-code` and `x-ca-error-message` ride along as metadata.

use http::{HeaderMap, HeaderValue, Response, StatusCode};

use crate::body::ResponseBody;
use crate::error::{GatewayError, X_CA_ERROR_CODE, X_CA_ERROR_MESSAGE};

const GRPC_STATUS: &str = "grpc-status";
const GRPC_MESSAGE: &str = "grpc-message";

/// `content-type: application/grpc`, `application/grpc+proto` and the like. gRPC-Web
/// (`application/grpc-web`) is not gRPC on the wire: it works over HTTP/1.1 and carries
/// its trailers in the body, so it passes like any other request.
pub fn is_grpc(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(http::header::CONTENT_TYPE) else { return false };
    let value = value.as_bytes();
    let prefix = b"application/grpc";
    value.len() >= prefix.len()
        && value[..prefix.len()].eq_ignore_ascii_case(prefix)
        && matches!(value.get(prefix.len()), None | Some(b'+' | b';'))
}

/// gRPC status codes (grpc/doc/statuscodes.md) the gateway answers with.
mod code {
    pub const UNKNOWN: u8 = 2;
    pub const INVALID_ARGUMENT: u8 = 3;
    pub const DEADLINE_EXCEEDED: u8 = 4;
    pub const PERMISSION_DENIED: u8 = 7;
    pub const RESOURCE_EXHAUSTED: u8 = 8;
    pub const UNIMPLEMENTED: u8 = 12;
    pub const UNAVAILABLE: u8 = 14;
    pub const UNAUTHENTICATED: u8 = 16;
}

/// The gRPC status of a gateway error, from the HTTP status it would have had: the
/// client's faults as INVALID_ARGUMENT (or what they more exactly are), timeouts as
/// DEADLINE_EXCEEDED, an unreachable backend as UNAVAILABLE (which gRPC clients may
/// retry); a backend that cannot carry gRPC at all as UNIMPLEMENTED (no retry helps).
pub fn status_of(error: &GatewayError) -> u8 {
    if matches!(error, GatewayError::GrpcNeedsHttp2 { .. }) {
        return code::UNIMPLEMENTED;
    }
    match error.status() {
        StatusCode::UNAUTHORIZED => code::UNAUTHENTICATED,
        StatusCode::FORBIDDEN => code::PERMISSION_DENIED,
        StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED | StatusCode::NOT_IMPLEMENTED => code::UNIMPLEMENTED,
        StatusCode::REQUEST_TIMEOUT | StatusCode::GATEWAY_TIMEOUT => code::DEADLINE_EXCEEDED,
        StatusCode::PAYLOAD_TOO_LARGE | StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE | StatusCode::TOO_MANY_REQUESTS => {
            code::RESOURCE_EXHAUSTED
        }
        StatusCode::BAD_GATEWAY | StatusCode::SERVICE_UNAVAILABLE => code::UNAVAILABLE,
        status if status.is_client_error() => code::INVALID_ARGUMENT,
        _ => code::UNKNOWN,
    }
}

/// `error` as a trailers-only gRPC response.
pub fn error_response(error: &GatewayError) -> Response<ResponseBody> {
    let message = error.client_message();
    let mut response = Response::new(ResponseBody::full(bytes::Bytes::new()));
    *response.status_mut() = StatusCode::OK;
    let headers = response.headers_mut();
    headers.insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    headers.insert(GRPC_STATUS, HeaderValue::from(u16::from(status_of(error))));
    headers.insert(GRPC_MESSAGE, percent_encoded(&message));
    headers.insert(X_CA_ERROR_CODE, HeaderValue::from_static(error.code()));
    headers.insert(X_CA_ERROR_MESSAGE, crate::error::header_safe(&message));
    response
}

/// The longest `grpc-message` sent (the whole message is in `x-ca-error-message` too).
const MAX_GRPC_MESSAGE: usize = 2048;

/// `grpc-message` is percent-encoded UTF-8: every byte outside visible ASCII and space,
/// and `%` itself, as `%XX`.
fn percent_encoded(message: &str) -> HeaderValue {
    let mut out = String::with_capacity(message.len().min(MAX_GRPC_MESSAGE));
    for &byte in message.as_bytes() {
        if out.len() + 3 > MAX_GRPC_MESSAGE {
            break;
        }
        if (b' '..=b'~').contains(&byte) && byte != b'%' {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    HeaderValue::from_str(&out).unwrap_or_else(|_| HeaderValue::from_static("gateway error"))
}

impl GatewayError {
    /// The response a client sees: for a gRPC request, a trailers-only gRPC error
    /// ([`error_response`]); otherwise [`GatewayError::into_response`].
    pub fn into_response_for(self, grpc: bool) -> Response<ResponseBody> {
        if grpc { error_response(&self) } else { self.into_response() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn content_type(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(http::header::CONTENT_TYPE, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn grpc_is_told_by_its_content_type_but_grpc_web_is_not_grpc() {
        for grpc in ["application/grpc", "application/grpc+proto", "Application/GRPC+json", "application/grpc; charset=utf-8"] {
            assert!(is_grpc(&content_type(grpc)), "{grpc}");
        }
        for other in ["application/grpc-web", "application/grpc-web-text", "application/json", "application/grpcx"] {
            assert!(!is_grpc(&content_type(other)), "{other}");
        }
        assert!(!is_grpc(&HeaderMap::new()));
    }

    #[test]
    fn gateway_errors_become_trailers_only_responses_with_status_message_and_code() {
        let error = GatewayError::BackendConnect { backend: "shop/orders".into(), kind: "connection refused".into(), detail: "x".into() };
        let response = error_response(&error);
        assert_eq!(response.status(), StatusCode::OK);
        let headers = response.headers();
        assert_eq!(headers["grpc-status"], "14", "UNAVAILABLE");
        assert_eq!(headers["grpc-message"], "could not connect to backend shop/orders: connection refused");
        assert_eq!(headers["x-ca-error-code"], "D502CF");
        assert_eq!(headers["content-type"], "application/grpc");
        assert!(http_body::Body::is_end_stream(response.body()), "no body: the headers end the stream");
    }

    #[test]
    fn grpc_statuses_follow_the_cause() {
        let refused = GatewayError::GrpcNeedsHttp2 { backend: "b".into() };
        assert_eq!(status_of(&refused), code::UNIMPLEMENTED);
        assert_eq!(status_of(&GatewayError::AuthFailed("x".into())), code::UNAUTHENTICATED);
        assert_eq!(status_of(&GatewayError::BackendTimeout { backend: "b".into(), timeout_ms: 1 }), code::DEADLINE_EXCEEDED);
        assert_eq!(status_of(&GatewayError::BodyTooLarge { limit: 1 }), code::RESOURCE_EXHAUSTED);
        assert_eq!(status_of(&GatewayError::BadRequest("x".into())), code::INVALID_ARGUMENT);
        let not_found = GatewayError::RouteNotFound { method: "POST".into(), host: "h".into(), path: "/a.B/C".into() };
        assert_eq!(status_of(&not_found), code::UNIMPLEMENTED);
    }

    #[test]
    fn grpc_messages_are_percent_encoded() {
        assert_eq!(percent_encoded("100% caf\u{e9}\r\n"), "100%25 caf%C3%A9%0D%0A");
    }
}
