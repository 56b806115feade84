//! The admin and metrics listeners. What they show comes from an [`AdminView`], so the
//! proxy, the controller and standalone (both in one process) share one implementation.
//!
//! - The admin listener ([`Scope::Admin`], loopback by default) serves `/healthz`,
//!   `/readyz`, `/metrics`, `/config_dump` and `/status`.
//! - The metrics listener ([`Scope::Metrics`], the one a Service exposes and Prometheus
//!   scrapes) serves only `/metrics`, `/healthz` and `/readyz`; anything else is a 404.
//!
//! Secrets never leave through either: a view hands over the snapshot and the statuses
//! as data, and [`config_dump`] / [`status_json`] are the only ways they become bytes,
//! both through [`redact`]. A view cannot write the dump itself.

use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use prometheus_client::registry::Registry;
use serde_json::Value;
use switchyard_compile::snapshot::Snapshot;

/// What replaces a secret in `/config_dump` and `/status`.
pub const REDACTED: &str = "<redacted>";

/// What the admin endpoints report.
pub trait AdminView: Send + Sync + 'static {
    /// Ready to take traffic (a snapshot is loaded).
    fn ready(&self) -> bool;
    /// The live snapshot; `/config_dump` shows it through [`config_dump`].
    fn snapshot(&self) -> Option<Arc<Snapshot>>;
    /// Live endpoint health of the backends that check it (`endpointHealth`).
    fn endpoint_health(&self) -> Vec<Value> {
        Vec::new()
    }
    /// Every resource's conditions; `/status` shows them through [`status_json`].
    fn status(&self) -> Value;
    /// The registry watches this process runs, with what each discovered (`registries`).
    fn registries(&self) -> Vec<Value> {
        Vec::new()
    }
}

/// Which endpoints a listener serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Everything: health, metrics, `/config_dump`, `/status`.
    Admin,
    /// Only `/metrics`, `/healthz`, `/readyz`.
    Metrics,
}

/// Answers one admin request.
pub fn respond<B>(view: &dyn AdminView, registry: &Registry, scope: Scope, request: &Request<B>) -> Response<Full<Bytes>> {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return plain(StatusCode::METHOD_NOT_ALLOWED, "admin endpoints answer GET only\n");
    }
    match (scope, request.uri().path()) {
        (_, "/healthz") => plain(StatusCode::OK, "ok\n"),
        (_, "/readyz") if view.ready() => plain(StatusCode::OK, "ready\n"),
        (_, "/readyz") => plain(StatusCode::SERVICE_UNAVAILABLE, "no routing snapshot loaded yet\n"),
        (_, "/metrics") => metrics(registry),
        (Scope::Admin, "/config_dump") => json(config_dump(view.snapshot().as_deref(), view.endpoint_health(), view.registries())),
        (Scope::Admin, "/status") => json(status_json(view.status())),
        (Scope::Admin, _) => plain(StatusCode::NOT_FOUND, "admin endpoints: /healthz /readyz /metrics /config_dump /status\n"),
        (Scope::Metrics, _) => plain(StatusCode::NOT_FOUND, "metrics endpoints: /metrics /healthz /readyz\n"),
    }
}

/// A handler for [`switchyard_http::serve`].
pub fn handler(
    view: Arc<dyn AdminView>,
    registry: Arc<Registry>,
    scope: Scope,
) -> impl Fn(Request<hyper::body::Incoming>, std::net::SocketAddr) -> std::future::Ready<Response<Full<Bytes>>> + Clone + Send + Sync + 'static
{
    move |request, _| std::future::ready(respond(&*view, &registry, scope, &request))
}

/// `/config_dump`: the snapshot (`null` before the first one), secrets redacted, plus
/// `endpointHealth` when any backend checks health.
pub fn config_dump(snapshot: Option<&Snapshot>, endpoint_health: Vec<Value>, registries: Vec<Value>) -> Bytes {
    let mut dump = serde_json::to_value(snapshot).expect("snapshots serialize");
    if let Value::Object(fields) = &mut dump {
        for (name, section) in [("endpointHealth", endpoint_health), ("registries", registries)] {
            if !section.is_empty() {
                fields.insert(name.into(), Value::Array(section));
            }
        }
    }
    redact(&mut dump);
    Bytes::from(serde_json::to_vec(&dump).expect("JSON values serialize"))
}

