//! The Signature scheme of the spec ("Authentication (apps)"), byte for byte as the
//! existing third-party clients of the scheme sign, so they work unchanged:
//!
//! ```text
//! X-Ca-Signature = Base64(HMAC(appSecret, stringToSign))        HmacSHA256 (default) or HmacSHA1
//! stringToSign   = METHOD \n Accept \n Content-MD5 \n Content-Type \n Date \n
//!                  { Name:value \n  for each X-Ca-Signature-Headers name, sorted }
//!                  path [ ? k=v & k & ...  query and form parameters, sorted, decoded ]
//! ```
//!
//! Pure and synchronous: no I/O, no clock (callers pass the time), no nonce store, and
//! few allocations (the string to sign, the parameter list when there are parameters).
//! The proxy verifies inbound requests with [`Verifier`]; the `gateway` backend signs
//! outbound ones with [`string_to_sign`], [`sign`] and [`content_md5`].

use std::borrow::Cow;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use http::{HeaderMap, HeaderName, HeaderValue};
use ring::hmac;

use crate::error::GatewayError;

pub const X_CA_KEY: HeaderName = HeaderName::from_static("x-ca-key");
pub const X_CA_TIMESTAMP: HeaderName = HeaderName::from_static("x-ca-timestamp");
pub const X_CA_NONCE: HeaderName = HeaderName::from_static("x-ca-nonce");
pub const X_CA_SIGNATURE_METHOD: HeaderName = HeaderName::from_static("x-ca-signature-method");
pub const X_CA_SIGNATURE_HEADERS: HeaderName = HeaderName::from_static("x-ca-signature-headers");
pub const X_CA_SIGNATURE: HeaderName = HeaderName::from_static("x-ca-signature");
pub const CONTENT_MD5: HeaderName = HeaderName::from_static("content-md5");

/// How far a timestamp may be from the gateway's clock, either way: 15 minutes,
/// inclusive. A nonce is remembered as long as its timestamp is acceptable.
pub const WINDOW_MS: u64 = 15 * 60 * 1000;

/// The longest nonce accepted (a UUID is 36): the nonce store holds one per request.
pub const MAX_NONCE_LEN: usize = 128;

/// The HMAC of a signature (`X-Ca-Signature-Method`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SignatureMethod {
    #[default]
    HmacSha256,
    HmacSha1,
}

impl SignatureMethod {
    /// `HmacSHA256` or `HmacSHA1`, in any case.
    pub fn parse(name: &str) -> Option<Self> {
        if name.eq_ignore_ascii_case("HmacSHA256") {
            Some(Self::HmacSha256)
        } else if name.eq_ignore_ascii_case("HmacSHA1") {
            Some(Self::HmacSha1)
        } else {
            None
        }
    }

    /// The name clients send in `X-Ca-Signature-Method`.
    pub fn name(self) -> &'static str {
        match self {
            Self::HmacSha256 => "HmacSHA256",
            Self::HmacSha1 => "HmacSHA1",
        }
    }

    fn algorithm(self) -> hmac::Algorithm {
        match self {
            Self::HmacSha256 => hmac::HMAC_SHA256,
            // The scheme's clients still sign with it; HMAC-SHA1 is not broken as a MAC.
            Self::HmacSha1 => hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
        }
    }
}

/// Everything a signature covers, as it is (or will be) on the wire.
#[derive(Clone, Copy, Debug, Default)]
pub struct SigningParts<'a> {
    /// `GET`, `POST`, ... as sent.
    pub method: &'a str,
    /// The `Accept`, `Content-MD5`, `Content-Type` and `Date` header values, or "".
    pub accept: &'a str,
    pub content_md5: &'a str,
    pub content_type: &'a str,
    pub date: &'a str,
    /// The signed headers, `(name, value)`, in any order: the name exactly as listed in
    /// `X-Ca-Signature-Headers`, the value "" when the request does not carry it.
    pub headers: &'a [(&'a str, &'a str)],
    /// The path as on the wire (percent-encoded); it is signed decoded.
    pub path: &'a str,
    /// The raw query string (without `?`), if any.
    pub query: Option<&'a str>,
    /// The raw body when it is a form (`application/x-www-form-urlencoded`, see
    /// [`is_form`]): its parameters are signed with the query's.
    pub form: Option<&'a [u8]>,
}

