//! Proxy mode: pulls snapshots from the controller by HTTP long-poll and keeps the last
//! good one, in memory and on disk.
//!
//! - At start, a snapshot cached on disk is loaded first, so a proxy restarted while
//!   the controller is down serves at once.
//! - `GET /v1/snapshot?after=V` returns as soon as the controller's version differs from
//!   V (newer, or a restarted controller), or 304 after the hold time.
//! - A proxy that holds a snapshot of the controller's stream (`x-switchyard-stream`)
//!   names it and its version in the poll, and is sent the deltas since instead of the
//!   whole snapshot while the controller keeps them; it builds the new snapshot from the
//!   one it serves. A delta that does not fit what it holds is dropped and the whole
//!   snapshot fetched.
//! - Errors keep the current snapshot and retry with backoff; nothing is dropped.
//! - The channel is HTTPS, verified against `--controller-ca` (or the system roots);
//!   `http://` only when the operator opted in ([`ControllerUrl::parse`]).
//! - The bearer token is asked for before every poll, so a rotated token file is used
//!   from the next poll on.
//! - The disk cache holds app credentials: it is created mode 0600 (the temporary file
//!   too, from its first byte), in a directory created 0700.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode, Uri, header};
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use switchyard_compile::snapshot::Snapshot;
use switchyard_compile::snapshot::delta::{self, DeltaChain};
use switchyard_http::tls::{Trust, UpstreamTls};

use crate::proxy::Proxy;

/// The longest wait between failed pulls.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
const CACHE_FILE: &str = "snapshot.json";

pub struct PullConfig {
    /// The controller's snapshot listener.
    pub controller: ControllerUrl,
    /// The bearer token in force now (re-read from its file when that changes).
    pub token: Box<dyn Fn() -> Option<Arc<str>> + Send + Sync>,
    pub cache_dir: Option<PathBuf>,
    /// The longest the proxy waits on a controller that has stopped sending: the connect,
    /// the TLS handshake, the response headers beyond the long-poll hold, and the body.
    pub stall_timeout: Duration,
}

/// Default [`PullConfig::stall_timeout`].
pub const DEFAULT_STALL_TIMEOUT: Duration = Duration::from_secs(15);

/// How long the controller holds a long-poll before answering 304: its `DEFAULT_HOLD`
/// (the proxy does not depend on the controller crate; keep the two equal).
const SERVER_HOLD: Duration = Duration::from_secs(30);

/// Probes of an idle pull connection, so a peer that vanished without closing it (a node
/// gone, a NAT entry dropped) is noticed by the kernel too.
const KEEPALIVE: Duration = Duration::from_secs(15);

/// Where and how the snapshot is pulled from.
#[derive(Clone, Debug)]
pub struct ControllerUrl {
    /// `scheme://host:port`, for logs and request URIs.
    pub base: String,
    host: String,
    port: u16,
    /// `None` for plain HTTP.
    tls: Option<UpstreamTls>,
}

impl ControllerUrl {
    /// `https://HOST[:PORT]` verified against `ca_pem` (only those CAs) or, without it, the
    /// system's roots; `http://` only with `insecure_http`, so a typo cannot silently turn
    /// the channel (which carries every app credential) into plain text.
    pub fn parse(url: &str, ca_pem: Option<&str>, insecure_http: bool) -> Result<Self, String> {
        let uri: Uri = url.parse().map_err(|e| format!("--controller {url}: {e}"))?;
        let host = uri.host().ok_or_else(|| format!("--controller {url}: no host"))?.trim_matches(['[', ']']).to_owned();
        if uri.path() != "/" && !uri.path().is_empty() {
            return Err(format!("--controller {url}: give only scheme, host and port (the path is always /v1/snapshot)"));
        }
        let (tls, default_port) = match uri.scheme_str() {
            Some("https") => {
                let trust = Trust { ca_certificates: ca_pem.map(str::to_owned), insecure_skip_verify: false };
                (Some(UpstreamTls::new(&trust, &host).map_err(|e| format!("--controller-ca: {e}"))?), 443)
            }
            Some("http") if insecure_http => {
                if ca_pem.is_some() {
                    return Err("--controller-ca is given but --controller is http://; use https://".into());
                }
                (None, 80)
            }
            Some("http") => {
                return Err(format!(
                    "--controller {url} is plain HTTP: the snapshot carries every app credential; use https:// \
                     (with --controller-ca), or pass --controller-insecure-http for local development"
                ));
            }
            other => return Err(format!("--controller {url}: scheme {other:?} is neither https nor http")),
        };
        let port = uri.port_u16().unwrap_or(default_port);
        let scheme = if tls.is_some() { "https" } else { "http" };
        let authority = if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") };
        Ok(Self { base: format!("{scheme}://{authority}"), host, port, tls })
    }

