//! The two message heads of an HTTP/1.1 exchange: the request head written from
//! `http::request::Parts`, and the response head parsed with `httparse` together with
//! what it says about the body (its framing) and the connection (keep-alive).
//!
//! What a backend sends is read as strictly as hyper's client reads it, and stricter
//! where two framings could disagree: a response whose length is ambiguous is refused,
//! never guessed at, so nothing a backend sends can desynchronise a pooled connection.

use std::mem::MaybeUninit;

use bytes::BytesMut;
use http::header::{CONNECTION, CONTENT_LENGTH, TRANSFER_ENCODING};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Version};

use super::Error;

/// Header fields a response head may carry: hyper's default (`h1_max_headers`).
pub(super) const MAX_HEADERS: usize = 100;

/// The most bytes one response head may take: hyper's default read-buffer limit (8 KiB +
/// 100 x 4 KiB), past which it refuses a head.
pub(super) const MAX_HEAD: usize = 8192 + 4096 * 100;

/// The most 1xx heads a response may come after. hyper's client sets none; a backend
/// sends one or two (`103 Early Hints`), and without a limit one that sends them forever
/// keeps a worker parsing until the attempt's timeout.
pub(super) const MAX_INFORMATIONAL: usize = 16;

/// How the request body goes on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum RequestFraming {
    /// No body: no `Content-Length` unless the caller had one (then `0`).
    Empty,
    Length(u64),
    Chunked,
}