/// The string a signature is made over, from [`SigningParts`]:
/// `METHOD\nAccept\nContent-MD5\nContent-Type\nDate\n`, then `Name:value\n` for each
/// signed header sorted by name, then the resource: the decoded path, and when there
/// are query or form parameters, `?` and `key=value` (`key` alone for an empty value)
/// sorted by key and joined with `&`, decoded (`%XX` and `+`), the first value of a
/// repeated key counting (query before form).
///
/// ```ignore
/// let parts = SigningParts { method: "GET", path: "/orders/1", query: Some("b=2&a=1"), ..Default::default() };
/// assert_eq!(string_to_sign(&parts), "GET\n\n\n\n\n/orders/1?a=1&b=2");
/// ```
pub fn string_to_sign(parts: &SigningParts<'_>) -> String {
    let fixed = [parts.method, parts.accept, parts.content_md5, parts.content_type, parts.date];
    let headers: usize = parts.headers.iter().map(|(n, v)| n.len() + v.len() + 2).sum();
    let params = parts.query.map_or(0, str::len) + parts.form.map_or(0, <[u8]>::len);
    let mut out = String::with_capacity(fixed.iter().map(|p| p.len() + 1).sum::<usize>() + headers + parts.path.len() + params + 1);
    for part in fixed {
        out.push_str(part);
        out.push('\n');
    }
    push_headers(&mut out, parts.headers);
    push_resource(&mut out, parts.path, parts.query, parts.form);
    out
}

/// `Base64(HMAC(secret, string_to_sign))`: the value of `X-Ca-Signature`.
///
/// To sign an outbound request as an app: set `X-Ca-Key` (the app's key),
/// `X-Ca-Timestamp` (epoch milliseconds), `X-Ca-Nonce` (fresh, e.g. a UUID),
/// `X-Ca-Signature-Method` and `X-Ca-Signature-Headers` (at least
/// `x-ca-key,x-ca-nonce,x-ca-signature-method,x-ca-timestamp`: a gateway refuses a
/// request whose timestamp and nonce are unsigned), then
/// `X-Ca-Signature: sign(app_secret, method, &string_to_sign(&parts))`, with `parts`
/// describing the request exactly as it is sent.
pub fn sign(secret: &[u8], method: SignatureMethod, string_to_sign: &str) -> String {
    let key = hmac::Key::new(method.algorithm(), secret);
    BASE64.encode(hmac::sign(&key, string_to_sign.as_bytes()).as_ref())
}

/// `Base64(MD5(body))`: the value of `Content-MD5`.
pub fn content_md5(body: &[u8]) -> String {
    use md5::Digest as _;
    BASE64.encode(md5::Md5::digest(body))
}

/// Whether a `Content-Type` says the body is a form whose parameters are signed.
pub fn is_form(content_type: &[u8]) -> bool {
    const FORM: &[u8] = b"application/x-www-form-urlencoded";
    content_type.get(..FORM.len()).is_some_and(|t| t.eq_ignore_ascii_case(FORM))
        && matches!(content_type.get(FORM.len()), None | Some(b';' | b' ' | b'\t'))
}

/// Signed headers sorted by name, on the stack for the usual handful.
fn push_headers(out: &mut String, headers: &[(&str, &str)]) {
    const STACK: usize = 16;
    let mut stack = [("", ""); STACK];
    let mut heap = Vec::new();
    let sorted: &mut [(&str, &str)] = if headers.len() <= STACK {
        stack[..headers.len()].copy_from_slice(headers);
        &mut stack[..headers.len()]
    } else {
        heap.extend_from_slice(headers);
        &mut heap
    };
    sorted.sort_unstable();
    for (name, value) in sorted.iter() {
        out.push_str(name);
        out.push(':');
        out.push_str(value);
        out.push('\n');
    }
}

