//! How each registration layout writes an instance into a znode: pure functions from a
//! child's name and data to a serving [`Instance`], nothing (a registered instance that is
//! down, disabled or weightless), or a [`Skipped`] entry.
//!
//! Registry content is written by other programs and is not trusted: every function here
//! bounds what it reads, never panics, and echoes content only through [`entry_name`].

use std::net::{Ipv4Addr, Ipv6Addr};

use serde_json::Value;
use switchyard_api::ZooKeeperLayout;
use switchyard_compile::discovered::entry_name;
use switchyard_compile::{Instance, InstanceScheme, Skipped};

/// Node data beyond this size is not parsed (real registrations are a few hundred bytes).
pub const MAX_DATA_LEN: usize = 64 * 1024;

/// What one child znode says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Entry {
    /// An instance that takes traffic.
    Serves(Instance),
    /// A well-formed registration that does not take traffic now (down, disabled, weight 0):
    /// its state, not an error, so it is left out silently.
    Idle,
    /// Read but unusable: malformed, or a protocol that cannot be proxied as HTTP.
    Skipped(Skipped),
}

/// The znode whose children are the instances: the watched path itself, except for Dubbo,
/// where providers register under `<interface>/providers` (next to `consumers`, `routers`
/// and `configurators`, which are not instances).
pub fn instances_dir(layout: ZooKeeperLayout, path: &str) -> String {
    match layout {
        ZooKeeperLayout::Dubbo => child_path(path, "providers"),
        ZooKeeperLayout::SpringCloud | ZooKeeperLayout::Plain => path.to_owned(),
    }
}

/// Whether a layout keeps the instance in the node's data (so each child must be read), or
/// entirely in the child's name (Dubbo).
pub fn reads_data(layout: ZooKeeperLayout) -> bool {
    !matches!(layout, ZooKeeperLayout::Dubbo)
}

/// The absolute path of `child` under `dir`.
pub fn child_path(dir: &str, child: &str) -> String {
    if dir.ends_with('/') { format!("{dir}{child}") } else { format!("{dir}/{child}") }
}

/// Reads one child: its name and (for layouts that use it) its data.
pub fn parse_entry(layout: ZooKeeperLayout, child: &str, data: &[u8]) -> Entry {
    let parsed = match layout {
        ZooKeeperLayout::SpringCloud => spring_cloud(data),
        ZooKeeperLayout::Dubbo => dubbo(child),
        ZooKeeperLayout::Plain => plain(child, data),
    };
    match parsed {
        Ok(Some(instance)) => Entry::Serves(instance),
        Ok(None) => Entry::Idle,
        Err(unusable) => Entry::Skipped(Skipped { entry: label(layout, child), why: unusable.why, malformed: unusable.malformed }),
    }
}

/// How a skipped entry is named in conditions. A Dubbo provider by its decoded URL without
/// user info and query: readable, and those may carry a password or a `token` that must
/// not reach a status.
fn label(layout: ZooKeeperLayout, child: &str) -> String {
    if layout != ZooKeeperLayout::Dubbo {
        return entry_name(child);
    }
    // Lossy: a name that is not UTF-8 once decoded is still stripped of its user info and
    // query (shown raw, it would repeat them percent-encoded).
    let url = percent_encoding::percent_decode_str(&child.replace('+', " ")).decode_utf8_lossy().into_owned();
    let url = url.split(['?', '#']).next().unwrap_or_default();
    let Some((scheme, rest)) = url.split_once("://") else { return entry_name(url) };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let host = authority.rsplit('@').next().unwrap_or_default();
    entry_name(&format!("{scheme}://{host}{path}"))
}

/// Why an entry cannot be used.
#[derive(Debug)]
struct Unusable {
    why: String,
    malformed: bool,
}

/// An instance, `None` for one that does not serve now, or why it cannot be used.
type Parsed = Result<Option<Instance>, Unusable>;

fn malformed(why: impl Into<String>) -> Unusable {
    Unusable { why: why.into(), malformed: true }
}

// ---------------------------------------------------------------------------------------
// Spring Cloud Zookeeper (Curator ServiceDiscovery)

