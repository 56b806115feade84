//! Host names without a DnsRecord: hickory's asynchronous resolver, configured from the
//! system (`/etc/resolv.conf`, `/etc/hosts`) or from the name servers the operator named
//! (`--dns-server`), with its cache honouring record TTLs. It never blocks a worker (no
//! `getaddrinfo` on a thread pool). Shared by the proxy (at dial time) and the controller
//! (connectivity tests), so both see a name the same way.
//!
//! One resolver per thread: its sockets and cache belong to that thread's runtime, like
//! the proxy's connection pools.

use std::cell::OnceCell;
use std::net::SocketAddr;
use std::sync::OnceLock;

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;

thread_local! {
    static RESOLVER: OnceCell<Option<TokioResolver>> = const { OnceCell::new() };
}

static NAME_SERVERS: OnceLock<Vec<SocketAddr>> = OnceLock::new();

/// Resolves at these name servers instead of the system's. Set once, at start-up, before
/// the first lookup; false when it was already set.
pub fn use_name_servers(servers: Vec<SocketAddr>) -> bool {
    NAME_SERVERS.set(servers).is_ok()
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
    let built = match NAME_SERVERS.get().filter(|servers| !servers.is_empty()) {
        Some(servers) => {
            let name_servers = servers
                .iter()
                .map(|server| {
                    let mut config = NameServerConfig::udp_and_tcp(server.ip());
                    config.connections.iter_mut().for_each(|c| c.port = server.port());
                    config
                })
                .collect();
            TokioResolver::builder_with_config(ResolverConfig::from_name_servers(name_servers), TokioRuntimeProvider::default()).build()
        }
        None => TokioResolver::builder_tokio().and_then(|builder| builder.build()),
    };
    match built {
        Ok(resolver) => Some(resolver),
        Err(e) => {
            tracing::warn!(error = %e, "no usable DNS configuration; falling back to the OS resolver");
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
