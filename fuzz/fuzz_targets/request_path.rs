//! Request path normalization, which runs on every request before routing: a normalized
//! path is normal (normalizing it again changes nothing), starts with `/`, has no empty or
//! dot segment and none of the escapes and bytes that are refused.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchyard_compile::request_path::{has_dot_segment, normalize};

fuzz_target!(|data: &[u8]| {
    let Ok(path) = std::str::from_utf8(data) else { return };
    let Ok(normal) = normalize(path) else { return };
    if !path.starts_with('/') {
        assert_eq!(normal, path, "only origin-form paths are rewritten");
        return;
    }
    assert!(normal.starts_with('/'), "{path:?} -> {normal:?}");
    assert_eq!(normalize(&normal).as_deref(), Ok(&*normal), "normalizing is idempotent: {path:?}");
    assert!(!normal.contains("//"), "no empty segment: {path:?} -> {normal:?}");
    assert!(!has_dot_segment(&normal), "no dot segment: {path:?} -> {normal:?}");
    assert!(!normal.contains(['\\', '\0']), "{path:?} -> {normal:?}");
    let bytes = normal.as_bytes();
    for (i, _) in normal.match_indices('%') {
        let hex = &bytes[i + 1..i + 3];
        assert!(hex.iter().all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(b)), "escapes are upper case: {normal:?}");
        let value = u8::from_str_radix(std::str::from_utf8(hex).unwrap(), 16).unwrap();
        assert!(!(value.is_ascii_alphanumeric() || b"-._~/\\\0".contains(&value)), "{normal:?} keeps an escape it must decode or refuse");
    }
});
