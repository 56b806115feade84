use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::{HeaderValue, Method};
use opentelemetry::trace::{SpanId, SpanKind, Status, TraceId};
use opentelemetry::{InstrumentationScope, Value};
use switchyard_proxy::trace::{SpanRecord, SpanSink};
use tokio::sync::mpsc;

use super::*;

fn record() -> SpanRecord {
    let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_764_655_518);
    SpanRecord {
        trace_id: [0x4b; 16],
        span_id: [0x11; 8],
        parent_id: Some([0x22; 8]),
        tracestate: Some(HeaderValue::from_static("congo=t61rcWkgMzE")),
        start,
        end: start + Duration::from_millis(3),
        method: Method::POST,
        path: "/orders/7".into(),
        route: Some(Arc::from("shop/orders")),
        backend: Some("shop/orders-api".into()),
        upstream: Some("10.0.0.7:8080".into()),
        status: 502,
        error_code: Some("D502BC"),
        request_id: HeaderValue::from_static("req-1"),
    }
}

fn attribute<'a>(span: &'a SpanData, key: &str) -> Option<&'a Value> {
    span.attributes.iter().find(|kv| kv.key.as_str() == key).map(|kv| &kv.value)
}

#[test]
fn a_record_becomes_a_server_span_with_its_ids_parent_and_attributes() {
    let span = span_data(record(), &InstrumentationScope::builder("switchyard").build());
    assert_eq!(span.span_context.trace_id(), TraceId::from_bytes([0x4b; 16]));
    assert_eq!(span.span_context.span_id(), SpanId::from_bytes([0x11; 8]));
    assert!(span.span_context.is_sampled());
    assert_eq!(span.span_context.trace_state().header(), "congo=t61rcWkgMzE");
    assert_eq!((span.parent_span_id, span.parent_span_is_remote), (SpanId::from_bytes([0x22; 8]), true));
    assert_eq!(span.span_kind, SpanKind::Server);
    assert_eq!(span.name, "POST shop/orders");
    assert_eq!(span.end_time.duration_since(span.start_time).unwrap(), Duration::from_millis(3));
    assert_eq!(span.status, Status::error("D502BC"));
    for (key, value) in [
        ("http.request.method", Value::from("POST")),
        ("url.path", Value::from("/orders/7")),
        ("http.response.status_code", Value::I64(502)),
        ("switchyard.route", Value::from("shop/orders")),
        ("switchyard.backend", Value::from("shop/orders-api")),
        ("switchyard.upstream.address", Value::from("10.0.0.7:8080")),
        ("switchyard.error_code", Value::from("D502BC")),
        ("switchyard.request_id", Value::from("req-1")),
    ] {
        assert_eq!(attribute(&span, key), Some(&value), "{key}");
    }
}

#[test]
fn a_new_trace_has_no_parent_and_a_4xx_or_2xx_is_no_error() {
    for status in [200, 404] {
        let span = span_data(
            SpanRecord { parent_id: None, status, error_code: None, route: None, backend: None, upstream: None, ..record() },
            &InstrumentationScope::builder("switchyard").build(),
        );
        assert_eq!((span.parent_span_id, span.parent_span_is_remote), (SpanId::INVALID, false));
        assert_eq!(span.status, Status::Unset, "{status}");
        assert_eq!(span.name, "POST");
        assert_eq!(attribute(&span, "switchyard.route"), None);
        assert_eq!(attribute(&span, "switchyard.error_code"), None);
    }
}

#[test]
fn a_5xx_without_a_gateway_code_is_an_error_naming_the_status() {
    let span = span_data(SpanRecord { status: 503, error_code: None, ..record() }, &InstrumentationScope::builder("s").build());
    assert_eq!(span.status, Status::error("HTTP 503"));
}

#[test]
fn a_full_queue_drops_and_counts_without_waiting() {
    let (queue, _kept) = mpsc::channel(2);
    let sink = OtlpSink { queue, metrics: ExportMetrics::default() };
    for _ in 0..5 {
        sink.finished(record());
    }
    assert_eq!(sink.metrics.dropped.get(), 3);
}

#[test]
fn the_traces_path_is_added_to_a_bare_endpoint_only() {
    assert_eq!(traces_url("http://collector:4318").unwrap(), "http://collector:4318/v1/traces");
    assert_eq!(traces_url("http://collector:4318/").unwrap(), "http://collector:4318/v1/traces");
    assert_eq!(traces_url("http://collector:4318/custom/traces").unwrap(), "http://collector:4318/custom/traces");
    for bad in ["collector:4318", "https://collector:4318", "ftp://x", "http://"] {
        assert!(traces_url(bad).is_err(), "{bad}");
    }
}
