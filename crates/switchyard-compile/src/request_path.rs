//! Request path normalization: the one place a client's path becomes the path that
//! routing sees and that is forwarded. Shared by the proxy (every request) and compile
//! (a route's own paths must already be in this form, or they could never match).
//!
//! The rules (RFC 3986 §6.2.2 and §5.2.4, and what a gateway in front of authorization
//! decisions needs on top):
//! - a percent-encoded unreserved character (`A-Z a-z 0-9 - . _ ~`) is decoded, so
//!   `/%61dmin` is `/admin`; other escapes stay, with their hex digits in upper case;
//! - repeated slashes are merged (`//admin` is `/admin`);
//! - dot segments are removed (`/public/../admin` is `/admin`; `%2e` counts as `.`);
//! - refused outright: `%2F` and `%5C` (an encoded separator means something else to
//!   every backend), a raw backslash, a NUL (raw or `%00`), a malformed escape, dot
//!   segments that climb above the root, and dot segments carrying path parameters
//!   (`..;x`, `.;x`: servlet containers resolve them as `..` and `.`).

use std::borrow::Cow;

/// Why a path is refused; the message is for the client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PathRefusal {
    EncodedSlash,
    Backslash,
    Nul,
    BadEscape,
    AboveRoot,
    DotWithParameters,
}

impl PathRefusal {
    pub fn message(self) -> &'static str {
        match self {
            Self::EncodedSlash => "the path holds an encoded slash (%2F)",
            Self::Backslash => "the path holds a backslash (raw or %5C)",
            Self::Nul => "the path holds a NUL byte",
            Self::BadEscape => "the path holds a malformed percent escape",
            Self::AboveRoot => "a dot segment climbs above the root",
            Self::DotWithParameters => "a dot segment carries path parameters (..; or .;)",
        }
    }
}

impl std::fmt::Display for PathRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.message())
    }
}

/// The normalized form of an origin-form path (one that starts with `/`); anything else
/// (`*` of `OPTIONS *`) is returned as it is. Borrows when the path is already normal,
/// which is the common case and costs one scan.
pub fn normalize(path: &str) -> Result<Cow<'_, str>, PathRefusal> {
    if !path.starts_with('/') || is_plainly_normal(path.as_bytes()) {
        return Ok(Cow::Borrowed(path));
    }
    let decoded = decode_unreserved(path.as_bytes())?;
    remove_dot_segments(&decoded).map(Cow::Owned)
}

/// True when nothing in the path needs a second look: no escape, backslash or NUL, and
/// no segment that is empty or starts with a dot. This runs on every request, so it
/// looks at eight bytes at a time (SWAR): a word with none of `% \\ NUL` and no `/`
/// followed by `/` or `.` is passed in a handful of instructions. A false alarm only sends
/// the path down the slow path, which decides correctly; there are no misses.
fn is_plainly_normal(bytes: &[u8]) -> bool {
    let mut i = 0;
    // `here` holds bytes i..i+8 and `next` bytes i+1..i+9 (the byte after each).
    while i + 9 <= bytes.len() {
        let here = word(&bytes[i..i + 8]);
        let next = word(&bytes[i + 1..i + 9]);
        let specials = matches(here, b'%') | matches(here, b'\\') | matches(here, 0);
        let slash_then_dot_or_slash = matches(here, b'/') & (matches(next, b'/') | matches(next, b'.'));
        if specials | slash_then_dot_or_slash != 0 {
            return false;
        }
        i += 8;
    }
    is_plainly_normal_bytewise(bytes, i)
}

/// The same test one byte at a time, from `start` (the tail the words did not cover).
fn is_plainly_normal_bytewise(bytes: &[u8], start: usize) -> bool {
    (start..bytes.len()).all(|i| match bytes[i] {
        b'%' | b'\\' | 0 => false,
        b'/' => !matches!(bytes.get(i + 1), Some(b'/' | b'.')),
        _ => true,
    })
}

fn word(bytes: &[u8]) -> u64 {
    u64::from_le_bytes(bytes.try_into().expect("eight bytes"))
}

/// The high bit of every byte of `word` that equals `byte` (and possibly of the byte
/// above one that does: the classic has-zero-byte test, exact about whether any does).
fn matches(word: u64, byte: u8) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let x = word ^ (ONES * u64::from(byte));
    x.wrapping_sub(ONES) & !x & HIGHS
}