    /// A new HTTP/1.1 connection (TLS-verified for https).
    async fn connect(&self, stall: Duration) -> Result<SendRequest<Empty<Bytes>>, String> {
        let stream = tokio::time::timeout(stall, tokio::net::TcpStream::connect((self.host.as_str(), self.port)))
            .await
            .map_err(|_| "connect timed out".to_owned())?
            .map_err(|e| format!("connect: {e}"))?;
        let _ = stream.set_nodelay(true);
        let keepalive = socket2::TcpKeepalive::new().with_time(KEEPALIVE).with_interval(KEEPALIVE).with_retries(3);
        let _ = socket2::SockRef::from(&stream).set_tcp_keepalive(&keepalive);
        match &self.tls {
            None => handshake(stream).await,
            Some(tls) => {
                let stream = tokio::time::timeout(stall, tls.connect(stream))
                    .await
                    .map_err(|_| "TLS handshake timed out".to_owned())?
                    .map_err(|e| format!("TLS handshake: {e}"))?;
                handshake(stream).await
            }
        }
    }
}

async fn handshake<S>(stream: S) -> Result<SendRequest<Empty<Bytes>>, String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}

/// Loads the disk cache (if any) into the proxy. Returns whether one was loaded.
///
/// A file whose digest does not match its snapshot (truncated, a flipped byte, an edit)
/// or that does not decode is refused with a warning and never served: the proxy then
/// starts without a snapshot (503 `A503NR`, not ready) until the controller answers.
pub async fn load_cache(proxy: &Proxy, cache_dir: &Path) -> bool {
    let path = cache_dir.join(CACHE_FILE);
    let file = match tokio::fs::read(&path).await {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return false,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot read the cached snapshot; starting without it");
            return false;
        }
    };
    let decoded = unseal(&file).and_then(|raw| serde_json::from_slice::<Snapshot>(raw).map_err(|e| format!("undecodable: {e}")));
    match decoded {
        Ok(snapshot) => {
            let version = snapshot.version;
            let loaded = proxy.apply(Arc::new(snapshot)).is_ok();
            if loaded {
                tracing::info!(version, path = %path.display(), "serving the cached snapshot until the controller answers");
            }
            loaded
        }
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "refusing a corrupt cached snapshot; starting without it");
            false
        }
    }
}

/// The cache file is `{"sha256":"<hex>","snapshot":<the snapshot JSON as pulled>}`, the
/// digest taken over the snapshot's bytes. A change that still decodes (a flipped byte in a
/// path, a URL, a secret) would otherwise be served after a restart; with the digest it is
/// refused. It guards against corruption, not an attacker: whoever can write the file can
/// recompute the digest (the file is 0600 in a 0700 directory).
const SEAL_HEAD: &[u8] = br#"{"sha256":""#;
const SEAL_MIDDLE: &[u8] = br#"","snapshot":"#;
const SEAL_TAIL: &[u8] = b"}\n";
const DIGEST_HEX: usize = 64;

