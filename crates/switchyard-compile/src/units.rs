//! Durations (`250ms`, `1m30s`) and byte sizes (`512Ki`, `10Mi`) as written in manifests.

use std::time::Duration;

/// Parses `250ms`, `5s`, `2m`, `1h`, or a sum such as `1m30s`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = || format!("invalid duration {text:?}: use a number and a unit (ms, s, m, h), e.g. 250ms, 5s, 1m30s");
    if text.is_empty() {
        return Err(bad());
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(bad());
        }
        let value: u64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let (unit, len) = if rest.starts_with("ms") {
            (Duration::from_millis(1), 2)
        } else if rest.starts_with('s') {
            (Duration::from_secs(1), 1)
        } else if rest.starts_with('m') {
            (Duration::from_secs(60), 1)
        } else if rest.starts_with('h') {
            (Duration::from_secs(3600), 1)
        } else {
            return Err(bad());
        };
        rest = &rest[len..];
        let part = unit.checked_mul(u32::try_from(value).map_err(|_| bad())?).ok_or_else(bad)?;
        total = total.checked_add(part).ok_or_else(bad)?;
    }
    Ok(total)
}

/// Parses a byte size: plain bytes or a binary suffix Ki, Mi, Gi.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let bad = || format!("invalid size {text:?}: use bytes or a Ki/Mi/Gi suffix, e.g. 512Ki, 10Mi");
    // By suffix, not by splitting two bytes off the end: the text is a tenant's, and its
    // last two bytes may be inside a multi-byte character (a panic when sliced).
    let suffixed = |suffix: &str, multiplier: u64| text.strip_suffix(suffix).map(|d| (d, multiplier));
    let (digits, multiplier) =
        suffixed("Ki", 1u64 << 10).or_else(|| suffixed("Mi", 1 << 20)).or_else(|| suffixed("Gi", 1 << 30)).unwrap_or((text, 1));
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    digits.parse::<u64>().ok().and_then(|n| n.checked_mul(multiplier)).ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_accept_every_unit_and_sums() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
    }

    #[test]
    fn durations_reject_missing_units_and_garbage() {
        for bad in ["", "5", "s", "5x", "-5s", "5 s", "1.5s", "99999999999999999999s"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    /// The fuzz target `manifest_compile` (3 December 2026): `requestBodyLimit: ղi` (a
    /// two-byte character, then `i`) panicked, slicing the text two bytes from its end:
    /// a tenant's ApiRoute could stop the controller's compile.
    #[test]
    fn a_size_ending_inside_a_multibyte_character_is_refused_not_a_panic() {
        for bad in ["ղi", "ϰi", "ղ", "1ղ", "ղKi", "5Kղ", "€", "10€Mi"] {
            assert!(parse_size(bad).is_err(), "{bad:?} should be rejected");
        }
        assert_eq!(parse_size("2Ki"), Ok(2048));
    }

    #[test]
    fn sizes_accept_bytes_and_binary_suffixes() {
        assert_eq!(parse_size("100"), Ok(100));
        assert_eq!(parse_size("512Ki"), Ok(512 * 1024));
        assert_eq!(parse_size("10Mi"), Ok(10 << 20));
        assert_eq!(parse_size("1Gi"), Ok(1 << 30));
    }

    #[test]
    fn sizes_reject_other_suffixes_and_overflow() {
        for bad in ["", "Mi", "10MB", "10mi", "-1", "99999999999999999999Gi"] {
            assert!(parse_size(bad).is_err(), "{bad:?} should be rejected");
        }
    }
}
