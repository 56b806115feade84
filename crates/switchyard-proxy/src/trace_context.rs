//! W3C Trace Context (<https://www.w3.org/TR/trace-context/>): the incoming `traceparent`
//! and `tracestate`, the ids of the gateway's own span, and the headers every upstream
//! request carries.
//!
//! This runs on every request, tracing on or off: one header parse, two random numbers
//! from a per-thread generator, and at each upstream attempt one 55-byte header value.
//! Nothing here allocates unless an upstream request is made. A malformed `traceparent`
//! is never an error for the client: the gateway starts a new trace, as the
//! specification asks.

use std::cell::Cell;

use http::{HeaderMap, HeaderName, HeaderValue};

pub const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
pub const TRACESTATE: HeaderName = HeaderName::from_static("tracestate");

/// A `tracestate` longer than this (its lines joined) is dropped rather than passed on.
/// The specification asks to propagate at least 512 characters; a list of 32 members
/// rarely needs more.
pub const MAX_TRACESTATE: usize = 512;

/// The `sampled` bit of trace-flags.
const SAMPLED: u8 = 0x01;

/// The caller's span, from a well-formed `traceparent`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Parent {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub sampled: bool,
}

/// The request's place in its trace: the trace, the gateway's span (a new id on every
/// request, so a client's `traceparent` never goes upstream as it came), the caller's
/// span when there was one, and whether this span is sampled.
#[derive(Clone, Debug)]
pub struct TraceContext {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub parent: Option<[u8; 8]>,
    /// Sent upstream as the sampled flag.
    pub sampled: bool,
    /// The caller's `tracestate`, passed on unchanged (only with a valid `traceparent`).
    pub tracestate: Option<HeaderValue>,
}

impl TraceContext {
    /// The incoming trace context, or a new trace when there is none or it is malformed.
    /// `sample` decides a new trace's sampled flag from its trace id; a caller's flag is
    /// kept (parent-based sampling).
    pub fn of(headers: &HeaderMap, sample: impl FnOnce(&[u8; 16]) -> bool) -> Self {
        let span_id = new_span_id();
        match incoming(headers) {
            Some(parent) => Self {
                trace_id: parent.trace_id,
                span_id,
                parent: Some(parent.span_id),
                sampled: parent.sampled,
                tracestate: tracestate(headers),
            },
            None => {
                let trace_id = new_trace_id();
                Self { sampled: sample(&trace_id), trace_id, span_id, parent: None, tracestate: None }
            }
        }
    }

    /// `00-TRACE-SPAN-FLAGS` with the gateway's span as the parent.
    pub fn traceparent(&self) -> HeaderValue {
        let mut text = [b'-'; 55];
        text[0..2].copy_from_slice(b"00");
        hex(&mut text[3..35], &self.trace_id);
        hex(&mut text[36..52], &self.span_id);
        hex(&mut text[53..55], &[if self.sampled { SAMPLED } else { 0 }]);
        HeaderValue::from_bytes(&text).expect("hex digits and dashes are a valid header value")
    }

    /// Sets `traceparent` and `tracestate` on an upstream request, replacing whatever
    /// the client sent.
    pub fn propagate(&self, headers: &mut HeaderMap) {
        headers.insert(TRACEPARENT, self.traceparent());
        match &self.tracestate {
            Some(state) => headers.insert(TRACESTATE, state.clone()),
            None => headers.remove(TRACESTATE),
        };
    }
}

/// The one `traceparent` of the request, when well-formed (two of them are malformed).
fn incoming(headers: &HeaderMap) -> Option<Parent> {
    let mut values = headers.get_all(TRACEPARENT).iter();
    let value = values.next()?;
    if values.next().is_some() {
        return None;
    }
    parse_traceparent(value.as_bytes())
}

