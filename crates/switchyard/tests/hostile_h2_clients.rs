//! HTTP/2 limits against hostile clients (issue 18 item 2), on both listeners that speak
//! HTTP/2: prior-knowledge h2c on the plain one and h2 by ALPN on the TLS one. The client
//! writes raw frames (a well-behaved HTTP/2 library would refuse to send most of these)
//! and decodes the answers with a real HPACK decoder. Each case pins the number that
//! `switchyard-http` configures (`H2_MAX_CONCURRENT_STREAMS`, `H2_MAX_HEADER_LIST`,
//! `H2_MAX_PENDING_RESETS`, `H2_MAX_LOCAL_ERROR_RESETS`), checks that other clients are
//! served throughout, that nothing is answered 5xx and that the single upstream (ejected
//! after one failure) is never blamed. The observed behaviour is in docs/reliability.md.

mod support;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::pki::TestCa;
use support::upstream::Upstream;
use support::{ConfigDir, Switchyard, get};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::mpsc;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::rustls::pki_types::pem::PemObject;

const API: &str = "apiVersion: switchyard.dev/v1alpha1";
/// The TLS listener's certificate name (the client sends it as SNI).
const TLS_NAME: &str = "h2.test";

/// The numbers `switchyard-http` configures (and docs/upstream-protocols.md states).
const MAX_CONCURRENT_STREAMS: usize = 256;
const MAX_HEADER_LIST: usize = 64 * 1024;
const MAX_PENDING_RESETS: usize = 20;
const MAX_LOCAL_ERROR_RESETS: usize = 256;

// Frame types and flags (RFC 9113 §6).
const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const GOAWAY: u8 = 0x7;
const WINDOW_UPDATE: u8 = 0x8;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const ACK: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
// Error codes (RFC 9113 §7).
const REFUSED_STREAM: u32 = 0x7;
const CANCEL: u32 = 0x8;
const ENHANCE_YOUR_CALM: u32 = 0xb;
// Settings identifiers.
const SETTINGS_MAX_CONCURRENT_STREAMS: u16 = 0x3;
const SETTINGS_INITIAL_WINDOW_SIZE: u16 = 0x4;
const SETTINGS_MAX_HEADER_LIST_SIZE: u16 = 0x6;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Transport {
    /// HTTP/2 with prior knowledge on the plain-text listener.
    H2c,
    /// HTTP/2 negotiated by ALPN on the TLS listener.
    Tls,
}

/// The gateway (both listeners) in front of one upstream behind `/up`, ejected after a
/// single failure: a request blamed on it would take it out of rotation.
struct Gateway {
    gw: Switchyard,
    transport: Transport,
    tls: Arc<tokio_rustls::rustls::ClientConfig>,
    _config: ConfigDir,
}

async fn gateway(up: &Upstream, transport: Transport) -> Gateway {
    let ca = TestCa::new("hostile-h2-ca");
    let (chain, key) = ca.server_pem(&[TLS_NAME]);
    let indent = |pem: &str| pem.lines().map(|l| format!("    {l}\n")).collect::<String>();
    let manifests = format!(
        "{API}\nkind: BackendService\nmetadata: {{name: up}}\nspec:\n  http: {{urls: [\"{}\"]}}\n  healthCheck: {{passive: {{consecutiveFailures: 1, ejectionTime: 60s}}}}\n---\n\
         {API}\nkind: ApiRoute\nmetadata: {{name: up}}\nspec:\n  match: {{path: /up, pathType: Prefix}}\n  backendRefs: [{{name: up}}]\n---\n\
         apiVersion: v1\nkind: Secret\ntype: kubernetes.io/tls\nmetadata:\n  name: h2\n  labels: {{switchyard.dev/certificate: \"true\"}}\n\
         stringData:\n  tls.crt: |\n{}  tls.key: |\n{}",
        up.url(),
        indent(&chain),
        indent(&key)
    );
    let config = ConfigDir::with(&[("all.yaml", &manifests)]);
    let dir = config.path().to_str().unwrap().to_owned();
    let args =
        ["standalone", "--config-dir", &dir, "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--https-listen", "127.0.0.1:0"];
    let gw = Switchyard::start(&args, &["proxy", "admin", "https"]);
    gw.wait_ready().await;
    Gateway { gw, transport, tls: client_config(&ca.pem()), _config: config }
}

