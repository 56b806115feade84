//! `GET /v1/snapshot[?after=VERSION]`, behind `Authorization: Bearer <token>`, served
//! over TLS ([`tls`]) unless plain HTTP was asked for explicitly.
//!
//! The token comes from a [`TokenSource`]; a [`TokenFile`] re-reads its file when it
//! changes, so the token rotates without a restart.
//!
//! Without `after`, or when the current version differs from it, the snapshot is
//! returned at once. Otherwise the request is held until a new version is published or
//! the hold time passes (304). "Differs" rather than "is newer": a restarted controller
//! may number from elsewhere, and a proxy must still pick its snapshot up.
//!
//! A whole snapshot carries its publisher's stream in `x-switchyard-stream`. A proxy that
//! names it back (`&stream=S`) with the version it holds is sent the deltas from that
//! version instead (`x-switchyard-delta-from`, a [`DeltaChain`](switchyard_compile::snapshot::delta::DeltaChain) as JSON) while the
//! publisher still keeps them; otherwise, and for any other stream, the whole snapshot.

pub mod tls;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::Full;
use prometheus_client::metrics::gauge::Gauge;

use switchyard_compile::snapshot::delta::{self, SnapshotDelta};

use crate::publisher::{Published, Publisher};

/// A delta that carries more items than this is serialized off the async threads.
const INLINE_DELTA_ITEMS: usize = 4096;

/// How long a long-poll is held before answering 304.
pub const DEFAULT_HOLD: Duration = Duration::from_secs(30);

/// Where the bearer token comes from: fixed, or a file that may change.
pub trait TokenSource: Send + Sync + 'static {
    /// The token in force now; `None` when there is none (every request is refused).
    fn current(&self) -> Option<Arc<str>>;
}

/// A fixed token (tests, embedding).
impl TokenSource for String {
    fn current(&self) -> Option<Arc<str>> {
        (!self.is_empty()).then(|| Arc::from(self.as_str()))
    }
}

/// A token file, re-read whenever it changes (size, modification or change time, inode:
/// a Kubernetes Secret volume swaps a symlink, an editor renames over the file), checked
/// with one `stat` per use. Surrounding whitespace is ignored. When the file cannot be
/// read or is empty, the last good token stays in force and a warning is logged.
pub struct TokenFile {
    path: PathBuf,
    cached: Mutex<(Option<FileStamp>, Arc<str>)>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct FileStamp {
    len: u64,
    modified: (i64, i64),
    changed: (i64, i64),
    inode: (u64, u64),
}

impl FileStamp {
    fn of(path: &Path) -> std::io::Result<Self> {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(path)?;
        Ok(Self { len: m.len(), modified: (m.mtime(), m.mtime_nsec()), changed: (m.ctime(), m.ctime_nsec()), inode: (m.dev(), m.ino()) })
    }
}

impl TokenFile {
    /// Reads the file once; an unreadable or empty file is an error (at start, fail loudly).
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        use anyhow::Context;
        let stamp = FileStamp::of(path).with_context(|| format!("reading the token file {}", path.display()))?;
        let token = read_token(path)?;
        Ok(Self { path: path.to_owned(), cached: Mutex::new((Some(stamp), token)) })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl TokenSource for TokenFile {
    fn current(&self) -> Option<Arc<str>> {
        let mut cached = self.cached.lock().unwrap_or_else(|e| e.into_inner());
        let stamp = FileStamp::of(&self.path).ok();
        if stamp.is_some() && stamp != cached.0 {
            match read_token(&self.path) {
                Ok(token) => {
                    if *token != *cached.1 {
                        tracing::info!(path = %self.path.display(), "the token file changed: using the new token");
                    }
                    *cached = (stamp, token);
                }
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), "keeping the previous token");
                    cached.0 = stamp;
                }
            }
        }
        Some(cached.1.clone())
    }
}

/// The trimmed, non-empty content of a token file.
pub fn read_token(path: &Path) -> anyhow::Result<Arc<str>> {
    let text = std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("reading the token file {}: {e}", path.display()))?;
    let token = text.trim();
    if token.is_empty() {
        anyhow::bail!("the token file {} is empty", path.display());
    }
    Ok(Arc::from(token))
}

pub struct SnapshotServer {
    publisher: Arc<Publisher>,
    token: Box<dyn TokenSource>,
    hold: Duration,
    /// Long-polls open now: roughly, the proxies connected.
    pub waiting: Gauge,
}

impl SnapshotServer {
    pub fn new(publisher: Arc<Publisher>, token: impl TokenSource, hold: Duration) -> Self {
        Self { publisher, token: Box::new(token), hold, waiting: Gauge::default() }
    }

