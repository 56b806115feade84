//! Which Nacos instances serve: the pure part of the watch, tested on JSON input.

use std::net::IpAddr;

use serde::de::{Deserialize, Deserializer, IgnoredAny, SeqAccess, Visitor};
use serde_json::Value;
use switchyard_compile::discovered::entry_name;
use switchyard_compile::{Instance, InstanceScheme, Skipped};

/// At most this many instances of one service are read; the rest are left out (and
/// reported as one skipped entry), so a hostile or runaway registry cannot make the
/// gateway build an unbounded endpoint list.
pub const MAX_INSTANCES: usize = 10_000;

/// The largest Nacos weight honoured; heavier instances count as this heavy.
const MAX_WEIGHT: f64 = 10_000.0;

/// The instances that serve and the entries that could not be used.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Selection {
    /// Sorted, without two entries for the same (scheme, host, port).
    pub instances: Vec<Instance>,
    /// Sorted and deduplicated.
    pub skipped: Vec<Skipped>,
}

/// The `serviceInfo.hosts` of a read or push: the first [`MAX_INSTANCES`] instances, each
/// as raw JSON (so that one malformed instance is skipped on its own instead of failing
/// the whole read), and how many there were. Instances past the cap are counted while
/// parsing, not kept, so a huge list costs no memory.
#[derive(Debug, Default)]
pub struct Hosts {
    pub kept: Vec<Value>,
    pub total: usize,
}

impl From<Vec<Value>> for Hosts {
    fn from(mut all: Vec<Value>) -> Self {
        let total = all.len();
        all.truncate(MAX_INSTANCES);
        Self { kept: all, total }
    }
}

impl<'de> Deserialize<'de> for Hosts {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_seq(HostsVisitor)
    }
}

struct HostsVisitor;

impl<'de> Visitor<'de> for HostsVisitor {
    type Value = Hosts;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a list of instances")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Hosts, A::Error> {
        let mut hosts = Hosts::default();
        loop {
            let more = if hosts.kept.len() < MAX_INSTANCES {
                seq.next_element::<Value>()?.map(|host| hosts.kept.push(host)).is_some()
            } else {
                seq.next_element::<IgnoredAny>()?.is_some()
            };
            if !more {
                return Ok(hosts);
            }
            hosts.total += 1;
        }
    }
}

/// Selects the serving instances among `hosts`. Only instances of `clusters` count when
/// it is non-empty; among those, an instance serves when it is healthy, enabled and has
/// a weight above 0. Malformed instances are skipped with a reason, whatever their state.
pub fn select(hosts: &Hosts, clusters: &[String]) -> Selection {
    let mut selection = Selection::default();
    for host in &hosts.kept {
        match classify(host, clusters) {
            Verdict::Serves(instance) => selection.instances.push(instance),
            Verdict::Malformed(skipped) => selection.skipped.push(skipped),
            Verdict::Ignored => {}
        }
    }
    if hosts.total > hosts.kept.len() {
        selection.skipped.push(Skipped {
            entry: format!("{} more instances", hosts.total - hosts.kept.len()),
            why: format!("only the first {MAX_INSTANCES} instances of a service are read"),
            malformed: false,
        });
    }
    selection.instances.sort();
    // Sorting puts equal (scheme, host, port) side by side; the lightest one is kept.
    selection.instances.dedup_by(|b, a| (a.scheme, &a.host, a.port) == (b.scheme, &b.host, b.port));
    selection.skipped.sort();
    selection.skipped.dedup();
    selection
}

enum Verdict {
    Serves(Instance),
    /// Another cluster, or down, disabled or weightless: that is the instance's state,
    /// not an error, so it is left out silently.
    Ignored,
    Malformed(Skipped),
}

fn classify(host: &Value, clusters: &[String]) -> Verdict {
    if !clusters.is_empty() && !clusters.iter().any(|c| c == cluster_name(host)) {
        return Verdict::Ignored;
    }
    let endpoint = match parse_endpoint(host) {
        Ok(endpoint) => endpoint,
        Err(why) => return Verdict::Malformed(Skipped { entry: entry_of(host), why: why.to_owned(), malformed: true }),
    };
    let serves = flag(host, "healthy") && flag(host, "enabled") && endpoint.weight > 0.0;
    if !serves {
        return Verdict::Ignored;
    }
    Verdict::Serves(Instance {
        scheme: if is_secure(host) { InstanceScheme::Https } else { InstanceScheme::Http },
        host: endpoint.host,
        port: endpoint.port,
        weight: weight_share(endpoint.weight),
    })
}

