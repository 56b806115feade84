//! Chunked transfer coding (RFC 9112 section 7.1): the decoder a response body is read
//! with and the encoder a request body of unknown length is written with.
//!
//! The decoder is hyper's, byte for byte in what it accepts: at least one hex digit,
//! no overflow, optional spaces or tabs after the size, extensions skipped (16 KiB in
//! all, never a bare LF), CRLF after each chunk's data, and trailer fields (at most 100,
//! 16 KiB) handed on as HTTP trailers.

use bytes::{Buf, Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue};

use super::Error;
use super::head::MAX_HEADERS;

/// Bytes of chunk extensions a whole body may carry (hyper's `CHUNKED_EXTENSIONS_LIMIT`).
const EXTENSIONS_LIMIT: u64 = 16 * 1024;

/// Bytes the trailer section may take (hyper's `TRAILER_LIMIT`).
const TRAILERS_LIMIT: usize = 16 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// The first digit of a chunk size.
    Start,
    Size,
    /// Spaces or tabs after the size.
    SizeSpace,
    Extension,
    SizeLf,
    Data,
    DataCr,
    DataLf,
    /// After the last chunk's line: the end (CR) or a trailer field.
    EndCr,
    EndLf,
    Trailer,
    TrailerLf,
    End,
}

/// What the next bytes of a chunked body gave.
#[derive(Debug)]
pub(super) enum Decoded {
    Data(Bytes),
    /// The trailer fields; the body has ended.
    Trailers(HeaderMap),
    End,
    /// Everything buffered is used: read more.
    More,
}

#[derive(Debug)]
pub(super) struct Decoder {
    state: State,
    /// Of the current chunk: its size while the size line is read, then what is left of its data.
    size: u64,
    extension_bytes: u64,
    trailers: Option<Vec<u8>>,
    trailer_fields: usize,
}

impl Decoder {
    pub(super) fn new() -> Self {
        Self { state: State::Start, size: 0, extension_bytes: 0, trailers: None, trailer_fields: 0 }
    }

    pub(super) fn is_done(&self) -> bool {
        self.state == State::End
    }

    /// Decodes from the front of `buf`, consuming what it used; at most one data frame
    /// (split off `buf` without a copy) per call.
    pub(super) fn decode(&mut self, buf: &mut BytesMut) -> Result<Decoded, Error> {
        loop {
            match self.state {
                State::End => return Ok(Decoded::End),
                State::Data if buf.is_empty() => return Ok(Decoded::More),
                State::Data => {
                    let n = usize::try_from(self.size).unwrap_or(usize::MAX).min(buf.len());
                    self.size -= n as u64;
                    if self.size == 0 {
                        self.state = State::DataCr;
                    }
                    return Ok(Decoded::Data(buf.split_to(n).freeze()));
                }
                _ => {}
            }
            let Some(&byte) = buf.first() else { return Ok(Decoded::More) };
            buf.advance(1);
            self.state = self.step(byte)?;
            if self.state == State::End {
                return match self.trailers.take() {
                    Some(fields) => Ok(Decoded::Trailers(trailers(&fields, self.trailer_fields)?)),
                    None => Ok(Decoded::End),
                };
            }
        }
    }

    /// The state after `byte` (never `Data`'s bytes: those are taken whole).
    fn step(&mut self, byte: u8) -> Result<State, Error> {
        let invalid = |why| Err(Error::Invalid(why));
        match (self.state, byte) {
            (State::Start | State::Size, b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F') => {
                let digit = (byte as char).to_digit(16).unwrap_or_default();
                self.size = self
                    .size
                    .checked_mul(16)
                    .and_then(|s| s.checked_add(u64::from(digit)))
                    .ok_or(Error::Invalid("chunk size overflows"))?;
                Ok(State::Size)
            }
            (State::Start, _) => invalid("chunk size without a digit"),
            (State::Size | State::SizeSpace, b' ' | b'\t') => Ok(State::SizeSpace),
            (State::Size | State::SizeSpace, b';') => Ok(State::Extension),
            (State::Size | State::SizeSpace | State::Extension, b'\r') => Ok(State::SizeLf),
            (State::Size | State::SizeSpace, _) => invalid("invalid chunk size line"),
            (State::Extension, b'\n') => invalid("chunk extension with a bare LF"),
            (State::Extension, _) => {
                self.extension_bytes += 1;
                if self.extension_bytes >= EXTENSIONS_LIMIT { invalid("chunk extensions over 16 KiB") } else { Ok(State::Extension) }
            }
            (State::SizeLf, b'\n') if self.size == 0 => Ok(State::EndCr),
            (State::SizeLf, b'\n') => Ok(State::Data),
            (State::SizeLf, _) => invalid("chunk size line without LF"),
            (State::DataCr, b'\r') => Ok(State::DataLf),
            (State::DataCr, _) => invalid("chunk data longer than its size"),
            (State::DataLf, b'\n') => Ok(State::Start),
            (State::DataLf, _) => invalid("chunk data without CRLF"),
            (State::EndCr, b'\r') => {
                self.push_trailer(byte)?;
                Ok(State::EndLf)
            }
            // Field lines end in CRLF here as in the head: a bare LF would let this
            // decoder and the trailer parser disagree about where a field ends.
            (State::EndCr | State::Trailer, b'\n') => invalid("trailer section with a bare LF"),
            (State::EndCr, _) => {
                self.trailers.get_or_insert_with(|| Vec::with_capacity(64));
                self.push_trailer(byte)?;
                Ok(State::Trailer)
            }
            (State::Trailer, _) => {
                self.push_trailer(byte)?;
                Ok(if byte == b'\r' { State::TrailerLf } else { State::Trailer })
            }
            (State::TrailerLf, b'\n') => {
                if self.trailer_fields >= MAX_HEADERS {
                    return invalid("over 100 trailer fields");
                }
                self.trailer_fields += 1;
                self.push_trailer(byte)?;
                Ok(State::EndCr)
            }
            (State::TrailerLf, _) => invalid("trailer field without LF"),
            (State::EndLf, b'\n') => {
                self.push_trailer(byte)?;
                Ok(State::End)
            }
            (State::EndLf, _) => invalid("chunked body end without LF"),
            (State::Data | State::End, _) => Ok(self.state),
        }
    }