    pub async fn respond<B>(&self, request: Request<B>) -> Response<Full<Bytes>> {
        if request.uri().path() != "/v1/snapshot" {
            return text(StatusCode::NOT_FOUND, "the snapshot endpoint is GET /v1/snapshot");
        }
        if !self.authorized(request.headers()) {
            return text(StatusCode::UNAUTHORIZED, "send Authorization: Bearer <token>");
        }
        let Poll { after, stream } = match Poll::parse(request.uri().query()) {
            Ok(poll) => poll,
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
            // A poll held across a token rotation presented a token no longer in force.
            Ok(Some(_)) if !self.authorized(request.headers()) => {
                text(StatusCode::UNAUTHORIZED, "the token was rotated; send the current one")
            }
            Ok(Some(published)) => {
                let version = published.snapshot.version;
                let deltas = match (after, stream) {
                    (Some(from), Some(stream)) if stream == self.publisher.stream() => self.publisher.deltas(from, version),
                    _ => None,
                };
                match deltas {
                    Some(steps) => self.delta_response(steps, version).await,
                    None => self.full_response(published).await,
                }
            }
            Ok(None) => text(StatusCode::SERVICE_UNAVAILABLE, "the controller is shutting down"),
            Err(_) => {
                let mut response = Response::new(Full::new(Bytes::new()));
                *response.status_mut() = StatusCode::NOT_MODIFIED;
                response
            }
        }
    }

    /// The whole snapshot, with the stream a later poll names to be sent deltas.
    async fn full_response(&self, published: Arc<Published>) -> Response<Full<Bytes>> {
        let version = published.snapshot.version;
        // Woken as the snapshot is handed out, the JSON may not be made yet (tens of ms
        // at 100,000 routes): make it, or wait for it, on a blocking thread, not here.
        let json = match published.json_if_made() {
            Some(json) => json.clone(),
            None => match tokio::task::spawn_blocking(move || published.json().clone()).await {
                Ok(json) => json,
                Err(_) => return text(StatusCode::INTERNAL_SERVER_ERROR, "the snapshot could not be serialized"),
            },
        };
        let mut response = Response::new(Full::new(json));
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert("x-switchyard-version", HeaderValue::from(version));
        if let Ok(stream) = HeaderValue::from_str(self.publisher.stream()) {
            headers.insert("x-switchyard-stream", stream);
        }
        response
    }

    /// The deltas `steps` (from the proxy's version to `version`) as one [`DeltaChain`](switchyard_compile::snapshot::delta::DeltaChain).
    async fn delta_response(&self, steps: Vec<Arc<SnapshotDelta>>, version: u64) -> Response<Full<Bytes>> {
        let from = steps.first().map_or(version, |s| s.base);
        let stream = self.publisher.stream().to_owned();
        let items: usize = steps.iter().filter_map(|s| s.carried()).sum();
        let serialize = move || serde_json::to_vec(&ChainRef { stream: &stream, steps: steps.iter().map(|s| &**s).collect() });
        let json = if items <= INLINE_DELTA_ITEMS { Ok(serialize()) } else { tokio::task::spawn_blocking(serialize).await };
        let Ok(Ok(json)) = json else {
            return text(StatusCode::INTERNAL_SERVER_ERROR, "the snapshot delta could not be serialized");
        };
        let mut response = Response::new(Full::new(Bytes::from(json)));
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(delta::CONTENT_TYPE));
        headers.insert("x-switchyard-version", HeaderValue::from(version));
        headers.insert("x-switchyard-delta-from", HeaderValue::from(from));
        response
    }

    fn authorized(&self, headers: &http::HeaderMap) -> bool {
        let presented =
            headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer ")).unwrap_or("");
        let Some(token) = self.token.current() else { return false };
        !token.is_empty() && switchyard_http::constant_time_eq(presented.as_bytes(), token.as_bytes())
    }
}

/// A [`DeltaChain`](switchyard_compile::snapshot::delta::DeltaChain) serialized from the publisher's shared steps, without copying them.
#[derive(serde::Serialize)]
struct ChainRef<'a> {
    stream: &'a str,
    steps: Vec<&'a SnapshotDelta>,
}

/// What a poll asks for: anything but version `after`, as deltas if it names `stream`.
#[derive(Debug, Default, PartialEq)]
struct Poll {
    after: Option<u64>,
    stream: Option<String>,
}

