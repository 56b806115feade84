//! Token accounting for OpenAI-protocol responses: the `usage` object is read from the
//! response as it passes to the client, never holding the stream back.
//!
//! - `text/event-stream`: the stream is scanned line by line as frames pass; only the
//!   unfinished last line is kept between frames (at most [`MAX_LINE`]; a longer line is
//!   skipped). `data: {...}` lines that mention `"usage"` are parsed, and the last non-null
//!   usage of the stream is counted once when it ends (or is cut): a server that repeats
//!   cumulative usage in every chunk is not counted twice.
//! - JSON: a copy of the body (at most [`MAX_JSON`]; a larger body is not counted) is kept
//!   while the bytes pass, and parsed when it ends.
//!
//! A compressed response (`content-encoding` other than `identity`) is not read.

use std::sync::Arc;

use http::HeaderMap;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use serde::Deserialize;

use crate::body::FrameObserver;
use crate::metrics::TokenLabels;

/// The longest SSE line kept across frames; a longer one is skipped.
pub(super) const MAX_LINE: usize = 64 * 1024;
/// The largest non-streamed JSON response whose usage is counted.
pub(super) const MAX_JSON: usize = 1024 * 1024;

/// Where a response's tokens go: the route's series of `switchyard_model_tokens_total`.
pub(super) struct Tokens {
    pub family: Family<TokenLabels, Counter>,
    pub route: Arc<str>,
}

impl Tokens {
    /// Adds one response's usage (the series are looked up here, once per response).
    fn add(&self, usage: Usage) {
        let prompt = usage.prompt_tokens.unwrap_or(0);
        let completion = usage.completion_tokens.unwrap_or(0);
        self.family.get_or_create(&TokenLabels { route: self.route.clone(), kind: "prompt" }).inc_by(prompt);
        self.family.get_or_create(&TokenLabels { route: self.route.clone(), kind: "completion" }).inc_by(completion);
    }
}

/// The part of an OpenAI `usage` object that is counted (embeddings have no completion).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
pub(super) struct Usage {
    #[serde(default)]
    prompt_tokens: Option<u64>,
    #[serde(default)]
    completion_tokens: Option<u64>,
}

/// A response or stream chunk; everything but `usage` is skipped without being built.
#[derive(Deserialize)]
struct WithUsage {
    #[serde(default)]
    usage: Option<Usage>,
}

/// The usage in a JSON document, if it has a non-null one.
fn usage_of(json: &[u8]) -> Option<Usage> {
    serde_json::from_slice::<WithUsage>(json).ok()?.usage
}

/// The meter for a response with these headers: SSE or JSON, or None for anything else
/// (and for compressed bodies, which cannot be read as they pass).
pub(super) fn meter_for(headers: &HeaderMap, tokens: Tokens) -> Option<Box<dyn FrameObserver>> {
    if headers.get(http::header::CONTENT_ENCODING).is_some_and(|e| !e.as_bytes().eq_ignore_ascii_case(b"identity")) {
        return None;
    }
    let content_type = headers.get(http::header::CONTENT_TYPE)?.to_str().ok()?;
    let essence = content_type.split(';').next().unwrap_or_default().trim();
    if essence.eq_ignore_ascii_case("text/event-stream") {
        return Some(Box::new(SseMeter::new(tokens)));
    }
    let json = essence.eq_ignore_ascii_case("application/json") || essence.to_ascii_lowercase().ends_with("+json");
    if !json {
        return None;
    }
    let declared = headers.get(http::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
    if declared.is_some_and(|n| n > MAX_JSON) {
        tracing::debug!(route = %tokens.route, "model response larger than 1 MiB: its token usage is not counted");
        return None;
    }
    Some(Box::new(JsonMeter { tokens, body: Vec::with_capacity(declared.unwrap_or(4096)), over: false, done: false }))
}

/// Reads the usage of a server-sent event stream line by line.
pub(super) struct SseMeter {
    tokens: Tokens,
    /// The unfinished last line of the frames so far.
    partial: Vec<u8>,
    /// The current line grew past [`MAX_LINE`]: dropped up to its end.
    skipping: bool,
    last: Option<Usage>,
    counted: bool,
}

impl SseMeter {
    pub(super) fn new(tokens: Tokens) -> Self {
        Self { tokens, partial: Vec::new(), skipping: false, last: None, counted: false }
    }

    fn line(&mut self, line: &[u8]) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(value) = line.strip_prefix(b"data:") else { return };
        let value = value.strip_prefix(b" ").unwrap_or(value);
        if !contains(value, b"\"usage\"") {
            return;
        }
        if let Some(usage) = usage_of(value) {
            self.last = Some(usage);
        }
    }

    fn count(&mut self) {
        if self.counted {
            return;
        }
        self.counted = true;
        if let Some(usage) = self.last {
            self.tokens.add(usage);
        }
    }
}

