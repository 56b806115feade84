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
use crate::body::RequestBody;
use crate::fast_hash::FastHash;
use switchyard_http::tls::UpstreamTls;

type Sender = SendRequest<RequestBody>;

/// Which upstream a connection goes to.
#[derive(Clone, PartialEq, Eq, Hash)]
pub(super) struct Key {
    scheme: Scheme,
    authority: Authority,
    /// The address chosen before dialling (an IP literal or a DnsRecord pick), so each
    /// weighted address keeps its own connections; None when the system resolver picks.
    pinned: Option<SocketAddr>,
    /// Connections dialled under a vpc backend's grant (its fingerprint) are lent only
    /// to dials under the same grant: never to a backend without it, nor to one whose
    /// authorization grants other addresses.
    grant: Option<u64>,
    /// TLS connections are shared only under the same server name and configuration.
    tls: Option<Arc<UpstreamTls>>,
}

impl Key {
    pub(super) fn new(upstream: &Upstream, pinned: Option<SocketAddr>, grant: Option<u64>) -> Self {
        Self { scheme: upstream.scheme.clone(), authority: upstream.authority.clone(), pinned, grant, tls: upstream.tls.clone() }
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
    /// the warmest one lets the others age out.
    pub(super) fn checkout(self: &Arc<Self>, key: &Key) -> Option<Http1Lease> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let stack = idle.get_mut(key)?;
        while let Some(entry) = stack.pop() {
            if entry.sender.is_ready() && entry.since.elapsed() < self.idle_timeout {
                return Some(Http1Lease { sender: Some(entry.sender), key: key.clone(), pool: self.clone(), reused: true });
            }
        }
        None
    }

    /// Leases a new connection; the first one starts the idle reaper.
    pub(super) fn lease(self: &Arc<Self>, key: Key, sender: Sender) -> Http1Lease {
        if !self.reaper_started.swap(true, Ordering::Relaxed) {
            tokio::spawn(reap(Arc::downgrade(self)));
        }
        Http1Lease { sender: Some(sender), key, pool: self.clone(), reused: false }
    }

    fn checkin(&self, key: Key, sender: Sender) {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let stack = idle.entry(key).or_default();
        if stack.len() < self.max_idle {
            stack.push(Idle { sender, since: Instant::now() });
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
            self.pool.checkin(self.key.clone(), sender);
        } else if !sender.is_closed() {
            // Still finishing the response (or being closed by hyper after a
            // cancelled request): wait for the verdict off the request path.
            let (pool, key) = (self.pool.clone(), self.key.clone());
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(async move {
                    if sender.ready().await.is_ok() {
                        pool.checkin(key, sender);
                    }
                });
            }
        }
    }
}
