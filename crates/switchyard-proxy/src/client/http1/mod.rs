//! The upstream HTTP/1.1 client codec: the request task itself writes the request and
//! reads the response head on the pooled connection, and the response body reads the
//! rest from the connection when the gateway's server polls it. No task per connection,
//! no channel per request, one state machine instead of hyper's second dispatcher (the
//! way pingora speaks to its upstreams).
//!
//! Strict like hyper's client about what a backend sends (`head`, `chunked`): every
//! refusal is an [`Error`] the backend call turns into a 502, never a panic. WebSocket
//! handshakes and HTTP/2 upstreams do not come here (see `client`).

mod body;
mod chunked;
mod head;
#[cfg(test)]
mod tests;

use std::future::Future;
use std::io::{self, IoSlice};
use std::pin::{Pin, pin};
use std::task::{Context, Poll, Waker, ready};

use bytes::{Buf, Bytes, BytesMut};
use http_body::Body as _;
use tokio::io::{AsyncReadExt, AsyncWrite};

pub(super) use self::body::Home;
pub use self::body::Http1Body;
pub(super) use self::head::Head;
use self::head::RequestFraming;
use super::connect::Stream;
use crate::request_body::{BoxError, RequestBody};

/// A read asks for at least this much room in the buffer (hyper starts with 8 KiB).
const READ_CHUNK: usize = 8 * 1024;

/// An idle connection keeps buffers up to this size: one backend's 400 KiB head must not
/// stay pinned by each of up to a thousand idle connections of its upstream.
const IDLE_BUFFER_KEEP: usize = 16 * 1024;

/// Why an exchange on an open connection failed. Display is for the log; [`Error::kind`]
/// is what a client may be told.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("connection closed before a response")]
    ClosedBeforeResponse,
    #[error("connection closed inside the response head")]
    ClosedInHead,
    #[error("connection closed before the end of the response body")]
    ClosedInBody,
    #[error("invalid HTTP response: {0}")]
    Invalid(&'static str),
    #[error("invalid HTTP response: head over {} bytes or {} fields", head::MAX_HEAD, head::MAX_HEADERS)]
    HeadTooLarge,
    #[error("the request body did not match its content-length")]
    BodyLength,
    #[error("connection I/O failed")]
    Io(#[source] io::Error),
    /// The request body (the client's, as the gateway streams it) failed.
    #[error("the request body failed")]
    Body(#[source] BoxError),
}

impl Error {
    /// The connection failed (closed, reset), not the request's body nor the response.
    pub(super) fn is_connection_failure(&self) -> bool {
        matches!(self, Self::Io(_) | Self::ClosedBeforeResponse)
    }

    /// The kind of failure, in the words hyper's errors were given before (`client`).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::ClosedBeforeResponse | Self::ClosedInHead | Self::ClosedInBody => "connection closed before a response",
            Self::Invalid(_) | Self::HeadTooLarge => "invalid HTTP response",
            Self::Io(e) => super::io_failure(e),
            Self::Body(e) => crate::request_body::find_in_chain::<io::Error>(&**e).map_or("request failed", super::io_failure),
            Self::BodyLength => "request failed",
        }
    }
}

/// An upstream HTTP/1.1 connection: the stream and its two buffers, kept across requests.
pub struct Connection {
    stream: Stream,
    /// What was read and not yet used: a response head, body bytes.
    read: BytesMut,
    /// The request head; `written` of it have gone out.
    write: Vec<u8>,
    written: usize,
    /// 1xx heads read before this exchange's final one (see [`head::MAX_INFORMATIONAL`]).
    informational: usize,
}

impl Connection {
    pub(super) fn new(stream: Stream) -> Self {
        Self { stream, read: BytesMut::new(), write: Vec::with_capacity(1024), written: 0, informational: 0 }
    }

    /// Lets go of a buffer a large message grew, before the connection idles in the pool.
    pub(super) fn release_large_buffers(&mut self) {
        if self.read.capacity() > IDLE_BUFFER_KEEP {
            self.read = BytesMut::new();
        }
        if self.write.capacity() > IDLE_BUFFER_KEEP {
            self.write = Vec::with_capacity(1024);
        }
    }

    /// The stream, for a protocol that reads it itself (a WebSocket handshake through hyper).
    pub(super) fn into_stream(self) -> Stream {
        self.stream
    }

