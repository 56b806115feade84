//! `gateway`: another gateway, served by the `http` runtime (endpoints, load balancing,
//! retries, TLS, egress policy, health), with two things of its own on each request:
//!
//! - Hops: a request arriving with `X-Ca-Hops: n` (absent: 0) is refused with 508 when
//!   `n >= maxHops`, else forwarded with `n + 1`. Every gateway backend on the way counts,
//!   so the count only grows along a chain and a loop A → B → A stops after at most the
//!   smallest `maxHops` of the loop's backends. A malformed count is the client's fault (400).
//! - Signing: with an app, each attempt is signed as that app (a retry gets its own
//!   timestamp and nonce; see [`signer`]); client-sent `X-Ca-Signature*` headers never pass.
//!
//! The request id (`X-Ca-Request-Id`, kept from the client when well formed) is already
//! on the shaped request, so one id follows the request through every gateway.

mod signer;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode};
use switchyard_compile::snapshot::{Backend as BackendSpec, Endpoint, GatewaySigning};

use self::signer::Signer;
use super::http::{HttpBackend, Outbound, collect};
use super::{Backend, BuildContext, CallContext, ShapedRequest};
use crate::body::ResponseBody;
use crate::error::{GatewayError, X_CA_ERROR_CODE};
use crate::headers::X_CA_REQUEST_ID;
use crate::request_body::RequestBody;

/// Gateway hops a request has made.
pub const X_CA_HOPS: HeaderName = HeaderName::from_static("x-ca-hops");

pub struct GatewayBackend {
    id: String,
    http: HttpBackend,
    max_hops: u32,
    signer: Option<Signer>,
}

impl GatewayBackend {
    pub fn build(
        spec: &BackendSpec,
        endpoints: &[Endpoint],
        max_hops: u32,
        signing: Option<&GatewaySigning>,
        ctx: &BuildContext,
    ) -> Result<Self, String> {
        let signer = signing.map(Signer::new).transpose()?;
        Ok(Self { id: spec.id.clone(), http: HttpBackend::build(spec, endpoints, ctx)?, max_hops, signer })
    }

    pub fn health_report(&self) -> Option<serde_json::Value> {
        self.http.health_report()
    }

    pub fn endpoint_name(&self, i: usize) -> Option<&str> {
        self.http.endpoint_name(i)
    }
}

impl Backend for GatewayBackend {
    async fn serve(&self, mut request: ShapedRequest, ctx: &CallContext<'_>) -> Result<Response<ResponseBody>, GatewayError> {
        let hops = next_hop(&request.headers, self.max_hops, &self.id)?;
        request.headers.insert(X_CA_HOPS, HeaderValue::from(hops));
        let request_id = request.headers.get(X_CA_REQUEST_ID).cloned();
        let request_id = request_id.as_ref().and_then(|v| v.to_str().ok()).unwrap_or("");
        tracing::debug!(request_id, backend = %self.id, hops, "forwarding to a gateway");
        // A form's parameters are signed: its body is read first (within the route's body
        // limit and deadline), which also lets a retry resend it.
        let form = match &self.signer {
            Some(_) if signer::is_form(&request.headers) => {
                let body = std::mem::replace(&mut request.body, RequestBody::full(Bytes::new()));
                let bytes = collect(body, ctx).await?;
                request.body = RequestBody::full(bytes.clone());
                Some(bytes)
            }
            _ => None,
        };
        let outgoing = Outgoing { signer: self.signer.as_ref(), form: form.as_deref() };
        let response = self.http.serve_with(request, ctx, &outgoing).await?;
        if is_loop_refusal(&response) {
            // Every gateway of the loop says so, under the one request id.
            tracing::warn!(request_id, backend = %self.id, hops, "a gateway further on refused the request as a loop (D508LD)");
        }
        Ok(response)
    }
}

/// The hop count to forward with: one more than the request's, unless that is past
/// `max_hops` (a loop) or the request's is not a number.
fn next_hop(headers: &HeaderMap, max_hops: u32, backend: &str) -> Result<u32, GatewayError> {
    let hops = incoming_hops(headers)?;
    if hops >= max_hops {
        return Err(GatewayError::LoopDetected { backend: backend.to_owned(), hops, max_hops });
    }
    Ok(hops + 1)
}

/// `X-Ca-Hops`: absent is 0; otherwise exactly one value of up to 10 decimal digits (a
/// count past `u32` saturates, so it is refused as a loop, not wrapped). Two values, an
/// empty one, a sign or anything else is malformed.
fn incoming_hops(headers: &HeaderMap) -> Result<u32, GatewayError> {
    let mut values = headers.get_all(X_CA_HOPS).iter();
    let Some(value) = values.next() else { return Ok(0) };
    if values.next().is_some() {
        return Err(GatewayError::BadHops);
    }
    let digits = value.as_bytes().trim_ascii();
    if digits.is_empty() || digits.len() > 10 || !digits.iter().all(u8::is_ascii_digit) {
        return Err(GatewayError::BadHops);
    }
    let count = digits.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
    Ok(u32::try_from(count).unwrap_or(u32::MAX))
}

