//! Dubbo provider URLs (a URL-encoded URL as a ZooKeeper child's name): a serving provider
//! is a valid endpoint; a skipped one is named without its user info or query, which may
//! carry a password or a `token` that must never reach a status.
#![no_main]

#[path = "shared/instances.rs"]
mod instances;

use libfuzzer_sys::fuzz_target;
use switchyard_api::ZooKeeperLayout;
use switchyard_zookeeper::layout::{Entry, parse_entry};

fuzz_target!(|data: &[u8]| {
    let Ok(child) = std::str::from_utf8(data) else { return };
    match parse_entry(ZooKeeperLayout::Dubbo, child, b"") {
        Entry::Serves(instance) => instances::check_instance(&instance),
        Entry::Idle => {}
        Entry::Skipped(skipped) => {
            instances::check_skipped(&skipped);
            // A secret planted only in the query or the user info is not repeated.
            let decoded = percent_decode(&child.replace('+', " "));
            if let Some(url) = decoded {
                let secret = "s3cr3tZ";
                let in_query = url.split_once('?').is_some_and(|(before, after)| after.contains(secret) && !before.contains(secret));
                if in_query && !url.split_once('?').unwrap().0.contains('#') {
                    assert!(!skipped.entry.contains(secret), "the query leaked into {:?}", skipped.entry);
                }
                let userinfo =
                    url.split_once("://").and_then(|(_, rest)| rest.split(['/', '?', '#']).next()).and_then(|a| a.rsplit_once('@'));
                if let Some((user, _)) = userinfo
                    && user.contains(secret)
                    && url.matches(secret).count() == 1
                {
                    assert!(!skipped.entry.contains(secret), "the user info leaked into {:?}", skipped.entry);
                }
            }
        }
    }
});

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(hex) = bytes
                .get(i + 1..i + 3)
                .filter(|h| h.iter().all(u8::is_ascii_hexdigit))
                .and_then(|h| u8::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok())
        {
            out.push(hex);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    Some(String::from_utf8_lossy(&out).into_owned())
}
