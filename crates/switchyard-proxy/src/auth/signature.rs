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
//! no allocation on the usual path: the request's headers are read in one pass, the
//! signed-header list is split on the stack, and the verifier writes the string to sign
//! into a per-thread buffer (a parameter list is allocated when there are parameters).
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
        Self::from_bytes(name.as_bytes())
    }

    fn from_bytes(name: &[u8]) -> Option<Self> {
        if name.eq_ignore_ascii_case(b"HmacSHA256") {
            Some(Self::HmacSha256)
        } else if name.eq_ignore_ascii_case(b"HmacSHA1") {
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
    let mut out = String::new();
    let fixed = [parts.method, parts.accept, parts.content_md5, parts.content_type, parts.date];
    write_string_to_sign(&mut out, fixed, parts.headers, Sorted::No, parts.path, parts.query, parts.form);
    out
}

/// Whether the signed headers are already sorted (as [`string_to_sign`] sorts them).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Sorted {
    Yes,
    No,
}

/// Where a string to sign is written: a `String` of `str` pieces ([`string_to_sign`]),
/// or the verifier's bytes (its X-Ca- values are checked visible ASCII, never converted
/// to `str`: that would scan them once more).
trait Out<T: ?Sized> {
    fn reserve(&mut self, more: usize);
    fn piece(&mut self, piece: &T);
    fn text(&mut self, text: &str);
    fn byte(&mut self, byte: u8);
}

impl Out<str> for String {
    fn reserve(&mut self, more: usize) {
        String::reserve(self, more);
    }
    fn piece(&mut self, piece: &str) {
        self.push_str(piece);
    }
    fn text(&mut self, text: &str) {
        self.push_str(text);
    }
    fn byte(&mut self, byte: u8) {
        self.push(char::from(byte));
    }
}

impl Out<[u8]> for Vec<u8> {
    fn reserve(&mut self, more: usize) {
        Vec::reserve(self, more);
    }
    fn piece(&mut self, piece: &[u8]) {
        self.extend_from_slice(piece);
    }
    fn text(&mut self, text: &str) {
        self.extend_from_slice(text.as_bytes());
    }
    fn byte(&mut self, byte: u8) {
        self.push(byte);
    }
}

