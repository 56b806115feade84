//! Request and response bodies as closed enums rather than boxed trait objects: no
//! allocation per request to erase a type.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::Full;
use hyper::body::Incoming;
use pin_project_lite::pin_project;

use crate::access_log::AccessRecord;
use crate::client::Lease;
use crate::exchange::Exchange;
use crate::trace::OpenSpan;

/// Error type of bodies the gateway forwards.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

pin_project! {
    /// What the client receives.
    #[project = ResponseBodyProj]
    pub enum ResponseBody {
        /// Streamed from the backend, unbuffered. The lease returns the upstream
        /// connection to its pool when the body is done (dropped).
        Upstream { #[pin] inner: Incoming, lease: Lease },
        /// Made by the gateway (mock responses, errors).
        Full { #[pin] inner: Full<Bytes> },
        /// Streamed from the backend as `Upstream` is, under a [`StreamWatch`]: cut when
        /// no frame comes within its idle time, and shown to its observer as it passes
        /// (a model's response). Boxed, so plain responses carry none of it.
        Watched { #[pin] inner: Incoming, watch: Pin<Box<StreamWatch>> },
    }
}

impl ResponseBody {
    pub fn full(bytes: Bytes) -> Self {
        Self::Full { inner: Full::new(bytes) }
    }

    pub fn upstream(inner: Incoming, lease: Lease) -> Self {
        Self::Upstream { inner, lease }
    }

    /// An upstream body under `watch` (any other body is returned as it is).
    pub fn watched(self, mut watch: StreamWatch) -> Self {
        match self {
            Self::Upstream { inner, lease } => {
                watch.lease = Some(lease);
                Self::Watched { inner, watch: Box::pin(watch) }
            }
            other => other,
        }
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.project() {
            ResponseBodyProj::Upstream { inner, .. } => inner.poll_frame(cx).map_err(Into::into),
            ResponseBodyProj::Full { inner } => inner.poll_frame(cx).map_err(|never| match never {}),
            ResponseBodyProj::Watched { inner, watch } => watch.as_mut().poll_frame(inner, cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Upstream { inner, .. } | Self::Watched { inner, .. } => inner.is_end_stream(),
            Self::Full { inner } => inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Upstream { inner, .. } | Self::Watched { inner, .. } => inner.size_hint(),
            Self::Full { inner } => inner.size_hint(),
        }
    }
}

pin_project! {
    /// What the client receives: the response body and, when the access log is on, the
    /// request's record, counting the bytes that pass; its line is written when this is
    /// dropped (hyper drops a body once it has sent its end, or when the client left).
    pub struct ClientBody {
        #[pin]
        inner: ResponseBody,
        log: Option<Box<AccessRecord>>,
        // The request's recorded span, which ends (is exported) when this is dropped.
        span: Option<Box<OpenSpan>>,
    }
}

impl ClientBody {
    pub fn new(inner: ResponseBody, log: Option<Box<AccessRecord>>) -> Self {
        Self { inner, log, span: None }
    }

    /// The same body ending `span` when done.
    pub fn with_span(mut self, span: Option<Box<OpenSpan>>) -> Self {
        self.span = span;
        self
    }
}

impl Body for ClientBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        if let (Some(log), Poll::Ready(Some(Ok(frame)))) = (this.log, &polled) {
            log.bytes_out += frame.data_ref().map_or(0, |d| d.len() as u64);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Sees the data of a watched response as it passes to the client (a model's token meter).
pub trait FrameObserver: Send {
    fn data(&mut self, data: &[u8]);
    /// The body has ended: every byte was seen. May be called more than once.
    fn end(&mut self);
}

pin_project! {
    /// What a [`ResponseBody::Watched`] body is held to: the first frame must come by a
    /// deadline (the time to the first byte), each later one within `idle` of the moment
    /// the gateway started waiting for it; otherwise the body fails, which cuts the
    /// client's connection (a stream cannot fail any other way once its headers are sent).
    /// The idle time runs only while the gateway waits on the upstream: a client slow to
    /// read (which stops the gateway polling) never makes the upstream look idle.
    pub struct StreamWatch {
        // Moved earlier at most once (the first idle wait after the first byte's deadline)
        // and otherwise rearmed only when it fires early: no timer work per frame.
        #[pin]
        timer: tokio::time::Sleep,
        // When the body fails if no frame comes first.
        deadline: tokio::time::Instant,
        idle: std::time::Duration,
        // A trait object because the meter lives with its backend kind; one call per frame.
        observer: Option<Box<dyn FrameObserver>>,
        // For the log line: the request id and the backend.
        request_id: Option<http::HeaderValue>,
        backend: Arc<str>,
        // The upstream connection, back to its pool when the body is dropped.
        lease: Option<Lease>,
        // A frame has come: a stall from now on is an idle one.
        streaming: bool,
        // Polled with nothing to give since the last frame: `deadline` is that wait's end.
        waiting: bool,
    }
}

impl StreamWatch {
    pub fn new(
        first_frame_by: tokio::time::Instant,
        idle: std::time::Duration,
        observer: Option<Box<dyn FrameObserver>>,
        request_id: Option<http::HeaderValue>,
        backend: Arc<str>,
    ) -> Self {
        let timer = tokio::time::sleep_until(first_frame_by);
        Self { timer, deadline: first_frame_by, idle, observer, request_id, backend, lease: None, streaming: false, waiting: false }
    }

    fn poll_frame<B>(self: Pin<&mut Self>, mut inner: Pin<&mut B>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>>
    where
        B: Body<Data = Bytes>,
        B::Error: Into<BoxError>,
    {
        let mut this = self.project();
        match inner.as_mut().poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                *this.streaming = true;
                *this.waiting = false;
                if let Some(observer) = this.observer {
                    if let Some(data) = frame.data_ref() {
                        observer.data(data);
                    }
                    if inner.is_end_stream() {
                        observer.end();
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(None) => {
                if let Some(observer) = this.observer {
                    observer.end();
                }
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Pending => loop {
                if *this.streaming && !*this.waiting {
                    *this.waiting = true;
                    *this.deadline = tokio::time::Instant::now() + *this.idle;
                    if *this.deadline < this.timer.deadline() {
                        // Sooner than the first byte's deadline the timer was set for (once).
                        this.timer.as_mut().reset(*this.deadline);
                    }
                }
                std::task::ready!(this.timer.as_mut().poll(cx));
                if tokio::time::Instant::now() < *this.deadline {
                    // A frame came since the timer was set: wait until the new deadline.
                    this.timer.as_mut().reset(*this.deadline);
                    continue;
                }
                let idle_ms = this.idle.as_millis() as u64;
                let request_id = this.request_id.as_ref().and_then(|v| v.to_str().ok()).unwrap_or("");
                let backend = &**this.backend;
                if *this.streaming {
                    tracing::warn!(
                        request_id,
                        backend,
                        idle_ms,
                        "the upstream sent nothing within the idle timeout; cutting the response stream"
                    );
                } else {
                    tracing::warn!(request_id, backend, "the upstream sent no body by the first byte's deadline; cutting the response");
                }
                return Poll::Ready(Some(Err(Box::new(StreamIdle { idle_ms }))));
            },
        }
    }
}

/// A watched response stalled: no frame within the idle timeout (or none by the first
/// byte's deadline).
#[derive(Debug, thiserror::Error)]
#[error("the upstream sent no data within {idle_ms} ms (idle timeout)")]
pub struct StreamIdle {
    pub idle_ms: u64,
}

/// The client's body grew past the route's limit while streaming.
#[derive(Debug, thiserror::Error)]
#[error("request body exceeds {limit} bytes")]
pub struct BodyTooLarge {
    pub limit: u64,
}

/// The client's body could not be read: malformed (a bad chunk) or cut off. The client's
/// fault, never the backend's: it marks the error chain so the backend call can tell.
#[derive(Debug, thiserror::Error)]
#[error("reading the request body from the client failed")]
pub struct ClientBodyError(#[source] pub hyper::Error);

/// Whether the last poll of a streamed client body found it waiting for the client, so
/// an attempt that times out can tell a slow uploader from a slow backend. Shared with
/// the upstream connection's task, which is what polls the body.
#[derive(Debug, Default)]
pub struct BodyWatch(AtomicU8);

const BODY_READING: u8 = 0;
const BODY_WAITING: u8 = 1;
const BODY_ENDED: u8 = 2;

impl BodyWatch {
    /// The body was last polled as Pending and had not ended: the gateway is waiting
    /// on the client, not on the backend.
    pub fn waiting_on_client(&self) -> bool {
        self.0.load(Ordering::Relaxed) == BODY_WAITING
    }

    fn set(&self, state: u8) {
        self.0.store(state, Ordering::Relaxed);
    }
}

pin_project! {
    /// What the backend receives.
    #[project = RequestBodyProj]
    pub enum RequestBody {
        /// Streamed from the client with a byte limit enforced on the way; `watch`, when
        /// someone asked (see [`RequestBody::watch`]), records whether it waits on the client;
        /// `tally`, with the access log on, counts the bytes read (see [`RequestBody::tallied`]).
        Streaming { #[pin] inner: Incoming, seen: u64, limit: u64, watch: Option<Arc<BodyWatch>>, tally: Option<Arc<AtomicU64>> },
        /// Buffered (so it can be sent again on a retry).
        Full { #[pin] inner: Full<Bytes> },
    }
}

impl RequestBody {
    pub fn streaming(inner: Incoming, limit: u64) -> Self {
        Self::Streaming { inner, seen: 0, limit, watch: None, tally: None }
    }

    /// The same body, its client bytes counted in `exchange` (a buffered one's at once, a
    /// streamed one's as they are read, by whichever task reads them; a request without a
    /// body shares no counter).
    pub fn tallied(mut self, exchange: &Exchange) -> Self {
        match &mut self {
            Self::Streaming { inner, tally, seen, .. } => {
                exchange.read(*seen);
                if !inner.is_end_stream() {
                    *tally = Some(exchange.body_counter());
                }
            }
            Self::Full { inner } => exchange.read(inner.size_hint().exact().unwrap_or(0)),
        }
        self
    }

    /// A watch on a streamed body that has not ended yet (None otherwise: nothing to
    /// wait for, and nothing allocated).
    pub fn watch(&mut self) -> Option<Arc<BodyWatch>> {
        match self {
            Self::Streaming { inner, watch, .. } if !inner.is_end_stream() => Some(watch.get_or_insert_with(Arc::default).clone()),
            _ => None,
        }
    }

    pub fn full(bytes: Bytes) -> Self {
        Self::Full { inner: Full::new(bytes) }
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.project() {
            RequestBodyProj::Streaming { mut inner, seen, limit, watch, tally } => {
                let polled = inner.as_mut().poll_frame(cx);
                if let Some(watch) = watch {
                    watch.set(match &polled {
                        Poll::Pending => BODY_WAITING,
                        Poll::Ready(Some(Ok(_))) if !inner.is_end_stream() => BODY_READING,
                        Poll::Ready(_) => BODY_ENDED,
                    });
                }
                let frame = std::task::ready!(polled);
                if let Some(Ok(data)) = frame.as_ref().map(|f| f.as_ref().map(Frame::data_ref)) {
                    let n = data.map_or(0, |d| d.len() as u64);
                    *seen += n;
                    if let Some(tally) = tally {
                        tally.fetch_add(n, Ordering::Relaxed);
                    }
                    if *seen > *limit {
                        return Poll::Ready(Some(Err(Box::new(BodyTooLarge { limit: *limit }))));
                    }
                }
                Poll::Ready(frame.map(|f| f.map_err(|e| Box::new(ClientBodyError(e)) as BoxError)))
            }
            RequestBodyProj::Full { inner } => inner.poll_frame(cx).map_err(|never| match never {}),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Streaming { inner, .. } => inner.is_end_stream(),
            Self::Full { inner } => inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Streaming { inner, .. } => inner.size_hint(),
            Self::Full { inner } => inner.size_hint(),
        }
    }
}

/// The whole client body, for a phase that must see it before the backend does (a
/// signature covering it): at most `limit` bytes (a larger declared length is refused
/// before a byte is read), by `deadline` (the route's timeout, `budget`). Client faults
/// are the client's: 413, 408, or 400 for a malformed body.
pub async fn read_bounded(
    body: Incoming,
    headers: &http::HeaderMap,
    limit: u64,
    deadline: std::time::Instant,
    budget: std::time::Duration,
) -> Result<Bytes, crate::error::GatewayError> {
    use crate::error::GatewayError;
    use http_body_util::BodyExt as _;
    let declared = headers.get(http::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit) {
        return Err(GatewayError::BodyTooLarge { limit });
    }
    let body = RequestBody::streaming(body, limit);
    if body.is_end_stream() {
        return Ok(Bytes::new());
    }
    match tokio::time::timeout_at(deadline.into(), body.collect()).await {
        Err(_) => Err(GatewayError::BodyTimeout { timeout_ms: budget.as_millis() as u64 }),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) if is_body_too_large(&*e) => Err(GatewayError::BodyTooLarge { limit }),
        Ok(Err(e)) => {
            let mut detail = e.to_string();
            let mut source = e.source();
            while let Some(cause) = source {
                detail = format!("{detail}: {cause}");
                source = cause.source();
            }
            Err(GatewayError::MalformedBody { detail })
        }
    }
}

/// The first error of type `E` in `error`'s cause chain (itself included).
pub fn find_in_chain<'a, E: std::error::Error + 'static>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a E> {
    let mut current = Some(error);
    while let Some(e) = current {
        if let Some(found) = e.downcast_ref::<E>() {
            return Some(found);
        }
        current = e.source();
    }
    None
}

/// True when an error (or anything in its cause chain) is a [`BodyTooLarge`].
pub fn is_body_too_large(error: &(dyn std::error::Error + 'static)) -> bool {
    find_in_chain::<BodyTooLarge>(error).is_some()
}

/// True when an error (or anything in its cause chain) is a [`ClientBodyError`]: the
/// client's body was malformed or cut off.
pub fn is_client_body_error(error: &(dyn std::error::Error + 'static)) -> bool {
    find_in_chain::<ClientBodyError>(error).is_some()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use http_body_util::BodyExt;
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;
    use tokio::io::AsyncWriteExt;

    use super::*;

    /// Serves one raw HTTP/1.1 request over an in-memory pipe and hands its body, as the
    /// gateway streams it, to `inspect`; returns what `inspect` said.
    async fn with_client_body<T, F, Fut>(raw: &'static [u8], inspect: F) -> T
    where
        T: Send + 'static,
        F: Fn(RequestBody) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = T> + Send + 'static,
    {
        let (client, server) = tokio::io::duplex(4096);
        let (tx, rx) = tokio::sync::oneshot::channel();
        let tx = std::sync::Mutex::new(Some(tx));
        let inspect = Arc::new(inspect);
        let service = service_fn(move |request: http::Request<Incoming>| {
            let (inspect, tx) = (inspect.clone(), tx.lock().unwrap().take());
            async move {
                let seen = inspect(RequestBody::streaming(request.into_body(), 1024)).await;
                if let Some(tx) = tx {
                    let _ = tx.send(seen);
                }
                Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(Bytes::new())))
            }
        });
        tokio::spawn(hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(server), service));
        let mut client = client;
        client.write_all(raw).await.unwrap();
        let seen = tokio::time::timeout(Duration::from_secs(5), rx).await.expect("the body was inspected").unwrap();
        drop(client);
        seen
    }

    /// A body fed by the test: each message is a frame, a closed channel its end.
    struct Fed(tokio::sync::mpsc::UnboundedReceiver<&'static str>);

    impl Body for Fed {
        type Data = Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            self.0.poll_recv(cx).map(|m| m.map(|s| Ok(Frame::data(Bytes::from_static(s.as_bytes())))))
        }
    }

    /// What an observer saw: the data, and how many times the end was announced.
    #[derive(Clone, Default)]
    struct Seen(Arc<std::sync::Mutex<(String, u32)>>);

    impl FrameObserver for Seen {
        fn data(&mut self, data: &[u8]) {
            self.0.lock().unwrap().0.push_str(std::str::from_utf8(data).unwrap());
        }
        fn end(&mut self) {
            self.0.lock().unwrap().1 += 1;
        }
    }

    fn watched(
        first_ms: u64,
        idle_ms: u64,
        observer: Option<Box<dyn FrameObserver>>,
    ) -> (Pin<Box<StreamWatch>>, Fed, tokio::sync::mpsc::UnboundedSender<&'static str>) {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let first = tokio::time::Instant::now() + Duration::from_millis(first_ms);
        let watch = StreamWatch::new(first, Duration::from_millis(idle_ms), observer, None, Arc::from("shop/llm"));
        (Box::pin(watch), Fed(rx), tx)
    }

    async fn next(watch: &mut Pin<Box<StreamWatch>>, body: &mut Fed) -> Option<Result<Bytes, BoxError>> {
        std::future::poll_fn(|cx| watch.as_mut().poll_frame(Pin::new(&mut *body), cx)).await.map(|f| f.map(|f| f.into_data().unwrap()))
    }

    #[tokio::test]
    async fn a_stream_whose_chunks_keep_coming_within_the_idle_time_passes_whole() {
        let seen = Seen::default();
        let (mut watch, mut body, tx) = watched(150, 150, Some(Box::new(seen.clone())));
        let feeder = tokio::spawn(async move {
            for chunk in ["data: 1\n\n", "data: 2\n\n", "data: 3\n\n", "data: 4\n\n"] {
                tokio::time::sleep(Duration::from_millis(60)).await;
                tx.send(chunk).unwrap();
            }
        });
        let mut got = String::new();
        while let Some(frame) = next(&mut watch, &mut body).await {
            got.push_str(std::str::from_utf8(&frame.expect("never cut: 60 ms apart, 150 ms allowed")).unwrap());
        }
        feeder.await.unwrap();
        assert_eq!(got, "data: 1\n\ndata: 2\n\ndata: 3\n\ndata: 4\n\n");
        assert_eq!(seen.0.lock().unwrap().clone(), (got, 1), "the observer saw every byte, and the end once");
    }

    #[tokio::test]
    async fn a_stream_that_stalls_past_the_idle_time_fails_at_the_idle_time() {
        let (mut watch, mut body, tx) = watched(1_000, 100, None);
        tx.send("data: first\n\n").unwrap();
        assert!(next(&mut watch, &mut body).await.unwrap().is_ok());
        let stalled = tokio::time::Instant::now();
        let error = next(&mut watch, &mut body).await.unwrap().expect_err("cut");
        let waited = stalled.elapsed();
        assert!(error.downcast_ref::<StreamIdle>().is_some_and(|e| e.idle_ms == 100), "{error}");
        assert!(
            waited >= Duration::from_millis(95) && waited < Duration::from_millis(600),
            "{waited:?}: the idle time, not the first-byte one"
        );
        drop(tx);
    }

    #[tokio::test]
    async fn a_client_slow_to_read_does_not_make_the_upstream_look_idle() {
        let (mut watch, mut body, tx) = watched(1_000, 100, None);
        tx.send("data: 1\n\n").unwrap();
        assert!(next(&mut watch, &mut body).await.unwrap().is_ok());
        // The client reads nothing for three idle times (the gateway does not poll) ...
        tokio::time::sleep(Duration::from_millis(300)).await;
        let feeder = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            tx.send("data: 2\n\n").unwrap();
            tx
        });
        // ... then the next chunk comes 50 ms after it reads again: within the idle time.
        assert!(next(&mut watch, &mut body).await.unwrap().is_ok(), "not cut for the client's own pause");
        let _tx = feeder.await.unwrap();
    }

    #[tokio::test]
    async fn the_first_chunk_may_take_until_the_first_byte_deadline() {
        let (mut watch, mut body, tx) = watched(300, 50, None);
        let feeder = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(150)).await;
            tx.send("late but in time").unwrap();
            tx
        });
        assert!(next(&mut watch, &mut body).await.unwrap().is_ok(), "150 ms is past the idle time but within the first byte's");
        let _tx = feeder.await.unwrap();
        let (mut watch, mut body, _tx) = watched(100, 50, None);
        let started = tokio::time::Instant::now();
        assert!(next(&mut watch, &mut body).await.unwrap().is_err(), "nothing by the first byte's deadline");
        assert!(started.elapsed() >= Duration::from_millis(95), "{:?}", started.elapsed());
    }

    #[tokio::test]
    async fn a_malformed_chunked_body_is_marked_as_the_clients_fault() {
        let raw = b"POST / HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n";
        let error = with_client_body(raw, |body| async move { body.collect().await.err().map(|e| is_client_body_error(&*e)) }).await;
        assert_eq!(error, Some(true));
    }

    #[tokio::test]
    async fn a_body_over_the_limit_is_not_mistaken_for_a_malformed_one() {
        let raw = b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 2000\r\n\r\n";
        let mut full = raw.to_vec();
        full.extend(std::iter::repeat_n(b'x', 2000));
        let raw: &'static [u8] = full.leak();
        let error =
            with_client_body(
                raw,
                |body| async move { body.collect().await.err().map(|e| (is_body_too_large(&*e), is_client_body_error(&*e))) },
            )
            .await;
        assert_eq!(error, Some((true, false)));
    }

    #[tokio::test]
    async fn the_watch_says_when_the_body_waits_on_the_client() {
        // Ten of the forty declared bytes arrive, then the client stalls.
        let raw = b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 40\r\n\r\n0123456789";
        let states = with_client_body(raw, |mut body| async move {
            let watch = body.watch().expect("a body that has not ended gets a watch");
            let before = watch.waiting_on_client();
            let first = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await;
            assert!(matches!(first, Some(Ok(_))), "the first ten bytes");
            let stalled = tokio::time::timeout(Duration::from_millis(50), body.frame()).await.is_err();
            (before, stalled, watch.waiting_on_client())
        })
        .await;
        assert_eq!(states, (false, true, true));
    }

    #[tokio::test]
    async fn an_empty_body_gets_no_watch_and_a_finished_one_is_not_waiting() {
        let raw = b"GET / HTTP/1.1\r\nhost: x\r\n\r\n";
        assert!(with_client_body(raw, |mut body| async move { body.watch().is_none() }).await, "nothing allocated for a GET");
        let raw = b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 4\r\n\r\nabcd";
        let waiting = with_client_body(raw, |mut body| async move {
            let watch = body.watch();
            body.collect().await.unwrap();
            watch.map(|w| w.waiting_on_client())
        })
        .await;
        assert_eq!(waiting, Some(false));
    }
}
