//! Header names and rules that the shaping phase, the backends and the request id share:
//! a leaf module, so a backend needs neither the shaping phase nor the runtime for them.

use http::header::CONNECTION;
use http::{HeaderMap, HeaderName};

pub const X_CA_REQUEST_ID: HeaderName = HeaderName::from_static("x-ca-request-id");

/// Headers that describe one connection, not the message (RFC 9110 §7.6.1).
/// Parsed once: a `&str` name would be parsed again on every removal.
static HOP_BY_HOP: [HeaderName; 8] = [
    CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    http::header::PROXY_AUTHENTICATE,
    http::header::PROXY_AUTHORIZATION,
    http::header::TE,
    http::header::TRAILER,
    http::header::UPGRADE,
];

/// One of the fixed hop-by-hop headers (not those a `Connection` header names).
pub fn is_hop_by_hop(name: &HeaderName) -> bool {
    hop_by_hop_index(name).is_some()
}

/// Where `name` is in [`HOP_BY_HOP`]. Most names are told apart by their length alone
/// (a table lookup for a standard name), before any of the eight is compared.
fn hop_by_hop_index(name: &HeaderName) -> Option<usize> {
    // te, trailer and upgrade, connection and keep-alive, proxy-connection,
    // proxy-authenticate, proxy-authorization.
    if !matches!(name.as_str().len(), 2 | 7 | 10 | 16 | 18 | 19) {
        return None;
    }
    HOP_BY_HOP.iter().position(|hop| hop == name)
}

/// Removes hop-by-hop headers, including any the `Connection` header names.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // One pass over the names first: most messages carry none of them, and each removal
    // hashes its name, so only the ones present are removed (an upstream's `Connection:
    // keep-alive` costs two removals, not nine).
    let mut present = 0u8;
    for name in headers.keys() {
        if let Some(i) = hop_by_hop_index(name) {
            present |= 1 << i;
        }
    }
    if present == 0 {
        return;
    }
    // `Connection` (`HOP_BY_HOP[0]`) may name others. A name already in the fixed list
    // goes with the list below: nothing parsed or allocated for `keep-alive`.
    if present & 1 != 0 {
        let named: Vec<HeaderName> = headers
            .get_all(CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|token| !HOP_BY_HOP.iter().any(|hop| token.eq_ignore_ascii_case(hop.as_str())))
            .filter_map(|name| HeaderName::from_bytes(name.as_bytes()).ok())
            .collect();
        for name in named {
            headers.remove(name);
        }
    }
    for (i, name) in HOP_BY_HOP.iter().enumerate() {
        if present & (1 << i) != 0 {
            headers.remove(name);
        }
    }
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    #[test]
    fn hop_by_hop_headers_and_those_connection_names_are_removed() {
        let mut headers = HeaderMap::new();
        headers.insert(CONNECTION, HeaderValue::from_static("keep-alive, x-secret-hop"));
        headers.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        headers.insert("x-secret-hop", HeaderValue::from_static("1"));
        headers.insert("x-kept", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut headers);
        assert_eq!(headers.len(), 1);
        assert!(headers.contains_key("x-kept"));
    }

    #[test]
    fn connection_names_are_matched_ignoring_case_and_each_hop_by_hop_header_goes_whichever_are_present() {
        let mut headers = HeaderMap::new();
        headers.append(CONNECTION, HeaderValue::from_static("Keep-Alive , X-Secret-Hop,,TE"));
        headers.append(CONNECTION, HeaderValue::from_static("x-other-hop"));
        headers.insert("x-secret-hop", HeaderValue::from_static("1"));
        headers.insert("x-other-hop", HeaderValue::from_static("1"));
        headers.append(http::header::UPGRADE, HeaderValue::from_static("websocket"));
        headers.append(http::header::UPGRADE, HeaderValue::from_static("h2c"));
        headers.insert(http::header::TRAILER, HeaderValue::from_static("x-checksum"));
        headers.insert("x-kept", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut headers);
        assert_eq!(headers.keys().collect::<Vec<_>>(), ["x-kept"]);

        // No `Connection`: the fixed list alone, every value of each.
        let mut headers = HeaderMap::new();
        headers.append("keep-alive", HeaderValue::from_static("timeout=5"));
        headers.append("keep-alive", HeaderValue::from_static("max=100"));
        headers.insert(http::header::PROXY_AUTHORIZATION, HeaderValue::from_static("Basic x"));
        headers.insert("x-secret-hop", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut headers);
        assert_eq!(headers.keys().collect::<Vec<_>>(), ["x-secret-hop"], "only what Connection names is removed besides the list");
    }

    #[test]
    fn each_hop_by_hop_name_is_found_and_no_other() {
        for (i, name) in HOP_BY_HOP.iter().enumerate() {
            assert_eq!(hop_by_hop_index(name), Some(i), "{name}");
            assert_eq!(hop_by_hop_index(&HeaderName::from_bytes(name.as_str().to_uppercase().as_bytes()).unwrap()), Some(i));
        }
        for other in ["host", "x-forwarded-host", "content-length", "tes", "x-connection", "proxy-authorizatio"] {
            assert_eq!(hop_by_hop_index(&HeaderName::from_bytes(other.as_bytes()).unwrap()), None, "{other}");
        }
    }
}
