//! HTTP/2 connections of one worker, one per upstream: an HTTP/2 connection carries many
//! requests at once (streams), so unlike HTTP/1 there is no stack of idle connections,
//! only the live one, shared by every request to that upstream. A connection that died
//! (GOAWAY, a reset, an unanswered ping) is replaced by the next request's dial; one
//! unused for the idle timeout is dropped from the pool and closes once its last stream
//! ends.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use hyper::client::conn::http2::SendRequest;

use super::pool::Key;
use crate::fast_hash::FastHash;
use crate::request_body::RequestBody;

pub(super) type Sender = SendRequest<RequestBody>;

struct Live {
    sender: Sender,
    last_used: Instant,
}

pub(super) struct Http2Pool {
    live: Mutex<HashMap<Key, Live, FastHash>>,
    idle_timeout: Duration,
    reaper_started: AtomicBool,
}

impl Http2Pool {
    pub(super) fn new(idle_timeout: Duration) -> Self {
        Self { live: Mutex::new(HashMap::with_hasher(FastHash)), idle_timeout, reaper_started: AtomicBool::new(false) }
    }

    /// The upstream's open connection (a handle to it: the connection stays shared).
    pub(super) fn checkout(&self, key: &Key) -> Option<Sender> {
        let mut live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        let entry = live.get_mut(key)?;
        if entry.sender.is_closed() {
            live.remove(key);
            return None;
        }
        entry.last_used = Instant::now();
        Some(entry.sender.clone())
    }

    /// Shares a new connection for later requests. When several requests dialled at once
    /// (a cold start), the first one kept stays the shared one; the others serve only
    /// their own request and close after it.
    pub(super) fn offer(self: &Arc<Self>, key: Key, sender: &Sender) {
        if !self.reaper_started.swap(true, Ordering::Relaxed) {
            tokio::spawn(reap(Arc::downgrade(self)));
        }
        let mut live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        let fresh = || Live { sender: sender.clone(), last_used: Instant::now() };
        match live.get_mut(&key) {
            Some(entry) if !entry.sender.is_closed() => {}
            Some(entry) => *entry = fresh(),
            None => {
                live.insert(key, fresh());
            }
        }
    }

    fn evict_stale(&self) {
        let mut live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        live.retain(|_, entry| !entry.sender.is_closed() && entry.last_used.elapsed() < self.idle_timeout);
    }
}

/// Drops dead and idle connections, also of upstreams no longer requested; ends with the pool.
async fn reap(pool: Weak<Http2Pool>) {
    let period = pool.upgrade().map_or(Duration::from_secs(1), |p| p.idle_timeout / 3).max(Duration::from_secs(1));
    loop {
        tokio::time::sleep(period).await;
        let Some(pool) = pool.upgrade() else { return };
        pool.evict_stale();
    }
}