/// [`string_to_sign`] appended to `out`: the five fixed parts (method, Accept,
/// Content-MD5, Content-Type, Date), the signed headers, the resource.
fn write_string_to_sign<T: ?Sized + Ord + AsRef<[u8]>>(
    out: &mut impl Out<T>,
    fixed: [&T; 5],
    headers: &[(&T, &T)],
    sorted: Sorted,
    path: &str,
    query: Option<&str>,
    form: Option<&[u8]>,
) {
    let len = |t: &T| t.as_ref().len();
    let header_bytes: usize = headers.iter().map(|(n, v)| len(n) + len(v) + 2).sum();
    let params = query.map_or(0, str::len) + form.map_or(0, <[u8]>::len);
    out.reserve(fixed.iter().map(|p| len(p) + 1).sum::<usize>() + header_bytes + path.len() + params + 1);
    for part in fixed {
        out.piece(part);
        out.byte(b'\n');
    }
    if sorted == Sorted::Yes {
        debug_assert!(headers.is_sorted());
        push_sorted_headers(out, headers);
    } else {
        push_headers(out, headers);
    }
    push_resource(out, path, query, form);
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
fn push_headers<T: ?Sized + Ord>(out: &mut impl Out<T>, headers: &[(&T, &T)]) {
    const STACK: usize = 16;
    let Some(&first) = headers.first() else { return };
    let mut stack = [first; STACK];
    let mut heap = Vec::new();
    let sorted: &mut [(&T, &T)] = if headers.len() <= STACK {
        stack[..headers.len()].copy_from_slice(headers);
        &mut stack[..headers.len()]
    } else {
        heap.extend_from_slice(headers);
        &mut heap
    };
    sorted.sort_unstable();
    push_sorted_headers(out, sorted);
}

fn push_sorted_headers<T: ?Sized>(out: &mut impl Out<T>, sorted: &[(&T, &T)]) {
    for (name, value) in sorted {
        out.piece(name);
        out.byte(b':');
        out.piece(value);
        out.byte(b'\n');
    }
}

fn push_resource<T: ?Sized>(out: &mut impl Out<T>, path: &str, query: Option<&str>, form: Option<&[u8]>) {
    if path.as_bytes().contains(&b'%') {
        out.text(&percent_encoding::percent_decode_str(path).decode_utf8_lossy());
    } else {
        // Nothing to decode (the usual case): the path as it is.
        out.text(path);
    }
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
    let mut separator = b'?';
    for (key, value) in &params {
        out.byte(separator);
        out.text(key);
        if !value.is_empty() {
            out.byte(b'=');
            out.text(value);
        }
        separator = b'&';
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

/// The request headers the verifier reads, as indexes of [`Read`] (the first value of
/// each, found in one pass over the request's headers by [`read_headers`]).
mod slot {
    pub const KEY: usize = 0;
    pub const TIMESTAMP: usize = 1;
    pub const NONCE: usize = 2;
    pub const METHOD: usize = 3;
    pub const SIGNED_HEADERS: usize = 4;
    pub const SIGNATURE: usize = 5;
    /// The X-Ca- headers above come first: their values are checked as visible ASCII.
    pub const X_CA: usize = 6;
    pub const ACCEPT: usize = 6;
    pub const CONTENT_MD5: usize = 7;
    pub const CONTENT_TYPE: usize = 8;
    pub const DATE: usize = 9;
    pub const COUNT: usize = 10;
    /// A listed header that is none of them: looked up by name.
    pub const OTHER: u8 = u8::MAX;
}

/// The (lower-case) names of the headers of [`slot`], in its order.
const READ_NAMES: [&str; slot::COUNT] = [
    "x-ca-key",
    "x-ca-timestamp",
    "x-ca-nonce",
    "x-ca-signature-method",
    "x-ca-signature-headers",
    "x-ca-signature",
    "accept",
    "content-md5",
    "content-type",
    "date",
];

/// The first value of each header of [`slot`] (None when the request does not carry it).
type Read<'a> = [Option<&'a HeaderValue>; slot::COUNT];

/// One pass over the request's headers instead of a lookup per header (each lookup
/// hashes the name, and a request carries a handful of headers). A name's first value
/// is the one [`HeaderMap::get`] returns, and the first the iteration yields.
fn read_headers(headers: &HeaderMap) -> Read<'_> {
    let mut read: Read<'_> = [None; slot::COUNT];
    for (name, value) in headers {
        let at = match name.as_str() {
            "x-ca-key" => slot::KEY,
            "x-ca-timestamp" => slot::TIMESTAMP,
            "x-ca-nonce" => slot::NONCE,
            "x-ca-signature-method" => slot::METHOD,
            "x-ca-signature-headers" => slot::SIGNED_HEADERS,
            "x-ca-signature" => slot::SIGNATURE,
            "accept" => slot::ACCEPT,
            "content-md5" => slot::CONTENT_MD5,
            "content-type" => slot::CONTENT_TYPE,
            "date" => slot::DATE,
            _ => continue,
        };
        read[at].get_or_insert(value);
    }
    read
}

/// The signature headers of a request that passed the checks needing no body: the app is
/// known and allowed, the timestamp inside the window.
#[derive(Debug)]
pub struct Presented<'a> {
    pub app: &'a SigningApp,
    /// Visible ASCII, at most [`MAX_NONCE_LEN`] bytes.
    pub nonce: &'a [u8],
    pub timestamp_ms: u64,
    method: SignatureMethod,
    signature: &'a [u8],
    /// The values of the X-Ca- headers of [`slot`] (checked visible ASCII; empty when
    /// absent), so signing them needs no second look.
    x_ca: [&'a [u8]; slot::X_CA],
    /// The request's headers the verifier reads.
    read: Read<'a>,
    listed: Listed<'a>,
}

impl<'a> Presented<'a> {
    /// How long the nonce must be remembered: while its timestamp stays acceptable, so
    /// up to twice the window for a timestamp ahead of the clock (never 0).
    pub fn nonce_ttl_ms(&self, now_ms: u64) -> u64 {
        (self.timestamp_ms + WINDOW_MS).saturating_sub(now_ms).max(1)
    }

    /// [`needs_body`] for this request, from the headers already read.
    pub fn needs_body(&self) -> bool {
        self.read[slot::CONTENT_MD5].is_some() || self.read[slot::CONTENT_TYPE].is_some_and(|t| is_form(t.as_bytes()))
    }

    /// The request's value for a listed header (by its [`slot`], [`slot::OTHER`] when it
    /// is none of them, then looked up by name).
    fn value(&self, headers: &'a HeaderMap, name: &[u8], at: u8) -> &'a [u8] {
        match usize::from(at) {
            at if at < slot::X_CA => self.x_ca[at],
            at if at < slot::COUNT => self.read[at].map_or("", header_text).as_bytes(),
            // The listed names are visible ASCII, so `str`.
            _ => std::str::from_utf8(name).ok().and_then(|name| headers.get(name)).map_or("", header_text).as_bytes(),
        }
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
        let read = read_headers(headers);
        let key = required(read[slot::KEY], "X-Ca-Key")?;
        let signature = required(read[slot::SIGNATURE], "X-Ca-Signature")?;
        let timestamp = required(read[slot::TIMESTAMP], "X-Ca-Timestamp")?;
        let nonce = required(read[slot::NONCE], "X-Ca-Nonce")?;
        let signed_headers = read[slot::SIGNED_HEADERS].map_or(Ok(&b""[..]), |v| text(v, "X-Ca-Signature-Headers"))?;
        let (method, method_name) = match read[slot::METHOD] {
            None => (SignatureMethod::default(), &b""[..]),
            Some(value) => {
                let name = text(value, "X-Ca-Signature-Method")?;
                let method =
                    SignatureMethod::from_bytes(name).ok_or_else(|| GatewayError::SignatureMethodUnsupported { method: shown(name) })?;
                (method, name)
            }
        };
        let timestamp_ms = parse_timestamp(timestamp)?;
        check_window(timestamp_ms, now_ms)?;
        if nonce.len() > MAX_NONCE_LEN {
            return Err(GatewayError::SignatureHeaderInvalid { header: "X-Ca-Nonce", why: "longer than 128 characters" });
        }
        let listed = Listed::parse(signed_headers);
        for (name, at) in [("X-Ca-Timestamp", slot::TIMESTAMP), ("X-Ca-Nonce", slot::NONCE)] {
            if !listed.has(at) {
                return Err(GatewayError::SignatureHeaderUnsigned { header: name });
            }
        }
        let app = self.app(key)?;
        let x_ca = [key, timestamp, nonce, method_name, signed_headers, signature];
        Ok(Presented { app, nonce, timestamp_ms, method, signature, x_ca, read, listed })
    }

    /// An allowed app with this key first; a key of the namespace's other apps is 403.
    fn app(&self, key: &[u8]) -> Result<&SigningApp, GatewayError> {
        let mut same_key = self.apps.iter().filter(|a| a.key.as_bytes() == key);
        match same_key.clone().find(|a| a.allowed) {
            Some(app) => Ok(app),
            None if same_key.next().is_some() => Err(GatewayError::AppNotAllowed { key: shown(key), route: self.route.clone() }),
            None => Err(GatewayError::AppKeyUnknown { key: shown(key) }),
        }
    }

    /// The checks over the whole request: `Content-MD5` against the body when sent,
    /// then the signature, compared in constant time. `body` is the buffered body when
    /// [`needs_body`] said so (None otherwise: the form parameters are then absent).
    pub fn verify(&self, presented: &Presented<'_>, request: &RequestParts<'_>, body: Option<&[u8]>) -> Result<(), GatewayError> {
        let read = &presented.read;
        let header = |at: usize| read[at].map(header_text);
        let (md5_sent, content_type) = (header(slot::CONTENT_MD5), header(slot::CONTENT_TYPE).unwrap_or(""));
        if let Some(sent) = md5_sent {
            let computed = content_md5_of(body.unwrap_or_default());
            if computed.as_bytes() != sent.as_bytes() {
                return Err(GatewayError::ContentMd5Mismatch { computed: computed.as_str().to_owned() });
            }
        }
        let form = body.filter(|_| is_form(content_type.as_bytes()));
        let fixed = [
            request.method.as_bytes(),
            header(slot::ACCEPT).unwrap_or("").as_bytes(),
            md5_sent.unwrap_or("").as_bytes(),
            content_type.as_bytes(),
            header(slot::DATE).unwrap_or("").as_bytes(),
        ];
        let key = presented.app.key_for(presented.method);
        with_signed_headers(request.headers, presented, |signed| {
            // The string to sign goes into this thread's buffer: no allocation per request.
            STRING_TO_SIGN.with_borrow_mut(|out| {
                out.clear();
                write_string_to_sign(out, fixed, signed, Sorted::Yes, request.path, request.query, form);
                let tag = hmac::sign(key, out);
                let mut encoded = [0u8; 88];
                let matches = switchyard_http::constant_time_eq(encode_tag(tag.as_ref(), &mut encoded), presented.signature);
                let result = if matches {
                    Ok(())
                } else {
                    // Built from `str` pieces and visible ASCII: UTF-8.
                    Err(GatewayError::InvalidSignature { key: presented.app.key.clone(), string_to_sign: shown(out) })
                };
                if out.capacity() > STRING_TO_SIGN_KEPT {
                    *out = Vec::new();
                }
                result
            })
        })
    }
}

thread_local! {
    /// Each thread's string to sign, reused from request to request.
    static STRING_TO_SIGN: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The most of [`STRING_TO_SIGN`] a thread keeps between requests (a long form body
/// makes a long string to sign once, not a buffer held forever).
const STRING_TO_SIGN_KEPT: usize = 4096;

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

fn required<'a>(value: Option<&'a HeaderValue>, display: &'static str) -> Result<&'a [u8], GatewayError> {
    match value {
        Some(value) if !value.is_empty() => text(value, display),
        _ => Err(GatewayError::SignatureHeaderMissing { header: display }),
    }
}

/// A signature header's value, when it is visible ASCII (as [`HeaderValue::to_str`] says).
fn text<'a>(value: &'a HeaderValue, display: &'static str) -> Result<&'a [u8], GatewayError> {
    let bytes = value.as_bytes();
    if visible_ascii(bytes) { Ok(bytes) } else { Err(GatewayError::SignatureHeaderInvalid { header: display, why: "not visible ASCII" }) }
}

/// Bytes of a request (visible ASCII, or built from `str`) as text for a message.
fn shown(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Whether every byte is visible ASCII (0x20-0x7e) or a tab, as [`HeaderValue::to_str`]
/// checks, eight bytes at a time.
fn visible_ascii(bytes: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let visible = |b: &u8| (0x20..0x7f).contains(b) || *b == b'\t';
    if bytes.len() < 8 {
        return bytes.iter().all(visible);
    }
    let word = |at: usize| {
        let eight = &bytes[at..at + 8];
        let w = u64::from_le_bytes(eight.try_into().expect("8 bytes"));
        // A byte below 0x20, or above 0x7e (both exact for the word as a whole: "bit
        // twiddling hacks", hasless and hasmore); only then the bytes one by one, for a tab.
        let below = w.wrapping_sub(ONES * 0x20) & !w & HIGH;
        let above = (w.wrapping_add(ONES) | w) & HIGH;
        below | above == 0 || eight.iter().all(visible)
    };
    let mut at = 0;
    while at + 8 < bytes.len() {
        if !word(at) {
            return false;
        }
        at += 8;
    }
    // The last eight bytes, overlapping the previous word unless the length is a multiple of 8.
    word(bytes.len() - 8)
}

/// Standard Base64 with padding (`BASE64.encode_slice`) of an HMAC tag (at most 64 bytes),
/// without the generic engine's setup.
fn encode_tag<'b>(tag: &[u8], out: &'b mut [u8; 88]) -> &'b [u8] {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let char = |n: u32, shift: u32| ALPHABET[(n >> shift) as usize & 63];
    let mut len = 0;
    let mut groups = tag.chunks_exact(3);
    for group in &mut groups {
        let n = u32::from(group[0]) << 16 | u32::from(group[1]) << 8 | u32::from(group[2]);
        out[len..len + 4].copy_from_slice(&[char(n, 18), char(n, 12), char(n, 6), char(n, 0)]);
        len += 4;
    }
    let last = match *groups.remainder() {
        [a] => Some([char(u32::from(a) << 16, 18), char(u32::from(a) << 16, 12), b'=', b'=']),
        [a, b] => {
            let n = u32::from(a) << 16 | u32::from(b) << 8;
            Some([char(n, 18), char(n, 12), char(n, 6), b'='])
        }
        _ => None,
    };
    if let Some(last) = last {
        out[len..len + 4].copy_from_slice(&last);
        len += 4;
    }
    &out[..len]
}

/// A header's value as signed text ("" when it is not UTF-8: the signature then fails,
/// and the message shows what the gateway signed).
fn header_text(value: &HeaderValue) -> &str {
    std::str::from_utf8(value.as_bytes()).unwrap_or("")
}

const STACK: usize = 16;

/// The names of `X-Ca-Signature-Headers`, trimmed, empty ones skipped, each with the
/// [`slot`] of the header it names: split once, on the stack for the usual handful.
#[derive(Debug)]
struct Listed<'a> {
    stack: [(&'a [u8], u8); STACK],
    len: usize,
    more: Vec<(&'a [u8], u8)>,
    /// Bit `slot` set when that header is listed.
    slots: u16,
}

impl<'a> Listed<'a> {
    /// `str::split(',').map(str::trim).filter(non-empty)` of a visible ASCII list (it
    /// passed [`text`]: its only white space is space and tab).
    fn parse(list: &'a [u8]) -> Self {
        let mut listed = Self { stack: [(&[], slot::OTHER); STACK], len: 0, more: Vec::new(), slots: 0 };
        let mut start = 0;
        loop {
            let end = find_comma(list, start);
            let mut name = &list[start..end];
            while let [b' ' | b'\t', rest @ ..] = name {
                name = rest;
            }
            while let [rest @ .., b' ' | b'\t'] = name {
                name = rest;
            }
            if !name.is_empty() {
                listed.push(name);
            }
            if end == list.len() {
                return listed;
            }
            start = end + 1;
        }
    }

    fn push(&mut self, name: &'a [u8]) {
        let at = slot_of(name);
        if at != slot::OTHER {
            self.slots |= 1 << at;
        }
        if self.len < STACK {
            self.stack[self.len] = (name, at);
            self.len += 1;
        } else {
            if self.more.is_empty() {
                self.more.extend_from_slice(&self.stack);
            }
            self.more.push((name, at));
        }
    }

    fn has(&self, at: usize) -> bool {
        self.slots & (1 << at) != 0
    }

    fn names(&self) -> &[(&'a [u8], u8)] {
        if self.more.is_empty() { &self.stack[..self.len] } else { &self.more }
    }
}

/// The index of the first `,` at or after `from`, else the length; eight bytes at a time.
fn find_comma(bytes: &[u8], from: usize) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let mut at = from;
    while at + 8 <= bytes.len() {
        let x = u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes")) ^ (ONES * u64::from(b','));
        // The lowest flagged byte is the first zero byte of `x` (haszero: a false flag
        // only ever sits above a true one).
        let zero = x.wrapping_sub(ONES) & !x & HIGH;
        if zero != 0 {
            return at + (zero.trailing_zeros() / 8) as usize;
        }
        at += 8;
    }
    bytes[at..].iter().position(|&b| b == b',').map_or(bytes.len(), |i| at + i)
}

/// The [`slot`] of the header a listed name names (ignoring ASCII case), or [`slot::OTHER`].
fn slot_of(name: &[u8]) -> u8 {
    let candidates: &[usize] = match name.len() {
        4 => &[slot::DATE],
        6 => &[slot::ACCEPT],
        8 => &[slot::KEY],
        10 => &[slot::NONCE],
        11 => &[slot::CONTENT_MD5],
        12 => &[slot::CONTENT_TYPE],
        14 => &[slot::TIMESTAMP, slot::SIGNATURE],
        21 => &[slot::METHOD],
        22 => &[slot::SIGNED_HEADERS],
        _ => &[],
    };
    candidates.iter().find(|&&at| eq_lower(name, READ_NAMES[at].as_bytes())).map_or(slot::OTHER, |&at| at as u8)
}

/// `name.eq_ignore_ascii_case(lower)` for a `lower` of lower-case letters, digits and
/// `-`, and a visible ASCII `name`, eight bytes at a time: setting bit 0x20 lower-cases a
/// letter and leaves digits and `-` as they are; the only other bytes it turns into one
/// of those (0x0d into `-`, 0x10-0x19 into digits) are control characters.
fn eq_lower(name: &[u8], lower: &[u8]) -> bool {
    const CASE: u64 = 0x2020_2020_2020_2020;
    if name.len() != lower.len() {
        return false;
    }
    if name.len() < 8 {
        return name.iter().zip(lower).all(|(n, l)| n | 0x20 == *l);
    }
    let word = |s: &[u8], at: usize| u64::from_le_bytes(s[at..at + 8].try_into().expect("8 bytes"));
    let mut at = 0;
    while at + 8 < name.len() {
        if word(name, at) | CASE != word(lower, at) {
            return false;
        }
        at += 8;
    }
    // The last eight bytes (overlapping the previous word when the length is not a multiple of 8).
    word(name, name.len() - 8) | CASE == word(lower, lower.len() - 8)
}

/// Calls `f` with each listed header name and the request's (first) value for it, sorted
/// by name then value (as [`string_to_sign`] orders them), on the stack for the usual
/// handful; the headers already read are not looked up again.
fn with_signed_headers<R>(headers: &HeaderMap, presented: &Presented<'_>, f: impl FnOnce(&[(&[u8], &[u8])]) -> R) -> R {
    let names = presented.listed.names();
    if names.len() > STACK {
        let mut all: Vec<(&[u8], &[u8])> = names.iter().map(|&(n, at)| (n, presented.value(headers, n, at))).collect();
        all.sort_unstable();
        return f(&all);
    }
    let mut stack: [(&[u8], &[u8]); STACK] = [(&[], &[]); STACK];
    for (slot, &(name, at)) in stack.iter_mut().zip(names) {
        *slot = (name, presented.value(headers, name, at));
    }
    let sorted = &mut stack[..names.len()];
    sorted.sort_unstable();
    f(sorted)
}

/// At most 16 digits (so no overflow: 10^16 < 2^64), nothing else.
fn parse_timestamp(value: &[u8]) -> Result<u64, GatewayError> {
    let invalid = || GatewayError::SignatureHeaderInvalid { header: "X-Ca-Timestamp", why: "not milliseconds since the Unix epoch" };
    if value.is_empty() || value.len() > 16 {
        return Err(invalid());
    }
    let mut ms = 0u64;
    for &b in value {
        if !b.is_ascii_digit() {
            return Err(invalid());
        }
        ms = ms * 10 + u64::from(b - b'0');
    }
    Ok(ms)
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
