//! What a backend receives: the client's body, streamed under the route's byte limit or
//! buffered for retries, and the errors that tell a client's fault from a backend's.
//! Below the upstream client in the module graph (the client sends these bodies), so it
//! knows nothing of responses, connections or the request path.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::Full;
use hyper::body::Incoming;
use pin_project_lite::pin_project;

use crate::exchange::Exchange;

/// Error type of bodies the gateway forwards.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

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
