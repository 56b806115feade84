use std::net::IpAddr;

use switchyard_api::VpcAuthorization;

use super::{ByName, Rejection, accept, age_key, name, namespace, reject, status_for};
use crate::snapshot::{DnsEntry, VpcGrant, VpcGrantTarget};
use crate::{ConditionSpec, Connectivity, ResourceKind, ResourceStatus, reason, validate};
use switchyard_api::condition_type::CONNECTED;

/// Validates every VpcAuthorization; returns the accepted ones by (namespace, name).
pub(super) fn compile_all(
    auths: &[VpcAuthorization],
    connectivity: &ByName<Connectivity>,
    statuses: &mut Vec<ResourceStatus>,
) -> ByName<VpcGrant> {
    let mut sorted: Vec<&VpcAuthorization> = auths.iter().collect();
    sorted.sort_by(|a, b| age_key(&a.metadata).cmp(&age_key(&b.metadata)));
    let mut grants = ByName::new();
    for auth in sorted {
        let mut status = status_for(ResourceKind::VpcAuthorization, &auth.metadata, true);
        match grant(auth) {
            Ok(mut grant) => {
                accept(&mut status);
                let key = (namespace(&auth.metadata).to_owned(), name(&auth.metadata).to_owned());
                if let Some(test) = connectivity.get(&key) {
                    if matches!(grant.target, VpcGrantTarget::Host(_)) {
                        grant.addresses = test.addresses.clone();
                    }
                    let reason = if test.connected { reason::CONNECTED } else { reason::CONNECT_FAILED };
                    status.set(ConditionSpec::new(CONNECTED, test.connected, reason, test.message.clone()));
                    status.connectivity_test_request = test.requested.clone();
                }
                grants.insert(key, grant);
            }
            Err(why) => reject(&mut status, why),
        }
        statuses.push(status);
    }
    grants
}

fn grant(auth: &VpcAuthorization) -> Result<VpcGrant, Rejection> {
    let spec = &auth.spec;
    let target = target(&spec.target)?;
    if spec.ports.is_empty() || spec.ports.contains(&0) {
        return Err(Rejection::new(reason::INVALID_SPEC, "ports: list one or more ports in 1-65535"));
    }
    if let Some(host) = &spec.host_name {
        validate::host_header(host).map_err(|e| Rejection::new(reason::INVALID_HOST, format!("hostName: {e}")))?;
    }
    let mut ports = spec.ports.clone();
    ports.sort_unstable();
    ports.dedup();
    let id = format!("{}/{}", namespace(&auth.metadata), name(&auth.metadata));
    Ok(VpcGrant { id, target, ports, host_name: spec.host_name.clone(), addresses: Vec::new() })
}

/// A host target whose name has a DnsRecord is dialled at the record's addresses (the
/// proxy resolves it through the record): those are its addresses, whatever DNS said.
pub(super) fn pin_to_dns_records(grants: &mut ByName<VpcGrant>, dns_records: &[DnsEntry]) {
    for grant in grants.values_mut() {
        let VpcGrantTarget::Host(host) = &grant.target else { continue };
        if let Some(entry) = dns_records.iter().find(|e| &e.domain == host) {
            grant.addresses = entry.records.iter().filter(|(_, weight)| *weight > 0).map(|(address, _)| *address).collect();
        }
    }
}

fn target(target: &switchyard_api::VpcTarget) -> Result<VpcGrantTarget, Rejection> {
    match (&target.address, &target.service, &target.host) {
        (Some(address), None, None) => address
            .parse::<IpAddr>()
            .map(VpcGrantTarget::Address)
            .map_err(|_| Rejection::new(reason::INVALID_ADDRESS, format!("target.address {address:?} is not an IP address"))),
        (None, Some(service), None) => Ok(VpcGrantTarget::Service(service.name.clone())),
        (None, None, Some(host)) => validate::dns_name(host)
            .map(|()| VpcGrantTarget::Host(host.to_ascii_lowercase()))
            .map_err(|e| Rejection::new(reason::INVALID_HOST, format!("target.host: {e}"))),
        _ => Err(Rejection::new(reason::INVALID_SPEC, "target: set exactly one of address, service or host")),
    }
}

#[cfg(test)]
mod tests {
    use crate::{Connectivity, Resources, compile, manifest};

    #[test]
    fn a_connectivity_result_becomes_the_connected_condition_and_names_its_request() {
        let mut resources = Resources::default();
        let yaml = "apiVersion: switchyard.dev/v1alpha1\nkind: VpcAuthorization\nmetadata: {name: orders, namespace: shop}\nspec: {target: {address: 10.0.3.15}, ports: [8080]}\n";
        manifest::add_yaml(&mut resources, "t", yaml);
        let result =
            Connectivity { connected: false, message: "connection refused".into(), requested: Some("r1".into()), addresses: vec![] };
        resources.connectivity.insert(("shop".into(), "orders".into()), result);
        let status = &compile(&resources).statuses[0];
        let connected = status.condition("Connected").unwrap();
        assert_eq!(
            (connected.status, connected.reason.as_str(), connected.message.as_str()),
            (false, "ConnectFailed", "connection refused")
        );
        assert_eq!(status.connectivity_test_request.as_deref(), Some("r1"));
    }
}
