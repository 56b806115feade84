//! Random (version 4) UUIDs from the system's CSPRNG: signature nonces, event ids. Not
//! for request ids, which need no randomness per request (see `request_id`).
//!
//! Each thread draws the system's randomness 1 KiB at a time and hands it out 16 bytes
//! per id: one `getrandom` call per 64 ids instead of one per id (an event bus backend
//! makes an id per request). The bytes are the kernel's CSPRNG output either way; they
//! only wait in this thread's memory until used, and each is used once.

use std::cell::RefCell;

/// Ids per system call.
const BATCH: usize = 64;

struct Pool {
    bytes: [u8; 16 * BATCH],
    /// How many ids of `bytes` were handed out (`BATCH`: empty).
    used: usize,
}

thread_local! {
    static POOL: RefCell<Pool> = const { RefCell::new(Pool { bytes: [0; 16 * BATCH], used: BATCH }) };
}

/// A random UUID, e.g. `1b4e28ba-2fa1-4d2b-883f-0016d3cca427`; None when the system has
/// no randomness to give.
pub fn uuid_v4(random: &ring::rand::SystemRandom) -> Option<String> {
    let mut bytes = next_16(random)?;
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    Some(format_uuid(&bytes))
}

fn next_16(random: &ring::rand::SystemRandom) -> Option<[u8; 16]> {
    use ring::rand::SecureRandom as _;
    POOL.with_borrow_mut(|pool| {
        if pool.used == BATCH {
            random.fill(&mut pool.bytes).ok()?;
            pool.used = 0;
        }
        let at = pool.used * 16;
        let mut id = [0u8; 16];
        id.copy_from_slice(&pool.bytes[at..at + 16]);
        // Never handed out twice, nor left readable after use.
        pool.bytes[at..at + 16].fill(0);
        pool.used += 1;
        Some(id)
    })
}

/// `8-4-4-4-12` lower-case hex.
fn format_uuid(bytes: &[u8; 16]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut text = [0u8; 36];
    let mut at = 0;
    for (i, byte) in bytes.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            text[at] = b'-';
            at += 1;
        }
        text[at] = HEX[usize::from(byte >> 4)];
        text[at + 1] = HEX[usize::from(byte & 0x0f)];
        at += 2;
    }
    String::from_utf8(text.to_vec()).expect("hex digits and dashes are ASCII")
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_uuid_is_version_4_variant_1_and_different_every_time() {
        let random = ring::rand::SystemRandom::new();
        let id = super::uuid_v4(&random).unwrap();
        assert_eq!(id.len(), 36);
        assert_eq!([&id[8..9], &id[13..14], &id[18..19], &id[23..24]], ["-"; 4]);
        assert_eq!(&id[14..15], "4");
        assert!(matches!(&id[19..20], "8" | "9" | "a" | "b"), "{id}");
        assert_ne!(id, super::uuid_v4(&random).unwrap());
    }

    #[test]
    fn uuids_are_hex_in_the_usual_groups() {
        let bytes = [0x1b, 0x4e, 0x28, 0xba, 0x2f, 0xa1, 0x4d, 0x2b, 0x88, 0x3f, 0x00, 0x16, 0xd3, 0xcc, 0xa4, 0x27];
        assert_eq!(super::format_uuid(&bytes), "1b4e28ba-2fa1-4d2b-883f-0016d3cca427");
    }

    #[test]
    fn ids_stay_distinct_across_refills_of_the_pool() {
        let random = ring::rand::SystemRandom::new();
        let ids: std::collections::HashSet<String> = (0..super::BATCH * 3 + 1).map(|_| super::uuid_v4(&random).unwrap()).collect();
        assert_eq!(ids.len(), super::BATCH * 3 + 1);
    }
}
