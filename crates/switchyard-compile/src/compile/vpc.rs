use std::net::IpAddr;

use switchyard_api::VpcAuthorization;

use super::{ByName, Rejection, accept, age_key, name, namespace, reject, status_for};
use crate::snapshot::{VpcGrant, VpcGrantTarget};
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
            Ok(grant) => {
                accept(&mut status);
                let key = (namespace(&auth.metadata).to_owned(), name(&auth.metadata).to_owned());
                if let Some(test) = connectivity.get(&key) {
                    let reason = if test.connected { reason::CONNECTED } else { reason::CONNECT_FAILED };
                    status.set(ConditionSpec::new(CONNECTED, test.connected, reason, test.message.clone()));
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
    Ok(VpcGrant { id: format!("{}/{}", namespace(&auth.metadata), name(&auth.metadata)), target, ports, host_name: spec.host_name.clone() })
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
