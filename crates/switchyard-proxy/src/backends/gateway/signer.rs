//! Outbound signing as one app, with the scheme of [`crate::auth::signature`] (the one
//! the verifying side uses, so both always agree on the string to sign).
//!
//! Each request gets `X-Ca-Key`, `X-Ca-Timestamp` (now, epoch ms), `X-Ca-Nonce` (random,
//! UUID-shaped), `X-Ca-Signature-Method: HmacSHA256`, `X-Ca-Signature-Headers` (those four)
//! and `X-Ca-Signature`, over the request exactly as it is sent: method, `Accept`,
//! `Content-MD5`, `Content-Type`, `Date`, path, query and, for a form, its parameters.

use http::{HeaderMap, HeaderName, HeaderValue, Request};
use ring::rand::SystemRandom;
use switchyard_compile::snapshot::GatewaySigning;

use crate::auth::signature::{
    self, SignatureMethod, SigningParts, X_CA_KEY, X_CA_NONCE, X_CA_SIGNATURE, X_CA_SIGNATURE_HEADERS, X_CA_SIGNATURE_METHOD,
    X_CA_TIMESTAMP,
};
use crate::error::GatewayError;
use crate::request_body::RequestBody;

/// The headers every outbound signature covers: the timestamp and nonce must be signed
/// (a verifier refuses them unsigned: they are what stops a replay).
static SIGNED: [HeaderName; 4] = [X_CA_KEY, X_CA_NONCE, X_CA_SIGNATURE_METHOD, X_CA_TIMESTAMP];
const SIGNED_LIST: &str = "x-ca-key,x-ca-nonce,x-ca-signature-method,x-ca-timestamp";
const METHOD: SignatureMethod = SignatureMethod::HmacSha256;

/// Signs requests as one app. The secret is never shown (no `Debug`).
pub(super) struct Signer {
    /// `namespace/name` of the app.
    pub app: String,
    key: HeaderValue,
    secret: Vec<u8>,
    random: SystemRandom,
}

impl Signer {
    pub fn new(signing: &GatewaySigning) -> Result<Self, String> {
        let key =
            HeaderValue::from_str(&signing.app_key).map_err(|_| format!("the appKey of app {} is not a header value", signing.app))?;
        let secret = signing.app_secret.as_bytes().to_vec();
        Ok(Self { app: signing.app.clone(), key, secret, random: SystemRandom::new() })
    }

    /// Replaces whatever signature headers the client sent with this app's signature of
    /// `request` as it stands; `form` is the body when it is a form.
    pub fn sign(&self, request: &mut Request<RequestBody>, form: Option<&[u8]>, now_ms: u64) -> Result<(), GatewayError> {
        let nonce = self.nonce()?;
        let headers = request.headers_mut();
        strip_client_signature(headers);
        headers.insert(X_CA_KEY, self.key.clone());
        headers.insert(X_CA_TIMESTAMP, HeaderValue::from(now_ms));
        headers.insert(X_CA_NONCE, nonce);
        headers.insert(X_CA_SIGNATURE_METHOD, HeaderValue::from_static(METHOD.name()));
        headers.insert(X_CA_SIGNATURE_HEADERS, HeaderValue::from_static(SIGNED_LIST));
        let text = string_to_sign(request, form);
        let signature = signature::sign(&self.secret, METHOD, &text);
        let value = HeaderValue::from_str(&signature).expect("base64 is a valid header value");
        request.headers_mut().insert(X_CA_SIGNATURE, value);
        Ok(())
    }

    /// A random UUID (version 4) as the nonce.
    fn nonce(&self) -> Result<HeaderValue, GatewayError> {
        let uuid = crate::random_id::uuid_v4(&self.random)
            .ok_or_else(|| GatewayError::BackendUnavailable { backend: self.app.clone(), why: "no randomness for a nonce".into() })?;
        Ok(HeaderValue::from_str(&uuid).expect("hex digits and dashes are a valid header value"))
    }
}

/// A client's own signature headers (and key, timestamp, nonce) never reach the next
/// gateway next to ours: they would be read instead of, or besides, the ones we sign.
fn strip_client_signature(headers: &mut HeaderMap) {
    let client: Vec<HeaderName> = headers.keys().filter(|name| name.as_str().starts_with("x-ca-signature")).cloned().collect();
    for name in client.iter().chain(&SIGNED) {
        headers.remove(name);
    }
}

/// The string to sign of `request` as it will go out.
fn string_to_sign(request: &Request<RequestBody>, form: Option<&[u8]>) -> String {
    let headers = request.headers();
    // As the verifier reads them: the first value, "" when absent or not UTF-8.
    let value = |name: &HeaderName| headers.get(name).and_then(|v| std::str::from_utf8(v.as_bytes()).ok()).unwrap_or("");
    let signed: [(&str, &str); 4] = SIGNED.each_ref().map(|name| (name.as_str(), value(name)));
    let parts = SigningParts {
        method: request.method().as_str(),
        accept: value(&http::header::ACCEPT),
        content_md5: value(&signature::CONTENT_MD5),
        content_type: value(&http::header::CONTENT_TYPE),
        date: value(&http::header::DATE),
        headers: &signed,
        path: request.uri().path(),
        query: request.uri().query(),
        form,
    };
    signature::string_to_sign(&parts)
}