    /// Whether an idle connection is still open and silent: no end of stream and no
    /// bytes from the backend since its last response. Never waits (one poll with a
    /// no-op waker; nothing is read from the socket unless the backend sent something).
    pub(super) fn is_idle_and_clean(&mut self) -> bool {
        if !self.read.is_empty() {
            return false;
        }
        let mut cx = Context::from_waker(Waker::noop());
        self.poll_fill(&mut cx).is_pending()
    }

    /// Reads what is there into `read`; `Ok(0)` is the end of the stream.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if self.read.capacity() - self.read.len() < READ_CHUNK / 2 {
            self.read.reserve(READ_CHUNK);
        }
        // `read_buf` keeps no state between polls: a fresh one per poll is the same read.
        pin!(self.stream.read_buf(&mut self.read)).poll(cx)
    }

    /// Reads until a final response head is complete (1xx heads skipped).
    fn poll_head(&mut self, method: &http::Method, cx: &mut Context<'_>) -> Poll<Result<Head, Error>> {
        loop {
            if let Some(head) = head::parse_response(&mut self.read, method, &mut self.informational)? {
                return Poll::Ready(Ok(head));
            }
            let had_bytes = !self.read.is_empty();
            if ready!(self.poll_fill(cx)).map_err(Error::Io)? == 0 {
                return Poll::Ready(Err(if had_bytes { Error::ClosedInHead } else { Error::ClosedBeforeResponse }));
            }
        }
    }
}

/// The request body on its way out, from the request's first write to its last (which
/// may come while the response body is read: an upstream may answer before it has read
/// the whole request, and some stream their answer while they read it).
///
/// What is pending (a chunk-size line, then data) is kept here, not in the connection's
/// buffer, so a request of which nothing was written can go to another connection as it is.
pub struct Upload {
    framing: RequestFraming,
    /// The chunk-size line (or the last chunk) to write before `data`; `line_at` of it written.
    line: chunked::Line,
    line_at: usize,
    /// Body bytes still to write.
    data: Bytes,
    /// Frames still to come from the client; None once it has ended.
    body: Option<RequestBody>,
    /// With a length: the bytes the body has yet to give.
    remaining: u64,
    first_chunk: bool,
    /// A byte of this request reached the socket: from then on it may have been processed.
    sent: bool,
    /// Everything written and flushed.
    done: bool,
    /// A write failed after the request started: the response may still be there to read.
    failed: Option<io::Error>,
}

impl Upload {
    /// A buffered body is taken whole, so it goes out in the head's write.
    pub(super) fn new(mut body: RequestBody) -> Self {
        let framing = if body.is_end_stream() {
            RequestFraming::Empty
        } else {
            body.size_hint().exact().map_or(RequestFraming::Chunked, RequestFraming::Length)
        };
        let mut upload = Self {
            framing,
            line: chunked::Line::default(),
            line_at: 0,
            data: Bytes::new(),
            body: None,
            remaining: 0,
            first_chunk: true,
            sent: false,
            done: false,
            failed: None,
        };
        match framing {
            RequestFraming::Empty => {}
            RequestFraming::Length(n) if matches!(body, RequestBody::Full { .. }) => {
                let mut cx = Context::from_waker(Waker::noop());
                if let Poll::Ready(Some(Ok(frame))) = Pin::new(&mut body).poll_frame(&mut cx) {
                    upload.data = frame.into_data().unwrap_or_default();
                }
                if upload.data.len() as u64 != n {
                    // Never happens for a `Full` body; stream whatever is left if it does.
                    upload.body = Some(body);
                    upload.remaining = n - (upload.data.len() as u64).min(n);
                }
            }
            RequestFraming::Length(n) => {
                upload.body = Some(body);
                upload.remaining = n;
            }
            RequestFraming::Chunked => upload.body = Some(body),
        }
        upload
    }

    /// Whether any byte of the request reached the socket (before that, the request may
    /// go to another connection as it is).
    pub(super) fn sent(&self) -> bool {
        self.sent
    }

    fn is_done(&self) -> bool {
        self.done
    }

