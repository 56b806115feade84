//! Replay protection for Signature auth: each `X-Ca-Nonce` of an app is accepted once
//! while its timestamp stays acceptable (see [`super::signature::Presented::nonce_ttl_ms`]).
//!
//! One store per proxy process, shared by every worker thread and kept across snapshot
//! swaps:
//! - [`NonceStore::Memory`] (the default): bounded; entries expire with their window.
//!   A replay to another replica is not seen.
//! - [`NonceStore::Redis`] (`--nonce-store redis://HOST:PORT`): every replica sets
//!   `SET switchyard:nonce:<app key>:<nonce> 1 NX PX <ttl>` in one Redis, so a nonce is
//!   accepted once across all of them.
//!
//! Both fail closed: a store that cannot say whether a nonce is new (Redis unreachable,
//! memory full) refuses the request with 503.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashSet};
use std::hash::{BuildHasher, RandomState};
use std::sync::Mutex;
use std::time::Instant;

use crate::error::GatewayError;

/// Nonces the memory store holds at most by default (about 26 bytes each: ~27 MiB full),
/// enough for ~1,100 signed requests per second sustained over the 15-minute window.
pub const DEFAULT_MEMORY_CAPACITY: usize = 1 << 20;

/// Where nonces are remembered.
pub enum NonceStore {
    Memory(MemoryNonces),
    Redis(switchyard_redis::Client),
}

impl NonceStore {
    /// The in-memory store holding at most `capacity` unexpired nonces.
    pub fn memory(capacity: usize) -> Self {
        Self::Memory(MemoryNonces::new(capacity))
    }

    /// Remembers `nonce` of the app `app_key` for `ttl_ms`: Ok when it is new, a replay
    /// error when it was seen within its window, 503 when the store cannot tell.
    pub async fn remember(&self, app_key: &str, nonce: &[u8], ttl_ms: u64) -> Result<(), GatewayError> {
        let fresh = match self {
            Self::Memory(memory) => memory.remember(app_key, nonce, ttl_ms)?,
            Self::Redis(client) => {
                let key = redis_key(app_key, nonce);
                client
                    .set_nx_px(&key, b"1", ttl_ms)
                    .await
                    .map_err(|e| GatewayError::NonceStoreUnavailable { kind: e.kind(), detail: e.to_string() })?
            }
        };
        if fresh { Ok(()) } else { Err(GatewayError::NonceReplayed) }
    }

    /// What the store is, for the startup log (`memory`, `redis://HOST:PORT`).
    pub fn describe(&self) -> String {
        match self {
            Self::Memory(memory) => format!("memory (at most {} nonces)", memory.capacity),
            Self::Redis(client) => format!("redis://{}", client.addr()),
        }
    }
}

impl Default for NonceStore {
    fn default() -> Self {
        Self::memory(DEFAULT_MEMORY_CAPACITY)
    }
}

/// The app key's length first, so no two (key, nonce) pairs make the same key whatever
/// `:` they hold.
fn redis_key(app_key: &str, nonce: &[u8]) -> Vec<u8> {
    let mut key = format!("switchyard:nonce:{}:{app_key}:", app_key.len()).into_bytes();
    key.extend_from_slice(nonce);
    key
}

/// Bounded in-memory nonces. Each is kept as a 64-bit keyed hash of (app key, nonce)
/// ([`Fingerprint`]) — a collision (odds ~2^-44 with a full store) only refuses a
/// request, never admits a replay — with its expiry in a min-heap, purged on every call.
/// A present entry is always unexpired, so one set and one heap entry per nonce suffice.
pub struct MemoryNonces {
    inner: Mutex<Seen>,
    fingerprint: Fingerprint,
    started: Instant,
    capacity: usize,
}

#[derive(Default)]
struct Seen {
    hashes: HashSet<u64, crate::fast_hash::FastHash>,
    expiries: BinaryHeap<Reverse<(u64, u64)>>,
}

impl MemoryNonces {
    pub fn new(capacity: usize) -> Self {
        Self { inner: Mutex::default(), fingerprint: Fingerprint::random(), started: Instant::now(), capacity: capacity.max(1) }
    }

    fn remember(&self, app_key: &str, nonce: &[u8], ttl_ms: u64) -> Result<bool, GatewayError> {
        let now_ms = self.started.elapsed().as_millis() as u64;
        self.remember_at(self.fingerprint.of(app_key.as_bytes(), nonce), ttl_ms, now_ms)
    }

    fn remember_at(&self, hash: u64, ttl_ms: u64, now_ms: u64) -> Result<bool, GatewayError> {
        let mut seen = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        while let Some(Reverse((expiry, expired))) = seen.expiries.peek().copied() {
            if expiry > now_ms {
                break;
            }
            seen.expiries.pop();
            seen.hashes.remove(&expired);
        }
        if seen.hashes.len() >= self.capacity {
            // Full: a replay is still a replay; a new nonce cannot be remembered.
            return if seen.hashes.contains(&hash) { Ok(false) } else { Err(GatewayError::NonceStoreFull { capacity: self.capacity }) };
        }
        // One probe: the insert says whether it was there.
        if !seen.hashes.insert(hash) {
            return Ok(false);
        }
        seen.expiries.push(Reverse((now_ms + ttl_ms.max(1), hash)));
        Ok(true)
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.inner.lock().unwrap().hashes.len()
    }
}