fn push_resource(out: &mut String, path: &str, query: Option<&str>, form: Option<&[u8]>) {
    out.push_str(&percent_encoding::percent_decode_str(path).decode_utf8_lossy());
    if query.is_none_or(str::is_empty) && form.is_none_or(<[u8]>::is_empty) {
        return;
    }
    let query = query.map(|q| form_urlencoded::parse(q.as_bytes())).into_iter().flatten();
    let form = form.map(form_urlencoded::parse).into_iter().flatten();
    let mut params: Vec<(Cow<'_, str>, Cow<'_, str>)> = query.chain(form).filter(|(key, _)| !key.is_empty()).collect();
    if params.is_empty() {
        return;
    }
    // Stable: among equal keys the first value stays first, and is the one kept.
    params.sort_by(|a, b| a.0.cmp(&b.0));
    params.dedup_by(|later, earlier| later.0 == earlier.0);
    let mut separator = '?';
    for (key, value) in &params {
        out.push(separator);
        out.push_str(key);
        if !value.is_empty() {
            out.push('=');
            out.push_str(value);
        }
        separator = '&';
    }
}

/// One app that can sign on a route's namespace (a key and a secret), with its HMAC
/// keys prepared once per snapshot. Apps of the namespace that the route does not allow
/// are kept too, so their key is told "not allowed here" (403), not "unknown" (401).
pub struct SigningApp {
    pub key: String,
    allowed: bool,
    sha256: hmac::Key,
    sha1: hmac::Key,
}

impl std::fmt::Debug for SigningApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningApp").field("key", &self.key).field("allowed", &self.allowed).finish_non_exhaustive()
    }
}

impl SigningApp {
    pub fn new(key: &str, secret: &str, allowed: bool) -> Self {
        let hmac_key = |method: SignatureMethod| hmac::Key::new(method.algorithm(), secret.as_bytes());
        Self { key: key.to_owned(), allowed, sha256: hmac_key(SignatureMethod::HmacSha256), sha1: hmac_key(SignatureMethod::HmacSha1) }
    }

    fn key_for(&self, method: SignatureMethod) -> &hmac::Key {
        match method {
            SignatureMethod::HmacSha256 => &self.sha256,
            SignatureMethod::HmacSha1 => &self.sha1,
        }
    }
}

/// Verifies the signatures of one route's requests.
#[derive(Debug)]
pub struct Verifier {
    route: String,
    apps: Vec<SigningApp>,
}

/// The signature headers of a request that passed the checks needing no body: the app is
/// known and allowed, the timestamp inside the window.
#[derive(Debug)]
pub struct Presented<'a> {
    pub app: &'a SigningApp,
    pub nonce: &'a str,
    pub timestamp_ms: u64,
    method: SignatureMethod,
    signature: &'a [u8],
    /// The X-Ca- values already read, so signing them needs no second lookup.
    known: [(&'static HeaderName, &'a str); 4],
    listed: Listed<'a>,
}

impl<'a> Presented<'a> {
    /// How long the nonce must be remembered: while its timestamp stays acceptable, so
    /// up to twice the window for a timestamp ahead of the clock (never 0).
    pub fn nonce_ttl_ms(&self, now_ms: u64) -> u64 {
        (self.timestamp_ms + WINDOW_MS).saturating_sub(now_ms).max(1)
    }
}

impl Verifier {
    pub fn new(route: &str, apps: Vec<SigningApp>) -> Self {
        Self { route: route.to_owned(), apps }
    }

    /// The checks that need no body, cheapest first: every signature header present
    /// and well formed, the timestamp and nonce among the signed headers, the timestamp
    /// inside the window, the app known and allowed on this route.
    pub fn presented<'a>(&'a self, headers: &'a HeaderMap, now_ms: u64) -> Result<Presented<'a>, GatewayError> {
        let key = required(headers, &X_CA_KEY, "X-Ca-Key")?;
        let signature = required(headers, &X_CA_SIGNATURE, "X-Ca-Signature")?.as_bytes();
        let timestamp = required(headers, &X_CA_TIMESTAMP, "X-Ca-Timestamp")?;
        let nonce = required(headers, &X_CA_NONCE, "X-Ca-Nonce")?;
        let signed_headers = headers.get(X_CA_SIGNATURE_HEADERS).map_or(Ok(""), |v| text(v, "X-Ca-Signature-Headers"))?;
        let (method, method_name) = match headers.get(X_CA_SIGNATURE_METHOD) {
            None => (SignatureMethod::default(), ""),
            Some(value) => {
                let name = text(value, "X-Ca-Signature-Method")?;
                let method =
                    SignatureMethod::parse(name).ok_or_else(|| GatewayError::SignatureMethodUnsupported { method: name.to_owned() })?;
                (method, name)
            }
        };
        let timestamp_ms = parse_timestamp(timestamp)?;
        check_window(timestamp_ms, now_ms)?;
        if nonce.len() > MAX_NONCE_LEN {
            return Err(GatewayError::SignatureHeaderInvalid { header: "X-Ca-Nonce", why: "longer than 128 characters" });
        }
        let listed = Listed::parse(signed_headers);
        for (name, header) in [("X-Ca-Timestamp", &X_CA_TIMESTAMP), ("X-Ca-Nonce", &X_CA_NONCE)] {
            if !listed.names().iter().any(|n| header.as_str().eq_ignore_ascii_case(n)) {
                return Err(GatewayError::SignatureHeaderUnsigned { header: name });
            }
        }
        let app = self.app(key)?;
        let known = [(&KNOWN[0], key), (&KNOWN[1], timestamp), (&KNOWN[2], nonce), (&KNOWN[3], method_name)];
        Ok(Presented { app, nonce, timestamp_ms, method, signature, known, listed })
    }

