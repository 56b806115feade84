//! The access log: one line per request on stdout, JSON (default) or text, written when
//! the response body is done (or dropped, when the client left), so bytes out and total
//! time are true for streamed bodies.
//!
//! Off the critical section: a line is formatted by hand (no `fmt` machinery) into a
//! per-thread buffer, and each proxy worker writes its buffer to stdout in one `write` when
//! it passes [`FLUSH_AT`] bytes and every [`FLUSH_EVERY`] (a task on the worker's own
//! runtime), and when the thread exits. No lock is taken per line; the process-wide stdout
//! lock is taken once per batch. A thread without that task (not a worker: tests, other
//! runtimes) writes each line at once. A stdout that blocks (a full pipe) blocks the worker
//! that flushes, as nginx's buffered access log does: the log is never silently dropped.
//!
//! What a line holds is in docs/observability.md. Never in it: query strings (names or
//! values), header values other than Host, credentials of any kind.

use std::cell::RefCell;
use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use http::uri::PathAndQuery;
use http::{HeaderValue, Method, Version};
use switchyard_compile::calendar::civil_from_epoch_days;

use crate::exchange::Exchange;

/// `--access-log`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AccessLogFormat {
    Off,
    #[default]
    Json,
    Text,
}

/// A worker's buffer is written out once it holds this much.
pub const FLUSH_AT: usize = 32 * 1024;
/// ... and at least this often.
pub const FLUSH_EVERY: Duration = Duration::from_millis(100);

/// The request's access log line while the request runs: what only the log needs, taken
/// from the request before the phases consume it (cheap clones: the path shares the
/// request's buffer), and the request's [`Exchange`], which the phases fill in through a
/// shared reference. One allocation per request. Written when dropped.
pub struct AccessRecord {
    pub(crate) exchange: Exchange,
    /// The runtime the request ran on (names of its route, backend and endpoint).
    pub(crate) names: Option<Arc<dyn LineNames>>,
    format: AccessLogFormat,
    started: Instant,
    client: SocketAddr,
    /// The connection's TLS version (`TLSv1.3`), empty on plain text.
    tls: &'static str,
    method: Method,
    path: Option<PathAndQuery>,
    /// The request's one host as routing saw it (set by the request path once it is
    /// checked; empty for a request refused before that: oversized, two Host headers).
    pub(crate) host: Option<HeaderValue>,
    version: Version,
    pub(crate) request_id: HeaderValue,
    pub(crate) status: u16,
    pub(crate) error_code: Option<&'static str>,
    pub(crate) bytes_out: u64,
}

impl AccessRecord {
    /// `tls` is the connection's negotiated TLS version (`TLSv1.3`), empty on plain text.
    pub fn start<B>(format: AccessLogFormat, started: Instant, request: &http::Request<B>, client: SocketAddr, tls: &'static str) -> Self {
        Self {
            exchange: Exchange::default(),
            names: None,
            format,
            started,
            client,
            tls,
            method: request.method().clone(),
            path: request.uri().path_and_query().cloned(),
            host: None,
            version: request.version(),
            request_id: HeaderValue::from_static(""),
            status: 0,
            error_code: None,
            bytes_out: 0,
        }
    }

    fn write(&self, out: &mut Vec<u8>, date: &mut DateCache) {
        let total = self.started.elapsed();
        let line = Line::of(self, total);
        match self.format {
            AccessLogFormat::Json => line.json(out, date),
            AccessLogFormat::Text => line.text(out, date),
            AccessLogFormat::Off => {}
        }
    }
}

impl Drop for AccessRecord {
    fn drop(&mut self) {
        if self.format != AccessLogFormat::Off {
            BUFFER.with_borrow_mut(|buffer| buffer.push(|out, date| self.write(out, date)));
        }
    }
}

/// Which of a runtime's route ids, backend ids and endpoint names are plain (see
/// [`PLAIN`]: safe in a JSON string and a text value as they are), judged once per snapshot
/// so a line copies them without the per-byte check. Names come from configuration, which
/// a hostile tenant writes: one that is not plain is escaped on every line as before.
#[derive(Debug, Default)]
pub struct PlainNames {
    routes: Vec<bool>,
    backends: Vec<bool>,
    /// Every endpoint name of the backend is plain.
    endpoints: Vec<bool>,
}

