//! Idle keep-alive HTTP/1 connections of one worker, per upstream.
//!
//! An HTTP/1 connection carries one request at a time, so a connection is either in
//! use (held by its request, then by the response body: `http1::Home`) or idle here; it
//! returns when the response has been read to its end and the exchange left it
//! reusable.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use http::uri::{Authority, Scheme};

use super::Upstream;
use super::http1::{Connection, Home};
use crate::fast_hash::FastHash;
use switchyard_http::tls::UpstreamTls;

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
    conn: Connection,
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

    /// The most recently used idle connection that is still fresh, open and silent
    /// (checked without waiting: a backend that closed it, or sent anything, while it was
    /// idle gets it dropped here): reusing the warmest one lets the others age out.
    pub(super) fn checkout(&self, key: &Key) -> Option<Connection> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let stack = idle.get_mut(key)?;
        while let Some(mut entry) = stack.pop() {
            if entry.since.elapsed() < self.idle_timeout && entry.conn.is_idle_and_clean() {
                return Some(entry.conn);
            }
        }
        None
    }

    /// Where a connection to `key` returns; the first one starts the idle reaper.
    pub(super) fn home(self: &Arc<Self>, key: Key) -> Home {
        if !self.reaper_started.load(Ordering::Relaxed) && !self.reaper_started.swap(true, Ordering::Relaxed) {
            tokio::spawn(reap(Arc::downgrade(self)));
        }
        Home { pool: self.clone(), key }
    }

    /// Keeps `conn` idle under `key`; the key is cloned only for an upstream that has no
    /// idle list yet.
    pub(super) fn checkin(&self, key: &Key, conn: Connection) {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let entry = Idle { conn, since: Instant::now() };
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
            stack.retain_mut(|entry| entry.since.elapsed() < self.idle_timeout && entry.conn.is_idle_and_clean());
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