/// A Curator `ServiceInstance` JSON: `address`, `port`, `sslPort` (https when set), an
/// optional `enabled`, and Spring's `payload.metadata` (`instance_status`, `enabled`).
fn spring_cloud(data: &[u8]) -> Parsed {
    if data.is_empty() {
        return Err(malformed("no data (expected a Spring Cloud ServiceInstance JSON)"));
    }
    let instance = json_object(data)?;
    let host = host_field(&instance, "address")?;
    let (scheme, port) = match instance.get("sslPort") {
        None | Some(Value::Null) => (InstanceScheme::Http, port_field(&instance, "port")?),
        Some(ssl_port) => (InstanceScheme::Https, json_port(ssl_port, "sslPort")?),
    };
    if !spring_cloud_serves(&instance) {
        return Ok(None);
    }
    Ok(Some(Instance { scheme, host, port, weight: 1 }))
}

/// Curator's `enabled` flag and Spring's `instance_status` / `enabled` metadata (what
/// `spring.cloud.zookeeper.discovery.instance-status` and Spring Boot's service registry
/// endpoint write). An unset status means UP.
fn spring_cloud_serves(instance: &serde_json::Map<String, Value>) -> bool {
    let metadata = instance.get("payload").and_then(|payload| payload.get("metadata"));
    let enabled = !is_false(instance.get("enabled")) && !is_false(metadata.and_then(|m| m.get("enabled")));
    let status_up = match metadata.and_then(|m| m.get("instance_status")) {
        None | Some(Value::Null) => true,
        Some(Value::String(status)) => status.eq_ignore_ascii_case("UP"),
        Some(_) => false,
    };
    enabled && status_up
}

/// `false` or `"false"` (metadata values are strings in Spring).
fn is_false(value: Option<&Value>) -> bool {
    match value {
        Some(Value::Bool(flag)) => !flag,
        Some(Value::String(flag)) => flag.eq_ignore_ascii_case("false"),
        _ => false,
    }
}

// ---------------------------------------------------------------------------------------
// Dubbo

/// Why a `dubbo://` provider is skipped (named in the condition message).
pub const DUBBO_BINARY_WHY: &str = "dubbo:// (binary protocol) cannot be proxied as HTTP";

/// The providers a Dubbo interface serves over HTTP.
const DUBBO_HTTP_PROTOCOLS: [&str; 3] = ["tri", "rest", "http"];

/// Dubbo's default provider weight.
const DUBBO_DEFAULT_WEIGHT: u32 = 100;

/// A provider: a URL-encoded URL as the child's name, e.g.
/// `tri%3A%2F%2F10.0.0.1%3A50051%2Fcom.example.OrderService%3Fweight%3D200`.
fn dubbo(child: &str) -> Parsed {
    let url = decode_dubbo_name(child)?;
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err(malformed("not a provider URL (no protocol://)"));
    };
    let scheme = scheme.to_ascii_lowercase();
    if scheme == "dubbo" {
        return Err(Unusable { why: DUBBO_BINARY_WHY.to_owned(), malformed: false });
    }
    if !DUBBO_HTTP_PROTOCOLS.contains(&scheme.as_str()) {
        return Err(malformed(format!("unknown protocol {}://", entry_name(&scheme))));
    }
    let (authority, query) = split_url(rest);
    let (host, port) = host_port(strip_userinfo(authority))?;
    let parameters = DubboParameters::parse(query);
    let weight = parameters.weight()?;
    if !parameters.enabled()? || weight == 0 {
        return Ok(None);
    }
    // Dubbo's own protocols here all carry HTTP (Triple is HTTP/2 or HTTP/1.1; `rest` and
    // `http` are plain HTTP); `ssl-enabled` is not part of the URL contract, so http.
    Ok(Some(Instance { scheme: InstanceScheme::Http, host, port, weight }))
}

/// Dubbo writes `URL.encode(url.toFullString())`, Java's form encoding (`+` for a space).
fn decode_dubbo_name(child: &str) -> Result<String, Unusable> {
    let plus_decoded = child.replace('+', " ");
    percent_encoding::percent_decode_str(&plus_decoded)
        .decode_utf8()
        .map(|url| url.into_owned())
        .map_err(|_| malformed("provider URL is not UTF-8 after decoding"))
}