fn client_config(ca_pem: &str) -> Arc<tokio_rustls::rustls::ClientConfig> {
    use tokio_rustls::rustls::{ClientConfig, RootCertStore, crypto::ring};
    let mut roots = RootCertStore::empty();
    for certificate in tokio_rustls::rustls::pki_types::CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(certificate.unwrap()).unwrap();
    }
    let mut config = ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    Arc::new(config)
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// One frame as read off the connection.
struct Frame {
    kind: u8,
    flags: u8,
    stream: u32,
    payload: Vec<u8>,
}

/// A frame's bytes: the 9-byte header, then the payload.
fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(9 + payload.len());
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
    out.extend_from_slice(&[kind, flags]);
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// An HPACK integer with an `prefix`-bit prefix whose other bits are `first`.
fn hpack_int(out: &mut Vec<u8>, first: u8, prefix: u32, value: usize) {
    let max = (1usize << prefix) - 1;
    if value < max {
        out.push(first | value as u8);
        return;
    }
    out.push(first | max as u8);
    let mut rest = value - max;
    while rest >= 128 {
        out.push((rest % 128 + 128) as u8);
        rest /= 128;
    }
    out.push(rest as u8);
}

/// A header as an HPACK literal that is neither indexed nor Huffman-coded, so its encoded
/// size is plain to see; `indexed` adds it to the server's dynamic table instead.
fn literal(out: &mut Vec<u8>, name: &str, value: &str, indexed: bool) {
    out.push(if indexed { 0x40 } else { 0x00 });
    hpack_int(out, 0, 7, name.len());
    out.extend_from_slice(name.as_bytes());
    hpack_int(out, 0, 7, value.len());
    out.extend_from_slice(value.as_bytes());
}

/// The size of a header list as SETTINGS_MAX_HEADER_LIST_SIZE counts it (RFC 9113 §6.5.2).
fn list_size(headers: &[(&str, &str)]) -> usize {
    headers.iter().map(|(n, v)| n.len() + v.len() + 32).sum()
}

/// What the server sent for one stream.
#[derive(Default, Debug)]
struct Response {
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    ended: bool,
}

