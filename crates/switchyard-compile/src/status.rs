use std::fmt;

use serde::{Deserialize, Serialize};

/// The kinds of object the compile step reports on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum ResourceKind {
    ApiRoute,
    BackendService,
    VpcAuthorization,
    DnsRecord,
    Secret,
    /// A manifest whose kind Switchyard does not know.
    Unknown,
}

/// Identifies one object.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectRef {
    pub kind: ResourceKind,
    /// The kind as written, for `Unknown` objects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub written_kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub name: String,
}

impl ObjectRef {
    pub fn new(kind: ResourceKind, namespace: Option<&str>, name: &str) -> Self {
        Self { kind, written_kind: None, namespace: namespace.map(str::to_owned), name: name.to_owned() }
    }
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = self.written_kind.as_deref().map_or_else(|| format!("{:?}", self.kind), str::to_owned);
        match &self.namespace {
            Some(ns) => write!(f, "{kind} {ns}/{}", self.name),
            None => write!(f, "{kind} {}", self.name),
        }
    }
}

/// A condition as compile computes it: no timestamps (the status writer keeps those).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConditionSpec {
    #[serde(rename = "type")]
    pub type_: String,
    pub status: bool,
    pub reason: String,
    pub message: String,
}

impl ConditionSpec {
    pub fn new(type_: &str, status: bool, reason: &str, message: impl Into<String>) -> Self {
        Self { type_: type_.to_owned(), status, reason: reason.to_owned(), message: message.into() }
    }

    /// `True` / `False`, as Kubernetes writes it.
    pub fn status_str(&self) -> &'static str {
        if self.status { "True" } else { "False" }
    }
}

/// Everything compile says about one object.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceStatus {
    pub object: ObjectRef,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<i64>,
    pub conditions: Vec<ConditionSpec>,
    /// BackendService only: the kind that is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend_kind: Option<String>,
    /// BackendService only: known endpoints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoints: Option<u32>,
    /// VpcAuthorization only: the test-now request the `Connected` condition answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connectivity_test_request: Option<String>,
}

impl ResourceStatus {
    pub fn new(object: ObjectRef, generation: Option<i64>) -> Self {
        Self { object, generation, conditions: Vec::new(), backend_kind: None, endpoints: None, connectivity_test_request: None }
    }

    pub fn set(&mut self, condition: ConditionSpec) {
        match self.conditions.iter_mut().find(|c| c.type_ == condition.type_) {
            Some(existing) => *existing = condition,
            None => self.conditions.push(condition),
        }
    }

    pub fn condition(&self, type_: &str) -> Option<&ConditionSpec> {
        self.conditions.iter().find(|c| c.type_ == type_)
    }

    /// True when any condition is False.
    pub fn has_false(&self) -> bool {
        self.conditions.iter().any(|c| !c.status)
    }
}

/// Condition reasons, so no code spells them twice.
pub mod reason {
    pub const ACCEPTED: &str = "Accepted";
    pub const RESOLVED_REFS: &str = "ResolvedRefs";
    pub const PROGRAMMED: &str = "Programmed";
    pub const READY: &str = "Ready";
    pub const UNKNOWN_KIND: &str = "UnknownKind";
    pub const INVALID_SPEC: &str = "InvalidSpec";
    pub const INVALID_KIND: &str = "InvalidKind";
    pub const INVALID_HOST: &str = "InvalidHost";
    pub const INVALID_PATH: &str = "InvalidPath";
    pub const INVALID_PATH_TEMPLATE: &str = "InvalidPathTemplate";
    pub const INVALID_REWRITE: &str = "InvalidRewrite";
    pub const INVALID_PARAMETER: &str = "InvalidParameter";
    pub const INVALID_MATCH: &str = "InvalidMatch";
    pub const INVALID_DURATION: &str = "InvalidDuration";
    pub const INVALID_SIZE: &str = "InvalidSize";
    pub const INVALID_BACKEND_REFS: &str = "InvalidBackendRefs";
    pub const INVALID_URL: &str = "InvalidUrl";
    pub const INVALID_ADDRESS: &str = "InvalidAddress";
    pub const INVALID_WEIGHTS: &str = "InvalidWeights";
    pub const INVALID_AUTH: &str = "InvalidAuth";
    pub const INVALID_TLS: &str = "InvalidTls";
    pub const INVALID_CERTIFICATE: &str = "InvalidCertificate";
    pub const CERTIFICATE_EXPIRED: &str = "CertificateExpired";
    pub const CERTIFICATE_NOT_YET_VALID: &str = "CertificateNotYetValid";
    pub const CERTIFICATE_KEY_MISMATCH: &str = "CertificateKeyMismatch";
    pub const CONFLICTED: &str = "Conflicted";
    pub const BACKEND_NOT_FOUND: &str = "BackendNotFound";
    pub const BACKEND_NOT_ACCEPTED: &str = "BackendNotAccepted";
    pub const REF_NOT_PERMITTED: &str = "RefNotPermitted";
    pub const APP_NOT_FOUND: &str = "AppNotFound";
    pub const APP_NOT_USABLE: &str = "AppNotUsable";
    pub const HOST_OWNED_BY_ANOTHER_NAMESPACE: &str = "HostOwnedByAnotherNamespace";
    pub const LINK_LOCAL_NOT_ALLOWED: &str = "LinkLocalNotAllowed";
    pub const AUTHORIZATION_NOT_FOUND: &str = "AuthorizationNotFound";
    pub const SERVICE_NOT_FOUND: &str = "ServiceNotFound";
    pub const ADDRESSES_NOT_VERIFIED: &str = "AddressesNotVerified";
    pub const REFS_NOT_RESOLVED: &str = "RefsNotResolved";
    pub const NOT_ACCEPTED: &str = "NotAccepted";
    pub const NOT_IMPLEMENTED: &str = "NotImplemented";
    pub const NO_ENDPOINTS: &str = "NoEndpoints";
    pub const UNSUPPORTED_SCHEME: &str = "UnsupportedScheme";
    pub const CONNECTED: &str = "Connected";
    pub const CONNECT_FAILED: &str = "ConnectFailed";
    pub const SECRET_NOT_FOUND: &str = "SecretNotFound";
    pub const SECRET_KEY_NOT_FOUND: &str = "SecretKeyNotFound";
    pub const SECRET_NOT_USABLE: &str = "SecretNotUsable";
    pub const INVALID_REGISTRY: &str = "InvalidRegistry";
    pub const REGISTRY_UNREACHABLE: &str = "RegistryUnreachable";
    pub const DISCOVERING: &str = "Discovering";
    pub const CONNECTING: &str = "Connecting";
    pub const NO_STREAM: &str = "NoStream";
    pub const BUS_UNREACHABLE: &str = "BusUnreachable";
    pub const INVALID_QUERY: &str = "InvalidQuery";
    pub const DATABASE_UNREACHABLE: &str = "DatabaseUnreachable";
}