/// `version-traceid-parentid-flags`: lowercase hex, ids not all zero, version `ff`
/// refused; version 00 is exactly 55 bytes, a later version may append `-...`.
pub fn parse_traceparent(value: &[u8]) -> Option<Parent> {
    if value.len() < 55 || value[2] != b'-' || value[35] != b'-' || value[52] != b'-' {
        return None;
    }
    let mut version = [0u8; 1];
    unhex(&value[0..2], &mut version)?;
    match version[0] {
        0xff => return None,
        0 if value.len() != 55 => return None,
        _ if value.len() > 55 && value[55] != b'-' => return None,
        _ => {}
    }
    let mut trace_id = [0u8; 16];
    let mut span_id = [0u8; 8];
    let mut flags = [0u8; 1];
    unhex(&value[3..35], &mut trace_id)?;
    unhex(&value[36..52], &mut span_id)?;
    unhex(&value[53..55], &mut flags)?;
    if trace_id == [0; 16] || span_id == [0; 8] {
        return None;
    }
    Some(Parent { trace_id, span_id, sampled: flags[0] & SAMPLED != 0 })
}

/// Every `tracestate` line joined by commas, unchanged; None when absent, empty or over
/// [`MAX_TRACESTATE`].
fn tracestate(headers: &HeaderMap) -> Option<HeaderValue> {
    let mut lines = headers.get_all(TRACESTATE).iter();
    let first = lines.next()?;
    let Some(second) = lines.next() else {
        return (!first.is_empty() && first.len() <= MAX_TRACESTATE).then(|| first.clone());
    };
    let mut joined = first.as_bytes().to_vec();
    for line in std::iter::once(second).chain(lines) {
        joined.push(b',');
        joined.extend_from_slice(line.as_bytes());
        if joined.len() > MAX_TRACESTATE {
            return None;
        }
    }
    HeaderValue::from_bytes(&joined).ok()
}

/// Lowercase hex digits (the only ones the specification allows) into `out`.
fn unhex(text: &[u8], out: &mut [u8]) -> Option<()> {
    fn digit(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        }
    }
    for (byte, pair) in out.iter_mut().zip(text.chunks_exact(2)) {
        *byte = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    Some(())
}

fn hex(out: &mut [u8], bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (pair, b) in out.chunks_exact_mut(2).zip(bytes) {
        pair[0] = DIGITS[usize::from(b >> 4)];
        pair[1] = DIGITS[usize::from(b & 0xF)];
    }
}

/// `bytes` as lowercase hex (for logs and tests).
pub fn to_hex(bytes: &[u8]) -> String {
    let mut out = vec![0u8; bytes.len() * 2];
    hex(&mut out, bytes);
    String::from_utf8(out).expect("hex digits")
}

thread_local! {
    /// A splitmix64 sequence per thread, seeded from the system's randomness once.
    static STATE: Cell<u64> = Cell::new(seed());
}

fn seed() -> u64 {
    use ring::rand::SecureRandom as _;
    let mut bytes = [0u8; 8];
    if ring::rand::SystemRandom::new().fill(&mut bytes).is_err() {
        // No system randomness: the clock and the thread's stack address, mixed.
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
        let local = 0u8;
        bytes = (nanos ^ (std::ptr::addr_of!(local) as u64)).to_le_bytes();
    }
    u64::from_le_bytes(bytes)
}

/// The next number of this thread's sequence. Ids need to be unique and spread, not
/// unguessable: they name spans, they grant nothing.
fn next_u64() -> u64 {
    STATE.with(|state| {
        let x = state.get().wrapping_add(0x9E37_79B9_7F4A_7C15);
        state.set(x);
        crate::balance::splitmix(x)
    })
}

fn nonzero(mut next: impl FnMut() -> u64) -> u64 {
    loop {
        let n = next();
        if n != 0 {
            return n;
        }
    }
}

pub fn new_span_id() -> [u8; 8] {
    nonzero(next_u64).to_be_bytes()
}

pub fn new_trace_id() -> [u8; 16] {
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&next_u64().to_be_bytes());
    id[8..].copy_from_slice(&nonzero(next_u64).to_be_bytes());
    id
}

/// Sampling by ratio on the trace id, as OpenTelemetry's `TraceIdRatioBased` does (the
/// low 63 bits against `ratio * 2^63`), so every service using that rule on a trace
/// decides alike.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ratio(u64);

impl Ratio {
    pub fn new(ratio: f64) -> Self {
        Self((ratio.clamp(0.0, 1.0) * (1u64 << 63) as f64) as u64)
    }

    pub fn samples(self, trace_id: &[u8; 16]) -> bool {
        let low = u64::from_be_bytes(trace_id[8..].try_into().expect("eight bytes"));
        (low >> 1) < self.0
    }
}

#[cfg(test)]
mod tests;