/// A keyed 64-bit hash of (app key, nonce): a folded multiply per eight bytes (as
/// `foldhash` and [`crate::fast_hash`]) from a secret random start, by a secret random
/// multiplier, so clients can neither aim at one value nor predict collisions. A tenth
/// of what SipHash costs on a UUID nonce. The input is the two lengths, then each string
/// zero-padded to whole words: no two (key, nonce) pairs give the same words.
struct Fingerprint {
    start: u64,
    multiplier: u64,
}

impl Fingerprint {
    fn random() -> Self {
        let seeds = RandomState::new();
        Self { start: seeds.hash_one(0u8), multiplier: seeds.hash_one(1u8) | 1 }
    }

    fn of(&self, app_key: &[u8], nonce: &[u8]) -> u64 {
        let mut state = self.absorb(self.start, ((app_key.len() as u64) << 32) ^ (nonce.len() as u64));
        for part in [app_key, nonce] {
            let mut words = part.chunks_exact(8);
            for word in &mut words {
                state = self.absorb(state, u64::from_le_bytes(word.try_into().expect("8 bytes")));
            }
            if !words.remainder().is_empty() {
                let mut tail = [0u8; 8];
                tail[..words.remainder().len()].copy_from_slice(words.remainder());
                state = self.absorb(state, u64::from_le_bytes(tail));
            }
        }
        state
    }

    #[inline]
    fn absorb(&self, state: u64, word: u64) -> u64 {
        let product = u128::from(state ^ word) * u128::from(self.multiplier);
        (product as u64) ^ ((product >> 64) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_tell_keys_and_nonces_apart() {
        let fingerprint = Fingerprint::random();
        let mut seen = HashSet::new();
        let pairs = [("k", "n"), ("kn", ""), ("", "kn"), ("k", "n\0"), ("k\0", "n"), ("12345678", "9"), ("1234567", "89")];
        for (key, nonce) in pairs {
            assert!(seen.insert(fingerprint.of(key.as_bytes(), nonce.as_bytes())), "{key:?} {nonce:?}");
        }
        for i in 0..100_000u32 {
            assert!(seen.insert(fingerprint.of(b"204000001", format!("{i:032x}").as_bytes())), "{i}");
        }
        let other = Fingerprint::random();
        assert_ne!(other.of(b"k", b"n"), fingerprint.of(b"k", b"n"), "seeded per store");
    }

    #[test]
    fn a_nonce_is_accepted_once_until_it_expires() {
        let store = MemoryNonces::new(10);
        assert!(store.remember_at(7, 1000, 0).unwrap());
        assert!(!store.remember_at(7, 1000, 999).unwrap(), "replayed within its window");
        assert!(store.remember_at(8, 1000, 999).unwrap(), "another nonce");
        assert!(store.remember_at(7, 1000, 1000).unwrap(), "expired: its timestamp is no longer acceptable anyway");
        assert_eq!(store.len(), 2, "expired entries are purged");
    }

    #[test]
    fn a_full_store_fails_closed_and_frees_up_as_nonces_expire() {
        let store = MemoryNonces::new(2);
        assert!(store.remember_at(1, 100, 0).unwrap());
        assert!(store.remember_at(2, 500, 0).unwrap());
        let full = store.remember_at(3, 100, 50).unwrap_err();
        assert_eq!((full.code(), full.status().as_u16()), ("A503NF", 503));
        assert!(!store.remember_at(2, 100, 50).unwrap(), "a replay is still a replay when full");
        assert!(store.remember_at(3, 100, 100).unwrap(), "nonce 1 expired");
    }

    #[test]
    fn nonces_are_per_app_and_exact() {
        let store = MemoryNonces::new(10);
        assert!(store.remember("204000001", b"n-1", 1000).unwrap());
        assert!(!store.remember("204000001", b"n-1", 1000).unwrap());
        assert!(store.remember("204000002", b"n-1", 1000).unwrap(), "another app's nonce");
        assert!(store.remember("204000001", b"N-1", 1000).unwrap());
        assert!(store.remember("20400000", b"1n-1", 1000).unwrap(), "no ambiguity between key and nonce");
    }

    #[test]
    fn redis_keys_cannot_collide_across_apps() {
        assert_ne!(redis_key("a:b", b"c"), redis_key("a", b"b:c"));
        assert_eq!(redis_key("204000001", b"n"), b"switchyard:nonce:9:204000001:n");
    }

    #[tokio::test]
    async fn the_store_answers_replays_with_their_own_code() {
        let store = NonceStore::memory(10);
        store.remember("k", b"n", 1000).await.unwrap();
        assert_eq!(store.remember("k", b"n", 1000).await.unwrap_err().code(), "A401NR");
    }

    #[tokio::test]
    async fn an_unreachable_redis_fails_closed_with_503() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let store = NonceStore::Redis(switchyard_redis::Client::from_url(&format!("redis://127.0.0.1:{port}")).unwrap());
        let error = store.remember("k", b"n", 1000).await.unwrap_err();
        assert_eq!((error.code(), error.status().as_u16()), ("A503NS", 503));
        assert_eq!(error.to_string(), "the nonce store cannot be reached, so signed requests are refused: connection refused");
        assert!(error.detail().is_some_and(|d| d.contains("127.0.0.1")), "the address is for the log only");
    }
}
