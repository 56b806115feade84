//! `eventBus`: each request becomes a CloudEvent (see [`cloudevent`]) published to a NATS
//! JetStream subject or POSTed to a CloudEvents HTTP sink. The client gets `202
//! {"eventId": ...}` only once the bus acknowledged the event (the JetStream publish ack,
//! a 2xx from the sink); anything else is a 503 with its own code within the route's
//! deadline, so no event is ever reported accepted that the bus did not take.
//!
//! The event id is the client's `Idempotency-Key` (else `X-Ca-Nonce`) when it sent one,
//! and JetStream's `Nats-Msg-Id`: a retried request is stored once and answered with the
//! same id.

pub(super) mod cloudevent;

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Response, StatusCode};
use switchyard_compile::snapshot::{Backend as BackendSpec, CloudEventsMode, EventSink, NatsTarget};
use switchyard_nats::{PublishError, Publisher};

use self::cloudevent::{Attributes, RequestData};
use super::http::{HttpBackend, collect};
use super::{Backend, BuildContext, CallContext, ShapedRequest};
use crate::body::ResponseBody;
use crate::error::GatewayError;
use crate::metrics::EventBusCounters;
use crate::request_body::RequestBody;

pub struct EventBusBackend {
    id: String,
    sink: Sink,
    source: String,
    event_type: String,
    random: ring::rand::SystemRandom,
    counters: EventBusCounters,
}

enum Sink {
    /// Set once the connection task has made the client (at once, in the background).
    Nats { publisher: Arc<OnceLock<Publisher>>, subject: String },
    /// Boxed: the `http` runtime is large next to the NATS handle.
    Http { http: Box<HttpBackend>, mode: CloudEventsMode },
}

impl EventBusBackend {
    pub fn build(spec: &BackendSpec, sink: &EventSink, source: &str, event_type: &str, ctx: &BuildContext) -> Result<Self, String> {
        let sink = match sink {
            EventSink::Nats { target, subject } => Sink::Nats { publisher: connect(target, &spec.id), subject: subject.clone() },
            EventSink::Http { endpoints, mode } => Sink::Http { http: Box::new(HttpBackend::build(spec, endpoints, ctx)?), mode: *mode },
        };
        Ok(Self {
            id: spec.id.clone(),
            sink,
            source: source.to_owned(),
            event_type: event_type.to_owned(),
            random: ring::rand::SystemRandom::new(),
            counters: ctx.metrics.event_bus(&spec.id),
        })
    }

    pub fn health_report(&self) -> Option<serde_json::Value> {
        match &self.sink {
            Sink::Nats { publisher, .. } => {
                let connected = publisher.get().is_some_and(Publisher::is_connected);
                Some(serde_json::json!({"backend": self.id, "bus": "nats", "connected": connected}))
            }
            Sink::Http { http, .. } => http.health_report(),
        }
    }
}

/// Starts the backend's one connection (shared by every worker) on the runtime that
/// builds it; the client is in place within a poll, and reconnects on its own.
fn connect(target: &NatsTarget, id: &str) -> Arc<OnceLock<Publisher>> {
    let slot = Arc::new(OnceLock::new());
    let Ok(runtime) = tokio::runtime::Handle::try_current() else { return slot };
    let (target, name, filled) = (target.clone(), format!("switchyard {id}"), slot.clone());
    runtime.spawn(async move {
        match Publisher::connect(&target, &name).await {
            Ok(publisher) => {
                let _ = filled.set(publisher);
            }
            Err(why) => tracing::warn!(backend = %name, error = %why, "event bus connection cannot start"),
        }
    });
    slot
}

impl Backend for EventBusBackend {
    async fn serve(&self, request: ShapedRequest, ctx: &CallContext<'_>) -> Result<Response<ResponseBody>, GatewayError> {
        let started = Instant::now();
        let outcome = self.publish(request, ctx).await;
        self.counters.observe(outcome.is_ok(), started.elapsed());
        outcome.map(|id| accepted(&id))
    }
}

impl EventBusBackend {
    /// Publishes the request's event; Ok is the event id the bus acknowledged.
    async fn publish(&self, request: ShapedRequest, ctx: &CallContext<'_>) -> Result<String, GatewayError> {
        let id = cloudevent::event_id(&request.headers, &self.random)?;
        let body = collect(request.body, ctx).await?;
        let data = RequestData {
            source: request.event.as_deref(),
            method: &request.method,
            headers: &request.headers,
            path_and_query: &request.path_and_query,
            body: &body,
        };
        let time = cloudevent::now_rfc3339();
        let attributes = Attributes { id: &id, source: &self.source, event_type: &self.event_type, time: time.as_str() };
        match &self.sink {
            Sink::Nats { publisher, subject } => {
                let event = Bytes::from(cloudevent::structured(&attributes, &data));
                self.to_nats(publisher.get(), subject, &id, event, ctx).await?;
            }
            // Boxed: the `http` runtime's future would otherwise make every NATS publish's
            // future as large as an HTTP call's (it is moved on every request).
            Sink::Http { http, mode } => Box::pin(self.to_http(http, *mode, &attributes, &data, request.client_ip, ctx)).await?,
        }
        Ok(id)
    }

