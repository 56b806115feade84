use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::Condition;

/// A `name: value` pair (headers of mock responses and similar).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct NameValue {
    /// Header name. No CR, LF or NUL.
    #[schemars(length(min = 1, max = 256), pattern(crate::HEADER_TEXT_PATTERN))]
    pub name: String,
    /// Header value. No CR, LF or NUL.
    #[serde(default)]
    #[schemars(length(max = crate::MAX_HEADER_VALUE), pattern(crate::HEADER_TEXT_PATTERN))]
    pub value: String,
}

/// A key in a Secret in the same namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct SecretKeyRef {
    /// Secret name.
    pub name: String,
    /// Key inside the Secret's data.
    pub key: String,
}

/// A whole Secret in the same namespace, read for the keys its user documents (for
/// example `username` and `password`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct SecretRef {
    /// Secret name.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// A Kubernetes Service and port.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{"rule": "!(has(self.port) && has(self.portName))", "message": "set port or portName, not both"}]))]
pub struct ServiceRef {
    /// Service name.
    pub name: String,
    /// Service namespace; defaults to the resource's own namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Service port number (set this or `portName`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: Option<u16>,
    /// Service port name (set this or `port`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_name: Option<String>,
}

/// Which failures a retry is attempted on.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum RetryOn {
    /// The TCP connection to the endpoint could not be made.
    ConnectFailure,
    /// The endpoint answered 502, 503 or 504.
    GatewayError,
    /// The connection was reset before a response arrived.
    Reset,
}

/// Retry policy.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct Retries {
    /// Extra attempts after the first one (0-10).
    #[schemars(range(min = 0, max = 10))]
    pub attempts: u32,
    /// Failures worth a retry; default `[connect-failure]`.
    // Not `on`: YAML 1.1 readers (kubectl among them) read a bare `on:` key as `true`.
    #[serde(default, rename = "retryOn", skip_serializing_if = "Vec::is_empty")]
    pub retry_on: Vec<RetryOn>,
    /// Also retry requests with methods that are not idempotent (POST, PATCH) after they
    /// may have reached the upstream (`reset`, `gateway-error`): only for APIs where
    /// processing a request twice is harmless. Connect failures (nothing was sent) are
    /// retried for every method regardless. Default false: only GET, HEAD, OPTIONS, PUT and
    /// DELETE are.
    #[serde(default, rename = "nonIdempotent", skip_serializing_if = "std::ops::Not::not")]
    pub non_idempotent: bool,
}

/// Status shared by every Switchyard resource.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = crate::formats::kubernetes_formats)]
pub struct CommonStatus {
    /// The metadata.generation the controller last processed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Current conditions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}