/// `/status`: the statuses, secrets redacted.
pub fn status_json(mut status: Value) -> Bytes {
    redact(&mut status);
    Bytes::from(serde_json::to_vec_pretty(&status).expect("JSON values serialize"))
}

/// Replaces every secret in `value` with [`REDACTED`], by the shape of the data rather
/// than by a list of today's fields, so a secret added to the snapshot later is caught
/// by its name:
/// - a field whose name says it holds a secret (`*secret*`, `*token*`, `*password*`,
///   `*credential*`, `*privateKey*`, `*apiKey*`, `*appCode*`, in any case, `_` or not): its
///   whole value, unless the field is a reference (`*Ref`: names of Secrets, not their
///   content), which is walked like any other object;
/// - a name/value pair (`{"name": N, "value": V}` or `[N, V]`: headers and query
///   parameters the gateway adds or matches) whose name is a credential (`Authorization`,
///   `Cookie`, `X-Api-Key`, or a name as above): its value.
///
/// Empty strings and nulls stay as they are (an empty app code is worth seeing; it is no
/// secret). `appKey` is an identifier and stays.
pub fn redact(value: &mut Value) {
    match value {
        Value::Object(fields) => {
            let pair_is_secret = matches!(fields.get("name"), Some(Value::String(name)) if secret_name(name) || credential_header(name));
            for (key, field) in fields.iter_mut() {
                if (secret_name(key) && !is_reference(key)) || (pair_is_secret && key == "value") {
                    hide(field);
                } else {
                    redact(field);
                }
            }
        }
        Value::Array(items) => {
            if let [Value::String(name), secret @ Value::String(_)] = items.as_mut_slice()
                && (secret_name(name) || credential_header(name))
            {
                hide(secret);
                return;
            }
            items.iter_mut().for_each(redact);
        }
        _ => {}
    }
}

fn hide(value: &mut Value) {
    match value {
        Value::Null => {}
        Value::String(s) if s.is_empty() => {}
        _ => *value = Value::String(REDACTED.to_owned()),
    }
}

/// `app_secret`, `appSecret`, `tokenFile`, `X-Auth-Token`, `client_secret`, ...
fn secret_name(name: &str) -> bool {
    const WORDS: [&str; 8] = ["secret", "token", "password", "passwd", "credential", "privatekey", "apikey", "appcode"];
    let folded: String = name.chars().filter(|c| c.is_ascii_alphanumeric()).map(|c| c.to_ascii_lowercase()).collect();
    WORDS.iter().any(|w| folded.contains(w))
}

fn is_reference(name: &str) -> bool {
    name.ends_with("Ref") || name.ends_with("_ref") || name.ends_with("Refs") || name.ends_with("_refs")
}

/// Header names that carry credentials whatever they are called.
fn credential_header(name: &str) -> bool {
    ["authorization", "proxy-authorization", "cookie", "set-cookie", "x-ca-signature"].iter().any(|h| name.eq_ignore_ascii_case(h))
}

fn metrics(registry: &Registry) -> Response<Full<Bytes>> {
    let mut text = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut text, registry) {
        return plain(StatusCode::INTERNAL_SERVER_ERROR, &format!("encoding metrics failed: {e}\n"));
    }
    let mut response = Response::new(Full::new(Bytes::from(text)));
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, header::HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"));
    response
}

fn json(body: Bytes) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body));
    response.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static("application/json"));
    response
}