    async fn to_nats(
        &self,
        publisher: Option<&Publisher>,
        subject: &str,
        id: &str,
        event: Bytes,
        ctx: &CallContext<'_>,
    ) -> Result<(), GatewayError> {
        let backend = || self.id.clone();
        let publisher =
            publisher.ok_or_else(|| GatewayError::EventBusUnavailable { backend: backend(), why: "not connected yet".into() })?;
        let published = tokio::time::timeout_at(ctx.deadline.into(), publisher.publish(subject, id, event)).await;
        match published {
            Err(_) => Err(GatewayError::EventBusTimeout { backend: backend(), timeout_ms: ctx.budget.as_millis() as u64 }),
            Ok(Ok(ack)) => {
                tracing::debug!(backend = %self.id, event_id = id, stream = %ack.stream, sequence = ack.sequence, duplicate = ack.duplicate, "event acknowledged");
                Ok(())
            }
            Ok(Err(PublishError::TooLarge)) => Err(GatewayError::EventTooLarge { backend: backend() }),
            Ok(Err(PublishError::TimedOut)) => {
                Err(GatewayError::EventBusTimeout { backend: backend(), timeout_ms: switchyard_nats::ACK_TIMEOUT.as_millis() as u64 })
            }
            Ok(Err(PublishError::NotConnected)) => {
                Err(GatewayError::EventBusUnavailable { backend: backend(), why: "not connected".into() })
            }
            Ok(Err(refused @ (PublishError::NoStream | PublishError::Refused(_)))) => {
                Err(GatewayError::EventBusRefused { backend: backend(), why: refused.to_string() })
            }
        }
    }

    /// POSTs the event to the sink through the `http` runtime (timeouts, retries on
    /// connect failure, TLS, egress policy); a 2xx is the acknowledgement.
    async fn to_http(
        &self,
        http: &HttpBackend,
        mode: CloudEventsMode,
        attributes: &Attributes<'_>,
        data: &RequestData<'_>,
        client_ip: std::net::IpAddr,
        ctx: &CallContext<'_>,
    ) -> Result<(), GatewayError> {
        let mut headers = HeaderMap::new();
        let body = match mode {
            CloudEventsMode::Structured => {
                headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/cloudevents+json; charset=utf-8"));
                cloudevent::structured(attributes, data)
            }
            CloudEventsMode::Binary => {
                binary_headers(&mut headers, attributes, data)?;
                cloudevent::data_json(data)
            }
        };
        let sink_request = ShapedRequest {
            method: Method::POST,
            headers,
            path_and_query: String::new(),
            body: RequestBody::full(Bytes::from(body)),
            host: None,
            client_ip,
            event: None,
            upgrade: None,
        };
        let unavailable = |e: GatewayError| match e {
            GatewayError::BackendTimeout { timeout_ms, .. } => GatewayError::EventBusTimeout { backend: self.id.clone(), timeout_ms },
            other => GatewayError::EventBusUnavailable { backend: self.id.clone(), why: other.to_string() },
        };
        let response = http.serve(sink_request, ctx).await.map_err(unavailable)?;
        let status = response.status();
        // The sink's answer is read no further: a 2xx is all the acknowledgement there is.
        drop(response);
        if status.is_success() {
            Ok(())
        } else {
            Err(GatewayError::EventBusRefused { backend: self.id.clone(), why: format!("the sink answered {status}") })
        }
    }
}

/// Binary mode: the attributes as `ce-` headers, the data's type as `content-type`.
fn binary_headers(headers: &mut HeaderMap, attributes: &Attributes<'_>, data: &RequestData<'_>) -> Result<(), GatewayError> {
    let subject = data.source.map_or_else(|| data.path_and_query.split('?').next().unwrap_or(""), |s| s.path.as_str());
    let pairs = [
        ("ce-specversion", "1.0"),
        ("ce-id", attributes.id),
        ("ce-source", attributes.source),
        ("ce-type", attributes.event_type),
        ("ce-time", attributes.time),
        ("ce-subject", subject),
    ];
    for (name, value) in pairs {
        // Compile checked source and type; the id is checked visible ASCII; a path is too.
        let value = HeaderValue::from_str(value).map_err(|_| GatewayError::BadRequest(format!("{name} cannot be a header value")))?;
        headers.insert(HeaderName::from_static(name), value);
    }
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(())
}

/// `202 {"eventId": ...}`.
fn accepted(id: &str) -> Response<ResponseBody> {
    let mut response = Response::new(ResponseBody::full(Bytes::from(accepted_body(id))));
    *response.status_mut() = StatusCode::ACCEPTED;
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// `{"eventId":"<id>"}`, written directly: an id is visible ASCII (a client's is checked,
/// a generated one is a UUID), so `"` and `\` are all there is to escape.
fn accepted_body(id: &str) -> Vec<u8> {
    debug_assert!(id.bytes().all(|b| b.is_ascii_graphic()));
    let mut body = Vec::with_capacity(id.len() + 16);
    body.extend_from_slice(br#"{"eventId":""#);
    for &b in id.as_bytes() {
        if matches!(b, b'"' | b'\\') {
            body.push(b'\\');
        }
        body.push(b);
    }
    body.extend_from_slice(br#""}"#);
    body
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_acceptance_is_json_with_the_id_escaped() {
        for id in ["1b4e28ba-2fa1-4d2b-883f-0016d3cca427", r#"a"b\c"#, "{}"] {
            let body: serde_json::Value = serde_json::from_slice(&super::accepted_body(id)).unwrap();
            assert_eq!(body, serde_json::json!({"eventId": id}));
        }
    }
}
