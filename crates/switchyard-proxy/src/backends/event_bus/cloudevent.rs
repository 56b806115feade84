//! The CloudEvent a request becomes (CloudEvents 1.0, JSON format), and its id.

use std::borrow::Cow;
use std::collections::BTreeMap;

use base64::Engine as _;
use http::{HeaderMap, HeaderName};
use serde::Serialize;

use super::super::function::event::{Headers, path_parameters, query_parameters};
use crate::error::GatewayError;

/// `Idempotency-Key` (the IETF draft's name), else the Signature scheme's `X-Ca-Nonce`:
/// the client's own id for this request, so a retry publishes once.
const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
const X_CA_NONCE: HeaderName = HeaderName::from_static("x-ca-nonce");
/// The longest client-chosen event id (JetStream keeps each in its duplicate window).
const MAX_EVENT_ID: usize = 128;

/// Headers that never go into an event (they are left out as the event is written): credentials, and the signature scheme's
/// signature (a replayable credential for this one request). Hop-by-hop headers were
/// already removed when the request was shaped; framing says nothing about the body.
static NOT_IN_EVENTS: [HeaderName; 5] = [
    http::header::AUTHORIZATION,
    http::header::PROXY_AUTHORIZATION,
    http::header::COOKIE,
    HeaderName::from_static("x-ca-signature"),
    http::header::TRANSFER_ENCODING,
];

/// The event id: the client's `Idempotency-Key` or `X-Ca-Nonce` when it sent one (1-128
/// visible ASCII characters, else a 400), otherwise a random UUID.
pub fn event_id(headers: &HeaderMap, random: &ring::rand::SystemRandom) -> Result<String, GatewayError> {
    let chosen =
        headers.get(IDEMPOTENCY_KEY).map(|v| ("Idempotency-Key", v)).or_else(|| headers.get(X_CA_NONCE).map(|v| ("X-Ca-Nonce", v)));
    match chosen {
        Some((name, value)) => {
            let id = value.to_str().ok().filter(|id| (1..=MAX_EVENT_ID).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_graphic()));
            id.map(str::to_owned).ok_or(GatewayError::BadEventId { header: name })
        }
        None => crate::random_id::uuid_v4(random).ok_or(GatewayError::NoRandomness),
    }
}

/// The event's `time`: now, in RFC 3339 to the second (`2026-12-02T01:02:03Z`).
pub fn now_rfc3339() -> Rfc3339 {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    Rfc3339::at(secs)
}

/// `YYYY-MM-DDTHH:MM:SSZ`, written in place (no formatter, no allocation: one per event).
pub struct Rfc3339([u8; 20]);

impl Rfc3339 {
    /// The UTC time `secs` after the Unix epoch (years up to 9999).
    fn at(secs: u64) -> Self {
        let (days, rest) = (secs / 86_400, secs % 86_400);
        let (year, month, day) = switchyard_compile::calendar::civil_from_epoch_days(days);
        let mut text = *b"0000-00-00T00:00:00Z";
        let mut put = |at: usize, value: u64, digits: usize| {
            let mut value = value;
            for i in (0..digits).rev() {
                text[at + i] = b'0' + (value % 10) as u8;
                value /= 10;
            }
        };
        put(0, year.min(9999), 4);
        put(5, month, 2);
        put(8, day, 2);
        put(11, rest / 3600, 2);
        put(14, rest / 60 % 60, 2);
        put(17, rest % 60, 2);
        Self(text)
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("digits and separators are ASCII")
    }
}

/// What the resource says of every event.
pub struct Attributes<'a> {
    pub id: &'a str,
    pub source: &'a str,
    pub event_type: &'a str,
    /// RFC 3339.
    pub time: &'a str,
}

/// The request, as the event's `data` (spec: "Functions and the event bus"): the same
/// parts an event function's event is made of.
pub use super::super::function::event::EventInput as RequestData;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Data<'a> {
    method: &'a str,
    path: &'a str,
    path_parameters: BTreeMap<&'a str, Cow<'a, str>>,
    query: BTreeMap<Cow<'a, str>, Cow<'a, str>>,
    headers: Headers<'a>,
    body: Cow<'a, str>,
    body_base64: bool,
}

#[derive(Serialize)]
struct Envelope<'a> {
    specversion: &'static str,
    id: &'a str,
    source: &'a str,
    #[serde(rename = "type")]
    event_type: &'a str,
    time: &'a str,
    datacontenttype: &'static str,
    subject: &'a str,
    data: &'a Data<'a>,
}

fn data<'a>(request: &'a RequestData<'a>) -> Data<'a> {
    let (backend_path, query) = request.path_and_query.split_once('?').unwrap_or((request.path_and_query, ""));
    let (body, body_base64) = match std::str::from_utf8(request.body) {
        Ok(text) => (Cow::Borrowed(text), false),
        Err(_) => (Cow::Owned(base64::engine::general_purpose::STANDARD.encode(request.body)), true),
    };
    Data {
        method: request.method.as_str(),
        path: request.source.map_or(backend_path, |s| s.path.as_str()),
        path_parameters: request.source.map(path_parameters).unwrap_or_default(),
        query: query_parameters(query),
        headers: Headers { map: request.headers, skip: &NOT_IN_EVENTS },
        body,
        body_base64,
    }
}

/// The data alone, as JSON (the body of a binary-mode HTTP event).
pub fn data_json(request: &RequestData<'_>) -> Vec<u8> {
    serde_json::to_vec(&data(request)).unwrap_or_default()
}

