//! Small syntactic checks shared by every resource's compile step.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A host name or a leading-wildcard pattern (`*.example.com`), lowercase, no port.
pub fn route_host(host: &str) -> Result<String, String> {
    let lower = host.to_ascii_lowercase();
    let name = lower.strip_prefix("*.").unwrap_or(&lower);
    dns_name(name).map_err(|e| format!("host {host:?}: {e}"))?;
    Ok(lower)
}

/// A DNS name: labels of letters, digits and `-`, at most 253 characters.
pub fn dns_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 253 {
        return Err("a host name must have 1-253 characters".into());
    }
    for label in name.split('.') {
        let ok = !label.is_empty()
            && label.len() <= 63
            && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !ok {
            return Err(format!("label {label:?} is not a valid DNS label"));
        }
    }
    Ok(())
}

/// Longest header name accepted (the CRD schema says the same).
pub const MAX_HEADER_NAME: usize = 256;
/// Longest configured header value: well inside every proxy's header limits.
pub const MAX_HEADER_VALUE: usize = 4096;

/// An HTTP header name (RFC 9110 token).
pub fn header_name(name: &str) -> Result<(), String> {
    let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if name.len() > MAX_HEADER_NAME {
        return Err(format!("header name of {} bytes is longer than {MAX_HEADER_NAME}", name.len()));
    }
    if name.is_empty() || !name.bytes().all(token) {
        return Err(format!("{name:?} is not a valid header name"));
    }
    Ok(())
}

/// A header value: visible ASCII, spaces and tabs; never CR or LF.
pub fn header_value(value: &str) -> Result<(), String> {
    if value.len() > MAX_HEADER_VALUE {
        return Err(format!("header value of {} bytes is longer than {MAX_HEADER_VALUE}", value.len()));
    }
    if value.bytes().all(|b| b == b'\t' || (b' '..=b'~').contains(&b)) {
        Ok(())
    } else {
        Err(format!("{value:?} is not a valid header value (control characters or non-ASCII)"))
    }
}

/// A Host-header style name (`orders.internal:8443`) as a TLS server name: without its
/// port and IPv6 brackets. Compile (SNI of vpc backends) and the controller (SNI of TLS
/// connectivity probes) both derive it from an authorization's `hostName`.
pub fn server_name_of_host(name: &str) -> String {
    match name.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') && port.parse::<u16>().is_ok() => host.to_owned(),
        _ => name.trim_start_matches('[').trim_end_matches(']').to_owned(),
    }
}

/// A Host header value: a host name or IP literal, optionally with a port.
pub fn host_header(value: &str) -> Result<(), String> {
    header_value(value)?;
    if value.is_empty() || value.contains(['/', ' ', '@', '?', '#']) {
        return Err(format!("{value:?} is not a valid Host header"));
    }
    Ok(())
}

/// Longest path a probe or rewrite may configure (the CRD schema says the same).
pub const MAX_WIRE_PATH: usize = 1024;

/// A path that goes into a request line as written (active health checks,
/// connectivity probes, rewrites): `/` followed by visible ASCII (0x21-0x7E). No space,
/// CR, LF, NUL or other control byte, so it can never end the request line early and
/// smuggle a second request or header onto the connection.
pub fn wire_path(path: &str) -> Result<(), String> {
    if path.len() > MAX_WIRE_PATH {
        return Err(format!("path of {} bytes is longer than {MAX_WIRE_PATH}", path.len()));
    }
    if !path.starts_with('/') {
        return Err(format!("path {path:?} must start with /"));
    }
    match path.bytes().position(|b| !(0x21..=0x7e).contains(&b)) {
        None => Ok(()),
        Some(at) => Err(format!(
            "path {path:?} holds byte 0x{:02x} at {at}: only visible ASCII (0x21-0x7E) may follow the /, no spaces or control characters",
            path.as_bytes()[at]
        )),
    }
}

/// A string written into a header line (a name or a value): no CR, LF or NUL, the
/// bytes that would end the line and let the rest pose as another header or request.
/// The header-specific checks (`header_name`, `header_value`, `host_header`) are
/// stricter; this is the line every resource string that reaches the wire must hold.
pub fn no_line_break(field: &str, value: &str) -> Result<(), String> {
    match value.bytes().position(|b| matches!(b, b'\r' | b'\n' | 0)) {
        None => Ok(()),
        Some(at) => Err(format!("{field} holds a CR, LF or NUL (byte {at}): it would end the header line")),
    }
}