impl Poll {
    fn parse(query: Option<&str>) -> Result<Self, String> {
        let mut poll = Self::default();
        for (key, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            match &*key {
                "after" => poll.after = Some(value.parse().map_err(|_| format!("after={value} is not a version number"))?),
                "stream" => poll.stream = Some(value.into_owned()),
                _ => {}
            }
        }
        Ok(poll)
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
        let server = SnapshotServer::new(publisher.clone(), String::from("t0ken"), Duration::from_millis(hold_ms));
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
    async fn a_rewritten_token_file_takes_effect_at_once_and_the_old_token_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "first\n").unwrap();
        let publisher = Arc::new(Publisher::starting_at(1));
        publisher.publish(with_route("a"));
        let server = SnapshotServer::new(publisher, TokenFile::open(&path).unwrap(), Duration::from_millis(10));
        assert_eq!(server.respond(get("/v1/snapshot", Some("first"))).await.status(), StatusCode::OK);
        // Rotated as a Secret volume does it: a new file renamed over the old one.
        std::fs::write(dir.path().join("token.new"), "second").unwrap();
        std::fs::rename(dir.path().join("token.new"), &path).unwrap();
        assert_eq!(server.respond(get("/v1/snapshot", Some("first"))).await.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(server.respond(get("/v1/snapshot", Some("second"))).await.status(), StatusCode::OK);
        // An empty or missing file keeps the last good token.
        std::fs::write(&path, "  \n").unwrap();
        assert_eq!(server.respond(get("/v1/snapshot", Some("second"))).await.status(), StatusCode::OK);
        std::fs::remove_file(&path).unwrap();
        assert_eq!(server.respond(get("/v1/snapshot", Some("second"))).await.status(), StatusCode::OK);
    }

    #[test]
    fn an_empty_token_file_is_refused_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "\n").unwrap();
        assert!(TokenFile::open(&path).is_err_and(|e| e.to_string().contains("empty")));
        assert!(TokenFile::open(&dir.path().join("missing")).is_err());
    }

    #[tokio::test]
    async fn a_malformed_version_is_a_bad_request() {
        let (_, server) = server(50);
        let response = server.respond(get("/v1/snapshot?after=abc", Some("t0ken"))).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    }

    async fn body(response: Response<Full<Bytes>>) -> Bytes {
        use http_body_util::BodyExt;
        response.into_body().collect().await.unwrap().to_bytes()
    }

    #[tokio::test]
    async fn a_proxy_that_names_the_stream_and_its_version_is_sent_the_deltas_since() {
        use switchyard_compile::snapshot::delta::DeltaChain;
        let (publisher, server) = server(5_000);
        publisher.publish(with_route("a"));
        let full = server.respond(get("/v1/snapshot", Some("t0ken"))).await;
        assert_eq!(full.headers()[header::CONTENT_TYPE], "application/json");
        let stream = full.headers()["x-switchyard-stream"].to_str().unwrap().to_owned();
        assert_eq!(stream, publisher.stream());
        let held: Snapshot = serde_json::from_slice(&body(full).await).unwrap();
        publisher.publish(with_route("b"));
        publisher.publish(with_route("c"));
        let response = server.respond(get(&format!("/v1/snapshot?after=1&stream={stream}"), Some("t0ken"))).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()[header::CONTENT_TYPE], delta::CONTENT_TYPE);
        assert_eq!(response.headers()["x-switchyard-delta-from"], "1");
        assert_eq!(response.headers()["x-switchyard-version"], "3");
        let chain: DeltaChain = serde_json::from_slice(&body(response).await).unwrap();
        assert_eq!(chain.stream, stream);
        assert_eq!(chain.apply(1, &held).unwrap(), *publisher.current().unwrap().snapshot);
        // Another stream's version 1 (another replica, a restarted controller) is other
        // content: it gets the whole snapshot.
        let other = server.respond(get("/v1/snapshot?after=1&stream=0123456789abcdef", Some("t0ken"))).await;
        assert_eq!(other.headers()[header::CONTENT_TYPE], "application/json");
        let whole: Snapshot = serde_json::from_slice(&body(other).await).unwrap();
        assert_eq!(whole, *publisher.current().unwrap().snapshot);
        // So does a version whose deltas are no longer kept.
        let unknown = server.respond(get(&format!("/v1/snapshot?after=999&stream={stream}"), Some("t0ken"))).await;
        assert_eq!(unknown.headers()[header::CONTENT_TYPE], "application/json");
    }

    #[test]
    fn a_poll_reads_its_version_and_stream_and_ignores_the_rest() {
        assert_eq!(Poll::parse(None).unwrap(), Poll::default());
        assert_eq!(Poll::parse(Some("after=7&stream=ab&x=1")).unwrap(), Poll { after: Some(7), stream: Some("ab".into()) });
        assert!(Poll::parse(Some("stream=ab&after=-1")).unwrap_err().contains("after=-1"));
    }
}
