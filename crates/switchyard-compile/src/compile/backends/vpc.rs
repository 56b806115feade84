//! `vpc`: a private-network resource reached through a VpcAuthorization.

use std::net::IpAddr;

use switchyard_api::VpcBackend;

use super::http::{endpoint_for, host_with_port};
use super::{BackendEntry, KindCompiler, KindContext, Resolved, checked_host_header, tls_trust_if_needed, upstream_version};
use crate::compile::{Rejection, tls};
use crate::snapshot::{BackendKind, DialGrant, Endpoint, VpcGrant, VpcGrantTarget};
use crate::{Resources, reason};

impl KindCompiler for VpcBackend {
    fn compile(&self, cx: &KindContext<'_>, entry: &mut BackendEntry) -> Result<Resolved, Rejection> {
        let ns = cx.ns;
        entry.host_header = checked_host_header(self.host_header.as_ref())?;
        let key = (ns.to_owned(), self.authorization_ref.clone());
        let Some(grant) = cx.grants.get(&key) else {
            return Ok(Resolved::Unresolved(Rejection::new(
                reason::AUTHORIZATION_NOT_FOUND,
                format!("VpcAuthorization {ns}/{} does not exist or is not accepted", self.authorization_ref),
            )));
        };
        if !grant.ports.contains(&self.port) {
            return Ok(Resolved::Unresolved(Rejection::new(
                reason::REF_NOT_PERMITTED,
                format!("port {} is not authorized by VpcAuthorization {} (ports {:?})", self.port, grant.id, grant.ports),
            )));
        }
        entry.authorization_host = grant.host_name.clone();
        let resolved = vpc_kind(self, grant, ns, cx.resources, &mut entry.dial_grant)?;
        entry.tls = tls_trust_if_needed(&resolved, self.tls.as_ref(), "vpc.tls")?;
        entry.upstream_version = upstream_version(self.protocol, &resolved, "vpc.protocol")?;
        Ok(resolved)
    }
}

/// A vpc backend dials only what its authorization names: the address, the host (at
/// its verified addresses), or the Service's ready endpoints, on the backend's
/// (authorized) port. `dial_grant` gets those addresses, enforced again at dial time.
fn vpc_kind(
    vpc: &VpcBackend,
    grant: &VpcGrant,
    ns: &str,
    resources: &Resources,
    dial_grant: &mut Option<DialGrant>,
) -> Result<Resolved, Rejection> {
    // The sockets dialled: the authorized port, or each Service endpoint's target port.
    let (sockets, bypass_egress): (Vec<(IpAddr, u16)>, bool) = match &grant.target {
        VpcGrantTarget::Address(ip) => (vec![(*ip, vpc.port)], true),
        VpcGrantTarget::Host(host) => {
            if grant.addresses.is_empty() {
                return Ok(Resolved::Unresolved(unverified_host(host, grant, ns, resources)));
            }
            (grant.addresses.iter().map(|ip| (*ip, vpc.port)).collect(), false)
        }
        VpcGrantTarget::Service(name) => {
            let Some(ready) = resources.service_endpoints.get(&(ns.to_owned(), name.clone())) else {
                return Ok(Resolved::Unresolved(Rejection::new(
                    reason::SERVICE_NOT_FOUND,
                    format!("Service {ns}/{name} named by VpcAuthorization {} is not known", grant.id),
                )));
            };
            (ready.iter().filter_map(|ep| ep.target(Some(vpc.port), None).map(|t| (ep.address, t))).collect(), false)
        }
    };
    let endpoints = match &grant.target {
        // One endpoint: the name, resolved at dial time (and checked against the grant).
        VpcGrantTarget::Host(host) => vec![Endpoint {
            scheme: "http".into(),
            authority: format!("{host}:{}", vpc.port),
            host: host_with_port(host, vpc.port, "http"),
            base_path: String::new(),
            tls_server_name: None,
            weight: 1,
        }],
        _ => sockets.iter().map(|(ip, port)| endpoint_for(*ip, *port)).collect(),
    };
    let mut addresses: Vec<IpAddr> = sockets.iter().map(|(ip, _)| *ip).collect();
    let mut ports: Vec<u16> = sockets.iter().map(|(_, port)| *port).collect();
    addresses.sort_unstable();
    addresses.dedup();
    ports.sort_unstable();
    ports.dedup();
    *dial_grant = Some(DialGrant { authorization: grant.id.clone(), addresses, ports, bypass_egress });
    let endpoints = if vpc.scheme == switchyard_api::Scheme::Https {
        // SNI: the backend's own setting, else the authorization's hostName, else the
        // target's name (a host, or the Service's DNS name); an address stays an address.
        let service_name = match &grant.target {
            VpcGrantTarget::Service(name) => Some(format!("{name}.{ns}.svc")),
            _ => None,
        };
        let sni = vpc.tls.as_ref().and_then(|t| t.sni.clone()).or_else(|| grant.host_name.clone()).or(service_name);
        endpoints.into_iter().map(|e| tls::secure(e, sni.as_deref())).collect::<Result<_, _>>()?
    } else {
        endpoints
    };
    let count = endpoints.len() as u32;
    Ok(Resolved::Ready(BackendKind::Http { endpoints }, count))
}

/// Why a host target is not usable yet: no connectivity test has resolved the name (or
/// the last one could not).
fn unverified_host(host: &str, grant: &VpcGrant, ns: &str, resources: &Resources) -> Rejection {
    let auth_name = grant.id.rsplit_once('/').map_or(grant.id.as_str(), |(_, n)| n);
    let why = match resources.connectivity.get(&(ns.to_owned(), auth_name.to_owned())) {
        Some(test) => format!("the last connectivity test resolved no address: {}", test.message),
        None => "no connectivity test has resolved it yet".to_owned(),
    };
    Rejection::new(reason::ADDRESSES_NOT_VERIFIED, format!("the addresses of {host} (VpcAuthorization {}) are not known: {why}", grant.id))
}