fn sha256_hex(bytes: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// The cache file's bytes for the snapshot JSON `raw`.
fn seal(raw: &[u8]) -> Vec<u8> {
    let mut file = Vec::with_capacity(SEAL_HEAD.len() + DIGEST_HEX + SEAL_MIDDLE.len() + raw.len() + SEAL_TAIL.len());
    file.extend_from_slice(SEAL_HEAD);
    file.extend_from_slice(sha256_hex(raw).as_bytes());
    file.extend_from_slice(SEAL_MIDDLE);
    file.extend_from_slice(raw);
    file.extend_from_slice(SEAL_TAIL);
    file
}

/// The snapshot JSON inside a cache file, if the file is whole and its digest matches.
fn unseal(file: &[u8]) -> Result<&[u8], String> {
    let rest = file.strip_prefix(SEAL_HEAD).ok_or("not a sealed snapshot cache (no digest)")?;
    let (digest, rest) = rest.split_at_checked(DIGEST_HEX).ok_or("truncated in its digest")?;
    let raw = rest
        .strip_prefix(SEAL_MIDDLE)
        .and_then(|rest| rest.strip_suffix(SEAL_TAIL))
        .ok_or("truncated (the file does not end where it should)")?;
    let actual = sha256_hex(raw);
    if actual.as_bytes() != digest {
        return Err(format!("its {} bytes do not match their digest", raw.len()));
    }
    Ok(raw)
}

/// Pulls forever.
pub async fn run(proxy: Arc<Proxy>, config: PullConfig) {
    tokio::spawn(track_pull_age(Arc::downgrade(&proxy)));
    let base = config.controller.base.clone();
    let mut connection: Option<SendRequest<Empty<Bytes>>> = None;
    let mut backoff = Duration::from_millis(100);
    // The version last received, applied or refused: polling after a refused version
    // waits for the next one instead of fetching the same bad snapshot in a loop.
    let mut seen = proxy.version();
    // The controller's stream of the snapshot served, once one came from it: named in a
    // poll, it asks for deltas.
    let mut stream: Option<String> = None;
    loop {
        let Some(token) = (config.token)() else {
            tracing::warn!("no snapshot token; retrying");
            tokio::time::sleep(MAX_BACKOFF).await;
            continue;
        };
        let poll = Poll { after: seen, stream: stream.as_deref() };
        let polled = poll_once(&config.controller, &mut connection, &token, poll, config.stall_timeout).await;
        if polled.is_ok() {
            proxy.metrics.pulled_now();
        }
        if polled.is_err() {
            connection = None;
        }
        match polled {
            Ok(Some(pulled)) => {
                backoff = Duration::from_millis(100);
                let (snapshot, raw) = match pulled {
                    Pulled::Whole { snapshot, raw, stream: from } => {
                        proxy.metrics.snapshot_bytes.set(i64::try_from(raw.len()).unwrap_or(i64::MAX));
                        stream = from;
                        (snapshot, Some(raw))
                    }
                    Pulled::Delta(chain) => match apply_delta(&proxy, &chain, stream.as_deref()) {
                        Ok(snapshot) => {
                            proxy.metrics.snapshot_deltas.inc();
                            (snapshot, None)
                        }
                        Err(e) => {
                            proxy.metrics.snapshot_delta_misfits.inc();
                            // Not what this proxy holds: ask for the whole snapshot at once.
                            tracing::warn!(controller = %base, error = %e, "a snapshot delta does not fit the live snapshot; fetching all of it");
                            stream = None;
                            continue;
                        }
                    },
                };
                let version = snapshot.version;
                let changed = seen != Some(version);
                seen = Some(version);
                if changed {
                    let snapshot = Arc::new(snapshot);
                    if proxy.apply(snapshot.clone()).is_ok()
                        && let Some(dir) = &config.cache_dir
                    {
                        cache(dir, snapshot, raw).await;
                    }
                }
            }
            Ok(None) => backoff = Duration::from_millis(100),
            Err(e) => {
                tracing::warn!(controller = %base, error = %e, retry_in_ms = backoff.as_millis() as u64, "snapshot pull failed; serving the last good snapshot");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// The snapshot `chain` leads to from the live one, if the chain is from the stream the
/// live snapshot came from and starts at its version.
fn apply_delta(proxy: &Proxy, chain: &DeltaChain, stream: Option<&str>) -> Result<Snapshot, String> {
    if stream != Some(chain.stream.as_str()) {
        return Err(format!("the delta is of stream {}, not of the live snapshot's", chain.stream));
    }
    let (Some(held), Some(live)) = (proxy.version(), proxy.runtime()) else {
        return Err("no live snapshot to apply a delta to".into());
    };
    chain.apply(held, &live.snapshot)
}

/// Writes the disk cache for `snapshot`: the bytes pulled when it came whole, else its
/// JSON made here, off the async threads (tens of ms at 100,000 routes).
async fn cache(dir: &Path, snapshot: Arc<Snapshot>, raw: Option<Bytes>) {
    let raw = match raw {
        Some(raw) => raw,
        None => match tokio::task::spawn_blocking(move || serde_json::to_vec(&*snapshot)).await {
            Ok(Ok(json)) => Bytes::from(json),
            _ => {
                tracing::warn!(dir = %dir.display(), "could not serialize the snapshot for the disk cache");
                return;
            }
        },
    };
    write_cache(dir, &raw).await;
}

/// Keeps `switchyard_proxy_snapshot_pull_age_seconds` current: the seconds since the last
/// pull that got an answer (a snapshot or "unchanged"), so an alert can fire on a proxy
/// whose configuration has silently stopped moving.
async fn track_pull_age(proxy: std::sync::Weak<Proxy>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let Some(proxy) = proxy.upgrade() else { return };
        proxy.metrics.refresh_pull_age();
    }
}

/// What a poll asks for: anything but version `after`, as deltas from it when `stream`
/// (the stream it came from) is known.
struct Poll<'a> {
    after: Option<u64>,
    stream: Option<&'a str>,
}

impl Poll<'_> {
    fn path(&self) -> String {
        match (self.after, self.stream) {
            (Some(v), Some(stream)) => {
                let stream: String = form_urlencoded::byte_serialize(stream.as_bytes()).collect();
                format!("/v1/snapshot?after={v}&stream={stream}")
            }
            (Some(v), None) => format!("/v1/snapshot?after={v}"),
            (None, _) => "/v1/snapshot".to_owned(),
        }
    }
}

/// A poll's answer with something new.
enum Pulled {
    /// The whole snapshot, its bytes as pulled, and the stream the controller named.
    Whole { snapshot: Snapshot, raw: Bytes, stream: Option<String> },
    /// The deltas from the version the poll named.
    Delta(DeltaChain),
}

/// One long-poll: `Some` with a new snapshot or deltas, `None` when unchanged.
/// The connection is kept between polls while the controller keeps it open.
async fn poll_once(
    controller: &ControllerUrl,
    connection: &mut Option<SendRequest<Empty<Bytes>>>,
    token: &str,
    poll: Poll<'_>,
    stall: Duration,
) -> Result<Option<Pulled>, String> {
    let authority = controller.base.split_once("://").map_or(controller.base.as_str(), |(_, a)| a);
    let request = Request::get(poll.path())
        .header(header::HOST, authority)
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Empty::new())
        .map_err(|e| e.to_string())?;
    let reusable = connection.as_mut().filter(|c| !c.is_closed());
    let sender = match reusable {
        Some(sender) => sender,
        None => connection.insert(controller.connect(stall).await?),
    };
    tokio::time::timeout(stall, sender.ready()).await.map_err(|_| "the connection stalled".to_owned())?.map_err(|e| e.to_string())?;
    let response = tokio::time::timeout(SERVER_HOLD + stall, sender.send_request(request))
        .await
        .map_err(|_| "no answer within the long-poll hold".to_owned())?
        .map_err(|e| format!("{e}: {}", std::error::Error::source(&e).map(ToString::to_string).unwrap_or_default()))?;
    match response.status() {
        StatusCode::NOT_MODIFIED => Ok(None),
        StatusCode::OK => {
            let is_delta = response.headers().get(header::CONTENT_TYPE).is_some_and(|t| t == delta::CONTENT_TYPE);
            let stream = response.headers().get("x-switchyard-stream").and_then(|v| v.to_str().ok()).map(str::to_owned);
            // A controller (or anything in between) that sends part of a body and stops
            // must not freeze configuration: the whole body comes within the stall bound.
            let body = tokio::time::timeout(stall, response.into_body().collect());
            let raw = body.await.map_err(|_| format!("the snapshot body stalled for {stall:?}"))?.map_err(|e| e.to_string())?.to_bytes();
            if is_delta {
                let chain = serde_json::from_slice(&raw).map_err(|e| format!("undecodable snapshot delta: {e}"))?;
                return Ok(Some(Pulled::Delta(chain)));
            }
            let snapshot = serde_json::from_slice(&raw).map_err(|e| format!("undecodable snapshot: {e}"))?;
            Ok(Some(Pulled::Whole { snapshot, raw, stream }))
        }
        status => Err(format!("controller answered {status}")),
    }
}

/// Writes atomically (temporary file, then rename) so a crash never leaves half a file,
/// sealed with the snapshot's digest ([`seal`]). The temporary file is created 0600 (owner
/// only) before a byte is written: the snapshot holds app secrets.
pub async fn write_cache(dir: &Path, raw: &Bytes) {
    let sealed = seal(raw);
    let tmp = dir.join(format!("{CACHE_FILE}.tmp"));
    let result = async {
        tokio::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).await?;
        // A temporary file left by a crash may have any mode: start from a fresh one.
        match tokio::fs::remove_file(&tmp).await {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        let mut file = tokio::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp).await?;
        tokio::io::AsyncWriteExt::write_all(&mut file, &sealed).await?;
        file.sync_all().await?;
        drop(file);
        tokio::fs::rename(&tmp, dir.join(CACHE_FILE)).await
    }
    .await;
    if let Err(e) = result {
        tracing::warn!(dir = %dir.display(), error = %e, "could not cache the snapshot on disk");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[tokio::test]
    async fn the_cache_file_is_readable_by_its_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("cache");
        // A stale temporary file with a loose mode is replaced, not reused.
        std::fs::create_dir_all(&cache).unwrap();
        std::fs::write(cache.join("snapshot.json.tmp"), "old").unwrap();
        std::fs::set_permissions(cache.join("snapshot.json.tmp"), std::fs::Permissions::from_mode(0o644)).unwrap();
        write_cache(&cache, &Bytes::from_static(b"{}")).await;
        let mode = std::fs::metadata(cache.join(CACHE_FILE)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(!cache.join("snapshot.json.tmp").exists());
        let fresh = dir.path().join("fresh/dir");
        write_cache(&fresh, &Bytes::from_static(b"{}")).await;
        assert_eq!(std::fs::metadata(&fresh).unwrap().permissions().mode() & 0o777, 0o700);
    }

    #[test]
    fn a_sealed_cache_opens_to_the_exact_snapshot_bytes_and_is_json() {
        let raw = br#"{"version":7,"routes":[{"path":"/hello"}]}"#;
        let sealed = seal(raw);
        assert_eq!(unseal(&sealed).unwrap(), raw);
        // Still JSON, so `jq .snapshot.version` reads it.
        let value: serde_json::Value = serde_json::from_slice(&sealed).unwrap();
        assert_eq!(value["snapshot"]["version"], 7);
        assert_eq!(value["sha256"].as_str().unwrap().len(), DIGEST_HEX);
    }

    #[test]
    fn every_truncation_and_every_flipped_byte_of_a_sealed_cache_is_refused() {
        let raw = br#"{"version":7,"routes":[{"path":"/hello"}]}"#;
        let sealed = seal(raw);
        for len in 0..sealed.len() {
            assert!(unseal(&sealed[..len]).is_err(), "truncated to {len} bytes was accepted");
        }
        for at in 0..sealed.len() {
            for bit in 0..8 {
                let mut corrupt = sealed.clone();
                corrupt[at] ^= 1 << bit;
                assert!(unseal(&corrupt).is_err(), "bit {bit} of byte {at} flipped was accepted");
            }
        }
        // A bare snapshot (a file from before the seal, or written by hand) is refused too.
        assert!(unseal(raw).is_err());
    }

    /// A delta is applied only to the live snapshot of the stream it names, at the version
    /// it starts from; anything else is refused (and the pull loop fetches the whole).
    #[test]
    fn a_delta_applies_only_to_the_live_snapshot_of_its_stream_and_version() {
        use switchyard_compile::snapshot::delta::SnapshotDelta;
        use switchyard_compile::snapshot::{Backend, BackendKind};
        let mock = |body: &str| Snapshot {
            version: 1,
            backends: vec![Backend::with_defaults("d/b", BackendKind::Mock { status: 200, headers: vec![], body: body.into() })],
            ..Snapshot::default()
        };
        let proxy = Proxy::new(&mut prometheus_client::registry::Registry::default(), crate::egress::EgressConfig::default());
        let chain = DeltaChain {
            stream: "s1".into(),
            steps: vec![SnapshotDelta::between(&mock("a"), &Snapshot { version: 2, ..mock("b") }).unwrap()],
        };
        assert!(apply_delta(&proxy, &chain, Some("s1")).unwrap_err().contains("no live snapshot"));
        proxy.apply(Arc::new(mock("a"))).unwrap();
        let built = apply_delta(&proxy, &chain, Some("s1")).unwrap();
        assert_eq!(built, Snapshot { version: 2, ..mock("b") });
        assert!(apply_delta(&proxy, &chain, Some("s2")).unwrap_err().contains("stream s1"));
        assert!(apply_delta(&proxy, &chain, None).is_err(), "a proxy that knows no stream takes no delta");
        // The live snapshot moved on: the delta from version 1 no longer fits.
        proxy.apply(Arc::new(Snapshot { version: 5, ..mock("c") })).unwrap();
        assert!(apply_delta(&proxy, &chain, Some("s1")).unwrap_err().contains("does not apply to version 5"));
    }

    #[test]
    fn plain_http_needs_the_explicit_opt_in_and_https_is_verified() {
        let err = ControllerUrl::parse("http://controller:18000", None, false).unwrap_err();
        assert!(err.contains("--controller-insecure-http"), "{err}");
        let plain = ControllerUrl::parse("http://controller:18000", None, true).unwrap();
        assert!(plain.tls.is_none());
        let tls = ControllerUrl::parse("https://switchyard-controller.ns.svc:18000/", None, false).unwrap();
        assert_eq!(tls.base, "https://switchyard-controller.ns.svc:18000");
        assert!(tls.tls.is_some());
        assert!(ControllerUrl::parse("htps://x:1", None, false).is_err());
        assert!(ControllerUrl::parse("https://x:1", Some("not a certificate"), false).is_err());
        assert!(ControllerUrl::parse("https://x:1/v1/snapshot", None, false).is_err());
    }
}