/// Whether `headers` say the body is a form, whose parameters are signed.
pub(super) fn is_form(headers: &HeaderMap) -> bool {
    headers.get(http::header::CONTENT_TYPE).is_some_and(|t| signature::is_form(t.as_bytes()))
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::auth::signature::{RequestParts, SigningApp, Verifier};

    const NOW: u64 = 1_764_633_600_000;

    fn signer() -> Signer {
        let signing = GatewaySigning { app: "shop/partner".into(), app_key: "204000001".into(), app_secret: "s3cr3t".into() };
        Signer::new(&signing).unwrap()
    }

    fn request(uri: &str, headers: &[(&str, &str)]) -> Request<RequestBody> {
        let mut request = Request::post(uri).body(RequestBody::full(Bytes::new())).unwrap();
        for (name, value) in headers {
            request.headers_mut().append(HeaderName::from_bytes(name.as_bytes()).unwrap(), HeaderValue::from_str(value).unwrap());
        }
        request
    }

    /// What the receiving gateway's verifier says about a signed request.
    fn verified(request: &Request<RequestBody>, body: Option<&[u8]>) -> Result<(), GatewayError> {
        let verifier = Verifier::new("shop/api", vec![SigningApp::new("204000001", "s3cr3t", true)]);
        let presented = verifier.presented(request.headers(), NOW)?;
        let parts = RequestParts {
            method: request.method().as_str(),
            path: request.uri().path(),
            query: request.uri().query(),
            headers: request.headers(),
        };
        verifier.verify(&presented, &parts, body)
    }

    #[test]
    fn a_signed_request_verifies_as_the_app_on_the_receiving_side() {
        let mut signed = request("/orders/a%20b?z=1&a=2", &[("accept", "application/json"), ("date", "Tue, 01 Dec 2026 00:00:00 GMT")]);
        signer().sign(&mut signed, None, NOW).unwrap();
        assert_eq!(signed.headers()[X_CA_KEY], "204000001");
        assert_eq!(signed.headers()[X_CA_TIMESTAMP], NOW.to_string().as_str());
        assert_eq!(signed.headers()[X_CA_SIGNATURE_HEADERS], SIGNED_LIST);
        assert_eq!(signed.headers()[X_CA_SIGNATURE_METHOD], "HmacSHA256");
        verified(&signed, None).unwrap();
        signed.headers_mut().insert(http::header::ACCEPT, HeaderValue::from_static("text/plain"));
        assert_eq!(verified(&signed, None).unwrap_err().code(), "A401SI", "a changed header breaks it");
    }

    #[test]
    fn a_form_body_is_signed_with_its_parameters() {
        let body = b"b=2&a=1";
        let mut signed = request("/form?q=0", &[("content-type", "application/x-www-form-urlencoded; charset=utf-8")]);
        signer().sign(&mut signed, Some(body), NOW).unwrap();
        verified(&signed, Some(body)).unwrap();
        assert_eq!(verified(&signed, Some(b"b=2&a=9")).unwrap_err().code(), "A401SI", "the form's parameters are covered");
    }

    #[test]
    fn client_signature_headers_are_replaced_never_forwarded_beside_ours() {
        let forged = [
            ("x-ca-signature", "forged"),
            ("x-ca-signature", "again"),
            ("x-ca-signature-headers", "x-ca-key"),
            ("x-ca-signature-method", "HmacSHA1"),
            ("x-ca-signature-extra", "1"),
            ("x-ca-key", "someone-else"),
            ("x-ca-nonce", "replayed"),
            ("x-ca-timestamp", "1"),
        ];
        let mut signed = request("/", &forged);
        signer().sign(&mut signed, None, NOW).unwrap();
        let headers = signed.headers();
        for name in ["x-ca-signature", "x-ca-key", "x-ca-nonce", "x-ca-timestamp", "x-ca-signature-method"] {
            assert_eq!(headers.get_all(name).iter().count(), 1, "{name}");
        }
        assert!(!headers.contains_key("x-ca-signature-extra"));
        assert_ne!(headers[X_CA_NONCE], "replayed");
        verified(&signed, None).unwrap();
    }

    #[test]
    fn every_signature_has_a_fresh_uuid_nonce() {
        let signer = signer();
        let (a, b) = (signer.nonce().unwrap(), signer.nonce().unwrap());
        assert_ne!(a, b);
        let text = a.to_str().unwrap();
        assert_eq!(text.split('-').map(str::len).collect::<Vec<_>>(), [8, 4, 4, 4, 12]);
        assert_eq!(&text[14..15], "4", "version 4");
    }
}
