use std::net::IpAddr;

use switchyard_api::VpcAuthorization;

use super::{ByName, Rejection, accept, age_key, name, namespace, reject, status_for};
use crate::snapshot::{DnsEntry, VpcGrant, VpcGrantTarget};
use crate::{CompileOptions, ConditionSpec, Connectivity, ResourceKind, ResourceStatus, reason, validate};
use switchyard_api::condition_type::CONNECTED;

/// Validates every VpcAuthorization; returns the accepted ones by (namespace, name).
pub(super) fn compile_all(
    auths: &[VpcAuthorization],
    connectivity: &ByName<Connectivity>,
    options: CompileOptions,
    statuses: &mut Vec<ResourceStatus>,
) -> ByName<VpcGrant> {
    let mut sorted: Vec<&VpcAuthorization> = auths.iter().collect();
    sorted.sort_by(|a, b| age_key(&a.metadata).cmp(&age_key(&b.metadata)));
    let mut grants = ByName::new();
    for auth in sorted {
        let mut status = status_for(ResourceKind::VpcAuthorization, &auth.metadata, true);
        match grant(auth, options) {
            Ok(mut grant) => {
                accept(&mut status);
                let key = (namespace(&auth.metadata).to_owned(), name(&auth.metadata).to_owned());
                if let Some(test) = connectivity.get(&key) {
                    if matches!(grant.target, VpcGrantTarget::Host(_)) {
                        // The prober leaves link-local answers out already; checked again
                        // here so no source of results can grant them.
                        grant.addresses = grantable(test.addresses.iter().copied(), options);
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

fn grant(auth: &VpcAuthorization, options: CompileOptions) -> Result<VpcGrant, Rejection> {
    let spec = &auth.spec;
    let target = target(&spec.target)?;
    if let VpcGrantTarget::Address(ip) = target
        && validate::is_link_local(ip)
        && !options.allow_link_local_grants
    {
        return Err(Rejection::new(
            reason::LINK_LOCAL_NOT_ALLOWED,
            format!(
                "target.address {ip} is a link-local or cloud metadata address (169.254.0.0/16, fe80::/10, \
                 fd00:ec2::254, in any IPv4-mapped or NAT64 form); the gateway grants those only when it runs \
                 with --allow-link-local-grants"
            ),
        ));
    }
    if spec.ports.is_empty() || spec.ports.contains(&0) {
        return Err(Rejection::new(reason::INVALID_SPEC, "ports: list one or more ports in 1-65535"));
    }
    if let Some(host) = &spec.host_name {
        validate::no_line_break("hostName", host)
            .and_then(|()| validate::host_header(host).map_err(|e| format!("hostName: {e}")))
            .map_err(|e| Rejection::new(reason::INVALID_HOST, e))?;
    }
    if let Some(http) = spec.connectivity_test.as_ref().and_then(|t| t.http.as_ref()) {
        validate::wire_path(&http.path).map_err(|e| Rejection::new(reason::INVALID_PATH, format!("connectivityTest.http.path: {e}")))?;
    }
    let mut ports = spec.ports.clone();
    ports.sort_unstable();
    ports.dedup();
    let id = format!("{}/{}", namespace(&auth.metadata), name(&auth.metadata));
    Ok(VpcGrant { id, target, ports, host_name: spec.host_name.clone(), addresses: Vec::new() })
}

/// A host target whose name has a DnsRecord is dialled at the record's addresses (the
/// proxy resolves it through the record): those are its addresses, whatever DNS said.
/// Link-local record addresses are not granted (unless the gateway allows link-local
/// grants): a DnsRecord cannot turn a host target into a grant of cloud metadata.
pub(super) fn pin_to_dns_records(grants: &mut ByName<VpcGrant>, dns_records: &[DnsEntry], options: CompileOptions) {
    for grant in grants.values_mut() {
        let VpcGrantTarget::Host(host) = &grant.target else { continue };
        if let Some(entry) = dns_records.iter().find(|e| &e.domain == host) {
            let weighted = entry.records.iter().filter(|(_, weight)| *weight > 0).map(|(address, _)| *address);
            grant.addresses = grantable(weighted, options);
        }
    }
}

/// The addresses a host target may be granted: link-local ones only when allowed.
fn grantable(addresses: impl Iterator<Item = IpAddr>, options: CompileOptions) -> Vec<IpAddr> {
    addresses.filter(|ip| options.allow_link_local_grants || !validate::is_link_local(*ip)).collect()
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
    use crate::snapshot::VpcGrantTarget;
    use crate::{CompileOptions, Connectivity, Resources, compile, manifest};

    fn authorization(target: &str, allow_link_local_grants: bool) -> Resources {
        let mut resources = Resources::default();
        let yaml = format!(
            "apiVersion: switchyard.dev/v1alpha1\nkind: VpcAuthorization\nmetadata: {{name: a, namespace: shop}}\nspec: {{target: {target}, ports: [80]}}\n"
        );
        manifest::add_yaml(&mut resources, "t", &yaml);
        resources.options = CompileOptions { allow_link_local_grants, ..CompileOptions::default() };
        resources
    }

    fn accepted(resources: &Resources) -> (bool, String, String) {
        let compiled = compile(resources);
        let c = compiled.statuses[0].condition("Accepted").unwrap();
        (c.status, c.reason.clone(), c.message.clone())
    }

    #[test]
    fn a_link_local_address_is_refused_unless_the_gateway_allows_link_local_grants() {
        for address in ["169.254.169.254", "fe80::1", "'::ffff:169.254.169.254'", "'64:ff9b::a9fe:a9fe'", "'fd00:ec2::254'"] {
            let (ok, reason, message) = accepted(&authorization(&format!("{{address: {address}}}"), false));
            assert!(!ok, "{address}");
            assert_eq!(reason, "LinkLocalNotAllowed", "{address}");
            assert!(message.contains("--allow-link-local-grants"), "{message}");
            let (ok, reason, _) = accepted(&authorization(&format!("{{address: {address}}}"), true));
            assert!(ok, "{address} with the option: {reason}");
        }
        assert!(accepted(&authorization("{address: 10.0.3.15}", false)).0, "a private address is fine");
    }

    #[test]
    fn a_host_target_is_never_granted_link_local_addresses_its_test_or_dns_record_gives_it() {
        let test = Connectivity {
            connected: true,
            message: "ok".into(),
            requested: None,
            addresses: vec!["169.254.169.254".parse().unwrap(), "10.0.3.15".parse().unwrap()],
        };
        let granted = |allow: bool, dns: bool| {
            let mut resources = authorization("{host: orders.test}", allow);
            if dns {
                let record = "apiVersion: switchyard.dev/v1alpha1\nkind: DnsRecord\nmetadata: {name: r}\n\
                              spec: {domain: orders.test, type: A, records: [{address: 169.254.169.254, weight: 50}, {address: 10.0.3.16, weight: 50}]}\n";
                manifest::add_yaml(&mut resources, "dns", record);
            }
            resources.connectivity.insert(("shop".into(), "a".into()), test.clone());
            let grant = compile(&resources).snapshot.vpc_authorizations.remove(0);
            assert!(matches!(grant.target, VpcGrantTarget::Host(_)));
            grant.addresses.iter().map(|ip| ip.to_string()).collect::<Vec<_>>()
        };
        assert_eq!(granted(false, false), ["10.0.3.15"]);
        assert_eq!(granted(true, false), ["169.254.169.254", "10.0.3.15"]);
        assert_eq!(granted(false, true), ["10.0.3.16"], "a DnsRecord pins the target, without its link-local address");
        assert_eq!(granted(true, true), ["169.254.169.254", "10.0.3.16"]);
    }

    #[test]
    fn a_connectivity_probe_path_or_host_name_that_would_break_the_request_is_refused() {
        let with = |extra: &str| {
            let mut resources = Resources::default();
            let yaml = format!(
                "apiVersion: switchyard.dev/v1alpha1\nkind: VpcAuthorization\nmetadata: {{name: a, namespace: shop}}\n\
                 spec: {{target: {{address: 10.0.3.15}}, ports: [80], {extra}}}\n"
            );
            manifest::add_yaml(&mut resources, "t", &yaml);
            accepted(&resources)
        };
        let (ok, reason, message) = with(r#"connectivityTest: {http: {path: "/x HTTP/1.1\r\nHost: a\r\n\r\nPOST /admin/delete-all"}}"#);
        assert_eq!((ok, reason.as_str()), (false, "InvalidPath"), "{message}");
        assert!(message.starts_with("connectivityTest.http.path: "), "{message}");
        assert_eq!(with(r#"connectivityTest: {http: {path: "/a b"}}"#).1, "InvalidPath");
        assert!(with("connectivityTest: {http: {path: /healthz}}").0);
        for bad in [r#""a.internal\r\nX: 1""#, r#""a.internal\nX: 1""#, r#""a.internal\0""#] {
            let (ok, reason, message) = with(&format!("hostName: {bad}"));
            assert_eq!((ok, reason.as_str()), (false, "InvalidHost"), "{bad}");
            assert!(message.starts_with("hostName holds a CR, LF or NUL"), "{message}");
        }
    }

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