/// A 508 that a gateway further on made for a loop.
fn is_loop_refusal(response: &Response<ResponseBody>) -> bool {
    response.status() == StatusCode::LOOP_DETECTED && response.headers().get(X_CA_ERROR_CODE).is_some_and(|c| c == "D508LD")
}

/// What each attempt gets on its way out: a signature of its own (its own timestamp and
/// nonce, so the next gateway does not refuse a retry as a replay).
struct Outgoing<'a> {
    signer: Option<&'a Signer>,
    /// The body, when it is a form.
    form: Option<&'a [u8]>,
}

impl Outbound for Outgoing<'_> {
    fn finish(&self, request: &mut Request<RequestBody>) -> Result<(), GatewayError> {
        match self.signer {
            Some(signer) => signer.sign(request, self.form, now_ms()),
            None => Ok(()),
        }
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_hops(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(X_CA_HOPS, HeaderValue::from_str(value).unwrap());
        }
        headers
    }

    #[test]
    fn absent_hops_are_zero_and_a_well_formed_count_is_read() {
        assert_eq!(incoming_hops(&HeaderMap::new()).unwrap(), 0);
        assert_eq!(incoming_hops(&with_hops(&["3"])).unwrap(), 3);
        assert_eq!(incoming_hops(&with_hops(&[" 07 "])).unwrap(), 7, "surrounding whitespace is not part of a value");
        assert_eq!(incoming_hops(&with_hops(&["9999999999"])).unwrap(), u32::MAX, "a huge count saturates: refused, never wrapped");
    }

    #[test]
    fn a_malformed_hop_count_is_a_client_error_with_its_own_code() {
        for bad in [&[""][..], &["-1"], &["+1"], &["1.0"], &["one"], &["0x1"], &["1, 2"], &["12345678901"], &["1", "2"]] {
            let error = incoming_hops(&with_hops(bad)).unwrap_err();
            assert_eq!((error.status(), error.code()), (StatusCode::BAD_REQUEST, "A400HC"), "{bad:?}");
        }
    }

    #[test]
    fn each_gateway_adds_one_and_refuses_at_max_hops_with_508() {
        assert_eq!(next_hop(&HeaderMap::new(), 5, "shop/gw").unwrap(), 1);
        assert_eq!(next_hop(&with_hops(&["4"]), 5, "shop/gw").unwrap(), 5, "the last hop allowed");
        for hops in ["5", "6", "4294967295"] {
            let error = next_hop(&with_hops(&[hops]), 5, "shop/gw").unwrap_err();
            assert_eq!((error.status(), error.code()), (StatusCode::LOOP_DETECTED, "D508LD"), "{hops}");
            assert!(error.to_string().contains("shop/gw") && error.to_string().contains("at most 5"), "{error}");
        }
        assert!(next_hop(&HeaderMap::new(), 1, "b").is_ok() && next_hop(&with_hops(&["1"]), 1, "b").is_err());
    }

    #[test]
    fn the_config_dump_shows_the_signing_app_and_key_but_never_its_secret() {
        use switchyard_compile::snapshot::{BackendKind, Snapshot};
        let signing = GatewaySigning { app: "shop/partner".into(), app_key: "204000001".into(), app_secret: "s3cr3t-gw".into() };
        let kind = BackendKind::Gateway { endpoints: Vec::new(), max_hops: 5, signing: Some(signing) };
        let mut snapshot = Snapshot::default();
        snapshot.backends.push(BackendSpec::with_defaults("shop/gw", kind));
        let dump = crate::admin::config_dump(Some(&snapshot), Vec::new(), Vec::new());
        let text = String::from_utf8_lossy(&dump);
        assert!(!text.contains("s3cr3t-gw"), "{text}");
        assert!(text.contains("shop/partner") && text.contains("204000001") && text.contains(crate::admin::REDACTED), "{text}");
    }

    #[test]
    fn a_loop_of_gateways_stops_within_the_smallest_max_hops() {
        // A → B → A → ... with maxHops 5 on A and 3 on B: follow the header round the loop.
        let (mut headers, mut forwards) = (HeaderMap::new(), 0);
        for max_hops in [5, 3].into_iter().cycle().take(100) {
            match next_hop(&headers, max_hops, "gw") {
                Ok(hops) => {
                    headers.insert(X_CA_HOPS, HeaderValue::from(hops));
                    forwards += 1;
                }
                Err(error) => {
                    assert_eq!(error.code(), "D508LD");
                    break;
                }
            }
        }
        assert_eq!(forwards, 3, "A(0→1), B(1→2), A(2→3), then B refuses 3 >= 3");
    }
}
