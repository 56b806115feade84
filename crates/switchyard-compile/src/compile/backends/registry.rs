//! `registry`: instances discovered from Nacos or ZooKeeper.
//!
//! The watch itself runs in the controller; compile validates the source (what the
//! controller may dial, with which credentials) and turns the latest [`Discovered`] into
//! `http` endpoints and the `Ready` condition. The proxy serves them with the `http`
//! runtime, so a registry backend has its load balancing, retries, health checks and
//! egress policy.

use std::net::IpAddr;

use switchyard_api::condition_type::READY;
use switchyard_api::{BackendService, RegistryBackend, SecretRef};

use super::http::host_with_port;
use super::{BackendEntry, KindCompiler, KindContext, Resolved};
use crate::compile::{Rejection, duration_ms, namespace, secrets, tls};
use crate::discovered::{Credentials, Discovered, NacosWatch, RegistrySource, Skipped, SyncState, ZooKeeperWatch, entry_name, rfc3339};
use crate::snapshot::{BackendKind, Endpoint, UpstreamVersion};
use crate::{ConditionSpec, Resources, reason, validate};

/// Servers one source may list.
const MAX_SERVERS: usize = 16;
/// Skipped entries named in the `Ready` message; the rest are counted.
const NAMED_SKIPPED: usize = 5;
const DEFAULT_RESYNC_MS: u64 = 30_000;

impl KindCompiler for RegistryBackend {
    fn compile(&self, cx: &KindContext<'_>, entry: &mut BackendEntry) -> Result<Resolved, Rejection> {
        let source = match source_of(self, cx.ns, cx.resources) {
            Ok(source) => source,
            Err(Problem::Invalid(why)) => return Err(why),
            Err(Problem::Unresolved(why)) => return Ok(Resolved::Unresolved(why)),
        };
        let trust = tls::trust(self.tls.as_ref(), "registry.tls")?;
        let described = describe(&source);
        // Instances say their own scheme: HTTP/2 is prior knowledge on plain ones and
        // ALPN on `https` ones, so H2C and H2 both mean HTTP/2 here.
        entry.upstream_version = if self.protocol.is_http1() { UpstreamVersion::Http1 } else { UpstreamVersion::Http2 };
        let Some(discovered) = cx.resources.registry.get(&(cx.ns.to_owned(), cx.name.to_owned())) else {
            let waiting = format!("waiting for the first read of {described}");
            return Ok(Resolved::ReadyWith(BackendKind::Http { endpoints: Vec::new() }, 0, not_ready(reason::DISCOVERING, waiting)));
        };
        let sni = self.tls.as_ref().and_then(|t| t.sni.as_deref());
        let (endpoints, skipped) = endpoints(discovered, sni)?;
        if endpoints.iter().any(|e| e.scheme == "https") {
            entry.tls = Some(trust);
        }
        let count = endpoints.len() as u32;
        let ready = ready(&described, discovered, count, &skipped);
        Ok(Resolved::ReadyWith(BackendKind::Http { endpoints }, count, ready))
    }
}

/// The source a `registry` BackendService watches, validated, with its credentials: what
/// the controller starts a watcher for. None for other kinds and for sources compile
/// does not accept or cannot resolve (their status says why).
pub fn registry_source(backend: &BackendService, resources: &Resources) -> Option<RegistrySource> {
    let registry = backend.spec.registry.as_ref()?;
    source_of(registry, namespace(&backend.metadata), resources).ok()
}

/// A short description of a source for messages (no credentials).
pub fn describe(source: &RegistrySource) -> String {
    match source {
        RegistrySource::Nacos(n) => {
            format!("Nacos service {}@@{} in namespace {} at {}", n.group, n.service, n.namespace, n.servers.join(","))
        }
        RegistrySource::ZooKeeper(z) => {
            let chroot = z.chroot.as_deref().unwrap_or("");
            format!("ZooKeeper path {chroot}{} ({:?} layout) at {}", z.path, z.layout, z.servers.join(","))
        }
    }
}

enum Problem {
    /// The spec is wrong: `Accepted=False`.
    Invalid(Rejection),
    /// A reference does not resolve (a Secret): `ResolvedRefs=False`.
    Unresolved(Rejection),
}

