//! Request ids: a per-process random prefix and a counter, formatted like a UUID.
//! No syscall, no lock and one small allocation per request.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use http::HeaderValue;

static COUNTER: AtomicU64 = AtomicU64::new(0);
static PREFIX: OnceLock<u64> = OnceLock::new();

fn prefix() -> u64 {
    *PREFIX.get_or_init(|| {
        // Distinct per process: the clock, the pid and a stack address, mixed.
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
        let local = 0u8;
        let addr = std::ptr::addr_of!(local) as u64;
        splitmix(nanos ^ u64::from(std::process::id()).rotate_left(32) ^ addr)
    })
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// The next request id, e.g. `3f9a12c4-8b7e-4c1d-0000-00000000002a`.
pub fn next() -> HeaderValue {
    let p = prefix();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let text = format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        (p >> 32) as u32,
        (p >> 16) as u16,
        p as u16,
        (n >> 48) as u16,
        n & 0xFFFF_FFFF_FFFF
    );
    HeaderValue::from_str(&text).expect("hex digits and dashes are a valid header value")
}

#[cfg(test)]
mod tests {
    #[test]
    fn request_ids_are_unique_and_uuid_shaped() {
        let a = super::next();
        let b = super::next();
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
        assert_eq!(a.to_str().unwrap().matches('-').count(), 4);
    }
}