struct Endpoint {
    host: String,
    port: u16,
    weight: f64,
}

fn parse_endpoint(host: &Value) -> Result<Endpoint, &'static str> {
    if !host.is_object() {
        return Err("not a JSON object");
    }
    let ip = host.get("ip").and_then(Value::as_str).and_then(valid_host).ok_or("ip is not an IP address or DNS name")?;
    let port = host
        .get("port")
        .and_then(Value::as_u64)
        .and_then(|p| u16::try_from(p).ok())
        .filter(|p| *p != 0)
        .ok_or("port is not a number from 1 to 65535")?;
    let weight = parse_weight(host.get("weight")).ok_or("weight is not a finite number")?;
    Ok(Endpoint { host: ip, port, weight })
}

/// Nacos weights are doubles (1.0 when absent). Java servers may write NaN and the
/// infinities as strings, so strings are parsed too, and then rejected as non-finite.
fn parse_weight(weight: Option<&Value>) -> Option<f64> {
    let value = match weight {
        None | Some(Value::Null) => 1.0,
        Some(Value::Number(n)) => n.as_f64()?,
        Some(Value::String(s)) => s.trim().parse().ok()?,
        Some(_) => return None,
    };
    value.is_finite().then_some(value)
}

/// Maps a Nacos weight (a double, 1.0 by default, usually 0.01 to 10000) onto the
/// gateway's integer shares: `round(weight * 100)`, so two decimals of the Nacos weight
/// survive; at least 1 for any weight above 0 (0.001 still serves, as in Nacos); a weight
/// above 10000 counts as 10000 (a 10000 × 100 share at most).
fn weight_share(weight: f64) -> u32 {
    let share = (weight.min(MAX_WEIGHT) * 100.0).round();
    // In range by the clamp above: 1 ..= 1_000_000.
    (share as u32).max(1)
}

/// The host as the gateway dials it: an IP address (IPv6 without brackets) or a DNS name.
fn valid_host(raw: &str) -> Option<String> {
    let unbracketed = raw.strip_prefix('[').and_then(|r| r.strip_suffix(']'));
    if let Some(inner) = unbracketed {
        return inner.parse::<std::net::Ipv6Addr>().ok().map(|ip| ip.to_string());
    }
    if raw.parse::<IpAddr>().is_ok() {
        return Some(raw.to_owned());
    }
    is_dns_name(raw).then(|| raw.to_owned())
}

/// RFC 1123 host names: dot-separated labels of letters, digits and inner hyphens, at
/// most 63 characters each and 253 in all. A name whose last label is all digits
/// (`300.1.1.1`) is a bad IPv4 address, not a name.
fn is_dns_name(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name);
    let label_ok = |label: &str| {
        (1..=63).contains(&label.len())
            && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    };
    let last_is_numeric = name.rsplit('.').next().is_some_and(|l| l.bytes().all(|b| b.is_ascii_digit()));
    (1..=253).contains(&name.len()) && name.split('.').all(label_ok) && !last_is_numeric
}

/// A boolean field; Nacos instances are healthy and enabled unless they say otherwise.
fn flag(host: &Value, field: &str) -> bool {
    host.get(field).and_then(Value::as_bool).unwrap_or(true)
}

/// Applications mark TLS endpoints with the metadata `secure=true` (the Spring Cloud
/// Alibaba convention).
fn is_secure(host: &Value) -> bool {
    host.get("metadata").and_then(|m| m.get("secure")).and_then(Value::as_str) == Some("true")
}

fn cluster_name(host: &Value) -> &str {
    host.get("clusterName").and_then(Value::as_str).filter(|c| !c.is_empty()).unwrap_or("DEFAULT")
}

/// `ip:port` as the registry wrote them, for messages.
fn entry_of(host: &Value) -> String {
    let show = |field: &str| match host.get(field) {
        None => "?".to_owned(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    };
    entry_name(&format!("{}:{}", show("ip"), show("port")))
}

#[cfg(test)]
mod tests;
