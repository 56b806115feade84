//! Where the proxy may dial: one gateway-wide egress policy, checked at dial time on
//! the resolved address, for every backend kind.
//!
//! - Host names with a DnsRecord resolve through its records, spread by weight, before
//!   any public DNS.
//! - Link-local addresses (cloud metadata, 169.254.169.254) are never dialled, nor the
//!   configured deny ranges, nor (when asked: Kubernetes mode) loopback; the one
//!   exception is a `vpc` backend dialling the address and ports its VpcAuthorization
//!   names. The exception belongs to that backend's dials only, so another backend
//!   cannot borrow it to reach the same address.
//! - A `vpc` backend dials only the addresses its authorization grants (the address, the
//!   Service's endpoints, or what the host name resolved to when the controller verified
//!   it), on the authorized ports.
//! - Checking the resolved address rather than the configured name is what stops DNS
//!   rebinding: a name that later resolves somewhere forbidden, or (for a vpc host
//!   target) anywhere but its verified addresses, is refused then.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

use switchyard_compile::snapshot::{DialGrant, Snapshot};
// Link-local addresses and the other spellings of cloud metadata (AWS's `fd00:ec2::254`,
// NAT64 `64:ff9b::/96`): one classification, shared with compile (which refuses
// link-local grants) and the controller's connectivity tests.
use switchyard_compile::validate::is_link_local;

use crate::fast_hash::FastHash;
use crate::weighted::WeightedCycle;

/// Gateway-wide settings (from the command line).
#[derive(Clone, Debug, Default)]
pub struct EgressConfig {
    /// Refuse loopback addresses (Kubernetes mode: the proxy's own ports live there).
    pub deny_loopback: bool,
    /// More ranges to refuse, as `address/prefix`.
    pub deny: Vec<IpRange>,
    /// This process's own listeners (proxy, admin, snapshot): never dialled, in any mode,
    /// since a request there would loop back into the gateway. An unspecified address
    /// (`0.0.0.0:8080`) stands for that port on every local address, pod IP included.
    pub own_listeners: Vec<SocketAddr>,
}

/// An address range `address/prefix`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpRange {
    base: IpAddr,
    prefix: u8,
}

impl std::str::FromStr for IpRange {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let (addr, prefix) = text.split_once('/').unwrap_or((text, ""));
        let base: IpAddr = addr.parse().map_err(|_| format!("{text:?} is not an address/prefix range"))?;
        let max = if base.is_ipv4() { 32 } else { 128 };
        let prefix = if prefix.is_empty() { max } else { prefix.parse().map_err(|_| format!("bad prefix in {text:?}"))? };
        if prefix > max {
            return Err(format!("prefix /{prefix} is too long for {base}"));
        }
        Ok(Self { base, prefix })
    }
}

impl IpRange {
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.base, ip) {
            (IpAddr::V4(base), IpAddr::V4(ip)) => {
                masked(u32::from(base).into(), 32, self.prefix) == masked(u32::from(ip).into(), 32, self.prefix)
            }
            (IpAddr::V6(base), IpAddr::V6(ip)) => masked(u128::from(base), 128, self.prefix) == masked(u128::from(ip), 128, self.prefix),
            _ => false,
        }
    }
}

fn masked(value: u128, bits: u8, prefix: u8) -> u128 {
    if prefix == 0 { 0 } else { value >> (bits - prefix) }
}

/// Why a dial was refused.
#[derive(Debug, thiserror::Error)]
#[error("egress to {addr} is not allowed ({why})")]
pub struct Denied {
    pub addr: SocketAddr,
    pub why: std::borrow::Cow<'static, str>,
}

/// The policy for one snapshot: the configuration plus its DnsRecords.
#[derive(Default)]
pub struct DialPolicy {
    config: EgressConfig,
    records: HashMap<String, WeightedCycle<IpAddr>, FastHash>,
    /// Whether an address is this host's, found out once per address (a bind syscall)
    /// for dials to one of the gateway's own ports on an unspecified listener.
    local_addresses: std::sync::Mutex<HashMap<IpAddr, bool, FastHash>>,
}