impl Response {
    fn status(&self) -> Option<u16> {
        self.header(":status").and_then(|s| s.parse().ok())
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

#[derive(Debug)]
struct GoAway {
    last_stream: u32,
    code: u32,
    debug: String,
}

/// Everything the server sent on a connection so far.
#[derive(Default, Debug)]
struct Seen {
    settings: HashMap<u16, u32>,
    responses: HashMap<u32, Response>,
    resets: HashMap<u32, u32>,
    goaway: Option<GoAway>,
    /// The server closed the connection (EOF or reset).
    closed: bool,
}

impl Seen {
    fn ended(&self) -> usize {
        self.responses.values().filter(|r| r.ended).count()
    }
}

/// A raw HTTP/2 client connection: frames are written as given, frames read are
/// collected into [`Seen`] (SETTINGS acknowledged, PINGs answered).
struct RawH2 {
    writer: WriteHalf<Box<dyn Io>>,
    frames: mpsc::UnboundedReceiver<Frame>,
    hpack: loona_hpack::Decoder<'static>,
    /// A response header block waiting for its CONTINUATION frames.
    partial: Option<(u32, Vec<u8>, bool)>,
    scheme: &'static str,
    seen: Seen,
}

impl RawH2 {
    /// Connects, writes the preface with SETTINGS (large windows, so the server never
    /// waits on flow control) and reads the server's SETTINGS.
    async fn connect(gateway: &Gateway) -> Self {
        let tcp = |role: &str| tokio::net::TcpStream::connect(gateway.gw.addrs[role]);
        let (io, scheme): (Box<dyn Io>, _) = match gateway.transport {
            Transport::H2c => (Box::new(tcp("proxy").await.unwrap()), "http"),
            Transport::Tls => {
                let name = ServerName::try_from(TLS_NAME).unwrap();
                let tls = tokio_rustls::TlsConnector::from(gateway.tls.clone()).connect(name, tcp("https").await.unwrap()).await.unwrap();
                assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]), "the TLS listener negotiates h2");
                (Box::new(tls), "https")
            }
        };
        let (reader, writer) = tokio::io::split(io);
        let (sender, frames) = mpsc::unbounded_channel();
        tokio::spawn(read_frames(reader, sender));
        let mut client = Self { writer, frames, hpack: loona_hpack::Decoder::new(), partial: None, scheme, seen: Seen::default() };
        let mut preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        let mut settings = Vec::new();
        settings.extend_from_slice(&SETTINGS_INITIAL_WINDOW_SIZE.to_be_bytes());
        settings.extend_from_slice(&(1u32 << 24).to_be_bytes());
        preface.extend(frame(SETTINGS, 0, 0, &settings));
        preface.extend(frame(WINDOW_UPDATE, 0, 0, &(1u32 << 30).to_be_bytes()));
        client.write(&preface).await.unwrap();
        client.read_until("the server's SETTINGS", Duration::from_secs(5), |seen| !seen.settings.is_empty()).await;
        client
    }

    async fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.writer.write_all(bytes).await?;
        self.writer.flush().await
    }

    /// A request's header block: the pseudo-headers, then `extra`, as plain literals.
    fn block(&self, method: &str, path: &str, extra: &[(&str, &str)]) -> Vec<u8> {
        let mut out = Vec::new();
        for (name, value) in [(":method", method), (":scheme", self.scheme), (":path", path), (":authority", "x")].iter().chain(extra) {
            literal(&mut out, name, value, false);
        }
        out
    }

    /// A GET on `stream`, its headers in one HEADERS frame, ended.
    fn get(&self, stream: u32, path: &str, extra: &[(&str, &str)]) -> Vec<u8> {
        frame(HEADERS, END_STREAM | END_HEADERS, stream, &self.block("GET", path, extra))
    }

    /// Reads frames until `done` holds (or the connection closes), panicking after `timeout`.
    async fn read_until(&mut self, what: &str, timeout: Duration, done: impl Fn(&Seen) -> bool) {
        let deadline = Instant::now() + timeout;
        while !done(&self.seen) && !self.seen.closed {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.frames.recv()).await {
                Ok(Some(frame)) => self.take(frame).await,
                Ok(None) => self.seen.closed = true,
                Err(_) => panic!("waited {timeout:?} for {what}; seen: {}", self.summary()),
            }
        }
    }

    /// Reads until the server closes the connection.
    async fn until_closed(&mut self, timeout: Duration) {
        self.read_until("the server to close the connection", timeout, |_| false).await;
    }

    async fn take(&mut self, frame: Frame) {
        match frame.kind {
            SETTINGS if frame.flags & ACK == 0 => {
                for setting in frame.payload.chunks_exact(6) {
                    let id = u16::from_be_bytes([setting[0], setting[1]]);
                    self.seen.settings.insert(id, u32::from_be_bytes([setting[2], setting[3], setting[4], setting[5]]));
                }
                let _ = self.write(&self::frame(SETTINGS, ACK, 0, &[])).await;
            }
            PING if frame.flags & ACK == 0 => {
                let _ = self.write(&self::frame(PING, ACK, 0, &frame.payload)).await;
            }
            HEADERS => self.header_block(frame.stream, frame.payload, frame.flags),
            CONTINUATION => {
                let (stream, mut block, ended) = self.partial.take().expect("a CONTINUATION after a HEADERS");
                block.extend_from_slice(&frame.payload);
                self.partial = Some((stream, block, ended));
                self.finish_block(frame.flags);
            }
            DATA => {
                let response = self.seen.responses.entry(frame.stream).or_default();
                response.body.extend_from_slice(&frame.payload);
                response.ended |= frame.flags & END_STREAM != 0;
            }
            RST_STREAM => {
                let code = u32::from_be_bytes(frame.payload[..4].try_into().unwrap());
                self.seen.resets.insert(frame.stream, code);
            }
            GOAWAY => {
                let last_stream = u32::from_be_bytes(frame.payload[..4].try_into().unwrap()) & 0x7fff_ffff;
                let code = u32::from_be_bytes(frame.payload[4..8].try_into().unwrap());
                let debug = String::from_utf8_lossy(&frame.payload[8..]).into_owned();
                self.seen.goaway = Some(GoAway { last_stream, code, debug });
            }
            _ => {}
        }
    }

    fn header_block(&mut self, stream: u32, payload: Vec<u8>, flags: u8) {
        self.partial = Some((stream, payload, flags & END_STREAM != 0));
        self.finish_block(flags);
    }

    fn finish_block(&mut self, flags: u8) {
        if flags & END_HEADERS == 0 {
            return;
        }
        let (stream, block, ended) = self.partial.take().unwrap();
        let headers = self.hpack.decode(&block).expect("the server's header block decodes");
        let response = self.seen.responses.entry(stream).or_default();
        let text = |b: Vec<u8>| String::from_utf8_lossy(&b).into_owned();
        response.headers.extend(headers.into_iter().map(|(n, v)| (text(n), text(v))));
        response.ended |= ended;
    }

    fn summary(&self) -> String {
        let statuses: HashMap<Option<u16>, usize> = self.seen.responses.values().fold(HashMap::new(), |mut m, r| {
            *m.entry(r.status()).or_default() += 1;
            m
        });
        format!(
            "responses by status {statuses:?} ({} ended), resets {:?}, goaway {:?}, closed {}",
            self.seen.ended(),
            self.seen.resets,
            self.seen.goaway,
            self.seen.closed
        )
    }
}