fn plain(status: StatusCode, text: &str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::copy_from_slice(text.as_bytes())));
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static("text/plain; charset=utf-8"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use switchyard_compile::snapshot::{App, Backend, BackendKind};

    const SECRETS: [&str; 4] = ["s3cr3t-value", "c0de-value", "bearer-value", "cookie-value"];

    fn snapshot() -> Snapshot {
        let mut snapshot = Snapshot::default();
        snapshot.apps.push(App {
            namespace: "shop".into(),
            name: "partner".into(),
            app_key: "partner-key".into(),
            app_secret: SECRETS[0].into(),
            app_code: SECRETS[1].into(),
        });
        snapshot.apps.push(App {
            namespace: "shop".into(),
            name: "codeless".into(),
            app_key: "k2".into(),
            app_secret: String::new(),
            app_code: String::new(),
        });
        let kind = BackendKind::Mock {
            status: 201,
            headers: vec![("set-cookie".into(), SECRETS[3].into()), ("content-type".into(), "text/plain".into())],
            body: "hello".into(),
        };
        snapshot.backends.push(Backend::with_defaults("shop/mock", kind));
        snapshot
    }

    #[test]
    fn the_dump_shows_app_keys_but_never_app_secrets_or_codes() {
        let dump = config_dump(Some(&snapshot()), Vec::new(), Vec::new());
        let text = String::from_utf8_lossy(&dump);
        for secret in SECRETS {
            assert!(!text.contains(secret), "{secret} leaked: {text}");
        }
        let dump: Value = serde_json::from_slice(&dump).unwrap();
        let app = &dump["apps"][0];
        assert_eq!(app["app_key"], "partner-key");
        assert_eq!((app["app_secret"].as_str(), app["app_code"].as_str()), (Some(REDACTED), Some(REDACTED)));
        assert_eq!(dump["apps"][1]["app_code"], "", "an empty code is no secret and worth seeing");
        assert!(text_of(&dump).contains("text/plain"), "ordinary headers stay: {dump}");
        assert!(text_of(&dump).contains("201"), "statusCode is not a code to hide: {dump}");
    }

    #[test]
    fn a_secret_field_added_later_is_caught_by_its_name() {
        let mut value = json!({
            "backends": [{"model": {"url": "http://m", "apiToken": "t", "tokenSecretRef": {"name": "eas", "key": "token"}}}],
            "registry": {"credentials": {"username": "u", "password": "p"}, "client_secret": "x", "tlsPrivateKey": "-----BEGIN"},
            "routes": [{"add_headers": [["Authorization", "Basic abc"], ["x-trace", "on"]],
                        "headers": [{"name": "X-Api-Key", "value": "k"}, {"name": "accept", "value": "json"}],
                        "add_query": [["access_token", "q"]]}],
        });
        redact(&mut value);
        let want = json!({
            "backends": [{"model": {"url": "http://m", "apiToken": REDACTED, "tokenSecretRef": {"name": "eas", "key": "token"}}}],
            "registry": {"credentials": REDACTED, "client_secret": REDACTED, "tlsPrivateKey": REDACTED},
            "routes": [{"add_headers": [["Authorization", REDACTED], ["x-trace", "on"]],
                        "headers": [{"name": "X-Api-Key", "value": REDACTED}, {"name": "accept", "value": "json"}],
                        "add_query": [["access_token", REDACTED]]}],
        });
        assert_eq!(value, want);
    }

    #[test]
    fn no_snapshot_dumps_null_and_endpoint_health_is_added() {
        assert_eq!(&config_dump(None, Vec::new(), Vec::new())[..], b"null");
        let dump: Value = serde_json::from_slice(&config_dump(Some(&snapshot()), vec![json!({"healthy": true})], Vec::new())).unwrap();
        assert_eq!(dump["endpointHealth"][0]["healthy"], true);
    }

    struct View;
    impl AdminView for View {
        fn ready(&self) -> bool {
            true
        }
        fn snapshot(&self) -> Option<Arc<Snapshot>> {
            Some(Arc::new(snapshot()))
        }
        fn status(&self) -> Value {
            json!({"resources": [], "token": "status-token"})
        }
    }

    #[test]
    fn the_metrics_scope_answers_health_and_metrics_only() {
        let registry = Registry::default();
        let get = |scope, path: &str| respond(&View, &registry, scope, &Request::get(path).body(()).unwrap()).status();
        for path in ["/metrics", "/healthz", "/readyz"] {
            assert_eq!(get(Scope::Metrics, path), StatusCode::OK, "{path}");
        }
        for path in ["/config_dump", "/status", "/"] {
            assert_eq!(get(Scope::Metrics, path), StatusCode::NOT_FOUND, "{path}");
        }
        assert_eq!(get(Scope::Admin, "/config_dump"), StatusCode::OK);
        assert_eq!(get(Scope::Admin, "/status"), StatusCode::OK);
        let status = status_json(View.status());
        assert!(!String::from_utf8_lossy(&status).contains("status-token"));
    }

    fn text_of(value: &Value) -> String {
        value.to_string()
    }
}