impl DialPolicy {
    pub fn build(config: &EgressConfig, snapshot: &Snapshot) -> Self {
        let records = snapshot
            .dns_records
            .iter()
            .filter_map(|entry| Some((entry.domain.clone(), WeightedCycle::new(entry.records.iter().copied())?)))
            .collect();
        Self { config: config.clone(), records, local_addresses: std::sync::Mutex::default() }
    }

    /// The address a DnsRecord gives `host` for this request (weighted), if it has one.
    pub fn record_address(&self, host: &str) -> Option<IpAddr> {
        // Most configurations have no DnsRecord: skip hashing the host.
        if self.records.is_empty() {
            return None;
        }
        self.records.get(host).map(|addresses| *addresses.pick())
    }

    /// Whether `addr` may be dialled, by a backend holding `grant` if any.
    pub fn check(&self, addr: SocketAddr, grant: Option<&DialGrant>) -> Result<(), Denied> {
        let ip = canonical(addr.ip());
        let denied = |why: &'static str| Err(Denied { addr, why: why.into() });
        if self.is_own_listener(addr.port(), ip) {
            return denied("it is this gateway's own listener: the request would loop");
        }
        if let Some(grant) = grant {
            if !grant.ports.contains(&addr.port()) || !grant.addresses.iter().any(|a| canonical(*a) == ip) {
                return Err(Denied { addr, why: outside_grant(grant).into() });
            }
            if grant.bypass_egress {
                return Ok(());
            }
        }
        if is_link_local(ip) {
            return denied("link-local addresses such as cloud metadata need a VpcAuthorization");
        }
        if ip.is_unspecified() || ip.is_multicast() {
            return denied("unspecified and multicast addresses are never dialled");
        }
        if self.config.deny_loopback && ip.is_loopback() {
            return denied("loopback is refused in this mode");
        }
        if self.config.deny.iter().any(|r| r.contains(ip)) {
            return denied("the address is in a denied range");
        }
        Ok(())
    }
}

impl DialPolicy {
    fn is_own_listener(&self, port: u16, ip: IpAddr) -> bool {
        self.config.own_listeners.iter().any(|listener| {
            listener.port() == port && (canonical(listener.ip()) == ip || (listener.ip().is_unspecified() && self.is_local_address(ip)))
        })
    }

    /// Whether `ip` belongs to this host: loopback, or an address a socket can bind to
    /// (a host with `ip_nonlocal_bind` set would count every address). Remembered per
    /// address for the snapshot's life, so a busy backend on the same port as a
    /// listener (8080 is common) costs one syscall, not one per dial.
    fn is_local_address(&self, ip: IpAddr) -> bool {
        if ip.is_loopback() {
            return true;
        }
        let mut known = self.local_addresses.lock().unwrap_or_else(|e| e.into_inner());
        *known.entry(ip).or_insert_with(|| std::net::UdpSocket::bind(SocketAddr::new(ip, 0)).is_ok())
    }
}

/// A backend's dial grant with a fingerprint computed once per snapshot: pooled
/// connections are shared only between dials made under the same grant.
#[derive(Clone, Debug)]
pub struct Granted {
    grant: DialGrant,
    fingerprint: u64,
}

impl Granted {
    pub fn new(grant: DialGrant) -> Self {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        grant.hash(&mut hasher);
        Self { fingerprint: hasher.finish(), grant }
    }

    pub fn grant(&self) -> &DialGrant {
        &self.grant
    }

    pub fn fingerprint(&self) -> u64 {
        self.fingerprint
    }
}

