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
        crate::balance::splitmix((nanos ^ u64::from(std::process::id()).rotate_left(32) ^ addr).wrapping_add(0x9E37_79B9_7F4A_7C15))
    })
}

/// The request's id: a well-formed incoming `X-Ca-Request-Id` (1-64 characters of
/// `A-Z a-z 0-9 . _ -`) is kept, so one id follows a request through chained gateways;
/// anything else is replaced by a new one.
pub fn of(headers: &http::HeaderMap) -> HeaderValue {
    match headers.get(crate::headers::X_CA_REQUEST_ID) {
        Some(incoming) if is_well_formed(incoming.as_bytes()) => incoming.clone(),
        _ => next(),
    }
}

fn is_well_formed(id: &[u8]) -> bool {
    (1..=64).contains(&id.len()) && id.iter().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// The next request id, e.g. `3f9a12c4-8b7e-4c1d-0000-00000000002a`: the first three
/// groups are the process prefix, the last two the counter.
pub fn next() -> HeaderValue {
    let p = prefix();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    // Formatted on the stack: the header value is the only allocation.
    let mut text = [b'-'; 36];
    hex(&mut text[0..8], p >> 32);
    hex(&mut text[9..13], (p >> 16) & 0xFFFF);
    hex(&mut text[14..18], p & 0xFFFF);
    hex(&mut text[19..23], n >> 48);
    hex(&mut text[24..36], n & 0xFFFF_FFFF_FFFF);
    HeaderValue::from_bytes(&text).expect("hex digits and dashes are a valid header value")
}

/// Writes the low `out.len()` hex digits of `value` into `out`.
fn hex(out: &mut [u8], mut value: u64) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for slot in out.iter_mut().rev() {
        *slot = DIGITS[(value & 0xF) as usize];
        value >>= 4;
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_well_formed_incoming_id_is_kept_and_anything_else_replaced() {
        let mut headers = http::HeaderMap::new();
        headers.insert("x-ca-request-id", http::HeaderValue::from_static("edge-1.a_B"));
        assert_eq!(super::of(&headers), "edge-1.a_B");
        for bad in ["", "has space", "semi;colon", &"x".repeat(65)] {
            headers.insert("x-ca-request-id", http::HeaderValue::from_str(bad).unwrap());
            let id = super::of(&headers);
            assert_ne!(id, bad);
            assert_eq!(id.len(), 36, "a new id");
        }
        assert_eq!(super::of(&http::HeaderMap::new()).len(), 36);
    }

    #[test]
    fn request_ids_are_unique_and_uuid_shaped() {
        let a = super::next();
        let b = super::next();
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
        let text = a.to_str().unwrap();
        let groups: Vec<usize> = text.split('-').map(str::len).collect();
        assert_eq!(groups, [8, 4, 4, 4, 12]);
        assert!(text.bytes().all(|b| b == b'-' || b.is_ascii_hexdigit()));
    }
}