impl FrameObserver for SseMeter {
    fn data(&mut self, mut data: &[u8]) {
        while let Some(at) = data.iter().position(|&b| b == b'\n') {
            let (segment, rest) = (&data[..at], &data[at + 1..]);
            data = rest;
            if self.skipping {
                self.skipping = false;
            } else if self.partial.is_empty() {
                self.line(segment);
            } else if self.partial.len() + segment.len() <= MAX_LINE {
                let mut line = std::mem::take(&mut self.partial);
                line.extend_from_slice(segment);
                self.line(&line);
                line.clear();
                self.partial = line;
            }
            self.partial.clear();
        }
        if self.skipping || data.is_empty() {
            return;
        }
        if self.partial.len() + data.len() > MAX_LINE {
            self.skipping = true;
            self.partial = Vec::new();
        } else {
            self.partial.extend_from_slice(data);
        }
    }

    fn end(&mut self) {
        self.count();
    }
}

impl Drop for SseMeter {
    /// A stream cut after its usage chunk still counts.
    fn drop(&mut self) {
        self.count();
    }
}

/// Keeps a bounded copy of a JSON response and reads its usage at the end.
struct JsonMeter {
    tokens: Tokens,
    body: Vec<u8>,
    over: bool,
    done: bool,
}

impl FrameObserver for JsonMeter {
    fn data(&mut self, data: &[u8]) {
        if self.over {
            return;
        }
        if self.body.len() + data.len() > MAX_JSON {
            tracing::debug!(route = %self.tokens.route, "model response larger than 1 MiB: its token usage is not counted");
            self.over = true;
            self.body = Vec::new();
        } else {
            self.body.extend_from_slice(data);
        }
    }