/// The whole event in the JSON format (`application/cloudevents+json`), with `subject`
/// the client's path.
pub fn structured(attributes: &Attributes<'_>, request: &RequestData<'_>) -> Vec<u8> {
    let data = data(request);
    let envelope = Envelope {
        specversion: "1.0",
        id: attributes.id,
        source: attributes.source,
        event_type: attributes.event_type,
        time: attributes.time,
        datacontenttype: "application/json",
        subject: data.path,
        data: &data,
    };
    // Borrowed strings and maps with string keys: serializing cannot fail.
    serde_json::to_vec(&envelope).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use http::{HeaderValue, Method};
    use serde_json::{Value, json};

    use super::super::super::function::event::EventSource;
    use super::*;

    fn request<'a>(source: Option<&'a EventSource>, headers: &'a HeaderMap, path_and_query: &'a str, body: &'a [u8]) -> RequestData<'a> {
        RequestData { source, method: &Method::POST, headers, path_and_query, body }
    }

    #[test]
    fn the_event_is_a_cloudevent_with_the_request_as_data() {
        let names: Vec<std::sync::Arc<str>> = vec!["id".into()];
        let source = EventSource::new("/orders/42", &names, &[(8, 10)]);
        let mut headers = HeaderMap::new();
        headers.insert("content-type", HeaderValue::from_static("application/json"));
        let attributes =
            Attributes { id: "evt-1", source: "/shop/orders", event_type: "com.example.order.created", time: "2026-12-02T01:02:03Z" };
        let event: Value =
            serde_json::from_slice(&structured(&attributes, &request(Some(&source), &headers, "/x?a=1&a=2", b"{\"n\":1}"))).unwrap();
        assert_eq!(
            event,
            json!({
                "specversion": "1.0", "id": "evt-1", "source": "/shop/orders", "type": "com.example.order.created",
                "time": "2026-12-02T01:02:03Z", "datacontenttype": "application/json", "subject": "/orders/42",
                "data": {"method": "POST", "path": "/orders/42", "pathParameters": {"id": "42"}, "query": {"a": "1"},
                         "headers": {"content-type": "application/json"}, "body": "{\"n\":1}", "bodyBase64": false},
            })
        );
        let binary: Value = serde_json::from_slice(&data_json(&request(None, &HeaderMap::new(), "/p", &[0xff, 0x01]))).unwrap();
        assert_eq!((binary["body"].as_str(), binary["bodyBase64"].as_bool()), (Some("/wE="), Some(true)));
    }

    #[test]
    fn credentials_never_go_into_an_event() {
        let mut headers = HeaderMap::new();
        for (name, value) in [
            ("authorization", "Bearer t"),
            ("cookie", "s=1"),
            ("x-ca-signature", "sig"),
            ("proxy-authorization", "p"),
            ("x-ca-key", "204"),
            ("transfer-encoding", "chunked"),
        ] {
            headers.insert(HeaderName::from_static(name), HeaderValue::from_static(value));
        }
        headers.append("x-tag", HeaderValue::from_static("a"));
        headers.append("x-tag", HeaderValue::from_static("b"));
        let data: Value = serde_json::from_slice(&data_json(&request(None, &headers, "/p", b""))).unwrap();
        assert_eq!(
            data["headers"],
            json!({"x-ca-key": "204", "x-tag": "a, b"}),
            "the app key names the caller; it is no secret; repeats are joined"
        );
    }

    #[test]
    fn event_times_are_rfc_3339_to_the_second_as_the_calendar_says() {
        let at = |secs: u64| Rfc3339::at(secs).as_str().to_owned();
        assert_eq!(at(0), "1970-01-01T00:00:00Z");
        assert_eq!(at(951_782_400), "2000-02-29T00:00:00Z", "a leap day of a century divisible by 400");
        assert_eq!(at(1_798_765_323), "2027-01-01T01:02:03Z");
        // Against jiff (what the rest of the gateway formats times with), a day and a bit apart.
        for secs in (0..4_102_444_800u64).step_by(86_400 * 37 + 3_671) {
            let time = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs);
            assert_eq!(at(secs), switchyard_compile::discovered::rfc3339(time), "{secs}");
        }
    }

    #[test]
    fn the_id_is_the_clients_idempotency_key_or_nonce_else_random() {
        let random = ring::rand::SystemRandom::new();
        let mut headers = HeaderMap::new();
        let generated = event_id(&headers, &random).unwrap();
        assert_eq!((generated.len(), &generated[14..15]), (36, "4"), "{generated}");
        assert_ne!(generated, event_id(&headers, &random).unwrap());
        headers.insert(X_CA_NONCE, HeaderValue::from_static("nonce-1"));
        assert_eq!(event_id(&headers, &random).unwrap(), "nonce-1");
        headers.insert(IDEMPOTENCY_KEY, HeaderValue::from_static("order-7"));
        assert_eq!(event_id(&headers, &random).unwrap(), "order-7", "Idempotency-Key comes first");
        headers.insert(IDEMPOTENCY_KEY, HeaderValue::from_static("has space"));
        assert_eq!(event_id(&headers, &random).unwrap_err().code(), "A400EK");
        headers.insert(IDEMPOTENCY_KEY, HeaderValue::from_str(&"k".repeat(129)).unwrap());
        assert_eq!(event_id(&headers, &random).unwrap_err().code(), "A400EK");
    }
}
