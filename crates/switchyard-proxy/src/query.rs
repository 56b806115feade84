//! Editing a raw query string without re-encoding what stays: the backend gets the
//! client's bytes, less the pairs the gateway removes.

/// `query` without the `&`-separated pairs `dropped` picks, or None when it picks none
/// (the query is then forwarded untouched, and nothing is allocated).
pub fn without_pairs(query: &str, dropped: impl Fn(&str) -> bool) -> Option<String> {
    if !query.split('&').any(&dropped) {
        return None;
    }
    Some(query.split('&').filter(|pair| !dropped(pair)).collect::<Vec<_>>().join("&"))
}