    fn end(&mut self) {
        if std::mem::replace(&mut self.done, true) || self.over {
            return;
        }
        if let Some(usage) = usage_of(&self.body) {
            self.tokens.add(usage);
        }
        self.body = Vec::new();
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new_tokens() -> (Tokens, Family<TokenLabels, Counter>) {
        let family = Family::<TokenLabels, Counter>::default();
        (Tokens { family: family.clone(), route: Arc::from("shop/chat") }, family)
    }

    fn counted(family: &Family<TokenLabels, Counter>) -> (u64, u64) {
        let get = |kind| family.get_or_create(&TokenLabels { route: Arc::from("shop/chat"), kind }).get();
        (get("prompt"), get("completion"))
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs.iter().map(|(k, v)| (http::HeaderName::from_static(k), http::HeaderValue::from_static(v))).collect()
    }

    const STREAM: &str = concat!(
        ": keep-alive comment\n\n",
        "data: {\"id\":\"c1\",\"choices\":[{\"delta\":{\"content\":\"Hel\"}}],\"usage\":null}\n\n",
        "data: {\"id\":\"c1\",\"choices\":[{\"delta\":{\"content\":\"lo\"}}],\"usage\":null}\r\n\r\n",
        "event: message\n",
        "data: {\"id\":\"c1\",\"choices\":[],\"usage\":{\"prompt_tokens\":11,\"completion_tokens\":7,\"total_tokens\":18}}\n\n",
        "data: [DONE]\n\n",
    );

    #[test]
    fn the_usage_chunk_of_a_stream_is_counted_whatever_the_frame_boundaries() {
        // Every split of the stream into two frames, and one byte per frame.
        for at in 0..=STREAM.len() {
            let (tokens, family) = new_tokens();
            let mut meter = SseMeter::new(tokens);
            meter.data(&STREAM.as_bytes()[..at]);
            meter.data(&STREAM.as_bytes()[at..]);
            meter.end();
            assert_eq!(counted(&family), (11, 7), "split at {at}");
            drop(meter);
            assert_eq!(counted(&family), (11, 7), "counted once: end, then drop");
        }
        let (tokens, family) = new_tokens();
        let mut meter = SseMeter::new(tokens);
        STREAM.as_bytes().chunks(1).for_each(|b| meter.data(b));
        drop(meter);
        assert_eq!(counted(&family), (11, 7), "byte by byte, counted when dropped (a stream cut after its usage)");
    }

    #[test]
    fn a_stream_without_usage_counts_nothing_and_cumulative_usage_counts_once() {
        let (tokens, family) = new_tokens();
        let mut meter = SseMeter::new(tokens);
        meter.data(b"data: {\"choices\":[],\"usage\":null}\n\ndata: [DONE]\n\n");
        meter.end();
        assert_eq!(counted(&family), (0, 0));
        let (tokens, family) = new_tokens();
        let mut meter = SseMeter::new(tokens);
        for n in 1..=3 {
            meter.data(format!("data: {{\"usage\":{{\"prompt_tokens\":5,\"completion_tokens\":{n}}}}}\n\n").as_bytes());
        }
        meter.end();
        assert_eq!(counted(&family), (5, 3), "the last usage of the stream, not the sum");
    }

    #[test]
    fn a_line_longer_than_the_limit_is_skipped_and_the_next_one_is_read() {
        let (tokens, family) = new_tokens();
        let mut meter = SseMeter::new(tokens);
        let long = format!("data: {{\"usage\":{{\"prompt_tokens\":1000}},\"pad\":\"{}\"}}", "x".repeat(MAX_LINE));
        for piece in long.as_bytes().chunks(4000) {
            meter.data(piece);
            assert!(meter.partial.len() <= MAX_LINE, "bounded memory");
        }
        meter.data(b"\n\ndata: {\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":4}}\n");
        meter.end();
        assert_eq!(counted(&family), (3, 4));
    }

    #[test]
    fn a_json_response_is_counted_at_its_end_and_embeddings_count_prompt_only() {
        let (tokens, family) = new_tokens();
        let mut meter = meter_for(&headers(&[("content-type", "application/json")]), tokens).expect("JSON is metered");
        let body = br#"{"id":"x","choices":[{"message":{"content":"hi"}}],"usage":{"prompt_tokens":9,"completion_tokens":2}}"#;
        body.chunks(10).for_each(|c| meter.data(c));
        assert_eq!(counted(&family), (0, 0), "nothing before the end");
        meter.end();
        meter.end();
        assert_eq!(counted(&family), (9, 2), "once");
        let (tokens, family) = new_tokens();
        let mut meter = meter_for(&headers(&[("content-type", "application/json; charset=utf-8")]), tokens).unwrap();
        meter.data(br#"{"data":[{"embedding":[0.1]}],"usage":{"prompt_tokens":4,"total_tokens":4}}"#);
        meter.end();
        assert_eq!(counted(&family), (4, 0));
    }

    #[test]
    fn oversized_compressed_or_other_responses_are_not_metered() {
        let (tokens, family) = new_tokens();
        let mut meter = meter_for(&headers(&[("content-type", "application/json")]), tokens).unwrap();
        meter.data(br#"{"usage":{"prompt_tokens":1,"completion_tokens":1},"pad":""#);
        meter.data(&vec![b'x'; MAX_JSON]);
        meter.data(br#""}"#);
        meter.end();
        assert_eq!(counted(&family), (0, 0), "over 1 MiB: skipped");
        assert!(meter_for(&headers(&[("content-type", "application/json"), ("content-length", "2000000")]), new_tokens().0).is_none());
        assert!(meter_for(&headers(&[("content-type", "application/json"), ("content-encoding", "gzip")]), new_tokens().0).is_none());
        assert!(meter_for(&headers(&[("content-type", "text/plain")]), new_tokens().0).is_none());
        assert!(meter_for(&HeaderMap::new(), new_tokens().0).is_none());
        assert!(meter_for(&headers(&[("content-type", "Text/Event-Stream; charset=utf-8")]), new_tokens().0).is_some());
    }
}
