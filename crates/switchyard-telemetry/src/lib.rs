//! OTLP export of the gateway's server spans (`--otlp-endpoint`), on the OpenTelemetry
//! SDK's span model and `opentelemetry-otlp`'s HTTP/protobuf exporter (over hyper).
//!
//! The proxy hands finished spans to [`OtlpSink`] (its `SpanSink`), which only queues
//! them: a bounded channel, `try_send`, and a span that does not fit is dropped and
//! counted. A thread of its own (`switchyard-otlp`, with its own runtime) turns them into
//! `SpanData` and exports them in batches: every [`EXPORT_EVERY`] or once [`MAX_BATCH`]
//! are waiting, one export at a time, each bounded by [`EXPORT_TIMEOUT`]. A slow or dead
//! collector therefore costs requests nothing: the queue fills and spans are dropped.
//! Sampling is decided in the proxy (`switchyard_proxy::trace`), before any of this.

use std::sync::Arc;
use std::time::Duration;

use opentelemetry::trace::{SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState};
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanExporter as _, SpanLinks};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;
use switchyard_proxy::trace::{SpanRecord, SpanSink};
use tokio::sync::{mpsc, oneshot};

/// Spans waiting for export; more are dropped (and counted).
pub const QUEUE: usize = 4096;
/// Spans per export request at most.
pub const MAX_BATCH: usize = 512;
/// A span waits at most this long before it is exported.
pub const EXPORT_EVERY: Duration = Duration::from_secs(1);
/// One export request, retries included, gives up after this.
pub const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// `switchyard_proxy_trace_*` counters.
#[derive(Clone, Debug, Default)]
pub struct ExportMetrics {
    pub exported: Counter,
    pub dropped: Counter,
    pub failed: Counter,
}

impl ExportMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        let trace = registry.sub_registry_with_prefix("switchyard_proxy_trace");
        trace.register("spans_exported", "Spans the OTLP collector accepted", metrics.exported.clone());
        trace.register("spans_dropped", "Spans dropped: the export queue was full or its export failed", metrics.dropped.clone());
        trace.register("export_failures", "OTLP export requests that failed or timed out", metrics.failed.clone());
        metrics
    }
}

enum Message {
    Span(Box<SpanRecord>),
    /// Export what is queued now, then answer.
    Flush(oneshot::Sender<()>),
}

/// The proxy's span sink: queues spans for the export thread.
pub struct OtlpSink {
    queue: mpsc::Sender<Message>,
    metrics: ExportMetrics,
}

impl SpanSink for OtlpSink {
    fn finished(&self, span: SpanRecord) {
        if self.queue.try_send(Message::Span(Box::new(span))).is_err() {
            self.metrics.dropped.inc();
        }
    }
}

impl OtlpSink {
    /// Exports every span queued so far; gives up after `timeout`.
    pub async fn flush(&self, timeout: Duration) {
        let (done, wait) = oneshot::channel();
        let asked = tokio::time::timeout(timeout, async {
            self.queue.send(Message::Flush(done)).await.ok()?;
            wait.await.ok()
        });
        if asked.await.ok().flatten().is_none() {
            tracing::warn!("trace export did not finish flushing in time");
        }
    }
}

/// The traces URL of an OTLP/HTTP `endpoint`: `/v1/traces` appended to a URL without a
/// path (`http://collector:4318`), a URL with a path used as it is.
pub fn traces_url(endpoint: &str) -> anyhow::Result<String> {
    let uri: http::Uri = endpoint.parse().map_err(|e| anyhow::anyhow!("--otlp-endpoint {endpoint:?}: {e}"))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") => {
            anyhow::bail!("--otlp-endpoint {endpoint:?}: https is not supported by this build; use http:// (a local collector or sidecar)")
        }
        _ => anyhow::bail!("--otlp-endpoint {endpoint:?}: expected an http:// URL"),
    }
    if uri.authority().is_none() {
        anyhow::bail!("--otlp-endpoint {endpoint:?}: no host");
    }
    Ok(match uri.path() {
        "" | "/" => format!("{}/v1/traces", endpoint.trim_end_matches('/')),
        _ => endpoint.to_owned(),
    })
}

/// Starts the export thread for `endpoint` (see [`traces_url`]); spans carry
/// `service.name` = `service`.
pub fn start(endpoint: &str, service: &str, metrics: ExportMetrics) -> anyhow::Result<Arc<OtlpSink>> {
    let url = traces_url(endpoint)?;
    let (queue, spans) = mpsc::channel(QUEUE);
    let resource = Resource::builder_empty().with_service_name(service.to_owned()).build();
    let thread_metrics = metrics.clone();
    let target = url.clone();
    // Built on the export thread, inside its own runtime (the caller may be on another
    // runtime's thread, where blocking on a second one is not allowed).
    let (built, answer) = std::sync::mpsc::sync_channel(1);
    std::thread::Builder::new().name("switchyard-otlp".into()).spawn(move || {
        let exporter = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(anyhow::Error::from).and_then(|rt| {
            let _entered = rt.enter();
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_endpoint(target)
                .with_protocol(Protocol::HttpBinary)
                .with_timeout(EXPORT_TIMEOUT)
                .build()?;
            drop(_entered);
            Ok((rt, exporter))
        });
        match exporter {
            Ok((runtime, mut exporter)) => {
                let _ = built.send(Ok(()));
                exporter.set_resource(&resource);
                runtime.block_on(export_loop(spans, exporter, thread_metrics));
            }
            Err(e) => {
                let _ = built.send(Err(e));
            }
        }
    })?;
    answer.recv().map_err(|_| anyhow::anyhow!("the OTLP export thread ended"))??;
    tracing::info!(url, "exporting trace spans over OTLP/HTTP");
    Ok(Arc::new(OtlpSink { queue, metrics }))
}