    /// An allowed app with this key first; a key of the namespace's other apps is 403.
    fn app(&self, key: &str) -> Result<&SigningApp, GatewayError> {
        let mut same_key = self.apps.iter().filter(|a| a.key == key);
        match same_key.clone().find(|a| a.allowed) {
            Some(app) => Ok(app),
            None if same_key.next().is_some() => Err(GatewayError::AppNotAllowed { key: key.to_owned(), route: self.route.clone() }),
            None => Err(GatewayError::AppKeyUnknown { key: key.to_owned() }),
        }
    }

    /// The checks over the whole request: `Content-MD5` against the body when sent,
    /// then the signature, compared in constant time. `body` is the buffered body when
    /// [`needs_body`] said so (None otherwise: the form parameters are then absent).
    pub fn verify(&self, presented: &Presented<'_>, request: &RequestParts<'_>, body: Option<&[u8]>) -> Result<(), GatewayError> {
        let headers = request.headers;
        // Each header is looked up once (a lookup hashes its name).
        let header = |name: &HeaderName| headers.get(name).map(header_text);
        let (md5_sent, content_type) = (header(&CONTENT_MD5), header(&http::header::CONTENT_TYPE).unwrap_or(""));
        if let Some(sent) = md5_sent {
            let computed = content_md5_of(body.unwrap_or_default());
            if computed.as_bytes() != sent.as_bytes() {
                return Err(GatewayError::ContentMd5Mismatch { computed: computed.as_str().to_owned() });
            }
        }
        let form = body.filter(|_| is_form(content_type.as_bytes()));
        with_signed_headers(headers, presented, |signed| {
            let parts = SigningParts {
                method: request.method,
                accept: header(&http::header::ACCEPT).unwrap_or(""),
                content_md5: md5_sent.unwrap_or(""),
                content_type,
                date: header(&http::header::DATE).unwrap_or(""),
                headers: signed,
                path: request.path,
                query: request.query,
                form,
            };
            let string_to_sign = string_to_sign(&parts);
            let tag = hmac::sign(presented.app.key_for(presented.method), string_to_sign.as_bytes());
            let mut encoded = [0u8; 64];
            let len = BASE64.encode_slice(tag.as_ref(), &mut encoded).expect("a SHA-256 tag fits in 64 base64 bytes");
            if switchyard_http::constant_time_eq(&encoded[..len], presented.signature) {
                Ok(())
            } else {
                Err(GatewayError::InvalidSignature { key: presented.app.key.clone(), string_to_sign })
            }
        })
    }
}

/// What the signature covers besides the headers' values.
pub struct RequestParts<'a> {
    pub method: &'a str,
    /// As on the wire (percent-encoded).
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub headers: &'a HeaderMap,
}

/// Whether verifying needs the body: `Content-MD5` is sent, or the body is a form.
pub fn needs_body(headers: &HeaderMap) -> bool {
    headers.contains_key(CONTENT_MD5) || headers.get(http::header::CONTENT_TYPE).is_some_and(|t| is_form(t.as_bytes()))
}

