//! What every registry parser promises about what it lets through: registry content is
//! written by other programs, so an instance's host must be safe to put in a URL and a
//! Host header, and a skipped entry's name safe to put in a status message.

use switchyard_compile::discovered::MAX_ENTRY_LEN;
use switchyard_compile::{Instance, Skipped};

pub fn check_instance(instance: &Instance) {
    assert!(instance.port != 0, "{instance:?}");
    assert!(instance.weight > 0, "{instance:?}");
    let host = &instance.host;
    assert!(!host.is_empty(), "{instance:?}");
    let is_ip = host.parse::<std::net::IpAddr>().is_ok();
    assert!(
        is_ip || host.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.'),
        "a host is an IP address or a DNS name: {host:?}"
    );
    let authority = if host.contains(':') { format!("[{host}]:{}", instance.port) } else { format!("{host}:{}", instance.port) };
    let parsed: http::uri::Authority = authority.parse().unwrap_or_else(|e| panic!("{authority:?} is not an authority: {e}"));
    assert_eq!(parsed.port_u16(), Some(instance.port));
}

pub fn check_skipped(skipped: &Skipped) {
    assert!(skipped.entry.chars().count() <= MAX_ENTRY_LEN + 1, "{skipped:?}");
    assert!(!skipped.entry.chars().any(char::is_control), "{skipped:?}");
    assert!(!skipped.why.is_empty());
}
