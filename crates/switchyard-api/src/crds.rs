use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

use crate::{ApiRoute, BackendService, DnsRecord, VpcAuthorization};

/// Every CRD Switchyard defines, in a stable order.
pub fn all_crds() -> Vec<CustomResourceDefinition> {
    vec![ApiRoute::crd(), BackendService::crd(), VpcAuthorization::crd(), DnsRecord::crd()]
}

/// File name of a CRD under `crds/` (`<plural>.<group>.yaml`).
pub fn crd_file_name(crd: &CustomResourceDefinition) -> String {
    format!("{}.yaml", crd.metadata.name.as_deref().unwrap_or("unnamed"))
}

/// The YAML committed under `crds/` for one CRD.
pub fn render_crd(crd: &CustomResourceDefinition) -> String {
    let body = serde_yaml::to_string(crd).expect("a CRD always serializes");
    format!("# Generated from crates/switchyard-api by `make crds`; do not edit.\n{body}")
}
