//! Random (version 4) UUIDs from the system's CSPRNG: signature nonces, event ids. Not
//! for request ids, which need no randomness per request (see `request_id`).

/// A random UUID, e.g. `1b4e28ba-2fa1-4d2b-883f-0016d3cca427`; None when the system has
/// no randomness to give.
pub fn uuid_v4(random: &ring::rand::SystemRandom) -> Option<String> {
    use ring::rand::SecureRandom as _;
    let mut bytes = [0u8; 16];
    random.fill(&mut bytes).ok()?;
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    Some(format!("{}-{}-{}-{}-{}", &hex[..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..]))
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
}