    /// Writes as much as the socket and the client's body allow. What the client's body
    /// has ready is taken before each write, so the head goes out with the first bytes
    /// of the body (one write), and a body that fails at once (a malformed first chunk)
    /// fails the request before its head reached the backend, as with hyper's client.
    fn poll(&mut self, conn: &mut Connection, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        loop {
            let mut waiting = false;
            if self.data.is_empty() && self.line_at == self.line.len() {
                match self.body.as_mut().map(|body| Pin::new(body).poll_frame(cx)) {
                    None => {}
                    Some(Poll::Pending) => waiting = true,
                    Some(Poll::Ready(Some(Ok(frame)))) => {
                        // Request trailers are not sent (hyper sent only those a `Trailer`
                        // field announced, and HTTP/1 backends do not read them).
                        if let Ok(data) = frame.into_data() {
                            self.take(data)?;
                        }
                        continue;
                    }
                    Some(Poll::Ready(Some(Err(e)))) => return Poll::Ready(Err(Error::Body(e))),
                    Some(Poll::Ready(None)) => self.end()?,
                }
            }
            ready!(self.poll_write_pending(conn, cx)).map_err(Error::Io)?;
            if waiting {
                // A TLS stream keeps what it accepted in its own buffer until flushed:
                // without this, those bytes would wait for the client's next frame.
                if let Poll::Ready(Err(e)) = Pin::new(&mut conn.stream).poll_flush(cx) {
                    return Poll::Ready(Err(Error::Io(e)));
                }
                return Poll::Pending;
            }
            if self.body.is_none() {
                ready!(Pin::new(&mut conn.stream).poll_flush(cx)).map_err(Error::Io)?;
                self.done = true;
                return Poll::Ready(Ok(()));
            }
        }
    }

    /// A data frame from the client: pending, behind its chunk-size line when chunked.
    fn take(&mut self, data: Bytes) -> Result<(), Error> {
        if data.is_empty() {
            return Ok(());
        }
        if let RequestFraming::Length(_) = self.framing {
            self.remaining = self.remaining.checked_sub(data.len() as u64).ok_or(Error::BodyLength)?;
        } else {
            self.line = chunked::Line::size(self.first_chunk, data.len());
            self.line_at = 0;
            self.first_chunk = false;
        }
        self.data = data;
        Ok(())
    }

    /// The client's body has ended.
    fn end(&mut self) -> Result<(), Error> {
        match self.framing {
            RequestFraming::Length(_) if self.remaining != 0 => return Err(Error::BodyLength),
            RequestFraming::Chunked => {
                self.line = chunked::Line::end(self.first_chunk);
                self.line_at = 0;
            }
            _ => {}
        }
        self.body = None;
        Ok(())
    }

    /// Writes the rest of the connection's head buffer, the chunk line and the data, in
    /// as few writes as the socket takes.
    fn poll_write_pending(&mut self, conn: &mut Connection, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            let head = &conn.write[conn.written..];
            let line = &self.line.as_bytes()[self.line_at..];
            let (head_len, line_len) = (head.len(), line.len());
            if head_len + line_len + self.data.len() == 0 {
                break;
            }
            let slices = [IoSlice::new(head), IoSlice::new(line), IoSlice::new(&self.data)];
            let mut n = ready!(Pin::new(&mut conn.stream).poll_write_vectored(cx, &slices))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.sent = true;
            let from_head = n.min(head_len);
            conn.written += from_head;
            n -= from_head;
            let from_line = n.min(line_len);
            self.line_at += from_line;
            self.data.advance(n - from_line);
        }
        conn.write.clear();
        conn.written = 0;
        Poll::Ready(Ok(()))
    }

    /// Moves the upload on unless it is done or has failed; a failed write is kept (the
    /// response may already be readable), any other failure returned.
    fn poll_progress(&mut self, conn: &mut Connection, cx: &mut Context<'_>) -> Result<(), Error> {
        if self.done || self.failed.is_some() {
            return Ok(());
        }
        match self.poll(conn, cx) {
            Poll::Ready(Err(Error::Io(e))) => {
                self.failed = Some(e);
                Ok(())
            }
            Poll::Ready(Err(e)) => Err(e),
            Poll::Ready(Ok(())) | Poll::Pending => Ok(()),
        }
    }
}