/// Sends every frame the server writes to `frames` until the connection ends.
async fn read_frames(mut reader: ReadHalf<Box<dyn Io>>, frames: mpsc::UnboundedSender<Frame>) {
    let mut head = [0u8; 9];
    loop {
        if reader.read_exact(&mut head).await.is_err() {
            return;
        }
        let mut payload = vec![0; u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize];
        if reader.read_exact(&mut payload).await.is_err() {
            return;
        }
        let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
        if frames.send(Frame { kind: head[3], flags: head[4], stream, payload }).is_err() {
            return;
        }
    }
}

/// The client-side stream ids 1, 3, 5, ...: the `n`th (from 0).
fn stream_id(n: usize) -> u32 {
    2 * n as u32 + 1
}

/// A well-behaved client is served over HTTP/1.1 and, on a fresh connection, over HTTP/2.
async fn others_served(gateway: &Gateway) {
    let reply = get(&gateway.gw.proxy_url("/up/meanwhile")).await.unwrap();
    assert_eq!(reply.status, 200, "an HTTP/1.1 client is served: {}", reply.text());
    let mut client = RawH2::connect(gateway).await;
    let request = client.get(1, "/up/meanwhile-h2", &[]);
    client.write(&request).await.unwrap();
    client.read_until("an answer to a well-behaved HTTP/2 client", Duration::from_secs(5), |s| s.ended() == 1).await;
    assert_eq!(client.seen.responses[&1].status(), Some(200), "{}", client.summary());
}

/// Afterwards: the upstream was not ejected (nothing was blamed on it), and no request was
/// answered 5xx.
async fn nothing_blamed(gateway: &Gateway, up: &Upstream) {
    let before = up.hits();
    let reply = get(&gateway.gw.proxy_url("/up/after")).await.unwrap();
    assert_eq!(reply.status, 200, "the upstream was blamed for a client's fault: {}", reply.text());
    assert_eq!(up.hits(), before + 1);
    let log = gateway.gw.access_log();
    let server_errors: Vec<&String> = log.iter().filter(|l| l.contains(" status=5")).collect();
    assert!(server_errors.is_empty(), "5xx answers: {server_errors:#?}");
}

/// The gateway's resident memory, in KiB.
fn rss_kib(gateway: &Gateway) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", gateway.gw.pid())).unwrap();
    status.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok()).unwrap()
}

// --- concurrent streams -------------------------------------------------------------

