//! Error codes on hyper's own answers. When an HTTP/1 request head cannot be parsed (a
//! smuggling shape such as `Transfer-Encoding: chunked, identity`, obs-fold, a space
//! before a colon, a head larger than the read buffer), hyper answers by itself with a bare
//! `400` or `431` (`content-length: 0`) and the service never sees the request. Every
//! other gateway answer carries `X-Ca-Error-Code`; this layer, under hyper on the
//! connection's writes, gives hyper's answers theirs and a JSON body.
//!
//! An answer is hyper's when it is written while none of the connection's requests is
//! being served: [`InFlight`] counts a request from the service call until its response
//! body is dropped (hyper drops it once written in full), and hyper writes a parse-error
//! answer only between requests. Such a write, when it is a whole `HTTP/1.1 400` or `431`
//! answer with `content-length: 0`, is replaced; any other write passes untouched, so the
//! cost on the hot path is one relaxed load per write.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// How many of one connection's requests are being served.
#[derive(Clone, Default)]
pub(crate) struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    /// Counts one request until the returned guard drops.
    pub(crate) fn enter(&self) -> Serving {
        self.0.fetch_add(1, Ordering::Relaxed);
        Serving(self.0.clone())
    }

    fn idle(&self) -> bool {
        self.0.load(Ordering::Relaxed) == 0
    }
}

/// One request being served (see [`InFlight::enter`]).
pub(crate) struct Serving(Arc<AtomicUsize>);

impl Drop for Serving {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

pin_project_lite::pin_project! {
    /// A response body that keeps its request counted until hyper drops it.
    pub(crate) struct Counted<B> {
        #[pin]
        inner: B,
        serving: Serving,
    }
}

pin_project_lite::pin_project! {
    /// The service's answer to one request, counted in [`InFlight`] from the call until its
    /// body is dropped. A named future rather than an `async` block around `response`: the
    /// proxy's response future is large (kilobytes), and an `async` block would copy it into
    /// its own state before hyper moves the whole into its slot, a second copy per request.
    pub(crate) struct CountedResponse<F> {
        serving: Option<Serving>,
        #[pin]
        response: F,
    }
}

impl<F> CountedResponse<F> {
    pub(crate) fn new(serving: Serving, response: F) -> Self {
        Self { serving: Some(serving), response }
    }
}

impl<F, B> std::future::Future for CountedResponse<F>
where
    F: std::future::Future<Output = http::Response<B>>,
{
    type Output = Result<http::Response<Counted<B>>, std::convert::Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let response = std::task::ready!(this.response.poll(cx));
        // `serving` is taken exactly once: hyper does not poll a finished future.
        let serving = this.serving.take().expect("a response future is not polled after it finished");
        Poll::Ready(Ok(response.map(|body| Counted::new(body, serving))))
    }
}

impl<B> Counted<B> {
    pub(crate) fn new(inner: B, serving: Serving) -> Self {
        Self { inner, serving }
    }
}

impl<B: Body> Body for Counted<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        self.project().inner.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A connection's stream that puts codes on hyper's parse-error answers.
pub(crate) struct CodedParseErrors<S> {
    inner: S,
    in_flight: InFlight,
    /// A replaced answer being written, and how many bytes of hyper's to report when done.
    pending: Option<(Bytes, usize, usize)>,
}

impl<S> CodedParseErrors<S> {
    pub(crate) fn new(inner: S, in_flight: InFlight) -> Self {
        Self { inner, in_flight, pending: None }
    }
}