/// `host:port` and the query of what follows `scheme://`. The URL's path is the interface
/// name, not a base path, so it is dropped.
fn split_url(after_scheme: &str) -> (&str, &str) {
    let without_fragment = after_scheme.split('#').next().unwrap_or_default();
    let (before_query, query) = without_fragment.split_once('?').unwrap_or((without_fragment, ""));
    let authority = before_query.split('/').next().unwrap_or_default();
    (authority, query)
}

fn strip_userinfo(authority: &str) -> &str {
    authority.rsplit_once('@').map_or(authority, |(_, host_port)| host_port)
}

/// The provider URL parameters the gateway uses (the last one wins, as in Dubbo's URL).
struct DubboParameters {
    weight: Option<String>,
    enabled: Option<String>,
}

impl DubboParameters {
    fn parse(query: &str) -> Self {
        let mut parameters = DubboParameters { weight: None, enabled: None };
        for (key, value) in form_urlencoded::parse(query.as_bytes()) {
            match key.as_ref() {
                "weight" => parameters.weight = Some(value.into_owned()),
                "enabled" => parameters.enabled = Some(value.into_owned()),
                _ => {}
            }
        }
        parameters
    }

    fn weight(&self) -> Result<u32, Unusable> {
        match &self.weight {
            None => Ok(DUBBO_DEFAULT_WEIGHT),
            Some(weight) => weight.trim().parse().map_err(|_| malformed(format!("weight {:?} is not a whole number", entry_name(weight)))),
        }
    }

