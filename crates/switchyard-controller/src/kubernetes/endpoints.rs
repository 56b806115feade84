//! Kubernetes Service endpoints from EndpointSlices: pure, so every port-mapping and
//! readiness rule is tested without an API server.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use switchyard_compile::{ServiceEndpoint, ServicePortTarget};

/// The label an EndpointSlice carries to name its Service.
const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// Ready endpoints per Service `(namespace, name)`, with each Service port number
/// mapped to the port the endpoint listens on (matched by port name, as kube-proxy does).
/// One pass over the slices (indexed by Service) and one over the Services: linear in
/// both, not their product, for clusters with thousands of each.
pub fn service_endpoints(services: &[Service], slices: &[EndpointSlice]) -> BTreeMap<(String, String), Vec<ServiceEndpoint>> {
    let mut by_service: BTreeMap<(&str, &str), Vec<&EndpointSlice>> = BTreeMap::new();
    for slice in slices {
        if let (Some(ns), Some(name)) = (slice.metadata.namespace.as_deref(), slice_service(slice)) {
            by_service.entry((ns, name)).or_default().push(slice);
        }
    }
    let mut out = BTreeMap::new();
    for service in services {
        let (Some(ns), Some(name)) = (service.metadata.namespace.as_deref(), service.metadata.name.as_deref()) else { continue };
        let ports: Vec<(u16, String)> = service
            .spec
            .iter()
            .flat_map(|s| s.ports.iter().flatten())
            .filter_map(|p| Some((u16::try_from(p.port).ok()?, p.name.clone().unwrap_or_default())))
            .collect();
        let endpoints: Vec<ServiceEndpoint> =
            by_service.get(&(ns, name)).into_iter().flatten().flat_map(|slice| slice_endpoints(slice, &ports)).collect();
        out.insert((ns.to_owned(), name.to_owned()), endpoints);
    }
    out
}

fn slice_service(slice: &EndpointSlice) -> Option<&str> {
    slice.metadata.labels.as_ref()?.get(SERVICE_NAME_LABEL).map(String::as_str)
}

fn slice_endpoints(slice: &EndpointSlice, service_ports: &[(u16, String)]) -> Vec<ServiceEndpoint> {
    let mut ports = Vec::with_capacity(service_ports.len());
    for (service_port, name) in service_ports {
        let target = slice
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref().unwrap_or_default() == name)
            .and_then(|p| p.port)
            .and_then(|p| u16::try_from(p).ok());
        if let Some(target) = target {
            ports.push(ServicePortTarget { port: *service_port, name: name.clone(), target });
        }
    }
    slice
        .endpoints
        .iter()
        // `ready` unset means ready: the API says consumers should treat unknown as ready.
        .filter(|e| e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true))
        .flat_map(|e| e.addresses.iter())
        .filter_map(|a| a.parse().ok())
        .map(|address| ServiceEndpoint { address, ports: ports.clone() })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ServicePort, ServiceSpec};
    use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn service(name: &str, ports: &[(i32, &str)]) -> Service {
        Service {
            metadata: ObjectMeta { name: Some(name.into()), namespace: Some("shop".into()), ..Default::default() },
            spec: Some(ServiceSpec {
                ports: Some(ports.iter().map(|(p, n)| ServicePort { port: *p, name: Some((*n).into()), ..Default::default() }).collect()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn slice(service: &str, ports: &[(i32, &str)], endpoints: &[(&str, Option<bool>)]) -> EndpointSlice {
        EndpointSlice {
            metadata: ObjectMeta {
                name: Some(format!("{service}-abc")),
                namespace: Some("shop".into()),
                labels: Some([(SERVICE_NAME_LABEL.to_owned(), service.to_owned())].into()),
                ..Default::default()
            },
            address_type: "IPv4".into(),
            ports: Some(
                ports.iter().map(|(p, n)| EndpointPort { port: Some(*p), name: Some((*n).into()), ..Default::default() }).collect(),
            ),
            endpoints: endpoints
                .iter()
                .map(|(a, ready)| Endpoint {
                    addresses: vec![(*a).into()],
                    conditions: Some(EndpointConditions { ready: *ready, ..Default::default() }),
                    ..Default::default()
                })
                .collect(),
        }
    }

    #[test]
    fn only_ready_endpoints_are_kept_and_unknown_readiness_counts_as_ready() {
        let eps = service_endpoints(
            &[service("orders", &[(80, "http")])],
            &[slice("orders", &[(8080, "http")], &[("10.0.0.1", Some(true)), ("10.0.0.2", Some(false)), ("10.0.0.3", None)])],
        );
        let list = &eps[&("shop".into(), "orders".into())];
        let addresses: Vec<String> = list.iter().map(|e| e.address.to_string()).collect();
        assert_eq!(addresses, ["10.0.0.1", "10.0.0.3"]);
        assert_eq!(list[0].target(Some(80), None), Some(8080));
    }

    #[test]
    fn service_ports_map_to_slice_ports_by_name() {
        let eps = service_endpoints(
            &[service("orders", &[(80, "http"), (9090, "metrics")])],
            &[slice("orders", &[(8080, "http"), (9100, "metrics")], &[("10.0.0.1", Some(true))])],
        );
        let endpoint = &eps[&("shop".into(), "orders".into())][0];
        assert_eq!((endpoint.target(Some(80), None), endpoint.target(Some(9090), None)), (Some(8080), Some(9100)));
        assert_eq!(endpoint.target(None, Some("metrics")), Some(9100), "a Service port by name");
        assert_eq!(endpoint.target(Some(81), None), None);
    }

    #[test]
    fn slices_of_other_services_are_ignored_and_a_service_without_slices_has_no_endpoints() {
        let eps = service_endpoints(&[service("orders", &[(80, "")])], &[slice("billing", &[(8080, "")], &[("10.0.0.9", Some(true))])]);
        assert!(eps[&("shop".into(), "orders".into())].is_empty());
    }

    #[test]
    fn every_slice_of_a_service_counts_and_namespaces_are_kept_apart() {
        let mut other_ns = slice("orders", &[(8080, "")], &[("10.9.9.9", Some(true))]);
        other_ns.metadata.namespace = Some("billing".into());
        let mut second = slice("orders", &[(8080, "")], &[("10.0.0.2", Some(true))]);
        second.metadata.name = Some("orders-def".into());
        let slices = [slice("orders", &[(8080, "")], &[("10.0.0.1", Some(true))]), other_ns, second];
        let eps = service_endpoints(&[service("orders", &[(80, "")])], &slices);
        let addresses: Vec<String> = eps[&("shop".into(), "orders".into())].iter().map(|e| e.address.to_string()).collect();
        assert_eq!(addresses, ["10.0.0.1", "10.0.0.2"]);
    }
}
