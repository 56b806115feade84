//! The response body of an upstream HTTP/1.1 exchange. A body that came whole with its
//! head (the common small answer) is a buffer, and the connection went back to the pool
//! before the response was even passed on; any other body reads from the connection
//! when polled, and gives it back when it has been read to its end. A body dropped
//! before its end closes the connection.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
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

enum Decoder {
    /// Bytes still to come.
    Length(u64),
    Chunked(chunked::Decoder),
    /// Until the backend closes.
    Close,
}

impl Http1Body {
    pub(super) fn new(mut conn: Connection, framing: ResponseFraming, keep_alive: bool, upload: Upload, home: Home) -> Self {
        let reusable = keep_alive && upload.is_done();
        let decoder = match framing {
            ResponseFraming::Empty => {
                home.finish(conn, reusable);
                return Self(State::Empty);
            }
            ResponseFraming::Length(n) if conn.read.len() as u64 >= n => {
                let data = conn.read.split_to(n as usize).freeze();
                home.finish(conn, reusable);
                return Self(State::Buffered(data));
            }
            ResponseFraming::Length(n) => Decoder::Length(n),
            ResponseFraming::Chunked => Decoder::Chunked(chunked::Decoder::new()),
            ResponseFraming::Close => Decoder::Close,
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
            let read = &mut self.conn.read;
            match &mut self.decoder {
                Decoder::Length(remaining) if !read.is_empty() => {
                    let n = (*remaining).min(read.len() as u64);
                    *remaining -= n;
                    return Poll::Ready(Some(Ok(Frame::data(read.split_to(n as usize).freeze()))));
                }
                Decoder::Close if !read.is_empty() => return Poll::Ready(Some(Ok(Frame::data(read.split().freeze())))),
                Decoder::Chunked(decoder) => match decoder.decode(read)? {
                    Decoded::Data(data) => return Poll::Ready(Some(Ok(Frame::data(data)))),
                    Decoded::Trailers(trailers) => return Poll::Ready(Some(Ok(Frame::trailers(trailers)))),
                    Decoded::End => return Poll::Ready(None),
                    Decoded::More => {}
                },
                _ => {}
            }
            if ready!(self.conn.poll_fill(cx)).map_err(Error::Io)? == 0 {
                return Poll::Ready(match self.decoder {
                    Decoder::Close => None,
                    _ => Some(Err(Error::ClosedInBody)),
                });
            }
        }
    }

    fn is_done(&self) -> bool {
        match &self.decoder {
            Decoder::Length(remaining) => *remaining == 0,
            Decoder::Chunked(decoder) => decoder.is_done(),
            Decoder::Close => false,
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
                    Some(Ok(_)) if reading.is_done() => this.finish(),
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