/// The SETTINGS announce 256 streams and a 64 KiB header list; with 256 requests in flight
/// (the upstream answers each after 1.5 s) the 257th stream is refused with REFUSED_STREAM
/// and the 256 are all answered 200. A client that keeps opening streams over the cap is
/// refused 256 times, then the connection is closed with GOAWAY ENHANCE_YOUR_CALM.
async fn concurrent_streams(transport: Transport) {
    let up = Upstream::start("up").await;
    let gateway = gateway(&up, transport).await;
    let mut client = RawH2::connect(&gateway).await;
    assert_eq!(
        client.seen.settings.get(&SETTINGS_MAX_CONCURRENT_STREAMS),
        Some(&(MAX_CONCURRENT_STREAMS as u32)),
        "{:?}",
        client.seen.settings
    );
    assert_eq!(client.seen.settings.get(&SETTINGS_MAX_HEADER_LIST_SIZE), Some(&(MAX_HEADER_LIST as u32)), "{:?}", client.seen.settings);

    let held = [("x-test-delay-ms", "1500")];
    let mut burst = Vec::new();
    for n in 0..=MAX_CONCURRENT_STREAMS {
        burst.extend(client.get(stream_id(n), "/up/held", &held));
    }
    client.write(&burst).await.unwrap();
    let over = stream_id(MAX_CONCURRENT_STREAMS);
    client.read_until("the stream over the cap refused", Duration::from_secs(5), |s| s.resets.contains_key(&over)).await;
    assert_eq!(client.seen.resets.get(&over), Some(&REFUSED_STREAM), "{}", client.summary());
    others_served(&gateway).await;
    client.read_until("the 256 held streams answered", Duration::from_secs(10), |s| s.ended() == MAX_CONCURRENT_STREAMS).await;
    let ok =
        (0..MAX_CONCURRENT_STREAMS).filter(|n| client.seen.responses.get(&stream_id(*n)).and_then(Response::status) == Some(200)).count();
    assert_eq!(ok, MAX_CONCURRENT_STREAMS, "every stream under the cap is served: {}", client.summary());
    assert_eq!(client.seen.resets.len(), 1, "only the stream over the cap was reset: {}", client.summary());
    assert_eq!(up.hits(), MAX_CONCURRENT_STREAMS + 2, "the refused stream never reached the upstream (+2: the other clients)");

    // Streams over the cap in a loop: each refusal is a reset the server had to make.
    let mut flood = RawH2::connect(&gateway).await;
    let mut burst = Vec::new();
    for n in 0..MAX_CONCURRENT_STREAMS + MAX_LOCAL_ERROR_RESETS + 1 {
        burst.extend(flood.get(stream_id(n), "/up/flood", &held));
    }
    flood.write(&burst).await.unwrap();
    flood.until_closed(Duration::from_secs(10)).await;
    let refused = flood.seen.resets.values().filter(|c| **c == REFUSED_STREAM).count();
    assert_eq!(refused, MAX_LOCAL_ERROR_RESETS, "{}", flood.summary());
    let goaway = flood.seen.goaway.as_ref().unwrap_or_else(|| panic!("no GOAWAY: {}", flood.summary()));
    assert_eq!(goaway.code, ENHANCE_YOUR_CALM, "{goaway:?}");
    eprintln!("{transport:?}: streams over the cap: {refused} refused, then {goaway:?}");
    others_served(&gateway).await;
    nothing_blamed(&gateway, &up).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_streams_over_256_are_refused_and_a_client_refused_256_times_gets_goaway() {
    concurrent_streams(Transport::H2c).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_over_tls_streams_over_256_are_refused_and_a_client_refused_256_times_gets_goaway() {
    concurrent_streams(Transport::Tls).await;
}

// --- rapid reset --------------------------------------------------------------------

/// Rapid reset (CVE-2023-44487): each connection opens streams and resets them at once,
/// 200 in one write. Past 20 reset before they were served the server sends GOAWAY
/// ENHANCE_YOUR_CALM and closes; ten such connections in a row, while other clients are
/// served, reach the upstream with only a bounded share of their streams.
async fn rapid_reset(transport: Transport) {
    let up = Upstream::start("up").await;
    let gateway = gateway(&up, transport).await;
    let attempts = 200;
    let mut reached = Vec::new();
    for _ in 0..10 {
        let hits = up.hits();
        let mut attacker = RawH2::connect(&gateway).await;
        let mut burst = Vec::new();
        for n in 0..attempts {
            burst.extend(attacker.get(stream_id(n), "/up/reset", &[]));
            burst.extend(frame(RST_STREAM, 0, stream_id(n), &CANCEL.to_be_bytes()));
        }
        let _ = attacker.write(&burst).await;
        attacker.until_closed(Duration::from_secs(10)).await;
        let goaway = attacker.seen.goaway.as_ref().unwrap_or_else(|| panic!("no GOAWAY: {}", attacker.summary()));
        eprintln!("{transport:?}: rapid reset: {goaway:?}");
        assert_eq!((goaway.code, goaway.debug.as_str()), (ENHANCE_YOUR_CALM, "too_many_resets"), "{goaway:?}");
        // The GOAWAY names the last stream taken: the 21st, whose reset was one too many.
        assert_eq!(goaway.last_stream, stream_id(MAX_PENDING_RESETS), "{goaway:?}");
        others_served(&gateway).await;
        reached.push(up.hits() - hits - 2);
    }
    eprintln!("{transport:?}: reset streams that reached the upstream, per attacking connection: {reached:?}");
    assert!(reached.iter().all(|r| *r <= MAX_PENDING_RESETS), "{reached:?}");
    nothing_blamed(&gateway, &up).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_rapid_reset_gets_goaway_after_20_pending_resets_and_others_are_served() {
    rapid_reset(Transport::H2c).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_over_tls_rapid_reset_gets_goaway_after_20_pending_resets_and_others_are_served() {
    rapid_reset(Transport::Tls).await;
}

// --- CONTINUATION flood -------------------------------------------------------------

/// A header block that never ends: HEADERS without END_HEADERS, then CONTINUATION frames
/// (1 KiB or 16 KiB each, valid header literals) written for as long as the server reads
/// them, up to 64 MiB. The server closes the connection with GOAWAY ENHANCE_YOUR_CALM
/// after a handful of frames, long before, and its memory does not grow with the flood.
async fn continuation_flood(transport: Transport) {
    let up = Upstream::start("up").await;
    let gateway = gateway(&up, transport).await;
    for frame_size in [1024, 16 * 1024] {
        let rss_before = rss_kib(&gateway);
        let mut attacker = RawH2::connect(&gateway).await;
        let head = attacker.block("GET", "/up/flood", &[]);
        attacker.write(&frame(HEADERS, END_STREAM, 1, &head)).await.unwrap();
        let mut block = Vec::new();
        literal(&mut block, "x-flood", &"v".repeat(frame_size - 12), false);
        let continuation = frame(CONTINUATION, 0, 1, &block);
        let batch: Vec<u8> = continuation.iter().copied().cycle().take(continuation.len() * 16).collect();
        let (mut written, limit) = (0usize, 64 << 20);
        while written < limit && attacker.write(&batch).await.is_ok() {
            written += batch.len();
            // Take what the server wrote so far (the GOAWAY) without waiting.
            while let Ok(frame) = attacker.frames.try_recv() {
                attacker.take(frame).await;
            }
            if attacker.seen.goaway.is_some() {
                break;
            }
        }
        attacker.until_closed(Duration::from_secs(10)).await;
        let rss_after = rss_kib(&gateway);
        eprintln!(
            "{transport:?}: {frame_size}-byte CONTINUATION frames: {written} bytes written before the close; RSS {rss_before} -> {rss_after} KiB; {:?}",
            attacker.seen.goaway
        );
        assert!(written < limit, "the server read 64 MiB of one header block");
        let goaway = attacker.seen.goaway.as_ref().unwrap_or_else(|| panic!("no GOAWAY: {}", attacker.summary()));
        assert_eq!(goaway.code, ENHANCE_YOUR_CALM, "{goaway:?}");
        assert!(!attacker.seen.responses.contains_key(&1), "the endless request was never answered: {}", attacker.summary());
        assert!(rss_after < rss_before + 16 * 1024, "RSS grew from {rss_before} to {rss_after} KiB");
        others_served(&gateway).await;
    }
    assert!(gateway.gw.access_log().iter().all(|l| !l.contains("/up/flood")), "the flooded request was never served");
    nothing_blamed(&gateway, &up).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_continuation_flood_gets_goaway_with_memory_bounded() {
    continuation_flood(Transport::H2c).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_over_tls_continuation_flood_gets_goaway_with_memory_bounded() {
    continuation_flood(Transport::Tls).await;
}

// --- header list size ---------------------------------------------------------------

/// Request headers that add up to `size` bytes as SETTINGS_MAX_HEADER_LIST_SIZE counts
/// them, pseudo-headers included, in 4 KiB headers.
fn headers_of_size(scheme: &str, size: usize) -> Vec<(String, String)> {
    let pseudo = [(":method", "GET"), (":scheme", scheme), (":path", "/up/big"), (":authority", "x")];
    let mut left = size - list_size(&pseudo);
    let mut headers = Vec::new();
    while left > 0 {
        let name = format!("x-big-{}", headers.len());
        let value_len = (left - name.len() - 32).min(4096);
        left -= name.len() + value_len + 32;
        headers.push((name, "v".repeat(value_len)));
        // A remainder too small for another header goes into this one.
        if left > 0 && left < 64 {
            let last: &mut (String, String) = headers.last_mut().unwrap();
            last.1.push_str(&"v".repeat(left));
            left = 0;
        }
    }
    headers
}

/// Writes a request of `headers` on `stream`, split into frames of at most 16 KiB.
async fn send_headers(client: &mut RawH2, stream: u32, headers: &[(String, String)]) {
    let extra: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    let block = client.block("GET", "/up/big", &extra);
    let pieces: Vec<&[u8]> = block.chunks(16 * 1024).collect();
    let mut bytes = Vec::new();
    for (i, piece) in pieces.iter().enumerate() {
        let last = if i + 1 == pieces.len() { END_HEADERS } else { 0 };
        let (kind, flags) = if i == 0 { (HEADERS, END_STREAM | last) } else { (CONTINUATION, last) };
        bytes.extend(frame(kind, flags, stream, piece));
    }
    client.write(&bytes).await.unwrap();
}

/// A header list just under 64 KiB passes the HTTP/2 layer and gets the gateway's own 431
/// `A431HL` (its request-head limit is 8 KiB); one at 64 KiB is refused by the HTTP/2 layer
/// with a bare 431 and a reset of that stream only: the connection goes on serving. An
/// HPACK bomb (one 4 KiB header in the dynamic table, referenced a thousand times, so
/// 16 KiB on the wire decode to 4 MiB) closes the connection with GOAWAY ENHANCE_YOUR_CALM.
/// None reaches the upstream.
async fn header_list_size(transport: Transport) {
    let up = Upstream::start("up").await;
    let gateway = gateway(&up, transport).await;
    let mut client = RawH2::connect(&gateway).await;
    let scheme = client.scheme;
    let under = headers_of_size(scheme, MAX_HEADER_LIST - 1);
    send_headers(&mut client, 1, &under).await;
    let at = headers_of_size(scheme, MAX_HEADER_LIST);
    send_headers(&mut client, 3, &at).await;
    let request = client.get(5, "/up/small", &[]);
    client.write(&request).await.unwrap();
    client.read_until("three answers", Duration::from_secs(5), |s| s.ended() == 3).await;

    let gateways = &client.seen.responses[&1];
    assert_eq!((gateways.status(), gateways.header("x-ca-error-code")), (Some(431), Some("A431HL")), "{gateways:?}");
    assert!(String::from_utf8_lossy(&gateways.body).contains("\"code\":\"A431HL\""), "{gateways:?}");
    let h2s = &client.seen.responses[&3];
    assert_eq!((h2s.status(), h2s.header("x-ca-error-code"), h2s.body.len()), (Some(431), None, 0), "{h2s:?}");
    assert_eq!(client.seen.responses[&5].status(), Some(200), "the connection goes on: {}", client.summary());
    assert_eq!(up.hits(), 1, "only the small request reached the upstream");
    // The request had ended (END_STREAM), so the 431 closes the stream: no reset follows.
    tokio::time::sleep(Duration::from_millis(200)).await;
    while let Ok(frame) = client.frames.try_recv() {
        client.take(frame).await;
    }
    assert!(client.seen.resets.is_empty(), "{}", client.summary());
    assert!(client.seen.goaway.is_none() && !client.seen.closed, "a stream error, not a connection error: {}", client.summary());

    let rss_before = rss_kib(&gateway);
    let mut bomber = RawH2::connect(&gateway).await;
    let mut block = bomber.block("GET", "/up/bomb", &[]);
    literal(&mut block, "x-bomb", &"b".repeat(4000), true);
    // Index 62: the newest entry of the dynamic table, the bomb.
    block.extend(std::iter::repeat_n(0x80 | 62, 1000));
    bomber.write(&frame(HEADERS, END_STREAM | END_HEADERS, 1, &block)).await.unwrap();
    bomber.until_closed(Duration::from_secs(5)).await;
    let goaway = bomber.seen.goaway.as_ref().unwrap_or_else(|| panic!("no GOAWAY: {}", bomber.summary()));
    assert_eq!(goaway.code, ENHANCE_YOUR_CALM, "{goaway:?}");
    let rss_after = rss_kib(&gateway);
    eprintln!("{transport:?}: HPACK bomb: {goaway:?}; RSS {rss_before} -> {rss_after} KiB");
    assert!(rss_after < rss_before + 16 * 1024, "RSS grew from {rss_before} to {rss_after} KiB");
    assert_eq!(up.hits(), 1);
    others_served(&gateway).await;
    nothing_blamed(&gateway, &up).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_header_lists_over_64_kib_are_refused_with_431_and_an_hpack_bomb_gets_goaway() {
    header_list_size(Transport::H2c).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_over_tls_header_lists_over_64_kib_are_refused_with_431_and_an_hpack_bomb_gets_goaway() {
    header_list_size(Transport::Tls).await;
}
