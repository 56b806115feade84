//! `GET /v1/snapshot[?after=VERSION]`, behind `Authorization: Bearer <token>`.
//!
//! Without `after`, or when the current version differs from it, the snapshot is
//! returned at once. Otherwise the request is held until a new version is published or
//! the hold time passes (304). "Differs" rather than "is newer": a restarted controller
//! may number from elsewhere, and a proxy must still pick its snapshot up.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::Full;
use prometheus_client::metrics::gauge::Gauge;

use crate::publisher::Publisher;

/// How long a long-poll is held before answering 304.
pub const DEFAULT_HOLD: Duration = Duration::from_secs(30);

pub struct SnapshotServer {
    publisher: Arc<Publisher>,
    token: String,
    hold: Duration,
    /// Long-polls open now: roughly, the proxies connected.
    pub waiting: Gauge,
}

impl SnapshotServer {
    pub fn new(publisher: Arc<Publisher>, token: String, hold: Duration) -> Self {
        Self { publisher, token, hold, waiting: Gauge::default() }
    }

    pub async fn respond<B>(&self, request: Request<B>) -> Response<Full<Bytes>> {
        if request.uri().path() != "/v1/snapshot" {
            return text(StatusCode::NOT_FOUND, "the snapshot endpoint is GET /v1/snapshot");
        }
        if !self.authorized(request.headers()) {
            return text(StatusCode::UNAUTHORIZED, "send Authorization: Bearer <token>");
        }
        let after = match parse_after(request.uri().query()) {
            Ok(after) => after,
            Err(e) => return text(StatusCode::BAD_REQUEST, &e),
        };
        let mut updates = self.publisher.subscribe();
        let _waiting = GaugeGuard::new(&self.waiting);
        let wait = async {
            loop {
                let current = updates.borrow_and_update().clone();
                if let Some(published) = current.filter(|p| Some(p.snapshot.version) != after) {
                    return Some(published);
                }
                if updates.changed().await.is_err() {
                    return None;
                }
            }
        };
        match tokio::time::timeout(self.hold, wait).await {
            Ok(Some(published)) => {
                let mut response = Response::new(Full::new(published.json.clone()));
                let headers = response.headers_mut();
                headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
                headers.insert("x-switchyard-version", HeaderValue::from(published.snapshot.version));
                response
            }
            Ok(None) => text(StatusCode::SERVICE_UNAVAILABLE, "the controller is shutting down"),
            Err(_) => {
                let mut response = Response::new(Full::new(Bytes::new()));
                *response.status_mut() = StatusCode::NOT_MODIFIED;
                response
            }
        }
    }

    fn authorized(&self, headers: &http::HeaderMap) -> bool {
        let presented =
            headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer ")).unwrap_or("");
        !self.token.is_empty() && switchyard_http::constant_time_eq(presented.as_bytes(), self.token.as_bytes())
    }
}

fn parse_after(query: Option<&str>) -> Result<Option<u64>, String> {
    let Some(query) = query else { return Ok(None) };
    match form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k == "after") {
        Some((_, v)) => v.parse().map(Some).map_err(|_| format!("after={v} is not a version number")),
        None => Ok(None),
    }
}

fn text(status: StatusCode, message: &str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(format!("{message}\n"))));
    *response.status_mut() = status;
    response
}

/// Counts a long-poll for as long as it is open.
struct GaugeGuard<'a>(&'a Gauge);

impl<'a> GaugeGuard<'a> {
    fn new(gauge: &'a Gauge) -> Self {
        gauge.inc();
        Self(gauge)
    }
}

impl Drop for GaugeGuard<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_compile::snapshot::Snapshot;

    fn server(hold_ms: u64) -> (Arc<Publisher>, SnapshotServer) {
        let publisher = Arc::new(Publisher::starting_at(1));
        let server = SnapshotServer::new(publisher.clone(), "t0ken".into(), Duration::from_millis(hold_ms));
        (publisher, server)
    }

    fn get(uri: &str, token: Option<&str>) -> Request<()> {
        let mut builder = Request::get(uri);
        if let Some(token) = token {
            builder = builder.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        builder.body(()).unwrap()
    }

    fn with_route(id: &str) -> Snapshot {
        let mut s = Snapshot::default();
        s.apps.push(switchyard_compile::snapshot::App {
            namespace: "d".into(),
            name: id.into(),
            app_key: String::new(),
            app_secret: String::new(),
            app_code: String::new(),
        });
        s
    }

    #[tokio::test]
    async fn requests_without_the_right_bearer_token_are_refused() {
        let (publisher, server) = server(10);
        publisher.publish(with_route("a"));
        assert_eq!(server.respond(get("/v1/snapshot", None)).await.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(server.respond(get("/v1/snapshot", Some("wrong"))).await.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(server.respond(get("/v1/snapshot", Some("t0ken"))).await.status(), StatusCode::OK);
    }

    #[tokio::test]
    async fn a_poll_for_the_current_version_waits_and_answers_not_modified() {
        let (publisher, server) = server(50);
        publisher.publish(with_route("a"));
        let response = server.respond(get("/v1/snapshot?after=1", Some("t0ken"))).await;
        assert_eq!(response.status(), StatusCode::NOT_MODIFIED);
    }

    #[tokio::test]
    async fn a_held_poll_returns_as_soon_as_a_new_version_is_published() {
        let (publisher, server) = server(5_000);
        publisher.publish(with_route("a"));
        let poll = server.respond(get("/v1/snapshot?after=1", Some("t0ken")));
        let publish = async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            publisher.publish(with_route("b"));
        };
        let (response, ()) = tokio::join!(poll, publish);
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["x-switchyard-version"], "2");
    }

    #[tokio::test]
    async fn a_proxy_ahead_of_a_restarted_controller_still_gets_its_snapshot() {
        let (publisher, server) = server(50);
        publisher.publish(with_route("a"));
        let response = server.respond(get("/v1/snapshot?after=999", Some("t0ken"))).await;
        assert_eq!(response.status(), StatusCode::OK);
    }

    #[tokio::test]
    async fn a_malformed_version_is_a_bad_request() {
        let (_, server) = server(50);
        let response = server.respond(get("/v1/snapshot?after=abc", Some("t0ken"))).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    }
}
