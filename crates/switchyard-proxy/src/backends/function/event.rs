//! The request event of the spec's event function contract:
//! `{path, httpMethod, headers, queryParameters, pathParameters, body, isBase64Encoded}`.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;

use base64::Engine as _;
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use serde::Serialize;
use serde::ser::{SerializeMap, Serializer};

/// What the event needs from the client's request that the shaped request no longer
/// holds: the client's (normalized) path, not the rewritten backend path, and the named
/// template parameters. Filled by `shape` only for requests to an event function.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct EventSource {
    pub path: String,
    /// Name and the raw (still percent-encoded) segment, in template order.
    pub path_parameters: Vec<(Arc<str>, String)>,
}

impl EventSource {
    /// `params` are byte ranges of `path` (the router's), `names` the route's template
    /// parameter names in the same order (precomputed per route).
    pub fn new(path: &str, names: &[Arc<str>], params: &[(usize, usize)]) -> Self {
        let path_parameters =
            names.iter().zip(params).filter_map(|(name, &(start, end))| Some((name.clone(), path.get(start..end)?.to_owned()))).collect();
        Self { path: path.to_owned(), path_parameters }
    }
}

/// The parts of the shaped request the event is made of.
pub struct EventInput<'a> {
    /// None only if `shape` was not told the target is an event function (a snapshot
    /// the runtime did not expect): the backend path stands in, without parameters.
    pub source: Option<&'a EventSource>,
    pub method: &'a Method,
    pub headers: &'a HeaderMap,
    /// The shaped backend path and query (AppCode removed, constants added).
    pub path_and_query: &'a str,
    pub body: &'a [u8],
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Event<'a> {
    path: &'a str,
    http_method: &'a str,
    headers: Headers<'a>,
    query_parameters: BTreeMap<Cow<'a, str>, Cow<'a, str>>,
    path_parameters: BTreeMap<&'a str, Cow<'a, str>>,
    body: Cow<'a, str>,
    is_base64_encoded: bool,
}

/// The event's JSON bytes.
pub fn build(input: &EventInput<'_>) -> Vec<u8> {
    let (backend_path, query) = input.path_and_query.split_once('?').unwrap_or((input.path_and_query, ""));
    let (body, is_base64_encoded) = match std::str::from_utf8(input.body) {
        Ok(text) => (Cow::Borrowed(text), false),
        Err(_) => (Cow::Owned(base64::engine::general_purpose::STANDARD.encode(input.body)), true),
    };
    let event = Event {
        path: input.source.map_or(backend_path, |s| s.path.as_str()),
        http_method: input.method.as_str(),
        headers: Headers::all(input.headers),
        query_parameters: query_parameters(query),
        path_parameters: input.source.map(path_parameters).unwrap_or_default(),
        body,
        is_base64_encoded,
    };
    // Serializing borrowed strings and maps with string keys cannot fail.
    serde_json::to_vec(&event).unwrap_or_default()
}

/// Decoded (`%XX` and `+`); a repeated key keeps its first value, as the signature
/// scheme reads parameters.
pub(crate) fn query_parameters(query: &str) -> BTreeMap<Cow<'_, str>, Cow<'_, str>> {
    let mut out = BTreeMap::new();
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        out.entry(key).or_insert(value);
    }
    out
}

/// Percent-decoded; a segment that does not decode to UTF-8 is given as it came.
pub(crate) fn path_parameters(source: &EventSource) -> BTreeMap<&str, Cow<'_, str>> {
    source
        .path_parameters
        .iter()
        .map(|(name, raw)| {
            let value = percent_encoding::percent_decode_str(raw).decode_utf8().unwrap_or(Cow::Borrowed(raw.as_str()));
            (&**name, value)
        })
        .collect()
}

/// Header name → one string: repeated headers joined with `, ` (RFC 9110 §5.3). Framing
/// of the client's connection (`transfer-encoding`) says nothing about the body the event
/// holds, so it is left out, and so is every name in `skip`. Bytes that are not UTF-8
/// (obs-text) become U+FFFD.
pub(crate) struct Headers<'a> {
    pub(crate) map: &'a HeaderMap,
    pub(crate) skip: &'a [HeaderName],
}

impl<'a> Headers<'a> {
    /// Every header but `transfer-encoding`.
    pub(crate) fn all(map: &'a HeaderMap) -> Self {
        Self { map, skip: &[] }
    }

    fn kept(&self, name: &HeaderName) -> bool {
        *name != http::header::TRANSFER_ENCODING && !self.skip.contains(name)
    }
}

impl Serialize for Headers<'_> {
    /// One pass: [`HeaderMap::iter`] yields all the values of a name one after another, so
    /// a name's values are joined as they come, with no lookup per name.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.map.keys_len()))?;
        let mut pending: Option<(&HeaderName, Cow<'_, str>)> = None;
        for (name, value) in self.map.iter().filter(|(name, _)| self.kept(name)) {
            let text = text(value);
            match &mut pending {
                Some((same, joined)) if *same == name => {
                    let joined = joined.to_mut();
                    joined.push_str(", ");
                    joined.push_str(&text);
                }
                _ => {
                    if let Some((done, joined)) = pending.replace((name, text)) {
                        map.serialize_entry(done.as_str(), &joined)?;
                    }
                }
            }
        }
        if let Some((done, joined)) = pending {
            map.serialize_entry(done.as_str(), &joined)?;
        }
        map.end()
    }
}