    /// Keeps a byte of the trailer section, if there is one.
    fn push_trailer(&mut self, byte: u8) -> Result<(), Error> {
        let Some(fields) = &mut self.trailers else { return Ok(()) };
        fields.push(byte);
        if fields.len() >= TRAILERS_LIMIT {
            return Err(Error::Invalid("trailer fields over 16 KiB"));
        }
        Ok(())
    }
}

/// The trailer section's fields (`count` of them, with the final empty line).
fn trailers(section: &[u8], count: usize) -> Result<HeaderMap, Error> {
    let mut fields = vec![httparse::EMPTY_HEADER; count];
    let parsed = match httparse::parse_headers(section, &mut fields) {
        Ok(httparse::Status::Complete((_, parsed))) => parsed,
        _ => return Err(Error::Invalid("invalid trailer fields")),
    };
    let mut map = HeaderMap::with_capacity(parsed.len());
    for field in parsed {
        let name = HeaderName::from_bytes(field.name.as_bytes()).map_err(|_| Error::Invalid("invalid trailer field name"))?;
        let value = HeaderValue::from_bytes(field.value).map_err(|_| Error::Invalid("invalid trailer field value"))?;
        map.append(name, value);
    }
    Ok(map)
}

/// A line the encoder writes: the one before a chunk's data (ending the previous chunk's
/// data first unless it is the first), or the last chunk with the empty trailer section.
#[derive(Clone, Copy, Default)]
pub(super) struct Line {
    bytes: [u8; 24],
    len: u8,
}

impl Line {
    pub(super) fn size(first: bool, len: usize) -> Self {
        let mut line = Self::default();
        if !first {
            line.push(b"\r\n");
        }
        let mut digits = [0u8; 16];
        let mut at = digits.len();
        let mut n = len;
        loop {
            at -= 1;
            digits[at] = b"0123456789abcdef"[n % 16];
            n /= 16;
            if n == 0 {
                break;
            }
        }
        line.push(&digits[at..]);
        line.push(b"\r\n");
        line
    }

    pub(super) fn end(first: bool) -> Self {
        let mut line = Self::default();
        if !first {
            line.push(b"\r\n");
        }
        line.push(b"0\r\n\r\n");
        line
    }

    fn push(&mut self, bytes: &[u8]) {
        let at = usize::from(self.len);
        self.bytes[at..at + bytes.len()].copy_from_slice(bytes);
        self.len += bytes.len() as u8;
    }