impl PlainNames {
    /// `endpoint_names`: each backend's endpoint names, by backend index.
    pub fn of<'a, E: Iterator<Item = &'a str>>(
        route_ids: impl Iterator<Item = &'a str>,
        backend_ids: impl Iterator<Item = &'a str>,
        endpoint_names: impl Iterator<Item = E>,
    ) -> Self {
        let is_plain = |name: &str| name.bytes().all(plain);
        Self {
            routes: route_ids.map(is_plain).collect(),
            backends: backend_ids.map(is_plain).collect(),
            endpoints: endpoint_names.map(|mut names| names.all(is_plain)).collect(),
        }
    }

    /// `text`, the name of route `i`, as a line shows it.
    pub fn route<'a>(&self, i: usize, text: &'a str) -> Name<'a> {
        Name::judged(&self.routes, i, text)
    }

    pub fn backend<'a>(&self, i: usize, text: &'a str) -> Name<'a> {
        Name::judged(&self.backends, i, text)
    }

    /// `text`, one of backend `i`'s endpoint names.
    pub fn endpoint<'a>(&self, i: usize, text: &'a str) -> Name<'a> {
        Name::judged(&self.endpoints, i, text)
    }
}

/// A string for a line, and whether it is known plain (copied as it is).
#[derive(Clone, Copy)]
pub struct Name<'a> {
    pub text: &'a str,
    /// Needs no escaping (see [`PlainNames`]).
    pub plain: bool,
}

/// Where a line's route, backend and upstream names come from when it is written: the
/// runtime the request ran on implements it (runtime.rs), so this module needs neither
/// the runtime's type nor its layout, and the runtime can hold this module's
/// [`PlainNames`] without a circle. By index, as the request's [`Exchange`] records them.
pub trait LineNames: Send + Sync {
    fn route(&self, route: usize) -> Option<Name<'_>>;
    fn backend(&self, backend: usize) -> Option<Name<'_>>;
    fn upstream(&self, backend: usize, endpoint: usize) -> Option<Name<'_>>;
}

impl<'a> Name<'a> {
    const EMPTY: Name<'static> = Name { text: "", plain: true };

    /// `text` as judged at index `i` of `plain` (unknown: escaped, to be safe).
    fn judged(plain: &[bool], i: usize, text: &'a str) -> Self {
        Name { text, plain: plain.get(i).copied().unwrap_or(false) }
    }
}

/// One line's fields, resolved.
struct Line<'a> {
    time: SystemTime,
    request_id: &'a [u8],
    client: SocketAddr,
    method: &'a str,
    host: &'a [u8],
    path: &'a str,
    protocol: &'static str,
    route: Name<'a>,
    backend: Name<'a>,
    upstream: Name<'a>,
    status: u16,
    error_code: &'static str,
    bytes_in: u64,
    bytes_out: u64,
    upstream_time: Option<Duration>,
    total: Duration,
    retries: u32,
    /// The negotiated TLS version, empty on plain text.
    tls: &'static str,
}

impl<'a> Line<'a> {
    fn of(record: &'a AccessRecord, total: Duration) -> Self {
        let x = &record.exchange;
        let names = record.names.as_deref();
        let route = names.zip(x.route()).and_then(|(n, i)| n.route(i));
        let backend = names.zip(x.backend()).and_then(|(n, i)| n.backend(i));
        let upstream = names.zip(x.backend().zip(x.endpoint())).and_then(|(n, (b, e))| n.upstream(b, e));
        Line {
            time: SystemTime::now().checked_sub(total).unwrap_or(SystemTime::UNIX_EPOCH),
            request_id: record.request_id.as_bytes(),
            client: record.client,
            method: record.method.as_str(),
            host: record.host.as_ref().map_or(&[][..], HeaderValue::as_bytes),
            path: record.path.as_ref().map_or("", PathAndQuery::path),
            protocol: protocol(record.version),
            route: route.unwrap_or(Name::EMPTY),
            backend: backend.unwrap_or(Name::EMPTY),
            upstream: upstream.unwrap_or(Name::EMPTY),
            status: record.status,
            error_code: record.error_code.unwrap_or(""),
            bytes_in: x.bytes_in(),
            bytes_out: record.bytes_out,
            upstream_time: x.upstream_time(),
            total,
            retries: x.retries(),
            tls: record.tls,
        }
    }

