//! Request and response bodies as closed enums rather than boxed trait objects: no
//! allocation per request to erase a type.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::Full;
use pin_project_lite::pin_project;

use crate::client::{Lease, UpstreamBody};
pub use crate::request_body::BoxError;

pin_project! {
    /// What the client receives.
    #[project = ResponseBodyProj]
    pub enum ResponseBody {
        /// Streamed from the backend, unbuffered. The lease returns the upstream
        /// connection to its pool when the body is done (dropped).
        Upstream { #[pin] inner: UpstreamBody, lease: Lease },
        /// Made by the gateway (mock responses, errors).
        Full { #[pin] inner: Full<Bytes> },
        /// Streamed from the backend as `Upstream` is, under a [`StreamWatch`]: cut when
        /// no frame comes within its idle time, and shown to its observer as it passes
        /// (a model's response). Boxed, so plain responses carry none of it.
        Watched { #[pin] inner: UpstreamBody, watch: Pin<Box<StreamWatch>> },
    }
}

impl ResponseBody {
    pub fn full(bytes: Bytes) -> Self {
        Self::Full { inner: Full::new(bytes) }
    }

    pub fn upstream(inner: UpstreamBody, lease: Lease) -> Self {
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
            ResponseBodyProj::Upstream { inner, .. } => inner.poll_frame(cx),
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

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
}
