use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::CommonStatus;

/// Internal domain name resolution with weighted records (cluster-scoped).
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "switchyard.dev",
    version = "v1alpha1",
    kind = "DnsRecord",
    status = "CommonStatus",
    shortname = "dnsr",
    category = "switchyard",
    printcolumn = r#"{"name":"Domain","type":"string","jsonPath":".spec.domain"}"#,
    printcolumn = r#"{"name":"Type","type":"string","jsonPath":".spec.type"}"#,
    printcolumn = r#"{"name":"Accepted","type":"string","jsonPath":".status.conditions[?(@.type==\"Accepted\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[schemars(extend("x-kubernetes-validations" = [{"rule": "self.records.exists(r, r.weight > 0)", "message": "at least one record needs a weight above 0"}]))]
#[schemars(transform = crate::formats::kubernetes_formats)]
pub struct DnsRecordSpec {
    /// Domain name the records answer for.
    #[schemars(length(min = 1, max = 253))]
    pub domain: String,
    /// A or AAAA.
    #[serde(rename = "type")]
    pub type_: DnsRecordType,
    /// Addresses with weights.
    #[schemars(length(min = 1, max = 64))]
    pub records: Vec<WeightedAddress>,
}

/// DNS record type.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[allow(clippy::upper_case_acronyms)]
pub enum DnsRecordType {
    A,
    AAAA,
}

/// An address and its share of traffic.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct WeightedAddress {
    /// IPv4 (type A) or IPv6 (type AAAA) address.
    pub address: String,
    /// 0-100; 0 takes no traffic.
    #[schemars(range(min = 0, max = 100))]
    pub weight: u32,
}
