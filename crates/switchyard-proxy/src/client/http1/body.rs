//! The response body of an upstream HTTP/1.1 exchange. A body that came whole with its
//! head (the common small answer) is a buffer, and the connection went back to the pool
//! before the response was even passed on; any other body reads from the connection
//! when polled, and gives it back when it has been read to its end. A body dropped
//! before its end closes the connection.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::{Bytes, BytesMut};
use http_body::{Frame, SizeHint};

use super::chunked::{self, Decoded};
use super::head::ResponseFraming;
use super::{Connection, Error, Upload};
use crate::client::pool::{Key, Pool};

/// Where a connection goes back to: its worker's pool, under its upstream's key.
pub(in crate::client) struct Home {
    pub(in crate::client) pool: Arc<Pool>,
    pub(in crate::client) key: Key,
}

impl Home {
    /// Pools `conn` when the exchange left it reusable (the whole response read, the
    /// whole request written, keep-alive, no stray bytes); otherwise closes it.
    fn finish(self, mut conn: Connection, reusable: bool) {
        if reusable && conn.read.is_empty() {
            conn.release_large_buffers();
            self.pool.checkin(&self.key, conn);
        }
    }
}

pub struct Http1Body(State);

enum State {
    /// Ended (or had nothing).
    Empty,
    /// The whole body, read with the head; given as one frame.
    Buffered(Bytes),
    /// Boxed: the connection and its decoder are large next to the other states, and a
    /// response body is moved along with the response.
    Reading(Box<Reading>),
}

struct Reading {
    conn: Connection,
    decoder: Decoder,
    /// The request body when the response came before it was all written.
    upload: Upload,
    keep_alive: bool,
    home: Home,
}

pub(super) enum Decoder {
    /// Bytes still to come.
    Length(u64),
    Chunked(chunked::Decoder),
    /// Until the backend closes.
    Close,
}

/// What the decoder makes of the bytes read so far.
pub(super) enum Step {
    Frame(Frame<Bytes>),
    End,
    /// Read more from the connection.
    More,
}

impl Decoder {
    /// The body after a head with this framing; None when it has none.
    pub(super) fn for_framing(framing: ResponseFraming) -> Option<Self> {
        match framing {
            ResponseFraming::Empty => None,
            ResponseFraming::Length(n) => Some(Self::Length(n)),
            ResponseFraming::Chunked => Some(Self::Chunked(chunked::Decoder::new())),
            ResponseFraming::Close => Some(Self::Close),
        }
    }

    /// Decodes what `read` holds, consuming what it used: at most one frame.
    pub(super) fn step(&mut self, read: &mut BytesMut) -> Result<Step, Error> {
        Ok(match self {
            Self::Length(remaining) if !read.is_empty() => {
                let n = (*remaining).min(read.len() as u64);
                *remaining -= n;
                Step::Frame(Frame::data(read.split_to(n as usize).freeze()))
            }
            Self::Close if !read.is_empty() => Step::Frame(Frame::data(read.split().freeze())),
            Self::Chunked(decoder) => match decoder.decode(read)? {
                Decoded::Data(data) => Step::Frame(Frame::data(data)),
                Decoded::Trailers(trailers) => Step::Frame(Frame::trailers(trailers)),
                Decoded::End => Step::End,
                Decoded::More => Step::More,
            },
            _ => Step::More,
        })
    }

    /// The backend closed the connection: the end of a close-delimited body, for any
    /// other framing a body cut short.
    pub(super) fn at_end_of_stream(&self) -> Result<(), Error> {
        match self {
            Self::Close => Ok(()),
            _ => Err(Error::ClosedInBody),
        }
    }

    /// The whole body was decoded (a close-delimited one never knows until the close).
    pub(super) fn is_done(&self) -> bool {
        match self {
            Self::Length(remaining) => *remaining == 0,
            Self::Chunked(decoder) => decoder.is_done(),
            Self::Close => false,
        }
    }
}

impl Http1Body {
    pub(super) fn new(mut conn: Connection, framing: ResponseFraming, keep_alive: bool, upload: Upload, home: Home) -> Self {
        let reusable = keep_alive && upload.is_done();
        if let ResponseFraming::Length(n) = framing
            && conn.read.len() as u64 >= n
        {
            let data = conn.read.split_to(n as usize).freeze();
            home.finish(conn, reusable);
            return Self(State::Buffered(data));
        }
        let Some(decoder) = Decoder::for_framing(framing) else {
            home.finish(conn, reusable);
            return Self(State::Empty);
        };
        Self(State::Reading(Box::new(Reading { conn, decoder, upload, keep_alive, home })))
    }

    /// Ends the body: the connection goes home (or is closed) with the reading state.
    fn finish(&mut self) {
        if let State::Reading(reading) = std::mem::replace(&mut self.0, State::Empty) {
            let Reading { conn, decoder, upload, keep_alive, home } = *reading;
            home.finish(conn, keep_alive && upload.is_done() && !matches!(decoder, Decoder::Close));
        }
    }
}

impl Reading {
    /// The next frame, None at the end.
    fn poll_frame(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        // Keep sending what is left of the request (an upstream streaming its answer as
        // it reads may need it to go on).
        self.upload.poll_progress(&mut self.conn, cx)?;
        loop {
            match self.decoder.step(&mut self.conn.read)? {
                Step::Frame(frame) => return Poll::Ready(Some(Ok(frame))),
                Step::End => return Poll::Ready(None),
                Step::More => {}
            }
            if ready!(self.conn.poll_fill(cx)).map_err(Error::Io)? == 0 {
                return Poll::Ready(self.decoder.at_end_of_stream().err().map(Err));
            }
        }
    }
}

impl http_body::Body for Http1Body {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        let this = &mut *self;
        match &mut this.0 {
            State::Empty => Poll::Ready(None),
            State::Buffered(data) => {
                let data = std::mem::take(data);
                this.0 = State::Empty;
                Poll::Ready(Some(Ok(Frame::data(data))))
            }
            State::Reading(reading) => {
                let polled = ready!(reading.poll_frame(cx));
                match &polled {
                    // Given back as soon as the last byte is read, not when the body is
                    // dropped: the next request may take it at once.
                    Some(Ok(_)) if reading.decoder.is_done() => this.finish(),
                    Some(Ok(_)) => {}
                    None => this.finish(),
                    // Whatever the error, the connection's state is unknown: closed.
                    Some(Err(_)) => this.0 = State::Empty,
                }
                Poll::Ready(polled)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.0, State::Empty)
    }

    fn size_hint(&self) -> SizeHint {
        match &self.0 {
            State::Empty => SizeHint::with_exact(0),
            State::Buffered(data) => SizeHint::with_exact(data.len() as u64),
            State::Reading(reading) => match reading.decoder {
                Decoder::Length(remaining) => SizeHint::with_exact(remaining),
                _ => SizeHint::default(),
            },
        }
    }
}