    fn json(&self, out: &mut Vec<u8>, date: &mut DateCache) {
        out.reserve(512);
        out.extend_from_slice(b"{\"time\":\"");
        date.write(out, self.time);
        // The request id and the method are valid by construction (the id's characters
        // are checked or made by the gateway; a method is a token): copied as they are.
        out.extend_from_slice(b"\",\"request_id\":\"");
        out.extend_from_slice(self.request_id);
        out.extend_from_slice(b"\",\"client\":\"");
        socket_addr(out, self.client);
        out.extend_from_slice(b"\",\"method\":\"");
        out.extend_from_slice(self.method.as_bytes());
        out.extend_from_slice(b"\",\"host\":\"");
        json_str(out, self.host);
        out.extend_from_slice(b"\",\"path\":\"");
        json_str(out, self.path.as_bytes());
        out.extend_from_slice(b"\",\"protocol\":\"");
        out.extend_from_slice(self.protocol.as_bytes());
        out.extend_from_slice(b"\",\"route\":\"");
        json_name(out, self.route);
        out.extend_from_slice(b"\",\"backend\":\"");
        json_name(out, self.backend);
        out.extend_from_slice(b"\",\"upstream\":\"");
        json_name(out, self.upstream);
        out.extend_from_slice(b"\",\"status\":");
        decimal(out, u64::from(self.status));
        out.extend_from_slice(b",\"error_code\":\"");
        out.extend_from_slice(self.error_code.as_bytes());
        out.extend_from_slice(b"\",\"bytes_in\":");
        decimal(out, self.bytes_in);
        out.extend_from_slice(b",\"bytes_out\":");
        decimal(out, self.bytes_out);
        out.extend_from_slice(b",\"upstream_ms\":");
        match self.upstream_time {
            Some(t) => millis(out, t),
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"total_ms\":");
        millis(out, self.total);
        out.extend_from_slice(b",\"retries\":");
        decimal(out, u64::from(self.retries));
        out.extend_from_slice(b",\"tls\":\"");
        out.extend_from_slice(self.tls.as_bytes());
        out.extend_from_slice(b"\"}\n");
    }

    /// `key=value` pairs (logfmt) with the JSON names; `-` for an empty value.
    fn text(&self, out: &mut Vec<u8>, date: &mut DateCache) {
        out.reserve(512);
        out.extend_from_slice(b"time=");
        date.write(out, self.time);
        text_field(out, b" request_id=", self.request_id);
        out.extend_from_slice(b" client=");
        socket_addr(out, self.client);
        text_field(out, b" method=", self.method.as_bytes());
        text_field(out, b" host=", self.host);
        text_field(out, b" path=", self.path.as_bytes());
        text_field(out, b" protocol=", self.protocol.as_bytes());
        text_name(out, b" route=", self.route);
        text_name(out, b" backend=", self.backend);
        text_name(out, b" upstream=", self.upstream);
        out.extend_from_slice(b" status=");
        decimal(out, u64::from(self.status));
        text_field(out, b" error_code=", self.error_code.as_bytes());
        out.extend_from_slice(b" bytes_in=");
        decimal(out, self.bytes_in);
        out.extend_from_slice(b" bytes_out=");
        decimal(out, self.bytes_out);
        out.extend_from_slice(b" upstream_ms=");
        match self.upstream_time {
            Some(t) => millis(out, t),
            None => out.push(b'-'),
        }
        out.extend_from_slice(b" total_ms=");
        millis(out, self.total);
        out.extend_from_slice(b" retries=");
        decimal(out, u64::from(self.retries));
        text_field(out, b" tls=", self.tls.as_bytes());
        out.push(b'\n');
    }
}

fn protocol(version: Version) -> &'static str {
    match version {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_11 => "HTTP/1.1",
        Version::HTTP_2 => "HTTP/2",
        Version::HTTP_3 => "HTTP/3",
        _ => "",
    }
}

/// Bytes safe to copy as they are, in JSON and in text: visible ASCII but `"` and `\`
/// (a table: one load per byte on the common path, where every byte passes).
static PLAIN: [bool; 256] = table(false);
/// The same plus the space, for JSON strings.
static JSON_PLAIN: [bool; 256] = table(true);

const fn table(space: bool) -> [bool; 256] {
    let mut t = [false; 256];
    let mut b = 0x21;
    while b < 0x7f {
        t[b] = b != b'"' as usize && b != b'\\' as usize;
        b += 1;
    }
    t[b' ' as usize] = space;
    t
}

