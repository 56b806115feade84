//! The slice of RESP2 the client speaks: commands as arrays of bulk strings, and the
//! replies they can get (simple string, error, integer, bulk string or nil).

/// One reply.
#[derive(Debug, PartialEq, Eq)]
pub enum Reply {
    Simple(String),
    Error(String),
    Integer(i64),
    Bulk(Vec<u8>),
    Nil,
}

/// The largest reply read (a SET or PING answer is a few bytes): more is a protocol
/// error, never an allocation a broken server chooses.
pub const MAX_REPLY: usize = 64 * 1024;

/// Appends `args` to `out` as one RESP command.
pub fn encode(out: &mut Vec<u8>, args: &[&[u8]]) {
    push_header(out, b'*', args.len());
    for arg in args {
        push_header(out, b'$', arg.len());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
}

fn push_header(out: &mut Vec<u8>, kind: u8, len: usize) {
    out.push(kind);
    out.extend_from_slice(len.to_string().as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Parses one reply from the start of `buf`: `Ok(Some((reply, bytes used)))`, `Ok(None)`
/// when more bytes are needed, `Err` when it is not RESP.
pub fn parse(buf: &[u8]) -> Result<Option<(Reply, usize)>, &'static str> {
    let Some(line_end) = buf.windows(2).position(|w| w == b"\r\n") else {
        return if buf.len() > MAX_REPLY { Err("reply line too long") } else { Ok(None) };
    };
    let (kind, line) = (buf.first().copied(), &buf[1.min(buf.len())..line_end]);
    let text = || std::str::from_utf8(line).map(str::to_owned).map_err(|_| "reply is not UTF-8");
    let used = line_end + 2;
    let reply = match kind {
        Some(b'+') => Reply::Simple(text()?),
        Some(b'-') => Reply::Error(text()?),
        Some(b':') => Reply::Integer(text()?.parse().map_err(|_| "bad integer reply")?),
        Some(b'$') => {
            let len: i64 = text()?.parse().map_err(|_| "bad bulk length")?;
            if len < 0 {
                return Ok(Some((Reply::Nil, used)));
            }
            let len = usize::try_from(len).map_err(|_| "bad bulk length")?;
            if len > MAX_REPLY {
                return Err("bulk reply too long");
            }
            if buf.len() < used + len + 2 {
                return Ok(None);
            }
            if &buf[used + len..used + len + 2] != b"\r\n" {
                return Err("bulk reply not terminated");
            }
            return Ok(Some((Reply::Bulk(buf[used..used + len].to_vec()), used + len + 2)));
        }
        _ => return Err("unexpected reply type"),
    };
    Ok(Some((reply, used)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_arrays_of_bulk_strings() {
        let mut out = Vec::new();
        encode(&mut out, &[b"SET", b"k", b"1", b"NX", b"PX", b"900000"]);
        assert_eq!(out, b"*6\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\n1\r\n$2\r\nNX\r\n$2\r\nPX\r\n$6\r\n900000\r\n");
    }

    #[test]
    fn replies_parse_and_partial_ones_ask_for_more() {
        assert_eq!(parse(b"+OK\r\n"), Ok(Some((Reply::Simple("OK".into()), 5))));
        assert_eq!(parse(b"$-1\r\n+OK"), Ok(Some((Reply::Nil, 5))));
        assert_eq!(parse(b"-ERR wrong\r\n"), Ok(Some((Reply::Error("ERR wrong".into()), 12))));
        assert_eq!(parse(b":42\r\n"), Ok(Some((Reply::Integer(42), 5))));
        assert_eq!(parse(b"$4\r\nPONG\r\n"), Ok(Some((Reply::Bulk(b"PONG".to_vec()), 10))));
        assert_eq!(parse(b"+OK"), Ok(None));
        assert_eq!(parse(b"$4\r\nPO"), Ok(None));
    }

    #[test]
    fn what_is_not_resp_is_an_error() {
        assert!(parse(b"HTTP/1.1 400 Bad Request\r\n").is_err());
        assert!(parse(b"$99999999\r\n").is_err());
        assert!(parse(b"$2\r\nabcd\r\n").is_err());
        assert!(parse(&vec![b'+'; MAX_REPLY + 1]).is_err());
    }
}