    pub(super) fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    pub(super) fn len(&self) -> usize {
        usize::from(self.len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes `raw` fed in pieces of `step` bytes: the data, the trailers, or the error.
    fn decode(raw: &[u8], step: usize) -> Result<(String, Option<HeaderMap>), Error> {
        let mut decoder = Decoder::new();
        let mut buf = BytesMut::new();
        let mut fed = 0;
        let mut data = String::new();
        loop {
            match decoder.decode(&mut buf)? {
                Decoded::Data(d) => data.push_str(std::str::from_utf8(&d).unwrap()),
                Decoded::Trailers(t) => return Ok((data, Some(t))),
                Decoded::End => return Ok((data, None)),
                Decoded::More if fed == raw.len() => return Err(Error::Invalid("incomplete (test)")),
                Decoded::More => {
                    let next = (fed + step).min(raw.len());
                    buf.extend_from_slice(&raw[fed..next]);
                    fed = next;
                }
            }
        }
    }

    fn refused(raw: &[u8]) -> String {
        match decode(raw, raw.len()) {
            Err(Error::Invalid(why)) => why.to_owned(),
            other => panic!("{:?} accepted: {other:?}", String::from_utf8_lossy(raw)),
        }
    }

    #[test]
    fn chunks_decode_whole_or_fed_a_byte_at_a_time() {
        let raw = b"5\r\nhello\r\n7;name=value;x\r\n, world\r\nA \t; ext\r\n0123456789\r\n0\r\n\r\n";
        for step in [1, 2, 7, raw.len()] {
            assert_eq!(decode(raw, step).unwrap(), ("hello, world0123456789".to_owned(), None), "step {step}");
        }
    }

    #[test]
    fn trailer_fields_come_back_as_trailers() {
        let raw = b"3\r\nabc\r\n0\r\nx-checksum: 42\r\nx-more: a b\r\n\r\n";
        for step in [1, raw.len()] {
            let (data, trailers) = decode(raw, step).unwrap();
            let trailers = trailers.expect("trailers");
            assert_eq!((data.as_str(), trailers.len()), ("abc", 2));
            assert_eq!(trailers["x-checksum"], "42");
            assert_eq!(trailers["x-more"], "a b");
        }
    }

    #[test]
    fn malformed_chunk_sizes_are_refused() {
        assert_eq!(refused(b"zz\r\nhello\r\n0\r\n\r\n"), "chunk size without a digit");
        assert_eq!(refused(b"\r\nhello\r\n0\r\n\r\n"), "chunk size without a digit");
        assert_eq!(refused(b"-5\r\nhello\r\n0\r\n\r\n"), "chunk size without a digit");
        assert_eq!(refused(b"5x\r\nhello\r\n0\r\n\r\n"), "invalid chunk size line");
        assert_eq!(refused(b"5 5\r\nhello\r\n0\r\n\r\n"), "invalid chunk size line");
        assert_eq!(refused(b"5\nhello\r\n0\r\n\r\n"), "invalid chunk size line");
        assert_eq!(refused(b"5\r\rhello\r\n0\r\n\r\n"), "chunk size line without LF");
        assert_eq!(refused(b"5;a\nb\r\nhello\r\n0\r\n\r\n"), "chunk extension with a bare LF");
        assert_eq!(refused(b"3\r\nhello\r\n0\r\n\r\n"), "chunk data longer than its size");
        assert_eq!(refused(b"5\r\nhello\rx0\r\n\r\n"), "chunk data without CRLF");
        assert_eq!(refused(b"0\r\n\rx"), "chunked body end without LF");
    }

    #[test]
    fn a_chunk_size_that_overflows_64_bits_is_refused() {
        assert_eq!(refused(b"10000000000000000\r\nx\r\n"), "chunk size overflows");
        // The largest size is a size (the data then simply never ends).
        let mut decoder = Decoder::new();
        let mut buf = BytesMut::from(&b"ffffffffffffffff\r\nabc"[..]);
        assert!(matches!(decoder.decode(&mut buf), Ok(Decoded::Data(d)) if &d[..] == b"abc"));
    }

    #[test]
    fn extensions_and_trailers_are_bounded() {
        let mut long = b"1;".to_vec();
        long.extend(std::iter::repeat_n(b'x', 17 * 1024));
        long.extend_from_slice(b"\r\na\r\n0\r\n\r\n");
        assert_eq!(refused(&long), "chunk extensions over 16 KiB");
        let mut many = b"0\r\n".to_vec();
        for i in 0..101 {
            many.extend_from_slice(format!("x-{i}: v\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert_eq!(refused(&many), "over 100 trailer fields");
        let mut big = b"0\r\nx-big: ".to_vec();
        big.extend(std::iter::repeat_n(b'v', 17 * 1024));
        big.extend_from_slice(b"\r\n\r\n");
        assert_eq!(refused(&big), "trailer fields over 16 KiB");
        assert_eq!(refused(b"0\r\nx-fold: a\r\n b\r\n\r\n"), "invalid trailer fields", "obsolete line folding in a trailer");
    }

    #[test]
    fn the_encoder_writes_what_the_decoder_reads() {
        let mut out = Line::size(true, 5).as_bytes().to_vec();
        out.extend_from_slice(b"hello");
        out.extend_from_slice(Line::size(false, 300).as_bytes());
        out.extend(std::iter::repeat_n(b'x', 300));
        out.extend_from_slice(Line::end(false).as_bytes());
        assert!(out.starts_with(b"5\r\nhello\r\n12c\r\n"));
        let (data, trailers) = decode(&out, 3).unwrap();
        assert_eq!((data.len(), trailers.is_none()), (305, true));
        assert_eq!(Line::end(true).as_bytes(), b"0\r\n\r\n");
        assert_eq!(Line::size(false, usize::MAX).len(), 2 + 16 + 2, "the longest line fits");
    }
}
