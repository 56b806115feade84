//! Proxy mode: pulls snapshots from the controller by HTTP long-poll and keeps the last
//! good one, in memory and on disk.
//!
//! - At start, a snapshot cached on disk is loaded first, so a proxy restarted while
//!   the controller is down serves at once.
//! - `GET /v1/snapshot?after=V` returns as soon as the controller's version differs from
//!   V (newer, or a restarted controller), or 304 after the hold time.
//! - Errors keep the current snapshot and retry with backoff; nothing is dropped.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode, Uri, header};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use switchyard_compile::snapshot::Snapshot;

use crate::proxy::Proxy;

/// Longer than the controller's hold time, so a healthy long-poll never times out.
const POLL_TIMEOUT: Duration = Duration::from_secs(45);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
const CACHE_FILE: &str = "snapshot.json";

pub struct PullConfig {
    /// Base URL of the controller's snapshot listener.
    pub controller: String,
    pub token: String,
    pub cache_dir: Option<PathBuf>,
}

/// Loads the disk cache (if any) into the proxy. Returns whether one was loaded.
pub async fn load_cache(proxy: &Proxy, cache_dir: &Path) -> bool {
    let path = cache_dir.join(CACHE_FILE);
    let Ok(bytes) = tokio::fs::read(&path).await else { return false };
    match serde_json::from_slice::<Snapshot>(&bytes) {
        Ok(snapshot) => {
            let version = snapshot.version;
            let loaded = proxy.apply(Arc::new(snapshot)).is_ok();
            if loaded {
                tracing::info!(version, path = %path.display(), "serving the cached snapshot until the controller answers");
            }
            loaded
        }
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "ignoring an unreadable cached snapshot");
            false
        }
    }
}

/// Pulls forever.
pub async fn run(proxy: Arc<Proxy>, config: PullConfig) {
    let client: Client<HttpConnector, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build(HttpConnector::new());
    let base = config.controller.trim_end_matches('/').to_owned();
    let mut backoff = Duration::from_millis(100);
    // The version last received, applied or refused: polling after a refused version
    // waits for the next one instead of fetching the same bad snapshot in a loop.
    let mut seen = proxy.version();
    loop {
        match poll_once(&client, &base, &config.token, seen).await {
            Ok(Some((snapshot, raw))) => {
                backoff = Duration::from_millis(100);
                let version = snapshot.version;
                let changed = seen != Some(version);
                seen = Some(version);
                if changed
                    && proxy.apply(Arc::new(snapshot)).is_ok()
                    && let Some(dir) = &config.cache_dir
                {
                    write_cache(dir, &raw).await;
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

/// One long-poll: `Some` with a new snapshot, `None` when unchanged.
async fn poll_once(
    client: &Client<HttpConnector, Empty<Bytes>>,
    base: &str,
    token: &str,
    after: Option<u64>,
) -> Result<Option<(Snapshot, Bytes)>, String> {
    let uri: Uri = match after {
        Some(v) => format!("{base}/v1/snapshot?after={v}"),
        None => format!("{base}/v1/snapshot"),
    }
    .parse()
    .map_err(|e| format!("bad controller URL: {e}"))?;
    let request =
        Request::get(uri).header(header::AUTHORIZATION, format!("Bearer {token}")).body(Empty::new()).map_err(|e| e.to_string())?;
    let response = tokio::time::timeout(POLL_TIMEOUT, client.request(request))
        .await
        .map_err(|_| "timed out".to_owned())?
        .map_err(|e| format!("{e}: {}", std::error::Error::source(&e).map(ToString::to_string).unwrap_or_default()))?;
    match response.status() {
        StatusCode::NOT_MODIFIED => Ok(None),
        StatusCode::OK => {
            let raw = response.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
            let snapshot = serde_json::from_slice(&raw).map_err(|e| format!("undecodable snapshot: {e}"))?;
            Ok(Some((snapshot, raw)))
        }
        status => Err(format!("controller answered {status}")),
    }
}

/// Writes atomically (temporary file, then rename) so a crash never leaves half a file.
async fn write_cache(dir: &Path, raw: &Bytes) {
    let tmp = dir.join(format!("{CACHE_FILE}.tmp"));
    let result = async {
        tokio::fs::create_dir_all(dir).await?;
        tokio::fs::write(&tmp, raw).await?;
        tokio::fs::rename(&tmp, dir.join(CACHE_FILE)).await
    }
    .await;
    if let Err(e) = result {
        tracing::warn!(dir = %dir.display(), error = %e, "could not cache the snapshot on disk");
    }
}