    fn enabled(&self) -> Result<bool, Unusable> {
        match self.enabled.as_deref().map(str::trim) {
            None => Ok(true),
            Some(flag) if flag.eq_ignore_ascii_case("true") => Ok(true),
            Some(flag) if flag.eq_ignore_ascii_case("false") => Ok(false),
            Some(flag) => Err(malformed(format!("enabled {:?} is neither true nor false", entry_name(flag)))),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Plain

/// Plain's default weight.
const PLAIN_DEFAULT_WEIGHT: u32 = 1;

/// `{"host","port","weight"}` as data, or else a child named `host:port` / `[v6]:port`.
fn plain(child: &str, data: &[u8]) -> Parsed {
    let data = data.trim_ascii();
    if data.is_empty() {
        let (host, port) = host_port(child)?;
        return Ok(Some(Instance { scheme: InstanceScheme::Http, host, port, weight: PLAIN_DEFAULT_WEIGHT }));
    }
    let instance = json_object(data)?;
    let host = host_field(&instance, "host")?;
    let port = port_field(&instance, "port")?;
    let weight = match instance.get("weight") {
        None | Some(Value::Null) => PLAIN_DEFAULT_WEIGHT,
        Some(weight) => json_weight(weight)?,
    };
    if weight == 0 {
        return Ok(None);
    }
    Ok(Some(Instance { scheme: InstanceScheme::Http, host, port, weight }))
}

fn json_weight(value: &Value) -> Result<u32, Unusable> {
    value
        .as_u64()
        .and_then(|weight| u32::try_from(weight).ok())
        .ok_or_else(|| malformed(format!("weight {} is not a whole number", shown_json(value))))
}

// ---------------------------------------------------------------------------------------
// Shared pieces

/// Node data as a JSON object (bounded: larger data is not parsed at all).
fn json_object(data: &[u8]) -> Result<serde_json::Map<String, Value>, Unusable> {
    if data.len() > MAX_DATA_LEN {
        return Err(malformed(format!("node data is {} bytes, more than the {} KiB read", data.len(), MAX_DATA_LEN / 1024)));
    }
    match serde_json::from_slice::<Value>(data) {
        Ok(Value::Object(object)) => Ok(object),
        Ok(_) => Err(malformed("node data is JSON but not an object")),
        // serde_json's syntax errors name a line and column, never the content.
        Err(error) => Err(malformed(format!("node data is not JSON: {error}"))),
    }
}

fn host_field(object: &serde_json::Map<String, Value>, field: &str) -> Result<String, Unusable> {
    match object.get(field) {
        None | Some(Value::Null) => Err(malformed(format!("no {field}"))),
        Some(Value::String(host)) => parse_host(host),
        Some(other) => Err(malformed(format!("{field} {} is not a string", shown_json(other)))),
    }
}

fn port_field(object: &serde_json::Map<String, Value>, field: &str) -> Result<u16, Unusable> {
    match object.get(field) {
        None | Some(Value::Null) => Err(malformed(format!("no {field}"))),
        Some(port) => json_port(port, field),
    }
}

fn json_port(value: &Value, field: &str) -> Result<u16, Unusable> {
    let Value::Number(number) = value else {
        return Err(malformed(format!("{field} {} is not a number", shown_json(value))));
    };
    number
        .as_u64()
        .and_then(|port| u16::try_from(port).ok())
        .filter(|port| *port != 0)
        .ok_or_else(|| malformed(format!("{field} {number} is not a port (1-65535)")))
}

/// `host:port`, with IPv6 in brackets (`[::1]:8080`).
fn host_port(raw: &str) -> Result<(String, u16), Unusable> {
    match raw.strip_prefix('[') {
        Some(bracketed) => bracketed_host_port(bracketed),
        None => {
            let Some((host, port)) = raw.rsplit_once(':') else {
                return Err(malformed("no port"));
            };
            // `fd00::1:8080` is itself a valid IPv6 address: without brackets, which colon
            // starts the port is a guess.
            if host.contains(':') {
                return Err(malformed(format!("IPv6 address {:?} needs brackets ([::1]:8080)", entry_name(host))));
            }
            Ok((parse_host(host)?, parse_port_text(port)?))
        }
    }
}

/// `v6]:port`, after the opening bracket.
fn bracketed_host_port(bracketed: &str) -> Result<(String, u16), Unusable> {
    let Some((host, after)) = bracketed.split_once(']') else {
        return Err(malformed("IPv6 address without a closing ]"));
    };
    let Some(port) = after.strip_prefix(':') else {
        return Err(malformed("no port"));
    };
    if host.parse::<Ipv6Addr>().is_err() {
        return Err(not_a_host(&format!("[{host}]")));
    }
    Ok((host.to_owned(), parse_port_text(port)?))
}

fn parse_port_text(raw: &str) -> Result<u16, Unusable> {
    let not_a_port = || malformed(format!("port {:?} is not a port (1-65535)", entry_name(raw)));
    if raw.is_empty() || !raw.bytes().all(|b| b.is_ascii_digit()) {
        return Err(not_a_port());
    }
    raw.parse::<u16>().ok().filter(|port| *port != 0).ok_or_else(not_a_port)
}

/// An IP address (IPv6 without brackets, though brackets are accepted) or a DNS name.
fn parse_host(raw: &str) -> Result<String, Unusable> {
    let unbracketed = raw.strip_prefix('[').and_then(|h| h.strip_suffix(']'));
    if let Some(v6) = unbracketed {
        return v6.parse::<Ipv6Addr>().map(|_| v6.to_owned()).map_err(|_| not_a_host(raw));
    }
    if raw.parse::<Ipv4Addr>().is_ok() || raw.parse::<Ipv6Addr>().is_ok() || is_dns_name(raw) {
        return Ok(raw.to_owned());
    }
    Err(not_a_host(raw))
}

fn not_a_host(raw: &str) -> Unusable {
    if raw.is_empty() {
        return malformed("no host");
    }
    malformed(format!("host {:?} is neither an IP address nor a DNS name", entry_name(raw)))
}

/// RFC 1123 host names: labels of letters, digits and inner hyphens, at most 63 characters
/// each and 253 in all. A name whose last label is numeric would be a malformed IPv4
/// address (`10.0.0.256`), not a name.
fn is_dns_name(raw: &str) -> bool {
    let valid_label = |label: &str| {
        !label.is_empty()
            && label.len() <= 63
            && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    };
    let last_label_numeric = raw.rsplit('.').next().is_some_and(|label| label.bytes().all(|b| b.is_ascii_digit()));
    raw.len() <= 253 && raw.split('.').all(valid_label) && !last_label_numeric
}

/// A JSON value for a message, bounded.
fn shown_json(value: &Value) -> String {
    entry_name(&value.to_string())
}

#[cfg(test)]
mod tests;