fn source_of(registry: &RegistryBackend, ns: &str, resources: &Resources) -> Result<RegistrySource, Problem> {
    let allow_link_local = resources.options.allow_link_local_grants;
    match (&registry.nacos, &registry.zookeeper) {
        (Some(nacos), None) => {
            let servers = servers(nacos.server_addr.split(','), 8848, "registry.nacos.serverAddr", allow_link_local)?;
            let resync_interval_ms = duration_ms("registry.nacos.resyncInterval", nacos.resync_interval.as_ref())
                .map_err(Problem::Invalid)?
                .unwrap_or(DEFAULT_RESYNC_MS);
            if resync_interval_ms < 1_000 {
                return Err(invalid("registry.nacos.resyncInterval must be at least 1s"));
            }
            let nacos_name = |field: &str, value: Option<&str>, default: &str| -> Result<String, Problem> {
                let value = value.unwrap_or(default);
                registry_name(value).map_err(|why| invalid(&format!("registry.nacos.{field}: {why}")))?;
                Ok(value.to_owned())
            };
            let clusters = nacos
                .clusters
                .iter()
                .enumerate()
                .map(|(i, c)| nacos_name(&format!("clusters[{i}]"), Some(c), ""))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(RegistrySource::Nacos(NacosWatch {
                servers,
                namespace: nacos_name("namespace", nacos.namespace.as_deref(), "public")?,
                group: nacos_name("group", nacos.group.as_deref(), "DEFAULT_GROUP")?,
                service: nacos_name("service", Some(&nacos.service), "")?,
                clusters,
                credentials: credentials(nacos.credentials_secret_ref.as_ref(), ns, resources, "registry.nacos.credentialsSecretRef")?,
                resync_interval_ms,
            }))
        }
        (None, Some(zk)) => {
            let servers = servers(zk.servers.iter().map(String::as_str), 2181, "registry.zookeeper.servers", allow_link_local)?;
            let path = znode_path(&zk.path).map_err(|why| invalid(&format!("registry.zookeeper.path: {why}")))?;
            let chroot = match zk.chroot.as_deref() {
                None | Some("/") => None,
                Some(chroot) => Some(znode_path(chroot).map_err(|why| invalid(&format!("registry.zookeeper.chroot: {why}")))?),
            };
            Ok(RegistrySource::ZooKeeper(ZooKeeperWatch {
                servers,
                chroot,
                path,
                layout: zk.layout,
                credentials: credentials(zk.credentials_secret_ref.as_ref(), ns, resources, "registry.zookeeper.credentialsSecretRef")?,
            }))
        }
        _ => Err(invalid("registry: set either nacos or zookeeper")),
    }
}

fn invalid(message: &str) -> Problem {
    Problem::Invalid(Rejection::new(reason::INVALID_REGISTRY, message))
}

/// `username` and `password` from the referenced Secret.
fn credentials(secret: Option<&SecretRef>, ns: &str, resources: &Resources, field: &str) -> Result<Option<Credentials>, Problem> {
    let Some(secret) = secret else { return Ok(None) };
    let values = secrets::lookup(resources, ns, &secret.name, &["username", "password"], field).map_err(Problem::Unresolved)?;
    Ok(Some(Credentials { username: values[0].to_owned(), password: values[1].to_owned() }))
}

/// `host[:port]` entries, normalized to `host:port`. The controller dials these, so a
/// tenant must not point it at link-local addresses (cloud metadata) unless the gateway
/// allows those grants.
fn servers<'a>(
    entries: impl Iterator<Item = &'a str>,
    default_port: u16,
    field: &str,
    allow_link_local: bool,
) -> Result<Vec<String>, Problem> {
    let mut out = Vec::new();
    for raw in entries.map(str::trim) {
        let (host, port) = super::http::split_host_port(raw).ok_or_else(|| invalid(&format!("{field}: {raw:?} is not host[:port]")))?;
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        match bare.parse::<IpAddr>() {
            Ok(ip) if validate::is_link_local(ip) && !allow_link_local => {
                return Err(Problem::Invalid(Rejection::new(
                    reason::LINK_LOCAL_NOT_ALLOWED,
                    format!("{field}: {ip} is link-local; registries there are refused without --allow-link-local-grants"),
                )));
            }
            Ok(IpAddr::V6(_)) if !host.starts_with('[') => return Err(invalid(&format!("{field}: write IPv6 as [{bare}]:port"))),
            Ok(_) => {}
            Err(_) => validate::dns_name(host).map_err(|e| invalid(&format!("{field}: {raw:?}: {e}")))?,
        }
        out.push(format!("{}:{}", host.to_ascii_lowercase(), port.unwrap_or(default_port)));
    }
    if out.is_empty() || out.len() > MAX_SERVERS {
        return Err(invalid(&format!("{field}: list 1 to {MAX_SERVERS} servers")));
    }
    Ok(out)
}

