//! The gateway's server span: one per request, recorded only when the request is sampled
//! and an exporter is configured (`--otlp-endpoint`). The proxy knows no tracing library:
//! a finished span is a plain [`SpanRecord`] handed to a [`SpanSink`], which the binary
//! provides (`switchyard-telemetry` exports over OTLP). Without a sink nothing is
//! recorded and nothing allocated; the trace context is still propagated upstream
//! (`trace_context`).
//!
//! The span's attributes come from the request's [`Exchange`] (route, backend, endpoint)
//! and its outcome (status, error code), the same fields the access log and metrics
//! read. It ends when the response body is done, as the access log line does
//! (`service::ClientBody`).

use std::sync::Arc;
use std::time::SystemTime;

use http::{HeaderMap, HeaderValue, Method};

use crate::exchange::Exchange;
use crate::runtime::Runtime;
use crate::trace_context::{Ratio, TraceContext};

/// One finished server span.
#[derive(Clone, Debug)]
pub struct SpanRecord {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    /// The caller's span (remote), when the request came with a valid `traceparent`.
    pub parent_id: Option<[u8; 8]>,
    pub tracestate: Option<HeaderValue>,
    pub start: SystemTime,
    pub end: SystemTime,
    pub method: Method,
    /// The request's path, without its query.
    pub path: String,
    /// `namespace/name` of the route, when one matched.
    pub route: Option<Arc<str>>,
    /// `namespace/name` of the backend, when one was chosen.
    pub backend: Option<String>,
    /// `host:port` of the endpoint the last attempt went to.
    pub upstream: Option<String>,
    pub status: u16,
    /// The gateway error code (`D502BC`, ...) when the gateway answered with an error.
    pub error_code: Option<&'static str>,
    pub request_id: HeaderValue,
}

/// Where finished spans go. Called on the request's thread when its response body is
/// done: must not block (queue the span, drop it when full).
pub trait SpanSink: Send + Sync {
    fn finished(&self, span: SpanRecord);
}

/// The proxy's tracing: the sampling ratio for new traces and, when spans are exported,
/// their sink.
#[derive(Clone)]
pub struct Tracing {
    sink: Option<Arc<dyn SpanSink>>,
    ratio: Ratio,
}

impl Default for Tracing {
    /// Propagation only: no span recorded. New traces are not sampled; a caller's flag
    /// passes on unchanged.
    fn default() -> Self {
        Self { sink: None, ratio: Ratio::new(0.0) }
    }
}

impl std::fmt::Debug for Tracing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tracing").field("exporting", &self.sink.is_some()).field("ratio", &self.ratio).finish()
    }
}

impl Tracing {
    /// Spans to `sink`: a request continuing a trace follows its caller's sampled flag,
    /// a new trace is sampled with probability `ratio` (parent-based, trace id ratio).
    pub fn exporting(sink: Arc<dyn SpanSink>, ratio: f64) -> Self {
        Self { sink: Some(sink), ratio: Ratio::new(ratio) }
    }

    /// The request's trace context (see [`TraceContext::of`]).
    pub fn begin(&self, headers: &HeaderMap) -> TraceContext {
        TraceContext::of(headers, |id| self.ratio.samples(id))
    }

    /// The start of the request's span when it is recorded: sampled, with a sink.
    pub fn start(&self, trace: &TraceContext, method: &Method, path: &str) -> Option<Box<SpanStart>> {
        let sink = self.sink.as_ref().filter(|_| trace.sampled)?;
        Some(Box::new(SpanStart {
            sink: sink.clone(),
            trace: trace.clone(),
            start: SystemTime::now(),
            method: method.clone(),
            path: path.to_owned(),
        }))
    }
}

/// A recorded span, begun at the request's start.
pub struct SpanStart {
    sink: Arc<dyn SpanSink>,
    trace: TraceContext,
    start: SystemTime,
    method: Method,
    path: String,
}

/// What the request did, for its span.
pub struct Outcome<'a> {
    pub runtime: Option<&'a Runtime>,
    pub exchange: &'a Exchange,
    pub status: u16,
    pub error_code: Option<&'static str>,
    pub request_id: &'a HeaderValue,
}