fn plain(b: u8) -> bool {
    PLAIN[usize::from(b)]
}

const fn repeat(b: u8) -> u64 {
    u64::from_ne_bytes([b; 8])
}

/// Some byte of `x` is below `n` (n <= 128; exact, as in "Bit Twiddling Hacks").
fn has_less(x: u64, n: u8) -> bool {
    x.wrapping_sub(repeat(n)) & !x & repeat(0x80) != 0
}

fn has_byte(x: u64, b: u8) -> bool {
    has_less(x ^ repeat(b), 1)
}

/// Every byte of `value` is in `table`, eight at a time where the words allow: no byte
/// below `lowest`, none of `"`, `\\`, DEL or non-ASCII. A word that fails is only sent to
/// the slow path (the caller escapes byte by byte), so the word test may be conservative.
fn all_plain(value: &[u8], lowest: u8, table: &[bool; 256]) -> bool {
    let word_ok = |x: u64| x & repeat(0x80) == 0 && !has_less(x, lowest) && !has_byte(x, b'"') && !has_byte(x, b'\\') && !has_byte(x, 0x7f);
    let mut words = value.chunks_exact(8);
    for word in &mut words {
        if !word_ok(u64::from_ne_bytes(word.try_into().expect("eight bytes"))) {
            return false;
        }
    }
    // The tail as one more word, padded with a plain byte.
    let tail = words.remainder();
    let mut last = [b'a'; 8];
    last[..tail.len()].copy_from_slice(tail);
    word_ok(u64::from_ne_bytes(last)) || tail.iter().all(|&b| table[usize::from(b)])
}

/// A JSON string's contents. Bytes outside visible ASCII are `\u00XX` (a Host header may
/// carry obs-text), so a line is valid JSON whatever the client sent.
fn json_str(out: &mut Vec<u8>, value: &[u8]) {
    if all_plain(value, b' ', &JSON_PLAIN) {
        out.extend_from_slice(value);
        return;
    }
    for &b in value {
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b' ' => out.push(b' '),
            b if plain(b) => out.push(b),
            b => {
                out.extend_from_slice(b"\\u00");
                out.push(HEX[usize::from(b >> 4)]);
                out.push(HEX[usize::from(b & 0xF)]);
            }
        }
    }
}

fn json_name(out: &mut Vec<u8>, name: Name<'_>) {
    if name.plain { out.extend_from_slice(name.text.as_bytes()) } else { json_str(out, name.text.as_bytes()) }
}

fn text_name(out: &mut Vec<u8>, key: &[u8], name: Name<'_>) {
    if name.plain && !name.text.is_empty() {
        out.extend_from_slice(key);
        out.extend_from_slice(name.text.as_bytes());
    } else {
        text_field(out, key, name.text.as_bytes());
    }
}