/// Link-local addresses (169.254.0.0/16, fe80::/10) in every spelling that reaches
/// them: IPv4-mapped (`::ffff:169.254.169.254`), NAT64 (`64:ff9b::a9fe:a9fe`), and AWS's
/// IPv6 metadata address `fd00:ec2::254`. Cloud metadata services live there, so
/// neither the proxy's egress policy nor a VpcAuthorization lets them through by default.
pub fn is_link_local(ip: IpAddr) -> bool {
    const AWS_METADATA_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254);
    match ip {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return v4.is_link_local();
            }
            let s = v6.segments();
            let nat64 = s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] && Ipv4Addr::from((u32::from(s[6]) << 16) | u32::from(s[7])).is_link_local();
            (s[0] & 0xffc0) == 0xfe80 || v6 == AWS_METADATA_V6 || nat64
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_paths_are_a_slash_then_visible_ascii_only() {
        for good in ["/", "/healthz", "/v1/{id}.json", "/a?b=c&d=%20", "/~!$&'()*+,;=:@"] {
            assert!(wire_path(good).is_ok(), "{good:?}");
        }
        for bad in
            ["", "healthz", "/a b", "/x HTTP/1.1\r\nHost: a\r\n\r\nPOST /admin/delete-all", "/a\n", "/a\0", "/a\t", "/caf\u{e9}", "/\x7f"]
        {
            assert!(wire_path(bad).is_err(), "{bad:?}");
        }
        assert!(wire_path(&format!("/{}", "a".repeat(1024))).is_err(), "longer than the schema allows");
        let why = wire_path("/a\r\nb").unwrap_err();
        assert!(why.contains("0x0d"), "{why}");
    }

    #[test]
    fn a_line_break_or_nul_is_refused_in_any_header_string() {
        assert!(no_line_break("hostName", "orders.internal").is_ok());
        for bad in ["a\rb", "a\nb", "a\0b", "a\r\nX-Injected: 1"] {
            assert!(no_line_break("hostName", bad).unwrap_err().starts_with("hostName holds"), "{bad:?}");
        }
    }

    #[test]
    fn link_local_addresses_are_recognised_in_every_spelling() {
        for ll in ["169.254.169.254", "169.254.0.1", "fe80::1", "febf::1", "::ffff:169.254.169.254", "64:ff9b::a9fe:a9fe", "fd00:ec2::254"]
        {
            assert!(is_link_local(ll.parse().unwrap()), "{ll}");
        }
        for not in ["10.0.0.1", "127.0.0.1", "169.253.255.255", "fec0::1", "::ffff:10.0.0.1", "64:ff9b::a00:1", "fd00:ec2::253", "::1"] {
            assert!(!is_link_local(not.parse().unwrap()), "{not}");
        }
    }

    #[test]
    fn route_hosts_are_lowercased_and_may_start_with_a_wildcard() {
        assert_eq!(route_host("API.Example.com").unwrap(), "api.example.com");
        assert_eq!(route_host("*.shop.example.com").unwrap(), "*.shop.example.com");
    }

    #[test]
    fn route_hosts_with_ports_inner_wildcards_or_bad_labels_are_rejected() {
        for bad in ["", "api.example.com:80", "a.*.com", "*", "-a.com", "a..com", "a_b.com", "http://a.com"] {
            assert!(route_host(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn header_names_and_values_follow_the_http_grammar() {
        assert!(header_name("x-env").is_ok());
        assert!(header_name("bad name").is_err());
        assert!(header_name("").is_err());
        assert!(header_value("a b\tc").is_ok());
        assert!(header_value("a\r\nInjected: 1").is_err());
        assert!(host_header("orders.internal:8080").is_ok());
        assert!(host_header("a/b").is_err());
        assert!(header_name(&"x".repeat(257)).is_err(), "longer than any proxy accepts");
        assert!(header_value(&"v".repeat(4097)).is_err());
    }
}