/// Decodes escapes of unreserved characters, upper-cases the hex of the rest and refuses
/// the escapes and bytes that must never reach a backend.
fn decode_unreserved(bytes: &[u8]) -> Result<Vec<u8>, PathRefusal> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        match b {
            b'\\' => return Err(PathRefusal::Backslash),
            0 => return Err(PathRefusal::Nul),
            b'%' => {
                let hex = bytes.get(i + 1..i + 3).ok_or(PathRefusal::BadEscape)?;
                let value = (hex_value(hex[0]).ok_or(PathRefusal::BadEscape)? << 4) | hex_value(hex[1]).ok_or(PathRefusal::BadEscape)?;
                match value {
                    b'/' => return Err(PathRefusal::EncodedSlash),
                    b'\\' => return Err(PathRefusal::Backslash),
                    0 => return Err(PathRefusal::Nul),
                    v if is_unreserved(v) => out.push(v),
                    v => out.extend_from_slice(&[b'%', HEX[usize::from(v >> 4)], HEX[usize::from(v & 15)]]),
                }
                i += 3;
                continue;
            }
            _ => out.push(b),
        }
        i += 1;
    }
    Ok(out)
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Merges empty segments and resolves `.` and `..`; a trailing slash is kept (and a path
/// ending in a dot segment ends in a slash, as RFC 3986 says).
fn remove_dot_segments(path: &[u8]) -> Result<String, PathRefusal> {
    // Segments between slashes; the input starts with '/', so the first piece is empty.
    let pieces: Vec<&[u8]> = path[1..].split(|&b| b == b'/').collect();
    let mut kept: Vec<&[u8]> = Vec::with_capacity(pieces.len());
    let mut trailing_slash = false;
    for (i, piece) in pieces.iter().enumerate() {
        let last = i + 1 == pieces.len();
        if matches!(piece.split(|&b| b == b';').next(), Some(b"." | b"..")) && piece.contains(&b';') {
            return Err(PathRefusal::DotWithParameters);
        }
        match *piece {
            b"" => trailing_slash = last && !kept.is_empty(),
            b"." => trailing_slash = last && !kept.is_empty(),
            b".." => {
                kept.pop().ok_or(PathRefusal::AboveRoot)?;
                trailing_slash = last && !kept.is_empty();
            }
            segment => {
                kept.push(segment);
                trailing_slash = false;
            }
        }
    }
    let mut out = Vec::with_capacity(path.len());
    for segment in &kept {
        out.push(b'/');
        out.extend_from_slice(segment);
    }
    if out.is_empty() || trailing_slash {
        out.push(b'/');
    }
    // Only ASCII bytes were added or removed, so the bytes are still the input's UTF-8.
    Ok(String::from_utf8(out).expect("normalization keeps UTF-8"))
}

/// True when a path has a `.` or `..` segment (after normalization a path never does;
/// a rewrite's output is checked with this before it is forwarded).
pub fn has_dot_segment(path: &str) -> bool {
    path.split('/').any(|s| matches!(s.split(';').next(), Some("." | "..")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(path: &str) -> String {
        normalize(path).unwrap_or_else(|e| panic!("{path}: {e}")).into_owned()
    }

    #[test]
    fn normal_paths_are_borrowed_unchanged() {
        for path in ["/", "/admin", "/files/hello.txt", "/a/b/", "/users/42/orders", "*"] {
            assert!(matches!(normalize(path), Ok(Cow::Borrowed(p)) if p == path), "{path}");
        }
    }

    #[test]
    fn the_normalization_table_holds() {
        let cases = [
            // dot segments, plain and percent-encoded in any case
            ("/public/../admin/secret.txt", "/admin/secret.txt"),
            ("/public/%2e%2e/admin/x", "/admin/x"),
            ("/public/%2E%2E/admin/x", "/admin/x"),
            ("/public/.%2E/admin/x", "/admin/x"),
            ("/public/%2e./admin/x", "/admin/x"),
            ("/./admin/x", "/admin/x"),
            ("/%2e/admin/x", "/admin/x"),
            ("/a/b/..", "/a/"),
            ("/a/b/.", "/a/b/"),
            ("/a/..", "/"),
            ("/..a/.b/c..", "/..a/.b/c.."),
            // repeated slashes
            ("//admin/x", "/admin/x"),
            ("/a///b//", "/a/b/"),
            ("//", "/"),
            // encoded unreserved characters are decoded, the rest upper-cased
            ("/%61dmin/x", "/admin/x"),
            ("/%41%7e%2D%5f", "/A~-_"),
            ("/caf%c3%a9", "/caf%C3%A9"),
            ("/a%20b", "/a%20b"),
            ("/q%3fx", "/q%3Fx"),
        ];
        for (input, want) in cases {
            assert_eq!(ok(input), want, "{input}");
        }
    }

    #[test]
    fn separators_nul_bad_escapes_and_climbs_are_refused() {
        let cases = [
            ("/a%2Fb", PathRefusal::EncodedSlash),
            ("/a%2fb", PathRefusal::EncodedSlash),
            ("/a%5Cb", PathRefusal::Backslash),
            ("/a%5cb", PathRefusal::Backslash),
            ("/a\\b", PathRefusal::Backslash),
            ("/..\\admin", PathRefusal::Backslash),
            ("/a\0b", PathRefusal::Nul),
            ("/a%00b", PathRefusal::Nul),
            ("/a%zz", PathRefusal::BadEscape),
            ("/a%4", PathRefusal::BadEscape),
            ("/..", PathRefusal::AboveRoot),
            ("/../etc/passwd", PathRefusal::AboveRoot),
            ("/a/../../etc", PathRefusal::AboveRoot),
            ("/%2e%2e/admin", PathRefusal::AboveRoot),
            ("/a/%2E%2e/%2e./x", PathRefusal::AboveRoot),
            ("/public/..;/admin/secret", PathRefusal::DotWithParameters),
            ("/public/.;x/admin", PathRefusal::DotWithParameters),
            ("/public/%2e%2e;jsessionid=1/admin", PathRefusal::DotWithParameters),
        ];
        for (input, want) in cases {
            assert_eq!(normalize(input), Err(want), "{input}");
        }
    }

    #[test]
    fn template_captures_cannot_carry_separators_or_dot_segments() {
        // What a `{file}` capture could try to smuggle into a rewrite.
        assert_eq!(normalize("/files/..%2F..%2Fetc"), Err(PathRefusal::EncodedSlash));
        assert_eq!(normalize("/files/%2e%2e"), Ok(Cow::Owned("/".into())));
        assert_eq!(normalize("/files/%2e%2e/%2E%2E/etc"), Err(PathRefusal::AboveRoot));
        assert_eq!(normalize("/files/..%5C..%5Cetc"), Err(PathRefusal::Backslash));
    }

    #[test]
    fn the_word_at_a_time_scan_never_passes_what_the_bytewise_one_refuses() {
        // Every path over a small alphabet up to 11 bytes, and each shifted by padding, so
        // every byte meets every position of a word.
        let alphabet = [b'a', b'/', b'.', b'%', b'\\', 0, b';'];
        let mut paths: Vec<Vec<u8>> = vec![vec![]];
        for _ in 0..6 {
            paths = paths.iter().flat_map(|p| alphabet.iter().map(move |&c| [p.as_slice(), &[c]].concat())).collect();
        }
        for core in &paths {
            for pad in 0..6 {
                let path = [b"/abcdef"[..=pad].as_ref(), core.as_slice(), b"/tail"].concat();
                let fast = is_plainly_normal(&path);
                let exact = is_plainly_normal_bytewise(&path, 0);
                assert!(!fast || exact, "{:?} passed the fast scan but not the exact one", String::from_utf8_lossy(&path));
            }
        }
        let plain = b"/api/v1/shops/4711/orders/20261201-000123/items";
        assert!(is_plainly_normal(plain), "a normal path is not a false alarm");
    }

    #[test]
    fn dot_segments_are_detected_in_rewritten_paths() {
        assert!(has_dot_segment("/a/../b"));
        assert!(has_dot_segment("/a/."));
        assert!(!has_dot_segment("/a/..b/.c"));
        assert!(has_dot_segment("/v1/files/..;"), "a servlet container climbs on ..;");
    }
}