/// ` key=value`, `-` when empty; a byte that would break the line or the pairs (space,
/// quote, backslash, control, non-ASCII) as `\xNN`.
fn text_field(out: &mut Vec<u8>, key: &[u8], value: &[u8]) {
    out.extend_from_slice(key);
    if value.is_empty() {
        out.push(b'-');
    } else if all_plain(value, b' ' + 1, &PLAIN) {
        out.extend_from_slice(value);
    } else {
        for &b in value {
            if plain(b) {
                out.push(b);
            } else {
                out.extend_from_slice(b"\\x");
                out.push(HEX[usize::from(b >> 4)]);
                out.push(HEX[usize::from(b & 0xF)]);
            }
        }
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// "00" to "99": numbers are written two digits a step.
const PAIRS: &[u8; 200] = b"0001020304050607080910111213141516171819202122232425262728293031323334353637383940414243444546474849\
5051525354555657585960616263646566676869707172737475767778798081828384858687888990919293949596979899";

fn decimal(out: &mut Vec<u8>, mut n: u64) {
    if n < 10 {
        out.push(b'0' + n as u8);
        return;
    }
    if n < 100 {
        let pair = n as usize * 2;
        out.extend_from_slice(&PAIRS[pair..pair + 2]);
        return;
    }
    if n < 1000 {
        let pair = (n % 100) as usize * 2;
        out.extend_from_slice(&[b'0' + (n / 100) as u8, PAIRS[pair], PAIRS[pair + 1]]);
        return;
    }
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    while n >= 100 {
        let pair = (n % 100) as usize * 2;
        n /= 100;
        at -= 2;
        digits[at..at + 2].copy_from_slice(&PAIRS[pair..pair + 2]);
    }
    if n >= 10 {
        let pair = n as usize * 2;
        at -= 2;
        digits[at..at + 2].copy_from_slice(&PAIRS[pair..pair + 2]);
    } else {
        at -= 1;
        digits[at] = b'0' + n as u8;
    }
    out.extend_from_slice(&digits[at..]);
}

/// `d` in milliseconds with three decimals (microseconds): `12.345`.
fn millis(out: &mut Vec<u8>, d: Duration) {
    let micros = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
    decimal(out, micros / 1000);
    let frac = micros % 1000;
    out.extend_from_slice(&[b'.', b'0' + (frac / 100) as u8, b'0' + (frac / 10 % 10) as u8, b'0' + (frac % 10) as u8]);
}

fn padded(out: &mut Vec<u8>, n: u64, width: usize) {
    let mut digits = [b'0'; 20];
    let mut value = n;
    for slot in digits[20 - width..].iter_mut().rev() {
        *slot = b'0' + (value % 10) as u8;
        value /= 10;
    }
    out.extend_from_slice(&digits[20 - width..]);
}

/// Each octet's decimal text: its length, then up to three digits.
static OCTETS: [[u8; 4]; 256] = octets();

const fn octets() -> [[u8; 4]; 256] {
    let mut t = [[0u8; 4]; 256];
    let mut n = 0;
    while n < 256 {
        let (h, d, u) = ((n / 100) as u8, (n / 10 % 10) as u8, (n % 10) as u8);
        t[n] = if n >= 100 {
            [3, b'0' + h, b'0' + d, b'0' + u]
        } else if n >= 10 {
            [2, b'0' + d, b'0' + u, 0]
        } else {
            [1, b'0' + u, 0, 0]
        };
        n += 1;
    }
    t
}

fn socket_addr(out: &mut Vec<u8>, addr: SocketAddr) {
    match addr {
        SocketAddr::V4(v4) => {
            // `a.b.c.d` into a stack buffer from the table, then one copy.
            let mut text = [0u8; 15];
            let mut len = 0;
            for (i, &octet) in v4.ip().octets().iter().enumerate() {
                if i > 0 {
                    text[len] = b'.';
                    len += 1;
                }
                let [n, digits @ ..] = OCTETS[usize::from(octet)];
                text[len..len + 3].copy_from_slice(&digits);
                len += usize::from(n);
            }
            out.extend_from_slice(&text[..len]);
        }
        // Rare (and IPv6 text is subtle): the standard formatter.
        SocketAddr::V6(v6) => {
            let _ = write!(out, "[{}]", v6.ip());
        }
    }
    out.push(b':');
    decimal(out, u64::from(addr.port()));
}

/// `2026-12-02T06:15:18.123Z` (UTC, milliseconds).
fn rfc3339(out: &mut Vec<u8>, time: SystemTime) {
    let since = time.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (year, month, day) = civil_from_epoch_days(secs / 86_400);
    let of_day = secs % 86_400;
    padded(out, year, 4);
    out.push(b'-');
    padded(out, month, 2);
    out.push(b'-');
    padded(out, day, 2);
    out.push(b'T');
    padded(out, of_day / 3600, 2);
    out.push(b':');
    padded(out, of_day / 60 % 60, 2);
    out.push(b':');
    padded(out, of_day % 60, 2);
    out.push(b'.');
    padded(out, u64::from(since.subsec_millis()), 3);
    out.push(b'Z');
}

/// The `YYYY-MM-DDTHH:MM:SS` of the last second a line was written in: a worker formats
/// the date once a second, then only the milliseconds.
#[derive(Default)]
struct DateCache {
    secs: u64,
    text: Vec<u8>,
}

impl DateCache {
    const fn new() -> Self {
        Self { secs: 0, text: Vec::new() }
    }

    fn write(&mut self, out: &mut Vec<u8>, time: SystemTime) {
        let since = time.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
        if self.text.is_empty() || self.secs != since.as_secs() {
            self.text.clear();
            rfc3339(&mut self.text, SystemTime::UNIX_EPOCH + Duration::from_secs(since.as_secs()));
            self.text.truncate(19);
            self.secs = since.as_secs();
        }
        out.extend_from_slice(&self.text);
        out.push(b'.');
        padded(out, u64::from(since.subsec_millis()), 3);
        out.push(b'Z');
    }
}

/// A thread's lines not yet written.
struct Buffer {
    bytes: Vec<u8>,
    /// A flush task runs on this thread (a proxy worker).
    ticking: bool,
    date: DateCache,
}

impl Buffer {
    fn push(&mut self, write: impl FnOnce(&mut Vec<u8>, &mut DateCache)) {
        write(&mut self.bytes, &mut self.date);
        if !self.ticking || self.bytes.len() >= FLUSH_AT {
            self.flush();
        }
    }

    fn flush(&mut self) {
        if self.bytes.is_empty() {
            return;
        }
        // One write for the whole batch; the stdout lock keeps batches of different
        // workers from interleaving. A failed write loses this batch, never the process.
        let _ = std::io::stdout().lock().write_all(&self.bytes);
        self.bytes.clear();
    }
}

impl Drop for Buffer {
    fn drop(&mut self) {
        self.flush();
    }
}

thread_local! {
    static BUFFER: RefCell<Buffer> = const { RefCell::new(Buffer { bytes: Vec::new(), ticking: false, date: DateCache::new() }) };
}

/// Starts this worker thread's flush task on its (current-thread) runtime: lines are
/// batched from now on and written at least every [`FLUSH_EVERY`].
pub fn start_flushing() {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
    if runtime.runtime_flavor() != tokio::runtime::RuntimeFlavor::CurrentThread {
        // A task on a multi-threaded runtime may run on any thread: it could not flush
        // this one's buffer. Lines are written at once instead.
        return;
    }
    BUFFER.with_borrow_mut(|b| {
        b.bytes.reserve(FLUSH_AT + 4096);
        b.ticking = true;
    });
    runtime.spawn(async {
        let mut tick = tokio::time::interval(FLUSH_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            BUFFER.with_borrow_mut(Buffer::flush);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line() -> Line<'static> {
        Line {
            time: SystemTime::UNIX_EPOCH + Duration::from_millis(1_764_655_518_123),
            request_id: b"3f9a12c4-8b7e-4c1d-0000-00000000002a",
            client: "127.0.0.1:50412".parse().unwrap(),
            method: "GET",
            host: b"api.example.com",
            path: "/orders/7",
            protocol: "HTTP/1.1",
            route: Name { text: "shop/orders", plain: true },
            backend: Name { text: "shop/orders-api", plain: true },
            upstream: Name { text: "10.0.0.7:8080", plain: true },
            status: 200,
            error_code: "",
            bytes_in: 0,
            bytes_out: 1234,
            upstream_time: Some(Duration::from_micros(1_502)),
            total: Duration::from_micros(2_020),
            retries: 1,
            tls: "",
        }
    }

    #[test]
    fn a_json_line_is_one_json_object_with_every_field() {
        let mut out = Vec::new();
        line().json(&mut out, &mut DateCache::default());
        assert_eq!(out.last(), Some(&b'\n'));
        assert_eq!(out.iter().filter(|&&b| b == b'\n').count(), 1);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "time": "2025-12-02T06:05:18.123Z", "request_id": "3f9a12c4-8b7e-4c1d-0000-00000000002a",
                "client": "127.0.0.1:50412", "method": "GET", "host": "api.example.com", "path": "/orders/7",
                "protocol": "HTTP/1.1", "route": "shop/orders", "backend": "shop/orders-api", "upstream": "10.0.0.7:8080",
                "status": 200, "error_code": "", "bytes_in": 0, "bytes_out": 1234, "upstream_ms": 1.502, "total_ms": 2.02,
                "retries": 1, "tls": ""
            })
        );
    }

    #[test]
    fn a_text_line_has_the_same_fields_as_pairs_with_a_dash_for_empty() {
        let mut out = Vec::new();
        Line { upstream_time: None, route: Name::EMPTY, ..line() }.text(&mut out, &mut DateCache::default());
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "time=2025-12-02T06:05:18.123Z request_id=3f9a12c4-8b7e-4c1d-0000-00000000002a client=127.0.0.1:50412 method=GET \
             host=api.example.com path=/orders/7 protocol=HTTP/1.1 route=- backend=shop/orders-api upstream=10.0.0.7:8080 \
             status=200 error_code=- bytes_in=0 bytes_out=1234 upstream_ms=- total_ms=2.020 retries=1 tls=-\n"
        );
    }

    #[test]
    fn bytes_a_client_controls_cannot_break_a_json_or_text_line() {
        let mut out = Vec::new();
        Line { host: b"a\"b\\c\nd\xff e", ..line() }.json(&mut out, &mut DateCache::default());
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["host"], "a\"b\\c\nd\u{ff} e");
        let mut out = Vec::new();
        Line { host: b"a b\nc", ..line() }.text(&mut out, &mut DateCache::default());
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains(" host=a\\x20b\\x0ac "), "{text}");
        assert_eq!(text.matches('\n').count(), 1);
    }

    #[test]
    fn names_are_judged_plain_once_and_a_name_that_is_not_is_escaped_on_every_line() {
        let hostile = "shop/a\"b c\n";
        let names = PlainNames::of(
            ["shop/orders", hostile].into_iter(),
            ["shop/api", "shop/b\\"].into_iter(),
            std::iter::empty::<std::iter::Empty<&str>>(),
        );
        assert_eq!((&names.routes[..], &names.backends[..]), (&[true, false][..], &[true, false][..]));
        let route = Name { text: hostile, plain: names.routes[1] };
        let mut out = Vec::new();
        Line { route, ..line() }.json(&mut out, &mut DateCache::default());
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["route"], hostile);
        let mut out = Vec::new();
        Line { route, ..line() }.text(&mut out, &mut DateCache::default());
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains(" route=shop/a\\x22b\\x20c\\x0a "), "{text}");
    }

    #[test]
    fn every_ipv4_octet_is_written_in_decimal() {
        for n in 0..=255u8 {
            let mut out = Vec::new();
            socket_addr(&mut out, SocketAddr::from(([n, 255, 0, n], 65535)));
            assert_eq!(String::from_utf8(out).unwrap(), format!("{n}.255.0.{n}:65535"));
        }
    }

    #[test]
    fn dates_are_proleptic_gregorian_utc() {
        let mut out = Vec::new();
        rfc3339(&mut out, SystemTime::UNIX_EPOCH + Duration::from_secs(4_102_444_799));
        assert_eq!(out, b"2099-12-31T23:59:59.000Z");
    }

    #[test]
    fn the_date_cached_for_a_second_still_gets_each_lines_milliseconds() {
        let mut date = DateCache::default();
        let at = |ms: u64| SystemTime::UNIX_EPOCH + Duration::from_millis(ms);
        let mut out = Vec::new();
        for ms in [1_764_655_518_123, 1_764_655_518_999, 1_764_655_519_001] {
            date.write(&mut out, at(ms));
            out.push(b' ');
        }
        assert_eq!(String::from_utf8(out).unwrap(), "2025-12-02T06:05:18.123Z 2025-12-02T06:05:18.999Z 2025-12-02T06:05:19.001Z ");
    }

    #[test]
    fn the_word_check_sends_every_byte_that_needs_escaping_to_the_slow_path() {
        for bad in [b'"', b'\\', b'\n', 0x00, 0x1f, 0x7f, 0x80, 0xff] {
            for at in 0..17 {
                let mut value = vec![b'a'; 17];
                value[at] = bad;
                assert!(!all_plain(&value, b' ', &JSON_PLAIN), "byte {bad:#x} at {at}");
                assert!(!all_plain(&value, b' ' + 1, &PLAIN), "byte {bad:#x} at {at}");
            }
        }
        let mut spaced = vec![b'a'; 17];
        spaced[9] = b' ';
        assert!(all_plain(&spaced, b' ', &JSON_PLAIN), "a space is plain in JSON");
        assert!(!all_plain(&spaced, b' ' + 1, &PLAIN), "but not in text");
        assert!(all_plain(b"/api/v1/shops/4711/orders", b' ', &JSON_PLAIN));
    }

    #[test]
    fn numbers_are_written_whole() {
        for n in [0, 7, 10, 42, 99, 100, 101, 999, 1000, 65_535, 1_234_567, u64::MAX] {
            let mut out = Vec::new();
            decimal(&mut out, n);
            assert_eq!(String::from_utf8(out).unwrap(), n.to_string());
        }
    }

    #[test]
    fn ipv6_clients_are_bracketed() {
        let mut out = Vec::new();
        socket_addr(&mut out, "[::1]:8080".parse().unwrap());
        assert_eq!(out, b"[::1]:8080");
    }
}