impl SpanStart {
    /// The span with its attributes, sent to the sink when dropped (when the response
    /// body is done).
    pub fn answered(self, outcome: Outcome<'_>) -> Box<OpenSpan> {
        let Outcome { runtime, exchange, status, error_code, request_id } = outcome;
        let route = runtime.zip(exchange.route()).and_then(|(rt, i)| rt.routes.get(i)).map(|r| r.id.clone());
        let backend = runtime.zip(exchange.backend()).and_then(|(rt, i)| Some((rt.snapshot.backends.get(i)?, rt.backends.get(i)?)));
        let upstream = backend.zip(exchange.endpoint()).and_then(|((_, b), e)| b.endpoint_name(e)).map(str::to_owned);
        let SpanStart { sink, trace, start, method, path } = self;
        let record = SpanRecord {
            trace_id: trace.trace_id,
            span_id: trace.span_id,
            parent_id: trace.parent,
            tracestate: trace.tracestate,
            start,
            end: start,
            method,
            path,
            route,
            backend: backend.map(|(spec, _)| spec.id.clone()),
            upstream,
            status,
            error_code,
            request_id: request_id.clone(),
        };
        Box::new(OpenSpan { sink, record: Some(record) })
    }
}

/// A span waiting for its end: sent to its sink when dropped.
pub struct OpenSpan {
    sink: Arc<dyn SpanSink>,
    record: Option<SpanRecord>,
}

impl Drop for OpenSpan {
    fn drop(&mut self) {
        if let Some(mut record) = self.record.take() {
            record.end = SystemTime::now().max(record.start);
            self.sink.finished(record);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    #[derive(Default)]
    struct Collect(Mutex<Vec<SpanRecord>>);

    impl SpanSink for Collect {
        fn finished(&self, span: SpanRecord) {
            self.0.lock().unwrap().push(span);
        }
    }

    fn traced(sink: &Arc<Collect>, ratio: f64, headers: &HeaderMap) -> Option<Box<SpanStart>> {
        let tracing = Tracing::exporting(sink.clone(), ratio);
        let trace = tracing.begin(headers);
        tracing.start(&trace, &Method::GET, "/a")
    }

    #[test]
    fn without_a_sink_nothing_is_recorded_even_for_a_sampled_caller() {
        let mut headers = HeaderMap::new();
        headers.insert("traceparent", HeaderValue::from_static("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"));
        let tracing = Tracing::default();
        let trace = tracing.begin(&headers);
        assert!(trace.sampled, "the caller's flag passes on");
        assert!(tracing.start(&trace, &Method::GET, "/").is_none());
        assert!(!tracing.begin(&HeaderMap::new()).sampled, "a new trace is not sampled");
    }

    #[test]
    fn the_span_goes_to_the_sink_when_dropped_with_its_outcome() {
        let sink = Arc::new(Collect::default());
        let start = traced(&sink, 1.0, &HeaderMap::new()).expect("ratio 1 samples every new trace");
        let exchange = Exchange::default();
        let request_id = HeaderValue::from_static("id-1");
        let open = start.answered(Outcome {
            runtime: None,
            exchange: &exchange,
            status: 502,
            error_code: Some("D502BC"),
            request_id: &request_id,
        });
        assert!(sink.0.lock().unwrap().is_empty(), "not before the body is done");
        drop(open);
        let spans = sink.0.lock().unwrap();
        let span = &spans[0];
        assert_eq!((span.status, span.error_code, span.path.as_str(), span.parent_id), (502, Some("D502BC"), "/a", None));
        assert!(span.end >= span.start);
        assert_eq!(span.request_id, "id-1");
    }

    #[test]
    fn a_callers_flag_decides_over_the_ratio() {
        let sink = Arc::new(Collect::default());
        let mut headers = HeaderMap::new();
        headers.insert("traceparent", HeaderValue::from_static("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"));
        assert!(traced(&sink, 0.0, &headers).is_some(), "sampled caller, ratio 0");
        headers.insert("traceparent", HeaderValue::from_static("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"));
        assert!(traced(&sink, 1.0, &headers).is_none(), "unsampled caller, ratio 1");
        assert!(traced(&sink, 0.0, &HeaderMap::new()).is_none(), "new trace, ratio 0");
    }
}