/// A value as text: as it is when it is UTF-8 (always, but for obs-text), else lossily.
fn text(value: &HeaderValue) -> Cow<'_, str> {
    std::str::from_utf8(value.as_bytes()).map_or_else(|_| String::from_utf8_lossy(value.as_bytes()), Cow::Borrowed)
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;
    use serde_json::{Value, json};

    use super::*;

    fn event(source: Option<&EventSource>, headers: &HeaderMap, path_and_query: &str, body: &[u8]) -> Value {
        let input = EventInput { source, method: &Method::POST, headers, path_and_query, body };
        serde_json::from_slice(&build(&input)).unwrap()
    }

    fn source() -> EventSource {
        let names: Vec<Arc<str>> = vec!["id".into(), "item".into()];
        EventSource::new("/users/42/items/a%20b", &names, &[(7, 9), (16, 21)])
    }

    #[test]
    fn the_event_has_every_field_of_the_contract_with_the_clients_path() {
        let mut headers = HeaderMap::new();
        headers.insert("x-ca-request-id", HeaderValue::from_static("req-1"));
        let seen = event(Some(&source()), &headers, "/v1/rewritten/42?x=1", b"{\"a\":1}");
        assert_eq!(
            seen,
            json!({
                "path": "/users/42/items/a%20b",
                "httpMethod": "POST",
                "headers": {"x-ca-request-id": "req-1"},
                "queryParameters": {"x": "1"},
                "pathParameters": {"id": "42", "item": "a b"},
                "body": "{\"a\":1}",
                "isBase64Encoded": false,
            })
        );
    }

    #[test]
    fn repeated_headers_are_joined_and_transfer_encoding_is_left_out() {
        let mut headers = HeaderMap::new();
        headers.append("accept", HeaderValue::from_static("text/html"));
        headers.append("accept", HeaderValue::from_static("application/json"));
        headers.append("x-one", HeaderValue::from_static("1"));
        headers.append("transfer-encoding", HeaderValue::from_static("chunked"));
        headers.append("x-bytes", HeaderValue::from_bytes(b"caf\xe9").unwrap());
        let seen = event(None, &headers, "/", b"");
        assert_eq!(seen["headers"], json!({"accept": "text/html, application/json", "x-one": "1", "x-bytes": "caf\u{fffd}"}));
    }

    #[test]
    fn query_parameters_are_decoded_and_a_repeated_key_keeps_its_first_value() {
        let seen = event(None, &HeaderMap::new(), "/p?a=1&b=x+y&a=2&c=%E2%9C%93&flag&e=", b"");
        assert_eq!(seen["queryParameters"], json!({"a": "1", "b": "x y", "c": "✓", "flag": "", "e": ""}));
        assert_eq!(event(None, &HeaderMap::new(), "/p", b"")["queryParameters"], json!({}));
    }

    #[test]
    fn a_utf8_body_is_text_and_any_other_body_is_standard_base64() {
        let text = event(None, &HeaderMap::new(), "/", "héllo ✓".as_bytes());
        assert_eq!((text["body"].as_str(), text["isBase64Encoded"].as_bool()), (Some("héllo ✓"), Some(false)));
        let binary = event(None, &HeaderMap::new(), "/", &[0xff, 0x00, 0xfe, b'a']);
        assert_eq!((binary["body"].as_str(), binary["isBase64Encoded"].as_bool()), (Some("/wD+YQ=="), Some(true)));
        let empty = event(None, &HeaderMap::new(), "/", b"");
        assert_eq!((empty["body"].as_str(), empty["isBase64Encoded"].as_bool()), (Some(""), Some(false)));
    }

    #[test]
    fn without_a_source_the_backend_path_stands_in_and_there_are_no_parameters() {
        let seen = event(None, &HeaderMap::new(), "/backend/path?q=1", b"");
        assert_eq!((seen["path"].as_str(), &seen["pathParameters"]), (Some("/backend/path"), &json!({})));
    }

    #[test]
    fn path_parameters_are_taken_from_the_routers_ranges_and_never_panic_on_bad_ones() {
        assert_eq!(source().path_parameters, [("id".into(), "42".into()), ("item".into(), "a%20b".into())]);
        let names: Vec<Arc<str>> = vec!["id".into(), "x".into()];
        let odd = EventSource::new("/é", &names, &[(1, 2), (0, 99)]);
        assert!(odd.path_parameters.is_empty(), "ranges off a char boundary or past the end are skipped: {odd:?}");
        let undecodable = EventSource::new("/%FF", &names[..1], &[(1, 4)]);
        let seen = event(Some(&undecodable), &HeaderMap::new(), "/", b"");
        assert_eq!(seen["pathParameters"], json!({"id": "%FF"}), "not UTF-8 once decoded: given as it came");
    }
}