fn required<'a>(headers: &'a HeaderMap, name: &HeaderName, display: &'static str) -> Result<&'a str, GatewayError> {
    match headers.get(name) {
        Some(value) if !value.is_empty() => text(value, display),
        _ => Err(GatewayError::SignatureHeaderMissing { header: display }),
    }
}

fn text<'a>(value: &'a HeaderValue, display: &'static str) -> Result<&'a str, GatewayError> {
    value.to_str().map_err(|_| GatewayError::SignatureHeaderInvalid { header: display, why: "not visible ASCII" })
}

/// A header's value as signed text ("" when it is not UTF-8: the signature then fails,
/// and the message shows what the gateway signed).
fn header_text(value: &HeaderValue) -> &str {
    std::str::from_utf8(value.as_bytes()).unwrap_or("")
}

/// The headers [`Verifier::presented`] reads, in the order of [`Presented::known`].
static KNOWN: [HeaderName; 4] = [X_CA_KEY, X_CA_TIMESTAMP, X_CA_NONCE, X_CA_SIGNATURE_METHOD];

const STACK: usize = 16;

/// The names of `X-Ca-Signature-Headers`, trimmed, empty ones skipped: split once, on
/// the stack for the usual handful.
#[derive(Debug)]
struct Listed<'a> {
    stack: [&'a str; STACK],
    len: usize,
    more: Vec<&'a str>,
}

impl<'a> Listed<'a> {
    fn parse(signed_headers: &'a str) -> Self {
        let mut listed = Self { stack: [""; STACK], len: 0, more: Vec::new() };
        for name in signed_headers.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            if listed.len < STACK {
                listed.stack[listed.len] = name;
                listed.len += 1;
            } else {
                if listed.more.is_empty() {
                    listed.more.extend_from_slice(&listed.stack);
                }
                listed.more.push(name);
            }
        }
        listed
    }

    fn names(&self) -> &[&'a str] {
        if self.more.is_empty() { &self.stack[..self.len] } else { &self.more }
    }
}

/// Calls `f` with each listed header name and the request's (first) value for it, on
/// the stack for the usual handful; the X-Ca- values already read are not looked up again.
fn with_signed_headers<R>(headers: &HeaderMap, presented: &Presented<'_>, f: impl FnOnce(&[(&str, &str)]) -> R) -> R {
    let value = |name: &str| match presented.known.iter().find(|(known, _)| known.as_str().eq_ignore_ascii_case(name)) {
        Some((_, value)) => *value,
        None => headers.get(name).map_or("", header_text),
    };
    let names = presented.listed.names();
    if names.len() > STACK {
        let all: Vec<(&str, &str)> = names.iter().map(|n| (*n, value(n))).collect();
        return f(&all);
    }
    let mut stack = [("", ""); STACK];
    for (slot, name) in stack.iter_mut().zip(names) {
        *slot = (name, value(name));
    }
    f(&stack[..names.len()])
}

fn parse_timestamp(value: &str) -> Result<u64, GatewayError> {
    let invalid = GatewayError::SignatureHeaderInvalid { header: "X-Ca-Timestamp", why: "not milliseconds since the Unix epoch" };
    if value.is_empty() || value.len() > 16 || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid);
    }
    value.parse().map_err(|_| invalid)
}

/// Inside the window when at most [`WINDOW_MS`] from `now_ms`, either way.
fn check_window(timestamp_ms: u64, now_ms: u64) -> Result<(), GatewayError> {
    let (skew, direction) = if timestamp_ms <= now_ms { (now_ms - timestamp_ms, "behind") } else { (timestamp_ms - now_ms, "ahead of") };
    if skew <= WINDOW_MS {
        return Ok(());
    }
    Err(GatewayError::TimestampOutsideWindow { skew: format!("{}.{:03} s {direction}", skew / 1000, skew % 1000) })
}

/// [`content_md5`] into a stack buffer (24 bytes).
fn content_md5_of(body: &[u8]) -> Md5Text {
    use md5::Digest as _;
    let mut text = Md5Text([0; 24]);
    BASE64.encode_slice(md5::Md5::digest(body), &mut text.0).expect("an MD5 digest is 24 base64 bytes");
    text
}

struct Md5Text([u8; 24]);

impl Md5Text {
    fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("base64 is ASCII")
    }
}

#[cfg(test)]
#[path = "signature_tests.rs"]
mod tests;