/// Sends the request (`parts` and `upload`) on `conn` and reads the final response
/// head. On an error the connection is dropped (closed); `upload.sent()` then says
/// whether the request may be sent elsewhere as it is.
pub(super) async fn send(mut conn: Connection, parts: &http::request::Parts, upload: &mut Upload) -> Result<(Connection, Head), Error> {
    conn.write.clear();
    conn.written = 0;
    conn.informational = 0;
    head::encode_request(parts, upload.framing, &mut conn.write);
    let head = std::future::poll_fn(|cx| {
        upload.poll_progress(&mut conn, cx)?;
        match conn.poll_head(&parts.method, cx) {
            // A write failed and nothing is there to read: the write's error says more.
            Poll::Ready(Err(Error::ClosedBeforeResponse | Error::Io(_))) if upload.failed.is_some() => {
                Poll::Ready(Err(Error::Io(upload.failed.take().unwrap_or_else(|| io::ErrorKind::BrokenPipe.into()))))
            }
            polled => polled,
        }
    })
    .await?;
    Ok((conn, head))
}

/// The response `head` read on `conn` as an `http::Response` whose body reads the rest.
pub(super) fn response(conn: Connection, head: Head, upload: Upload, home: Home) -> http::Response<Http1Body> {
    let Head { status, version, headers, reason, framing, keep_alive } = head;
    let body = Http1Body::new(conn, framing, keep_alive, upload, home);
    let mut response = http::Response::new(body);
    *response.status_mut() = status;
    *response.version_mut() = version;
    *response.headers_mut() = headers;
    if let Some(reason) = reason {
        response.extensions_mut().insert(reason);
    }
    response
}

/// What [`fuzz_read_response`] read: the final head's status, whether the connection
/// could be reused, and the body's data and trailer field count, or why it was refused.
#[cfg(feature = "fuzzing")]
#[derive(Debug, PartialEq, Eq)]
pub enum FuzzRead {
    /// More bytes were needed (the response did not end within the input).
    Incomplete,
    Refused(String),
    Response {
        status: u16,
        keep_alive: bool,
        close_delimited: bool,
        body: Vec<u8>,
        trailers: usize,
        rest: usize,
    },
}

/// For `fuzz/`: a backend's `bytes` read as this codec reads a response to a `HEAD` (or
/// any other) request, arriving in two reads split at `split`. The split must never
/// change what is read: the head parser starts again on a partial head, and the chunked
/// decoder keeps its state byte by byte.
#[cfg(feature = "fuzzing")]
pub fn fuzz_read_response(bytes: &[u8], head_request: bool, split: usize) -> FuzzRead {
    use self::head::ResponseFraming;
    let method = if head_request { http::Method::HEAD } else { http::Method::GET };
    let split = split.min(bytes.len());
    let mut buf = BytesMut::from(&bytes[..split]);
    let mut later = &bytes[split..];
    let mut informational = 0;
    let head = loop {
        match head::parse_response(&mut buf, &method, &mut informational) {
            Err(e) => return FuzzRead::Refused(e.to_string()),
            Ok(Some(head)) => break head,
            Ok(None) if later.is_empty() => return FuzzRead::Incomplete,
            Ok(None) => buf.extend_from_slice(std::mem::take(&mut later)),
        }
    };
    let mut data = Vec::new();
    let mut trailers = 0;
    let status = head.status.as_u16();
    // The response body's own decoder, fed as the connection would feed it.
    if let Some(mut decoder) = body::Decoder::for_framing(head.framing) {
        while !decoder.is_done() {
            match decoder.step(&mut buf) {
                Err(e) => return FuzzRead::Refused(e.to_string()),
                Ok(body::Step::Frame(frame)) => match frame.into_data() {
                    Ok(chunk) => data.extend_from_slice(&chunk),
                    Err(frame) => trailers = frame.into_trailers().map_or(0, |fields| fields.len()),
                },
                Ok(body::Step::End) => break,
                Ok(body::Step::More) if !later.is_empty() => buf.extend_from_slice(std::mem::take(&mut later)),
                Ok(body::Step::More) if decoder.at_end_of_stream().is_ok() => break,
                Ok(body::Step::More) => return FuzzRead::Incomplete,
            }
        }
    }
    buf.extend_from_slice(later);
    let close_delimited = head.framing == ResponseFraming::Close;
    FuzzRead::Response { status, keep_alive: head.keep_alive && !close_delimited, close_delimited, body: data, trailers, rest: buf.len() }
}
