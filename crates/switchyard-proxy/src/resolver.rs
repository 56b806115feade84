//! Where a connection is dialled: the address already chosen (an IP literal or a
//! DnsRecord pick), else every address DNS gives the host (`switchyard_http::resolver`,
//! shared with the controller's connectivity tests). Only runs when a new connection is
//! dialled; the request path itself never resolves.

use std::net::SocketAddr;

/// Where to dial `authority`: the address already chosen (`pinned`, see
/// `DialPolicy::pinned`), or every address DNS gives its host.
pub async fn addresses(authority: &http::uri::Authority, pinned: Option<SocketAddr>) -> std::io::Result<Vec<SocketAddr>> {
    if let Some(addr) = pinned {
        return Ok(vec![addr]);
    }
    let host = authority.host().trim_start_matches('[').trim_end_matches(']');
    switchyard_http::resolver::resolve(host, authority.port_u16().unwrap_or(80)).await
}