/// Writes the request line and header fields (origin form, HTTP/1.1) into `out`, with
/// the framing header `framing` calls for in place of any the caller set.
pub(super) fn encode_request(parts: &http::request::Parts, framing: RequestFraming, out: &mut Vec<u8>) {
    out.extend_from_slice(parts.method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(parts.uri.path_and_query().map_or("/", |p| p.as_str()).as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let mut had_length = false;
    for (name, value) in &parts.headers {
        if name == CONTENT_LENGTH || name == TRANSFER_ENCODING {
            had_length |= name == CONTENT_LENGTH;
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    match framing {
        RequestFraming::Empty if had_length => out.extend_from_slice(b"content-length: 0\r\n"),
        RequestFraming::Empty => {}
        RequestFraming::Length(n) => {
            out.extend_from_slice(b"content-length: ");
            out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        RequestFraming::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
    }
    out.extend_from_slice(b"\r\n");
}

/// How the response body is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum ResponseFraming {
    /// No body (HEAD, 1xx, 204, 304, a length of 0).
    Empty,
    Length(u64),
    Chunked,
    /// Until the backend closes the connection (neither a length nor chunked).
    Close,
}

/// A final response's head.
#[derive(Debug)]
pub(in crate::client) struct Head {
    pub(super) status: StatusCode,
    pub(super) version: Version,
    pub(super) headers: HeaderMap,
    /// The reason phrase when it is not the status's canonical one (hyper's client keeps
    /// it the same way, and its server writes it back).
    pub(super) reason: Option<hyper::ext::ReasonPhrase>,
    pub(super) framing: ResponseFraming,
    /// The connection may carry another request once this response is read.
    pub(super) keep_alive: bool,
}

/// Where one header field lies in the head's bytes. `u32` offsets (a head is at most
/// [`MAX_HEAD`]): the array of 100 is zeroed for every response, and at 16 bytes a span
/// that is 1.6 KB instead of 3.2 KB (which glibc's memset zeroes with `rep stosb`,
/// 3,216 instructions per response under callgrind).
#[derive(Clone, Copy)]
struct Span {
    name: (u32, u32),
    value: (u32, u32),
}

impl Span {
    fn range(bounds: (u32, u32)) -> std::ops::Range<usize> {
        bounds.0 as usize..bounds.1 as usize
    }
}

/// Parses the final response head at the front of `buf`, skipping (consuming) any 1xx
/// informational heads before it, as hyper's client does. `Ok(None)`: incomplete, read
/// more. The head's bytes are split off `buf`; the body's stay.
pub(super) fn parse_response(buf: &mut BytesMut, method: &Method, informational: &mut usize) -> Result<Option<Head>, Error> {
    loop {
        if buf.is_empty() {
            return Ok(None);
        }
        match parse_one(buf, method)? {
            Parsed::Partial => return Ok(None),
            Parsed::Informational if *informational >= MAX_INFORMATIONAL => {
                return Err(Error::Invalid("over 16 informational responses"));
            }
            Parsed::Informational => *informational += 1,
            Parsed::Final(head) => return Ok(Some(head)),
        }
    }
}

enum Parsed {
    Partial,
    /// A 1xx head other than 101, consumed.
    Informational,
    Final(Head),
}

/// One head from the front of `buf`.
fn parse_one(buf: &mut BytesMut, method: &Method) -> Result<Parsed, Error> {
    let mut fields = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut spans = [Span { name: (0, 0), value: (0, 0) }; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut []);
    let parsed = httparse::ParserConfig::default().parse_response_with_uninit_headers(&mut response, &buf[..], &mut fields);
    let len = match parsed {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD => return Err(Error::HeadTooLarge),
        Ok(httparse::Status::Partial) => return Ok(Parsed::Partial),
        Err(httparse::Error::TooManyHeaders) => return Err(Error::HeadTooLarge),
        Err(e) => return Err(Error::Invalid(parse_failure(e))),
    };
    if len > MAX_HEAD {
        return Err(Error::HeadTooLarge);
    }
    let code = response.code.unwrap_or_default();
    let status = StatusCode::from_u16(code).map_err(|_| Error::Invalid("invalid status code"))?;
    let version = if response.version == Some(1) { Version::HTTP_11 } else { Version::HTTP_10 };
    let base = buf.as_ptr() as usize;
    // Within the head (`len` <= MAX_HEAD): every offset fits a `u32`.
    let offset = |s: &[u8]| {
        let start = s.as_ptr() as usize - base;
        (start as u32, (start + s.len()) as u32)
    };
    let count = response.headers.len();
    for (span, field) in spans.iter_mut().zip(response.headers.iter()) {
        *span = Span { name: offset(field.name.as_bytes()), value: offset(field.value) };
    }
    let reason = response.reason.filter(|r| Some(*r) != status.canonical_reason() && !r.is_empty()).map(|r| offset(r.as_bytes()));
    let head = buf.split_to(len).freeze();
    if status.is_informational() && status != StatusCode::SWITCHING_PROTOCOLS {
        return Ok(Parsed::Informational);
    }
    let mut headers = HeaderMap::with_capacity(count);
    let mut framing = Framing::new(version);
    for span in &spans[..count] {
        let name = HeaderName::from_bytes(&head[Span::range(span.name)]).map_err(|_| Error::Invalid("invalid header name"))?;
        let value =
            HeaderValue::from_maybe_shared(head.slice(Span::range(span.value))).map_err(|_| Error::Invalid("invalid header value"))?;
        framing.see(&name, &value);
        headers.append(name, value);
    }
    let reason = match reason {
        Some(bounds) => {
            Some(hyper::ext::ReasonPhrase::try_from(head.slice(Span::range(bounds))).map_err(|_| Error::Invalid("invalid reason phrase"))?)
        }
        None => None,
    };
    let (framing, keep_alive) = framing.decide(status, method)?;
    Ok(Parsed::Final(Head { status, version, headers, reason, framing, keep_alive }))
}

/// httparse's refusal, in words for the log.
fn parse_failure(error: httparse::Error) -> &'static str {
    match error {
        httparse::Error::HeaderName => "invalid header name (or obsolete line folding)",
        httparse::Error::HeaderValue => "invalid header value",
        httparse::Error::NewLine => "invalid line ending",
        httparse::Error::Status => "invalid status line",
        httparse::Error::Token => "invalid token",
        httparse::Error::TooManyHeaders => "too many header fields",
        httparse::Error::Version => "invalid HTTP version",
    }
}

/// What the framing and connection fields of a head say, gathered as they are read.
struct Framing {
    version: Version,
    /// The one length every `Content-Length` value agrees on; `Err` once two disagree or
    /// one is not a number.
    length: Option<Result<u64, &'static str>>,
    /// `Transfer-Encoding` was present; whether its last coding (of its last line) is chunked.
    chunked: Option<bool>,
    close: bool,
    keep_alive_token: bool,
}

impl Framing {
    fn new(version: Version) -> Self {
        Self { version, length: None, chunked: None, close: false, keep_alive_token: false }
    }

    fn see(&mut self, name: &HeaderName, value: &HeaderValue) {
        if name == CONTENT_LENGTH {
            self.length = Some(match self.length {
                Some(Err(e)) => Err(e),
                Some(Ok(n)) => content_length(value.as_bytes(), Some(n)),
                None => content_length(value.as_bytes(), None),
            });
        } else if name == TRANSFER_ENCODING {
            let last = value.as_bytes().rsplit(|&b| b == b',').next().unwrap_or_default();
            self.chunked = Some(last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        } else if name == CONNECTION {
            for token in value.as_bytes().split(|&b| b == b',') {
                let token = token.trim_ascii();
                self.close |= token.eq_ignore_ascii_case(b"close");
                self.keep_alive_token |= token.eq_ignore_ascii_case(b"keep-alive");
            }
        }
    }

    /// The body's framing and whether the connection stays open, in RFC 9112 section 6.3's
    /// order: no body for HEAD, 1xx, 204 and 304 whatever the fields say; then chunked,
    /// then a length, else until close.
    fn decide(self, status: StatusCode, method: &Method) -> Result<(ResponseFraming, bool), Error> {
        let keep_alive = !self.close && (self.version == Version::HTTP_11 || self.keep_alive_token);
        let no_body = matches!(status.as_u16(), 100..=199 | 204 | 304) || *method == Method::HEAD;
        if status == StatusCode::SWITCHING_PROTOCOLS || (*method == Method::CONNECT && status.is_success()) {
            // The connection is the other protocol's now (or a tunnel): never reused.
            return Ok((ResponseFraming::Empty, false));
        }
        if no_body {
            return Ok((ResponseFraming::Empty, keep_alive));
        }
        match (self.chunked, self.length) {
            (Some(_), _) if self.version == Version::HTTP_10 => Err(Error::Invalid("transfer-encoding in an HTTP/1.0 response")),
            (Some(_), Some(_)) => Err(Error::Invalid("both content-length and transfer-encoding")),
            (Some(true), None) => Ok((ResponseFraming::Chunked, keep_alive)),
            (Some(false), None) => Err(Error::Invalid("transfer-encoding whose last coding is not chunked")),
            (None, Some(Err(why))) => Err(Error::Invalid(why)),
            (None, Some(Ok(0))) => Ok((ResponseFraming::Empty, keep_alive)),
            (None, Some(Ok(n))) => Ok((ResponseFraming::Length(n), keep_alive)),
            (None, None) => Ok((ResponseFraming::Close, false)),
        }
    }
}

/// A `Content-Length` field value (a comma-separated list is allowed when every element
/// is the same number, as hyper allows it), checked against the length seen before.
fn content_length(value: &[u8], previous: Option<u64>) -> Result<u64, &'static str> {
    let mut length = previous;
    for element in value.split(|&b| b == b',') {
        let n = digits(element.trim_ascii()).ok_or("invalid content-length")?;
        if length.is_some_and(|l| l != n) {
            return Err("differing content-length values");
        }
        length = Some(n);
    }
    length.ok_or("invalid content-length")
}

/// Decimal digits only (no sign, no space, no overflow).
pub(super) fn digits(bytes: &[u8]) -> Option<u64> {
    if bytes.is_empty() {
        return None;
    }
    bytes.iter().try_fold(0u64, |n, &b| if b.is_ascii_digit() { n.checked_mul(10)?.checked_add(u64::from(b - b'0')) } else { None })
}