/// The refusal for a vpc dial outside its authorization (cold path: only on refusal).
/// Clients see which authorization refused; the granted addresses, internal detail, go
/// to the log (and are in `/config_dump`) only.
fn outside_grant(grant: &DialGrant) -> String {
    tracing::debug!(authorization = %grant.authorization, addresses = ?grant.addresses, ports = ?grant.ports, "dial outside the grant refused");
    format!("not an address and port VpcAuthorization {} grants", grant.authorization)
}

/// IPv4-mapped IPv6 addresses (`::ffff:169.254.169.254`) are checked as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_compile::snapshot::DnsEntry;

    fn policy(config: EgressConfig, snapshot: &Snapshot) -> DialPolicy {
        DialPolicy::build(&config, snapshot)
    }

    fn addr(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    #[test]
    fn cloud_metadata_and_other_link_local_addresses_are_refused() {
        let p = policy(EgressConfig::default(), &Snapshot::default());
        assert!(p.check(addr("169.254.169.254:80"), None).is_err());
        assert!(p.check(addr("[fe80::1]:80"), None).is_err());
        assert!(p.check(addr("[::ffff:169.254.169.254]:80"), None).is_err(), "IPv4-mapped forms are caught too");
        assert!(p.check(addr("[64:ff9b::a9fe:a9fe]:80"), None).is_err(), "so is the NAT64 form");
        assert!(p.check(addr("[fd00:ec2::254]:80"), None).is_err(), "AWS's IPv6 metadata address");
        assert!(p.check(addr("[fd00:ec2::253]:80"), None).is_ok());
        assert!(p.check(addr("0.0.0.0:80"), None).is_err());
        assert!(p.check(addr("10.0.0.5:8080"), None).is_ok());
    }

    #[test]
    fn a_grant_lifts_the_policy_for_exactly_its_address_and_ports() {
        let p = policy(EgressConfig { deny_loopback: true, ..EgressConfig::default() }, &Snapshot::default());
        let grant = DialGrant {
            authorization: "shop/metadata".into(),
            addresses: vec!["169.254.169.254".parse().unwrap()],
            ports: vec![80],
            bypass_egress: true,
        };
        assert!(p.check(addr("169.254.169.254:80"), Some(&grant)).is_ok());
        assert!(p.check(addr("[::ffff:169.254.169.254]:80"), Some(&grant)).is_ok(), "the IPv4-mapped form is the same address");
        assert!(p.check(addr("169.254.169.254:8080"), Some(&grant)).is_err(), "another port of the granted address");
        assert!(p.check(addr("169.254.169.254:80"), None).is_err(), "a backend without the grant");
        let other = p.check(addr("127.0.0.1:80"), Some(&grant)).unwrap_err();
        assert_eq!(other.why, "not an address and port VpcAuthorization shop/metadata grants");
    }

    #[test]
    fn a_grant_without_the_exception_restricts_dials_and_keeps_the_policy() {
        let p = policy(EgressConfig { deny_loopback: true, ..EgressConfig::default() }, &Snapshot::default());
        let grant = DialGrant {
            authorization: "shop/orders".into(),
            addresses: vec!["10.0.3.15".parse().unwrap(), "127.0.0.1".parse().unwrap()],
            ports: vec![8080],
            bypass_egress: false,
        };
        assert!(p.check(addr("10.0.3.15:8080"), Some(&grant)).is_ok());
        assert!(p.check(addr("10.0.3.16:8080"), Some(&grant)).is_err(), "a host name rebound to another address");
        assert!(p.check(addr("127.0.0.1:8080"), Some(&grant)).is_err(), "granted, but the policy still refuses loopback");
    }

    #[test]
    fn the_gateways_own_listeners_are_refused_even_with_a_grant() {
        let config = EgressConfig { own_listeners: vec![addr("127.0.0.1:8080"), addr("0.0.0.0:9901")], ..EgressConfig::default() };
        let p = policy(config, &Snapshot::default());
        let grant = DialGrant {
            authorization: "shop/self".into(),
            addresses: vec!["127.0.0.1".parse().unwrap()],
            ports: vec![8080],
            bypass_egress: true,
        };
        let looped = p.check(addr("127.0.0.1:8080"), Some(&grant)).unwrap_err();
        assert!(looped.why.contains("own listener"), "{}", looped.why);
        assert!(p.check(addr("127.0.0.1:8081"), None).is_ok(), "another port of the same address");
        assert!(p.check(addr("127.0.0.2:8080"), None).is_ok(), "the 8080 listener is bound to 127.0.0.1 only");
        assert!(p.check(addr("127.0.0.2:9901"), None).is_err(), "0.0.0.0:9901 listens on every local address");
        assert!(p.check(addr("192.0.2.1:9901"), None).is_ok(), "a remote host's 9901 is someone else's");
        // This host's own non-loopback address (a pod IP in Kubernetes), when it has a route out.
        if let Some(own_ip) = non_loopback_local_address() {
            let refused = p.check(SocketAddr::new(own_ip, 9901), None).unwrap_err();
            assert!(refused.why.contains("own listener"), "{own_ip}: {}", refused.why);
            assert!(p.check(SocketAddr::new(own_ip, 9902), None).is_ok());
        } else {
            eprintln!("no non-loopback address on this host: only the loopback cases ran");
        }
    }

    /// The source address the kernel would use towards a documentation address (no
    /// packet is sent: connecting a UDP socket only picks a route).
    fn non_loopback_local_address() -> Option<IpAddr> {
        let socket = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
        socket.connect("192.0.2.1:9").ok()?;
        Some(socket.local_addr().ok()?.ip()).filter(|ip| !ip.is_loopback() && !ip.is_unspecified())
    }

    #[test]
    fn loopback_and_configured_ranges_are_refused_when_configured() {
        let config = EgressConfig { deny_loopback: true, deny: vec!["10.96.0.0/12".parse().unwrap()], ..EgressConfig::default() };
        let p = policy(config, &Snapshot::default());
        assert!(p.check(addr("127.0.0.1:8080"), None).is_err());
        assert!(p.check(addr("[::1]:9901"), None).is_err());
        assert!(p.check(addr("10.100.1.1:80"), None).is_err());
        assert!(p.check(addr("10.0.0.1:80"), None).is_ok());
        assert!(policy(EgressConfig::default(), &Snapshot::default()).check(addr("127.0.0.1:8080"), None).is_ok(), "standalone default");
    }

    #[test]
    fn dns_records_spread_by_weight_and_skip_zero_weights() {
        let entry = DnsEntry {
            domain: "orders.internal".into(),
            records: vec![("10.0.3.15".parse().unwrap(), 60), ("10.0.3.16".parse().unwrap(), 40), ("10.0.3.17".parse().unwrap(), 0)],
        };
        let p = policy(EgressConfig::default(), &Snapshot { dns_records: vec![entry], ..Snapshot::default() });
        let mut counts: HashMap<IpAddr, usize> = HashMap::new();
        for _ in 0..10_000 {
            *counts.entry(p.record_address("orders.internal").unwrap()).or_default() += 1;
        }
        assert_eq!(counts[&"10.0.3.15".parse::<IpAddr>().unwrap()], 6_000);
        assert_eq!(counts[&"10.0.3.16".parse::<IpAddr>().unwrap()], 4_000);
        assert!(!counts.contains_key(&"10.0.3.17".parse::<IpAddr>().unwrap()));
        assert_eq!(p.record_address("other.internal"), None);
    }

    #[test]
    fn ranges_parse_and_match_by_prefix() {
        let r: IpRange = "192.168.0.0/16".parse().unwrap();
        assert!(r.contains("192.168.4.2".parse().unwrap()));
        assert!(!r.contains("192.169.0.1".parse().unwrap()));
        assert!("10.0.0.0/33".parse::<IpRange>().is_err());
        assert!("nonsense".parse::<IpRange>().is_err());
        let all: IpRange = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("8.8.8.8".parse().unwrap()));
    }
}
