use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::Condition;

/// Authorizes the gateway to reach one private resource on given ports.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "switchyard.dev",
    version = "v1alpha1",
    kind = "VpcAuthorization",
    namespaced,
    status = "VpcAuthorizationStatus",
    shortname = "vpca",
    category = "switchyard",
    printcolumn = r#"{"name":"Ports","type":"string","jsonPath":".spec.ports"}"#,
    printcolumn = r#"{"name":"Accepted","type":"string","jsonPath":".status.conditions[?(@.type==\"Accepted\")].status"}"#,
    printcolumn = r#"{"name":"Connected","type":"string","jsonPath":".status.conditions[?(@.type==\"Connected\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = crate::formats::kubernetes_formats)]
pub struct VpcAuthorizationSpec {
    /// The private resource.
    pub target: VpcTarget,
    /// Ports the gateway may dial.
    #[schemars(length(min = 1, max = 64))]
    pub ports: Vec<u16>,
    /// Host header (priority 3) and TLS SNI used towards the resource. No CR, LF or NUL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = crate::MAX_HOST_HEADER), pattern(crate::HEADER_TEXT_PATTERN))]
    pub host_name: Option<String>,
    /// Free text for operators.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Periodic connectivity test.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connectivity_test: Option<ConnectivityTest>,
}

/// Exactly one of address, service or host.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[schemars(extend("x-kubernetes-validations" = [{"rule": "[has(self.address), has(self.service), has(self.host)].filter(x, x).size() == 1", "message": "set exactly one of address, service or host"}]))]
pub struct VpcTarget {
    /// A private IP address (an instance).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// A Kubernetes Service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<VpcServiceTarget>,
    /// A host name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
}

/// A Kubernetes Service target.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct VpcServiceTarget {
    /// Service name in the authorization's namespace.
    pub name: String,
}

/// Connectivity test settings.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct ConnectivityTest {
    /// Time between tests (default `60s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(r"^([0-9]+(ms|s|m|h))+$"))]
    pub interval: Option<String>,
    /// Optional HTTP probe after the TCP connect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpProbe>,
}

/// HTTP probe.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct HttpProbe {
    /// Path to GET: `/` followed by visible ASCII (no spaces or control characters).
    #[schemars(length(min = 1, max = crate::MAX_WIRE_PATH), pattern(crate::WIRE_PATH_PATTERN))]
    pub path: String,
    /// `http` (default) or `https`: over TLS, with `hostName` (else the target host) as
    /// SNI. The handshake tests reachability, not trust: the certificate is not verified
    /// here (the proxy verifies it on every connection).
    #[serde(default, skip_serializing_if = "is_http")]
    pub scheme: crate::Scheme,
}

fn is_http(scheme: &crate::Scheme) -> bool {
    *scheme == crate::Scheme::Http
}

/// Status of a VpcAuthorization: the common fields plus which test-now request the
/// `Connected` condition answers.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = crate::formats::kubernetes_formats)]
pub struct VpcAuthorizationStatus {
    /// The metadata.generation the controller last processed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Current conditions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// The value of the `switchyard.dev/test-connectivity` annotation when the test behind
    /// the `Connected` condition started: that condition answers this request (what
    /// `switchyard vpc test` waits for). Absent until the annotation is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connectivity_test_request: Option<String>,
}
