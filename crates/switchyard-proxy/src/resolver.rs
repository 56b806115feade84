//! Host names without a DnsRecord: hickory's asynchronous resolver, configured from the
//! system (`/etc/resolv.conf`, `/etc/hosts`), with its cache honouring record TTLs. It
//! never blocks a worker (no `getaddrinfo` on a thread pool) and only runs when a new
//! connection is dialled; the request path itself never resolves.
//!
//! One resolver per worker thread: its sockets and cache belong to that thread's runtime,
//! like the connection pool.

use std::cell::OnceCell;
use std::net::SocketAddr;

use hickory_resolver::TokioResolver;

thread_local! {
    static RESOLVER: OnceCell<Option<TokioResolver>> = const { OnceCell::new() };
}

/// Where to dial `authority`: the address already chosen (`pinned`, see
/// `DialPolicy::pinned`), or every address DNS gives its host.
pub async fn addresses(authority: &http::uri::Authority, pinned: Option<SocketAddr>) -> std::io::Result<Vec<SocketAddr>> {
    if let Some(addr) = pinned {
        return Ok(vec![addr]);
    }
    let host = authority.host().trim_start_matches('[').trim_end_matches(']');
    resolve(host, authority.port_u16().unwrap_or(80)).await
}

/// Every address `host` resolves to, on `port`.
pub async fn resolve(host: &str, port: u16) -> std::io::Result<Vec<SocketAddr>> {
    let resolver = RESOLVER.with(|cell| cell.get_or_init(build).clone());
    let Some(resolver) = resolver else {
        // No usable system configuration: the operating system's resolver still works.
        return Ok(tokio::net::lookup_host((host, port)).await?.collect());
    };
    let lookup = resolver.lookup_ip(host).await.map_err(|e| std::io::Error::other(format!("resolving {host}: {e}")))?;
    Ok(lookup.iter().map(|ip| SocketAddr::new(ip, port)).collect())
}

fn build() -> Option<TokioResolver> {
    match TokioResolver::builder_tokio().and_then(|builder| builder.build()) {
        Ok(resolver) => Some(resolver),
        Err(e) => {
            tracing::warn!(error = %e, "no system DNS configuration; falling back to the OS resolver");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn localhost_resolves_from_the_hosts_file_without_a_network() {
        let addrs = super::resolve("localhost", 8080).await.unwrap();
        assert!(addrs.iter().any(|a| a.ip().is_loopback() && a.port() == 8080), "{addrs:?}");
    }
}
