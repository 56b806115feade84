//! Idle keep-alive connections of one worker, per upstream, and the lease that
//! brings a connection back once its response is done.
//!
//! An HTTP/1 connection carries one request at a time, so a connection is either
//! leased (in flight) or idle here; it returns when the response body has been
//! forwarded, which is when hyper makes it ready for the next request.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use http::uri::{Authority, Scheme};
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::TrySendError;
use hyper::client::conn::http1::SendRequest;

use super::Upstream;
use crate::fast_hash::FastHash;
use crate::request_body::RequestBody;
use switchyard_http::tls::UpstreamTls;

type Sender = SendRequest<RequestBody>;

/// Which upstream a connection goes to.
#[derive(Clone, PartialEq, Eq, Hash)]
pub(super) struct Key {
    /// Shared from the [`Upstream`]: the same `Arc` compares equal at a pointer compare.
    destination: Arc<Destination>,
    /// The address chosen before dialling (an IP literal or a DnsRecord pick), so each
    /// weighted address keeps its own connections; None when the system resolver picks.
    pinned: Option<SocketAddr>,
    /// Connections dialled under a vpc backend's grant (its fingerprint) are lent only
    /// to dials under the same grant: never to a backend without it, nor to one whose
    /// authorization grants other addresses.
    grant: Option<u64>,
}

impl Key {
    pub(super) fn new(upstream: &Upstream, pinned: Option<SocketAddr>, grant: Option<u64>) -> Self {
        Self { destination: upstream.destination.clone(), pinned, grant }
    }
}

/// Where an upstream's connections go, made once per [`Upstream`] so that a pool lookup
/// per request hashes and compares one short string (scheme and authority compare
/// ignoring case, byte by byte, as `http`'s types do).
#[derive(Debug, PartialEq, Eq, Hash)]
pub(super) struct Destination {
    /// `scheme://authority`, lowercase.
    name: Box<str>,
    /// TLS connections are shared only under the same server name and configuration.
    tls: Option<Arc<UpstreamTls>>,
}

impl Destination {
    pub(super) fn new(scheme: &Scheme, authority: &Authority, tls: Option<Arc<UpstreamTls>>) -> Self {
        // A scheme has no `:`, so the name splits back into the same pair.
        let name = format!("{}://{}", scheme.as_str(), authority.as_str()).to_ascii_lowercase().into_boxed_str();
        Self { name, tls }
    }
}

struct Idle {
    sender: Sender,
    since: Instant,
}

pub(super) struct Pool {
    idle: Mutex<HashMap<Key, Vec<Idle>, FastHash>>,
    idle_timeout: Duration,
    max_idle: usize,
    reaper_started: AtomicBool,
}

impl Pool {
    pub(super) fn new(idle_timeout: Duration, max_idle: usize) -> Self {
        Self { idle: Mutex::new(HashMap::with_hasher(FastHash)), idle_timeout, max_idle, reaper_started: AtomicBool::new(false) }
    }

    /// The most recently used idle connection that is still open and fresh: reusing
    /// the warmest one lets the others age out. The key goes into the lease, or comes back
    /// when there is none (no clone per request).
    pub(super) fn checkout(self: &Arc<Self>, key: Key) -> Result<Http1Lease, Key> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let Some(stack) = idle.get_mut(&key) else { return Err(key) };
        while let Some(entry) = stack.pop() {
            if entry.sender.is_ready() && entry.since.elapsed() < self.idle_timeout {
                return Ok(Http1Lease { sender: Some(entry.sender), key, pool: self.clone(), reused: true });
            }
        }
        Err(key)
    }

    /// Leases a new connection; the first one starts the idle reaper.
    pub(super) fn lease(self: &Arc<Self>, key: Key, sender: Sender) -> Http1Lease {
        if !self.reaper_started.swap(true, Ordering::Relaxed) {
            tokio::spawn(reap(Arc::downgrade(self)));
        }
        Http1Lease { sender: Some(sender), key, pool: self.clone(), reused: false }
    }

    /// Keeps `sender` idle under `key`; the key is cloned only for an upstream that has no
    /// idle list yet.
    fn checkin(&self, key: &Key, sender: Sender) {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let entry = Idle { sender, since: Instant::now() };
        if let Some(stack) = idle.get_mut(key) {
            if stack.len() < self.max_idle {
                stack.push(entry);
            }
            return;
        }
        if self.max_idle > 0 {
            idle.insert(key.clone(), vec![entry]);
        }
    }

    /// Drops connections idle too long or closed by the backend.
    fn evict_stale(&self) {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        idle.retain(|_, stack| {
            stack.retain(|entry| !entry.sender.is_closed() && entry.since.elapsed() < self.idle_timeout);
            !stack.is_empty()
        });
    }
}

/// Closes idle connections past the timeout even for upstreams no longer requested
/// (removed by a configuration change); ends with the pool.
async fn reap(pool: Weak<Pool>) {
    let period = pool.upgrade().map_or(Duration::from_secs(1), |p| p.idle_timeout / 3).max(Duration::from_secs(1));
    loop {
        tokio::time::sleep(period).await;
        let Some(pool) = pool.upgrade() else { return };
        pool.evict_stale();
    }
}

/// An HTTP/1 connection in use. Dropping it returns the connection to the pool once
/// hyper says it is ready again (at once when the response was read to the end).
pub(super) struct Http1Lease {
    sender: Option<Sender>,
    key: Key,
    pool: Arc<Pool>,
    /// Taken from the pool (not dialled for this request).
    reused: bool,
}

impl Http1Lease {
    /// Whether the connection came from the pool rather than a new dial.
    pub(super) fn reused(&self) -> bool {
        self.reused
    }

    /// The upstream this connection goes to.
    pub(super) fn key(&self) -> &Key {
        &self.key
    }

    /// Sends on this connection; an unsent request comes back in the error.
    pub(super) async fn send(&mut self, request: Request<RequestBody>) -> Result<Response<Incoming>, TrySendError<Request<RequestBody>>> {
        let sender = self.sender.as_mut().expect("a lease holds its connection until dropped");
        sender.try_send_request(request).await
    }
}

impl Drop for Http1Lease {
    fn drop(&mut self) {
        let Some(mut sender) = self.sender.take() else { return };
        if sender.is_ready() {
            self.pool.checkin(&self.key, sender);
        } else if !sender.is_closed() {
            // Still finishing the response (or being closed by hyper after a
            // cancelled request): wait for the verdict off the request path.
            let (pool, key) = (self.pool.clone(), self.key.clone());
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(async move {
                    if sender.ready().await.is_ok() {
                        pool.checkin(&key, sender);
                    }
                });
            }
        }
    }
}