/// A Nacos namespace, group, service or cluster name: non-empty, printable, bounded.
fn registry_name(value: &str) -> Result<(), String> {
    if value.is_empty() || value.len() > 512 {
        return Err("must be 1 to 512 characters".into());
    }
    if value.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(format!("{value:?} has spaces or control characters"));
    }
    Ok(())
}

/// An absolute znode path in normal form: `/a/b`, no empty, `.` or `..` segments.
fn znode_path(path: &str) -> Result<String, String> {
    if !path.starts_with('/') || path.len() > 1024 {
        return Err(format!("{path:?} must be an absolute path of at most 1024 characters"));
    }
    if path == "/" {
        return Ok(path.to_owned());
    }
    let bad_segment = path[1..].split('/').any(|s| s.is_empty() || s == "." || s == "..");
    if bad_segment || path.chars().any(char::is_control) {
        return Err(format!("{path:?} must be /segment/segment with no empty, '.' or '..' segments and no trailing slash"));
    }
    Ok(path.to_owned())
}

/// The instances as endpoints; an instance compile cannot use (registry content is not
/// trusted) is skipped like the ones the watcher skipped.
fn endpoints(discovered: &Discovered, sni: Option<&str>) -> Result<(Vec<Endpoint>, Vec<Skipped>), Rejection> {
    let mut skipped = discovered.skipped.clone();
    let mut endpoints: Vec<Endpoint> = Vec::with_capacity(discovered.instances.len());
    for instance in &discovered.instances {
        let host = match instance.host.parse::<IpAddr>() {
            Ok(IpAddr::V6(v6)) => format!("[{v6}]"),
            Ok(IpAddr::V4(v4)) => v4.to_string(),
            Err(_) if validate::dns_name(&instance.host).is_ok() => instance.host.to_ascii_lowercase(),
            Err(_) => {
                let entry = entry_name(&format!("{}:{}", instance.host, instance.port));
                skipped.push(Skipped { entry, why: "the host is neither an IP address nor a DNS name".into(), malformed: true });
                continue;
            }
        };
        if instance.port == 0 || instance.weight == 0 {
            continue;
        }
        let scheme = instance.scheme.as_str();
        let endpoint = Endpoint {
            scheme: scheme.to_owned(),
            authority: format!("{host}:{}", instance.port),
            host: host_with_port(&host, instance.port, scheme),
            base_path: String::new(),
            tls_server_name: None,
            weight: instance.weight,
        };
        let endpoint = if scheme == "https" { tls::secure(endpoint, sni)? } else { endpoint };
        if !endpoints.iter().any(|e| e.authority == endpoint.authority && e.scheme == endpoint.scheme) {
            endpoints.push(endpoint);
        }
    }
    Ok((endpoints, skipped))
}

fn not_ready(why: &'static str, message: String) -> ConditionSpec {
    ConditionSpec::new(READY, false, why, message)
}

/// `Ready`: unreachable first (the instances are only the last known ones), then no
/// endpoints, then ready; every message names what was skipped.
fn ready(described: &str, discovered: &Discovered, count: u32, skipped: &[Skipped]) -> ConditionSpec {
    let skipped = skipped_summary(skipped);
    match &discovered.sync {
        SyncState::Unreachable { error, last_sync } => {
            let since = last_sync.map_or_else(|| "no sync has succeeded yet".to_owned(), |at| format!("last good sync at {}", rfc3339(at)));
            let message = format!("{described} is unreachable ({error}); {since}; serving {count} last known endpoint(s){skipped}");
            not_ready(reason::REGISTRY_UNREACHABLE, message)
        }
        SyncState::Pending => not_ready(reason::DISCOVERING, format!("waiting for the first read of {described}{skipped}")),
        SyncState::Synced { .. } if count == 0 => not_ready(reason::NO_ENDPOINTS, format!("{described} has no serving instances{skipped}")),
        SyncState::Synced { .. } => {
            ConditionSpec::new(READY, true, reason::READY, format!("{count} endpoint(s) from {described}{skipped}"))
        }
    }
}

fn skipped_summary(skipped: &[Skipped]) -> String {
    if skipped.is_empty() {
        return String::new();
    }
    let malformed = skipped.iter().filter(|s| s.malformed).count();
    let named: Vec<String> = skipped.iter().take(NAMED_SKIPPED).map(|s| format!("{} ({})", s.entry, s.why)).collect();
    let more = skipped.len().saturating_sub(NAMED_SKIPPED);
    let more = if more > 0 { format!(" and {more} more") } else { String::new() };
    format!(
        "; skipped {} entr{} ({malformed} malformed): {}{more}",
        skipped.len(),
        if skipped.len() == 1 { "y" } else { "ies" },
        named.join(", ")
    )
}

#[cfg(test)]
mod tests;