async fn export_loop(mut queue: mpsc::Receiver<Message>, exporter: opentelemetry_otlp::SpanExporter, metrics: ExportMetrics) {
    let scope = InstrumentationScope::builder("switchyard").with_version(env!("CARGO_PKG_VERSION")).build();
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut flushed = Vec::new();
    loop {
        // The first span (or flush) of a batch, then whatever comes within the interval.
        let Some(first) = queue.recv().await else { break };
        take(first, &mut batch, &mut flushed, &scope);
        let deadline = tokio::time::Instant::now() + EXPORT_EVERY;
        while batch.len() < MAX_BATCH && flushed.is_empty() {
            match tokio::time::timeout_at(deadline, queue.recv()).await {
                Ok(Some(message)) => take(message, &mut batch, &mut flushed, &scope),
                Ok(None) | Err(_) => break,
            }
        }
        if !batch.is_empty() {
            export(&exporter, std::mem::replace(&mut batch, Vec::with_capacity(MAX_BATCH)), &metrics).await;
        }
        for done in flushed.drain(..) {
            let _ = done.send(());
        }
    }
}

fn take(message: Message, batch: &mut Vec<SpanData>, flushed: &mut Vec<oneshot::Sender<()>>, scope: &InstrumentationScope) {
    match message {
        Message::Span(span) => batch.push(span_data(*span, scope)),
        Message::Flush(done) => flushed.push(done),
    }
}

async fn export(exporter: &opentelemetry_otlp::SpanExporter, batch: Vec<SpanData>, metrics: &ExportMetrics) {
    let count = batch.len() as u64;
    match tokio::time::timeout(EXPORT_TIMEOUT, exporter.export(batch)).await {
        Ok(Ok(())) => {
            metrics.exported.inc_by(count);
        }
        failed => {
            metrics.failed.inc();
            metrics.dropped.inc_by(count);
            let why = match failed {
                Ok(Err(e)) => e.to_string(),
                _ => format!("no answer within {EXPORT_TIMEOUT:?}"),
            };
            tracing::warn!(spans = count, error = why, "trace export failed; spans dropped");
        }
    }
}

/// The SDK's span for one record: kind SERVER, named `METHOD NAMESPACE/NAME` (the route
/// bounds the names' cardinality), status Error on a 5xx.
pub fn span_data(span: SpanRecord, scope: &InstrumentationScope) -> SpanData {
    let tracestate = span.tracestate.as_ref().and_then(|v| v.to_str().ok()).and_then(|s| s.parse::<TraceState>().ok());
    let context = SpanContext::new(
        TraceId::from_bytes(span.trace_id),
        SpanId::from_bytes(span.span_id),
        TraceFlags::SAMPLED,
        false,
        tracestate.unwrap_or_default(),
    );
    let name = match &span.route {
        Some(route) => format!("{} {route}", span.method),
        None => span.method.to_string(),
    };
    let status = if span.status >= 500 {
        Status::error(span.error_code.map_or_else(|| format!("HTTP {}", span.status), str::to_owned))
    } else {
        Status::Unset
    };
    SpanData {
        span_context: context,
        parent_span_id: span.parent_id.map_or(SpanId::INVALID, SpanId::from_bytes),
        parent_span_is_remote: span.parent_id.is_some(),
        span_kind: SpanKind::Server,
        name: name.into(),
        start_time: span.start,
        end_time: span.end,
        attributes: attributes(span),
        dropped_attributes_count: 0,
        events: SpanEvents::default(),
        links: SpanLinks::default(),
        status,
        instrumentation_scope: scope.clone(),
    }
}

/// OpenTelemetry's HTTP server names where there is one; `switchyard.*` for the rest.
fn attributes(span: SpanRecord) -> Vec<KeyValue> {
    let mut out = Vec::with_capacity(9);
    out.push(KeyValue::new("http.request.method", span.method.to_string()));
    out.push(KeyValue::new("url.path", span.path));
    out.push(KeyValue::new("http.response.status_code", i64::from(span.status)));
    if let Ok(id) = span.request_id.to_str() {
        out.push(KeyValue::new("switchyard.request_id", id.to_owned()));
    }
    if let Some(route) = span.route {
        out.push(KeyValue::new("switchyard.route", route.to_string()));
    }
    if let Some(backend) = span.backend {
        out.push(KeyValue::new("switchyard.backend", backend));
    }
    if let Some(upstream) = span.upstream {
        out.push(KeyValue::new("switchyard.upstream.address", upstream));
    }
    if let Some(code) = span.error_code {
        out.push(KeyValue::new("switchyard.error_code", code));
        out.push(KeyValue::new("error.type", code));
    }
    out
}

#[cfg(test)]
mod tests;
