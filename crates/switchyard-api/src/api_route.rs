use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{CommonStatus, Retries};

/// An API: which requests it matches and which backend serves them.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "switchyard.dev",
    version = "v1alpha1",
    kind = "ApiRoute",
    namespaced,
    status = "CommonStatus",
    shortname = "apir",
    category = "switchyard",
    printcolumn = r#"{"name":"Hosts","type":"string","jsonPath":".spec.hosts"}"#,
    printcolumn = r#"{"name":"Path","type":"string","jsonPath":".spec.match.path"}"#,
    printcolumn = r#"{"name":"Backend","type":"string","jsonPath":".spec.backendRefs[*].name"}"#,
    printcolumn = r#"{"name":"Accepted","type":"string","jsonPath":".status.conditions[?(@.type==\"Accepted\")].status"}"#,
    printcolumn = r#"{"name":"Programmed","type":"string","jsonPath":".status.conditions[?(@.type==\"Programmed\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = crate::formats::kubernetes_formats)]
pub struct ApiRouteSpec {
    /// Host names this API answers: exact (`api.example.com`) or a leading wildcard
    /// (`*.example.com`). Empty matches any host.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    /// Which requests this API matches.
    #[serde(rename = "match")]
    pub match_: RouteMatch,
    /// The backend, or several with weights to split traffic (canary).
    #[schemars(length(min = 1, max = 16))]
    pub backend_refs: Vec<BackendRef>,
    /// Rewrites of the request before it reaches the backend.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rewrite: Option<Rewrite>,
    /// Constant parameters added to every backend request (header or query).
    /// A header parameter named `host` sets the Host header (priority 5).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parameters: Vec<ConstantParameter>,
    /// Forward the client's Host header to the backend (Host priority 4).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pass_host_header: bool,
    /// Host header sent to the backend, above every other rule (Host priority 1). No CR,
    /// LF or NUL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = crate::MAX_HOST_HEADER), pattern(crate::HEADER_TEXT_PATTERN))]
    pub host_override: Option<String>,
    /// Who may call this API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<RouteAuth>,
    /// Total time for the request including retries, until response headers (e.g. `10s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(r"^([0-9]+(ms|s|m|h))+$"))]
    pub timeout: Option<String>,
    /// Retry policy; overrides the backend's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<Retries>,
    /// Largest request body accepted (`512Ki`, `10Mi`); default 32Mi.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(r"^[0-9]+(Ki|Mi|Gi)?$"))]
    pub request_body_limit: Option<String>,
    /// Which client connections may call this API: `HTTP` (the plain listener), `HTTPS`
    /// (the TLS listener). Empty: both. A plain HTTP request to an HTTPS-only API is
    /// answered 308 with its https URL; an HTTPS request to an HTTP-only API 421.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 2))]
    pub protocols: Vec<RouteProtocol>,
}

/// The protocol of a client's connection.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
#[allow(clippy::upper_case_acronyms)]
pub enum RouteProtocol {
    HTTP,
    HTTPS,
}

/// Request matching.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RouteMatch {
    /// Path to match. With `pathType: Template`, segments like `{id}` capture a named
    /// parameter (`/users/{id}/orders/{orderId}`).
    #[schemars(length(min = 1, max = 1024), pattern(r"^/"))]
    pub path: String,
    /// Exact, Prefix (by path segment) or Template (default; a template without
    /// parameters is an exact match).
    #[serde(default)]
    pub path_type: PathType,
    /// HTTP methods; empty matches any method.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub methods: Vec<HttpMethod>,
    /// Headers the request must carry; without `value` the header must only be present.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<KeyMatch>,
    /// Query parameters the request must carry; without `value` only presence counts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub query_params: Vec<KeyMatch>,
}

/// How the path is compared.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
pub enum PathType {
    /// The whole path equals `path`.
    Exact,
    /// The path starts with `path`, segment by segment (`/a` matches `/a/b`, not `/ab`).
    Prefix,
    /// `path` is a template; `{name}` segments capture parameters.
    #[default]
    Template,
}

/// HTTP method.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
#[allow(clippy::upper_case_acronyms)]
pub enum HttpMethod {
    GET,
    HEAD,
    POST,
    PUT,
    DELETE,
    PATCH,
    OPTIONS,
}

impl HttpMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::GET => "GET",
            Self::HEAD => "HEAD",
            Self::POST => "POST",
            Self::PUT => "PUT",
            Self::DELETE => "DELETE",
            Self::PATCH => "PATCH",
            Self::OPTIONS => "OPTIONS",
        }
    }
}

/// A header or query parameter matcher.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct KeyMatch {
    /// Header (case-insensitive) or query parameter (case-sensitive) name. No CR, LF or NUL.
    #[schemars(length(min = 1, max = 256), pattern(crate::HEADER_TEXT_PATTERN))]
    pub name: String,
    /// Exact value; omitted means the key only has to be present. No CR, LF or NUL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = crate::MAX_HEADER_VALUE), pattern(crate::HEADER_TEXT_PATTERN))]
    pub value: Option<String>,
}

/// A reference to a BackendService.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct BackendRef {
    /// BackendService name.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// BackendService namespace; defaults to the route's. Using another namespace must
    /// be allowed by the backend's `allowedRouteNamespaces`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Share of traffic relative to the other refs (0-1000, default 1). 0 takes none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 1000))]
    pub weight: Option<u32>,
}

/// Rewrites applied to the backend request.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct Rewrite {
    /// New path. May use the template's parameters (`/v1/orders/{id}`). With
    /// `pathType: Prefix` it replaces the matched prefix. `/` followed by visible ASCII
    /// (no spaces or control characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = crate::MAX_WIRE_PATH), pattern(crate::WIRE_PATH_PATTERN))]
    pub path: Option<String>,
}

/// A constant parameter added to the backend request.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct ConstantParameter {
    /// Where the parameter goes.
    #[serde(rename = "in")]
    pub in_: ParameterLocation,
    /// Header or query parameter name. No CR, LF or NUL.
    #[schemars(length(min = 1, max = 256), pattern(crate::HEADER_TEXT_PATTERN))]
    pub name: String,
    /// Constant value. No CR, LF or NUL.
    #[schemars(length(max = crate::MAX_HEADER_VALUE), pattern(crate::HEADER_TEXT_PATTERN))]
    pub value: String,
}

/// Where a parameter lives.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ParameterLocation {
    /// A request header.
    Header,
    /// A query string parameter.
    Query,
}

/// Who may call the API.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[schemars(extend("x-kubernetes-validations" = [{"rule": "self.type == 'Anonymous' || (has(self.apps) && size(self.apps) > 0)", "message": "AppCode and Signature auth need at least one app"}]))]
pub struct RouteAuth {
    /// Anonymous, AppCode or Signature.
    #[serde(rename = "type")]
    pub type_: AuthType,
    /// Names of the app Secrets (label `switchyard.dev/app`) allowed to call.
    #[serde(default)]
    pub apps: Vec<String>,
}

/// Authentication scheme.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum AuthType {
    /// No authentication.
    #[default]
    Anonymous,
    /// `Authorization: APPCODE <code>` or query `AppCode`.
    AppCode,
    /// HMAC signature in `X-Ca-*` headers.
    Signature,
}
