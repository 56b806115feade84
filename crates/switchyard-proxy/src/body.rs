//! Request and response bodies as closed enums rather than boxed trait objects: no
//! allocation per request to erase a type.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::Full;
use hyper::body::Incoming;
use pin_project_lite::pin_project;

use crate::client::Lease;

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
    }
}

impl ResponseBody {
    pub fn full(bytes: Bytes) -> Self {
        Self::Full { inner: Full::new(bytes) }
    }

    pub fn upstream(inner: Incoming, lease: Lease) -> Self {
        Self::Upstream { inner, lease }
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.project() {
            ResponseBodyProj::Upstream { inner, .. } => inner.poll_frame(cx),
            ResponseBodyProj::Full { inner } => inner.poll_frame(cx).map_err(|never| match never {}),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Upstream { inner, .. } => inner.is_end_stream(),
            Self::Full { inner } => inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Upstream { inner, .. } => inner.size_hint(),
            Self::Full { inner } => inner.size_hint(),
        }
    }
}

/// The client's body grew past the route's limit while streaming.
#[derive(Debug, thiserror::Error)]
#[error("request body exceeds {limit} bytes")]
pub struct BodyTooLarge {
    pub limit: u64,
}

pin_project! {
    /// What the backend receives.
    #[project = RequestBodyProj]
    pub enum RequestBody {
        /// Streamed from the client with a byte limit enforced on the way.
        Streaming { #[pin] inner: Incoming, seen: u64, limit: u64 },
        /// Buffered (so it can be sent again on a retry).
        Full { #[pin] inner: Full<Bytes> },
    }
}

impl RequestBody {
    pub fn streaming(inner: Incoming, limit: u64) -> Self {
        Self::Streaming { inner, seen: 0, limit }
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
            RequestBodyProj::Streaming { inner, seen, limit } => {
                let frame = std::task::ready!(inner.poll_frame(cx));
                if let Some(Ok(data)) = frame.as_ref().map(|f| f.as_ref().map(Frame::data_ref)) {
                    *seen += data.map_or(0, |d| d.len() as u64);
                    if *seen > *limit {
                        return Poll::Ready(Some(Err(Box::new(BodyTooLarge { limit: *limit }))));
                    }
                }
                Poll::Ready(frame.map(|f| f.map_err(Into::into)))
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

/// True when an error (or anything in its cause chain) is a [`BodyTooLarge`].
pub fn is_body_too_large(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(e) = current {
        if e.is::<BodyTooLarge>() {
            return true;
        }
        current = e.source();
    }
    false
}