impl<S: AsyncWrite + Unpin> CodedParseErrors<S> {
    /// Writes the replaced answer; reports hyper's buffer as written once it all is.
    fn drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        while let Some((bytes, written, _)) = &mut self.pending
            && *written < bytes.len()
        {
            match Pin::new(&mut self.inner).poll_write(cx, &bytes[*written..]) {
                Poll::Ready(Ok(0)) => {
                    self.pending = None;
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                Poll::Ready(Ok(n)) => *written += n,
                Poll::Ready(Err(e)) => {
                    self.pending = None;
                    return Poll::Ready(Err(e));
                }
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(Ok(self.pending.take().map_or(0, |(_, _, reported)| reported)))
    }

    /// Starts replacing `buf` when it is hyper's own parse-error answer.
    fn replace_if_hypers(&mut self, buf: &[u8]) {
        if self.pending.is_none()
            && self.in_flight.idle()
            && let Some(coded) = with_code(buf)
        {
            self.pending = Some((coded, 0, buf.len()));
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for CodedParseErrors<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for CodedParseErrors<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.replace_if_hypers(buf);
        if this.pending.is_some() { this.drain(cx) } else { Pin::new(&mut this.inner).poll_write(cx, buf) }
    }

    fn poll_write_vectored(self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[io::IoSlice<'_>]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        // hyper writes a parse-error answer (it has no body) as its first buffer.
        if let Some(first) = bufs.first() {
            this.replace_if_hypers(first);
        }
        if this.pending.is_some() { this.drain(cx) } else { Pin::new(&mut this.inner).poll_write_vectored(cx, bufs) }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.pending.is_some() && this.drain(cx)?.is_pending() {
            return Poll::Pending;
        }
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.pending.is_some() && this.drain(cx)?.is_pending() {
            return Poll::Pending;
        }
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

/// hyper's whole `400`/`431` answer (`content-length: 0`, ending with the blank line)
/// with `X-Ca-Error-Code`, `X-Ca-Error-Message` and the gateway's JSON error body; None
/// for anything else.
fn with_code(buf: &[u8]) -> Option<Bytes> {
    let (code, message) = match buf.get(..13)? {
        b"HTTP/1.1 400 " => ("A400BR", "the request head cannot be parsed: malformed or ambiguous framing or header syntax"),
        b"HTTP/1.1 431 " => ("A431HL", "the request head is larger than the gateway reads (64 KiB)"),
        _ => return None,
    };
    let text = std::str::from_utf8(buf).ok()?;
    if !text.ends_with("\r\n\r\n") {
        return None;
    }
    // Every answer the service makes carries X-Ca-Request-Id, hyper's own never does. The
    // in-flight count alone cannot tell them apart: hyper drops an empty response body
    // before it writes the head, so an upstream's bare `400` (passed through untouched, as
    // every backend answer is) would otherwise be taken for hyper's.
    if text.to_ascii_lowercase().contains("\r\nx-ca-request-id:") {
        return None;
    }
    const NO_BODY: &str = "\r\ncontent-length: 0\r\n";
    let at = text.find(NO_BODY)?;
    let body = format!(r#"{{"code":"{code}","message":"{message}"}}"#);
    let headers = format!(
        "\r\ncontent-length: {}\r\ncontent-type: application/json\r\nx-ca-error-code: {code}\r\nx-ca-error-message: {message}\r\n",
        body.len()
    );
    // The headers after it, each with its CRLF; the blank line is written before the body.
    let rest = &text[at + NO_BODY.len()..text.len() - 2];
    Some(Bytes::from(format!("{}{headers}{rest}\r\n{body}", &text[..at])))
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncWriteExt;

    use super::*;

    const HYPERS_400: &[u8] =
        b"HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\ndate: Wed, 02 Dec 2026 13:08:22 GMT\r\n\r\n";

    #[test]
    fn hypers_bare_answers_get_a_code_and_a_json_body() {
        let coded = with_code(HYPERS_400).unwrap();
        let text = std::str::from_utf8(&coded).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 400 Bad Request\r\nconnection: close\r\n"), "{head}");
        assert!(head.contains("\r\nx-ca-error-code: A400BR\r\n"), "{head}");
        assert!(head.ends_with("\r\ndate: Wed, 02 Dec 2026 13:08:22 GMT"), "{head}");
        assert!(head.contains(&format!("\r\ncontent-length: {}\r\n", body.len())), "{head}");
        assert_eq!(serde_json_code(body), "A400BR");
        let too_large = b"HTTP/1.1 431 Request Header Fields Too Large\r\nconnection: close\r\ncontent-length: 0\r\n\r\n";
        let coded = with_code(too_large).unwrap();
        assert!(std::str::from_utf8(&coded).unwrap().contains("\r\nx-ca-error-code: A431HL\r\n"));
    }

    fn serde_json_code(body: &str) -> &str {
        body.split("\"code\":\"").nth(1).and_then(|rest| rest.split('"').next()).unwrap_or_default()
    }

    #[test]
    fn anything_else_is_left_alone() {
        for other in [
            &b"HTTP/1.1 400 Bad Request\r\ncontent-length: 12\r\n\r\n"[..],
            b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n",
            b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n",
            b"HTTP/1.1 400 ",
            b"",
        ] {
            assert!(with_code(other).is_none(), "{:?}", String::from_utf8_lossy(other));
        }
    }

    #[test]
    fn an_answer_the_service_made_is_never_taken_for_hypers() {
        // An upstream's empty 400 passed through: hyper may write it after the body is
        // dropped, so only the request id tells it from hyper's own answer.
        let passed_through =
            b"HTTP/1.1 400 Bad Request\r\nx-ca-request-id: abc-1\r\ncontent-length: 0\r\ndate: Wed, 02 Dec 2026 13:08:22 GMT\r\n\r\n";
        assert!(with_code(passed_through).is_none());
        let title_case = b"HTTP/1.1 431 Request Header Fields Too Large\r\nX-Ca-Request-Id: abc-1\r\ncontent-length: 0\r\n\r\n";
        assert!(with_code(title_case).is_none());
        assert!(with_code(HYPERS_400).is_some());
    }

    #[tokio::test]
    async fn only_writes_between_requests_are_replaced() {
        let (client, mut server) = tokio::io::duplex(4096);
        let in_flight = InFlight::default();
        let mut stream = CodedParseErrors::new(client, in_flight.clone());
        let serving = in_flight.enter();
        // A handler's own bare 400 (an upstream's answer passed through) is left as it is.
        stream.write_all(HYPERS_400).await.unwrap();
        drop(serving);
        stream.write_all(HYPERS_400).await.unwrap();
        stream.shutdown().await.unwrap();
        let mut written = String::new();
        tokio::io::AsyncReadExt::read_to_string(&mut server, &mut written).await.unwrap();
        let (handlers, hypers) = written.split_at(HYPERS_400.len());
        assert_eq!(handlers.as_bytes(), HYPERS_400);
        assert!(hypers.contains("x-ca-error-code: A400BR"), "{hypers}");
    }
}
