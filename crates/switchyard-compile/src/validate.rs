//! Small syntactic checks shared by every resource's compile step.

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

#[cfg(test)]
mod tests {
    use super::*;

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
