//! Hosts per namespace: with [`HostOwnership::PerNamespace`] a host (exact, or a
//! `*.suffix` wildcard) belongs to the namespace of the oldest accepted ApiRoute naming
//! it, so one tenant cannot take another's host (and its clients' credentials) by
//! naming it in a route of its own.
//!
//! Routes are offered oldest first. A route of another namespace is refused when it
//! names an owned host, a wildcard someone else owns, or a host or wildcard inside a
//! wildcard someone else owns. A wildcard that covers an older exact host of another
//! namespace is accepted: requests for that exact host still go only to its owner (the
//! router asks the exact owner first).

use std::collections::BTreeMap;

use super::Rejection;
use crate::reason;
use crate::resources::HostOwnership;
use crate::snapshot::HostOwner;

/// Owners of hosts claimed so far; inert when hosts are shared.
pub(super) struct HostOwners {
    enabled: bool,
    /// Exact host -> (namespace, the route that claimed it).
    exact: BTreeMap<String, (String, String)>,
    /// Wildcard suffix with its dot (`.example.com`) -> (namespace, route).
    wildcard: BTreeMap<String, (String, String)>,
}

impl HostOwners {
    pub fn new(mode: HostOwnership) -> Self {
        Self { enabled: mode == HostOwnership::PerNamespace, exact: BTreeMap::new(), wildcard: BTreeMap::new() }
    }

    /// Refuses a route naming a host that another namespace owns.
    pub fn check(&self, namespace: &str, hosts: &[String]) -> Result<(), Rejection> {
        if !self.enabled {
            return Ok(());
        }
        match hosts.iter().find_map(|host| self.foreign_owner(namespace, host).map(|owner| (host, owner))) {
            Some((host, (owner, by))) => Err(Rejection::new(
                reason::HOST_OWNED_BY_ANOTHER_NAMESPACE,
                format!("host {host} belongs to namespace {owner} (claimed first by ApiRoute {by})"),
            )),
            None => Ok(()),
        }
    }

    /// Records the hosts of an accepted route (checked before) for its namespace.
    pub fn claim(&mut self, namespace: &str, route_id: &str, hosts: &[String]) {
        if !self.enabled {
            return;
        }
        for host in hosts {
            let (map, key) = match host.strip_prefix('*') {
                Some(suffix) => (&mut self.wildcard, suffix),
                None => (&mut self.exact, host.as_str()),
            };
            map.entry(key.to_owned()).or_insert_with(|| (namespace.to_owned(), route_id.to_owned()));
        }
    }

    /// Another namespace's claim on `host`: the host itself, or a wildcard covering it.
    fn foreign_owner(&self, namespace: &str, host: &str) -> Option<(&str, &str)> {
        let (direct, name) = match host.strip_prefix('*') {
            Some(suffix) => (self.wildcard.get(suffix), suffix),
            None => (self.exact.get(host), host),
        };
        direct.into_iter().chain(self.covering(name)).find(|(owner, _)| owner != namespace).map(|(owner, by)| (owner.as_str(), by.as_str()))
    }

    /// The claim of the first (in key order) wildcard covering `name` with at least one
    /// character before it. Looked up per `.` of the name rather than by scanning every
    /// wildcard, so a compile stays linear in the number of routes.
    fn covering(&self, name: &str) -> Option<&(String, String)> {
        name.char_indices()
            .filter(|&(at, c)| at > 0 && c == '.')
            .filter_map(|(at, _)| self.wildcard.get_key_value(&name[at..]))
            .min_by(|a, b| a.0.cmp(b.0))
            .map(|(_, claim)| claim)
    }

    /// Every owned host, for the snapshot (empty when hosts are shared).
    pub fn into_snapshot(self) -> Vec<HostOwner> {
        let exact = self.exact.into_iter().map(|(host, (namespace, _))| HostOwner { host, namespace });
        let wildcard = self.wildcard.into_iter().map(|(suffix, (namespace, _))| HostOwner { host: format!("*{suffix}"), namespace });
        exact.chain(wildcard).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owners() -> HostOwners {
        HostOwners::new(HostOwnership::PerNamespace)
    }

    fn hosts(list: &[&str]) -> Vec<String> {
        list.iter().map(|h| (*h).to_owned()).collect()
    }

    impl HostOwners {
        /// What compile does for an accepted route: check, then claim.
        fn offer(&mut self, namespace: &str, route_id: &str, hosts: &[String]) -> Result<(), Rejection> {
            self.check(namespace, hosts)?;
            self.claim(namespace, route_id, hosts);
            Ok(())
        }
    }

    #[test]
    fn the_first_namespace_to_name_a_host_owns_it() {
        let mut o = owners();
        o.offer("team-a", "team-a/shop", &hosts(&["shop.example.com"])).unwrap();
        o.offer("team-a", "team-a/more", &hosts(&["shop.example.com"])).unwrap();
        let err = o.offer("team-b", "team-b/orders", &hosts(&["shop.example.com"])).unwrap_err();
        assert_eq!(err.reason, reason::HOST_OWNED_BY_ANOTHER_NAMESPACE);
        assert!(err.message.contains("team-a"), "{}", err.message);
    }

    #[test]
    fn hosts_and_wildcards_inside_an_owned_wildcard_are_refused_to_other_namespaces() {
        let mut o = owners();
        o.offer("team-a", "team-a/all", &hosts(&["*.example.com"])).unwrap();
        assert!(o.offer("team-b", "team-b/x", &hosts(&["shop.example.com"])).is_err());
        assert!(o.offer("team-b", "team-b/y", &hosts(&["*.shop.example.com"])).is_err());
        assert!(o.offer("team-b", "team-b/z", &hosts(&["*.example.com"])).is_err());
        assert!(o.offer("team-a", "team-a/s", &hosts(&["shop.example.com"])).is_ok());
        assert!(o.offer("team-b", "team-b/other", &hosts(&["example.com", "other.org"])).is_ok(), "the apex is not inside *.example.com");
    }

    #[test]
    fn a_refused_route_claims_none_of_its_hosts() {
        let mut o = owners();
        o.offer("team-a", "team-a/shop", &hosts(&["shop.example.com"])).unwrap();
        assert!(o.offer("team-b", "team-b/two", &hosts(&["free.example.com", "shop.example.com"])).is_err());
        assert!(o.offer("team-c", "team-c/free", &hosts(&["free.example.com"])).is_ok());
    }

    #[test]
    fn of_two_covering_wildcards_the_first_in_key_order_decides() {
        let mut o = owners();
        o.offer("team-b", "team-b/shop", &hosts(&["*.shop.example.com"])).unwrap();
        o.offer("team-a", "team-a/all", &hosts(&["*.example.com"])).unwrap();
        // ".example.com" sorts before ".shop.example.com": team-a's claim is the one asked.
        assert!(o.offer("team-b", "team-b/x", &hosts(&["x.shop.example.com"])).is_err());
        assert!(o.offer("team-a", "team-a/x", &hosts(&["x.shop.example.com"])).is_ok());
        assert!(o.offer("team-b", "team-b/y", &hosts(&["y.other.org"])).is_ok(), "no wildcard covers it");
    }

    #[test]
    fn shared_hosts_are_never_refused_and_not_listed() {
        let mut o = HostOwners::new(HostOwnership::Shared);
        o.offer("team-a", "team-a/shop", &hosts(&["shop.example.com"])).unwrap();
        o.offer("team-b", "team-b/shop", &hosts(&["shop.example.com"])).unwrap();
        assert!(o.into_snapshot().is_empty());
    }
}
