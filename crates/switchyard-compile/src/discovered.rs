//! What service discovery found: the input `registry` backends compile from.
//!
//! Discovery is I/O (Nacos and ZooKeeper watches in the controller); it hands compile one
//! [`Discovered`] per watched registry source, and compile turns it into endpoints and the
//! `Ready` condition, the same way EndpointSlices become a Service's endpoints.

use std::time::SystemTime;

/// The latest view of one registry source (a Nacos service or a ZooKeeper path).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Discovered {
    /// Instances that serve (healthy, enabled, with a weight above 0, an HTTP protocol).
    pub instances: Vec<Instance>,
    /// Entries that were read but do not serve because they could not be used: malformed,
    /// or a protocol that cannot be proxied as HTTP (`dubbo://`). Instances a registry
    /// marks down, disabled or weightless are left out silently: that is their state.
    pub skipped: Vec<Skipped>,
    /// Whether the registry answers.
    pub sync: SyncState,
    /// Malformed entries seen since the watch started (the
    /// `switchyard_registry_malformed_instances_total` counter).
    pub malformed_total: u64,
}

/// One serving instance.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Instance {
    /// `http` or `https`.
    pub scheme: InstanceScheme,
    /// An IP address or a DNS name, as registered (no brackets around IPv6).
    pub host: String,
    pub port: u16,
    /// Relative share of traffic, above 0.
    pub weight: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum InstanceScheme {
    Http,
    Https,
}

impl InstanceScheme {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Https => "https",
        }
    }
}

/// An entry that does not serve, and why.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Skipped {
    /// The entry as the registry names it (a znode name, `ip:port`), shortened.
    pub entry: String,
    pub why: String,
    /// True for malformed entries (counted); false for a valid entry in a protocol the
    /// gateway cannot proxy (`dubbo://`).
    pub malformed: bool,
}

/// Whether the registry answers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum SyncState {
    /// No full read has completed yet.
    #[default]
    Pending,
    /// The last read or push succeeded; `at` is when the last full read completed.
    Synced { at: SystemTime },
    /// The registry does not answer; the instances are the last known ones.
    Unreachable { error: String, last_sync: Option<SystemTime> },
}

impl SyncState {
    /// When the last full read completed, if one did.
    pub fn last_sync(&self) -> Option<SystemTime> {
        match self {
            Self::Pending => None,
            Self::Synced { at } => Some(*at),
            Self::Unreachable { last_sync, .. } => *last_sync,
        }
    }
}

/// Formats a time as RFC 3339 (seconds), for condition messages.
pub fn rfc3339(at: SystemTime) -> String {
    k8s_openapi::jiff::Timestamp::try_from(at)
        .ok()
        .and_then(|t| t.round(k8s_openapi::jiff::Unit::Second).ok())
        .map_or_else(|| "an unknown time".to_owned(), |t| t.to_string())
}

/// The longest `Skipped::entry` kept (registry content is not trusted to be short).
pub const MAX_ENTRY_LEN: usize = 120;

/// An entry name fit for a condition message: at most [`MAX_ENTRY_LEN`] characters,
/// control characters replaced.
pub fn entry_name(raw: &str) -> String {
    let mut out: String = raw.chars().take(MAX_ENTRY_LEN).map(|c| if c.is_control() { '?' } else { c }).collect();
    if raw.chars().count() > MAX_ENTRY_LEN {
        out.push('…');
    }
    out
}

/// What one registry watch reads: compile validates a `registry` BackendService into this,
/// and the controller starts one watcher per distinct source (several BackendServices
/// naming the same registry and service share it).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RegistrySource {
    Nacos(NacosWatch),
    ZooKeeper(ZooKeeperWatch),
}

/// A Nacos service to subscribe to.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NacosWatch {
    /// `host:port` of each server's HTTP port (gRPC is that port + 1000), in the order
    /// written; at least one.
    pub servers: Vec<String>,
    /// Nacos namespace id (`public` by default).
    pub namespace: String,
    /// Group (`DEFAULT_GROUP` by default).
    pub group: String,
    pub service: String,
    /// Only instances of these clusters serve; empty means every cluster.
    pub clusters: Vec<String>,
    /// Login (username/password) for servers with auth on.
    pub credentials: Option<Credentials>,
    /// Time between full re-syncs (besides the pushes).
    pub resync_interval_ms: u64,
}

/// A ZooKeeper path to watch.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ZooKeeperWatch {
    /// `host:port` of each server; at least one.
    pub servers: Vec<String>,
    /// A chroot (`/apps`), or None.
    pub chroot: Option<String>,
    /// An absolute znode path (normalized: no trailing slash, no empty segments).
    pub path: String,
    pub layout: switchyard_api::ZooKeeperLayout,
    /// Digest authentication (`username:password`).
    pub credentials: Option<Credentials>,
}

/// A username and password. Debug never prints the password.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials").field("username", &self.username).field("password", &"<redacted>").finish()
    }
}

/// Values of a Secret a resource references by name (credentials), decoded. Debug never
/// prints a value, so a logged `Resources` cannot leak one.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SecretData(pub std::collections::BTreeMap<String, String>);

impl std::fmt::Debug for SecretData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.0.keys().map(|k| (k, "<redacted>"))).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_values_never_appear_in_debug_output() {
        let data = SecretData([("password".to_owned(), "hunter2".to_owned())].into());
        let shown = format!("{data:?}");
        assert!(shown.contains("password") && !shown.contains("hunter2"), "{shown}");
    }

    #[test]
    fn entry_names_are_bounded_and_printable() {
        assert_eq!(entry_name("a\nb"), "a?b");
        let long = "x".repeat(500);
        assert_eq!(entry_name(&long).chars().count(), MAX_ENTRY_LEN + 1);
    }

    #[test]
    fn sync_times_are_rfc3339_seconds() {
        let at = SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(1_700_000_000_400);
        assert_eq!(rfc3339(at), "2023-11-14T22:13:20Z");
    }
}
