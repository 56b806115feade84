use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{Condition, NameValue, Retries, SecretKeyRef, SecretRef, ServiceRef};

/// CEL rule: exactly one backend kind is set.
const ONE_KIND_RULE: &str = "[has(self.http), has(self.vpc), has(self.function), has(self.mock), has(self.dataService), has(self.model), has(self.eventBus), has(self.registry), has(self.gateway)].filter(x, x).size() == 1";

/// A backend: exactly one kind (http, vpc, function, mock, dataService, model,
/// eventBus, registry, gateway) plus the common traffic policy.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "switchyard.dev",
    version = "v1alpha1",
    kind = "BackendService",
    namespaced,
    status = "BackendServiceStatus",
    shortname = "bes",
    category = "switchyard",
    printcolumn = r#"{"name":"Kind","type":"string","jsonPath":".status.kind"}"#,
    printcolumn = r#"{"name":"Endpoints","type":"integer","jsonPath":".status.endpoints"}"#,
    printcolumn = r#"{"name":"Accepted","type":"string","jsonPath":".status.conditions[?(@.type==\"Accepted\")].status"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{"rule": ONE_KIND_RULE, "message": "exactly one backend kind must be set: http, vpc, function, mock, dataService, model, eventBus, registry or gateway"}]))]
#[schemars(transform = crate::formats::kubernetes_formats)]
pub struct BackendServiceSpec {
    /// Plain HTTP(S) upstreams: URLs or a Kubernetes Service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpBackend>,
    /// A private-network resource reached through a VpcAuthorization.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vpc: Option<VpcBackend>,
    /// A serverless function.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function: Option<FunctionBackend>,
    /// A fixed response served by the gateway itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mock: Option<MockBackend>,
    /// A read-only SQL API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_service: Option<DataServiceBackend>,
    /// A model-serving (inference) endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<ModelBackend>,
    /// Publish each request as a CloudEvent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_bus: Option<EventBusBackend>,
    /// Instances discovered from Nacos or ZooKeeper.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry: Option<RegistryBackend>,
    /// Another gateway (multi-level).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<GatewayBackend>,
    /// Time for one attempt, until response headers (e.g. `5s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(r"^([0-9]+(ms|s|m|h))+$"))]
    pub timeout: Option<String>,
    /// Retry policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<Retries>,
    /// How an endpoint is picked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_balancing: Option<LoadBalancing>,
    /// Active and passive health checking.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check: Option<HealthCheck>,
    /// Load shedding: how many requests one proxy keeps in flight to this backend.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub circuit_breaker: Option<CircuitBreaker>,
    /// Namespaces whose ApiRoutes may use this backend (`*` for all). The backend's own
    /// namespace is always allowed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_route_namespaces: Vec<String>,
}

/// Plain HTTP(S) upstream.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{"rule": "has(self.urls) != has(self.service)", "message": "set either urls or service"}]))]
pub struct HttpBackend {
    /// Upstream base URLs (`http://10.0.0.5:8080`); requests are spread over them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64))]
    pub urls: Option<Vec<String>>,
    /// A Kubernetes Service instead of URLs (endpoints from EndpointSlices).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<ServiceRef>,
    /// Host header sent to the upstream (Host priority 2). No CR, LF or NUL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = crate::MAX_HOST_HEADER), pattern(crate::HEADER_TEXT_PATTERN))]
    pub host_header: Option<String>,
    /// TLS options for `https` upstreams. With a `service`, setting `tls` dials its
    /// endpoints over TLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsOptions>,
    /// HTTP version towards the upstream: `HTTP1` (default), `H2C` (HTTP/2 over plain
    /// TCP, prior knowledge) or `H2` (HTTP/2 over TLS, negotiated by ALPN). gRPC needs
    /// `H2C` or `H2`.
    #[serde(default, skip_serializing_if = "UpstreamProtocol::is_http1")]
    pub protocol: UpstreamProtocol,
}

/// HTTP version spoken to an upstream.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
pub enum UpstreamProtocol {
    /// HTTP/1.1 (keep-alive, one request per connection at a time).
    #[default]
    HTTP1,
    /// HTTP/2 over plain TCP with prior knowledge (`http` endpoints).
    H2C,
    /// HTTP/2 over TLS, negotiated with ALPN `h2` (`https` endpoints).
    H2,
}

impl UpstreamProtocol {
    pub fn is_http1(&self) -> bool {
        *self == Self::HTTP1
    }
}

/// TLS options towards an upstream. Without `caCertificate`, the system's trusted roots
/// verify the upstream's certificate.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TlsOptions {
    /// Server name sent in SNI and verified; defaults to the URL's host (http), the
    /// authorization's `hostName` or target host (vpc), or `NAME.NAMESPACE.svc` (a Service).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sni: Option<String>,
    /// PEM certificates of the CAs that sign the upstream's certificate; when set, only
    /// these are trusted (a private PKI).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 65536))]
    pub ca_certificate: Option<String>,
    /// Skip certificate verification (testing only; the connection is still encrypted).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub insecure_skip_verify: bool,
}

/// A private-network resource.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VpcBackend {
    /// Name of a VpcAuthorization in the same namespace.
    pub authorization_ref: String,
    /// Port to dial; must be one of the authorization's ports.
    #[schemars(range(min = 1, max = 65535))]
    pub port: u16,
    /// `http` (default) or `https`.
    #[serde(default)]
    pub scheme: Scheme,
    /// Host header sent to the upstream (Host priority 2). No CR, LF or NUL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = crate::MAX_HOST_HEADER), pattern(crate::HEADER_TEXT_PATTERN))]
    pub host_header: Option<String>,
    /// TLS options when `scheme` is `https`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsOptions>,
    /// HTTP version towards the upstream: `HTTP1` (default), `H2C` (HTTP/2 over plain
    /// TCP, prior knowledge) or `H2` (HTTP/2 over TLS, negotiated by ALPN; needs `scheme: https`). gRPC needs
    /// `H2C` or `H2`.
    #[serde(default, skip_serializing_if = "UpstreamProtocol::is_http1")]
    pub protocol: UpstreamProtocol,
}

/// URL scheme of a private backend.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Scheme {
    #[default]
    Http,
    Https,
}

/// A serverless function.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FunctionBackend {
    /// Invocation URL of the function (`http` or `https`).
    pub url: String,
    /// `Http` forwards the HTTP request; `Event` sends the event JSON of the spec.
    #[serde(default)]
    pub invocation: Invocation,
    /// `Event` only: the largest request body the function takes (default `6Mi`); a larger
    /// one is refused with 413 before the call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(r"^[0-9]+(Ki|Mi|Gi)?$"))]
    pub max_request_size: Option<String>,
    /// `Event` only: the largest response the function may send (default `6Mi`); a larger
    /// one is a 502.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(r"^[0-9]+(Ki|Mi|Gi)?$"))]
    pub max_response_size: Option<String>,
    /// TLS options for an `https` url.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsOptions>,
}

/// How a function is invoked.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum Invocation {
    #[default]
    Http,
    Event,
}

/// A fixed response.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MockBackend {
    /// Status code to answer with (default 200).
    #[serde(default = "default_status")]
    #[schemars(range(min = 100, max = 599))]
    pub status_code: u16,
    /// Response headers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<NameValue>,
    /// Response body, at most 50 KiB.
    #[serde(default)]
    #[schemars(length(max = 51200))]
    pub body: String,
}

fn default_status() -> u16 {
    200
}

/// A read-only SQL API.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DataServiceBackend {
    /// `postgres`, `mysql` (MySQL or MariaDB) or `sqlite`.
    pub driver: SqlDriver,
    /// Where the database is.
    pub connection: SqlConnection,
    /// One SELECT statement; `${name}` marks a bound parameter.
    pub query: String,
    /// Parameters of the query.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parameters: Vec<DataParameter>,
    /// Page sizes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pagination: Option<Pagination>,
    /// Most connections each proxy opens to the database (default 10); a request waits
    /// for a free one until its timeout, then gets a 503.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 200))]
    pub max_connections: Option<u32>,
}

/// SQL driver.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SqlDriver {
    Postgres,
    /// MySQL or MariaDB.
    Mysql,
    Sqlite,
}

/// Database connection: a Secret key holding the URL, or the URL itself.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SqlConnection {
    /// Secret key holding the connection URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretKeyRef>,
    /// Connection URL in clear (e.g. `sqlite://data/shop.db`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

/// A query parameter of a data service.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DataParameter {
    /// Name used as `${name}` in the query.
    pub name: String,
    /// Where the value comes from.
    #[serde(rename = "in", default)]
    pub in_: DataParameterLocation,
    /// Value type.
    #[serde(rename = "type", default)]
    pub type_: DataParameterType,
    /// The request must carry it.
    #[serde(default)]
    pub required: bool,
    /// Value when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
    /// Least value (integer and number parameters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    /// Greatest value (integer and number parameters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    /// Longest value in characters (string parameters; default 1024).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65536))]
    pub max_length: Option<u32>,
    /// The only values allowed, as the request writes them.
    #[serde(rename = "enum", default, skip_serializing_if = "Vec::is_empty")]
    pub enum_: Vec<String>,
}

/// Where a data-service parameter comes from.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum DataParameterLocation {
    #[default]
    Query,
    Path,
    Header,
    /// A field of a JSON object body or of a form body.
    Body,
}

/// Type of a data-service parameter.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum DataParameterType {
    #[default]
    String,
    Number,
    Integer,
    Boolean,
    /// RFC 3339 (`2024-05-01T12:00:00Z`).
    Timestamp,
}

/// Page sizes.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Pagination {
    /// Rows per page when the request does not say.
    #[schemars(range(min = 1, max = 10000))]
    pub default_page_size: u32,
    /// Largest page a request may ask for.
    #[schemars(range(min = 1, max = 10000))]
    pub max_page_size: u32,
}

/// A model-serving endpoint.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ModelBackend {
    /// Inference URL.
    pub url: String,
    /// Secret key holding the service token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_secret_ref: Option<SecretKeyRef>,
    /// Raw, KServeV2 or OpenAI.
    #[serde(default)]
    pub protocol: ModelProtocol,
    /// Longest wait between two chunks of a streamed response once it has started
    /// (default `60s`); the `timeout` of the backend (default `5m` for this kind) runs to
    /// the first byte.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(r"^([0-9]+(ms|s|m|h))+$"))]
    pub idle_timeout: Option<String>,
    /// TLS options for an `https` url.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsOptions>,
}

/// Inference protocol.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum ModelProtocol {
    #[default]
    Raw,
    KServeV2,
    OpenAI,
}

/// Publish requests as CloudEvents.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{"rule": "has(self.nats) != has(self.http)", "message": "set either nats or http"}]))]
pub struct EventBusBackend {
    /// NATS JetStream subject.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nats: Option<NatsSink>,
    /// HTTP CloudEvents sink.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpSink>,
    /// CloudEvents `source`.
    pub source: String,
    /// CloudEvents `type`.
    #[serde(rename = "type")]
    pub type_: String,
}

/// NATS JetStream target.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NatsSink {
    /// Server URL (`nats://host:4222`; several comma-separated). No credentials in it:
    /// use `credentialsSecretRef`.
    #[schemars(length(min = 1, max = 2048))]
    pub url: String,
    /// Subject to publish on (no wildcards); a JetStream stream must take it.
    #[schemars(length(min = 1, max = 255))]
    pub subject: String,
    /// A Secret with key `token`, or keys `username` and `password`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret_ref: Option<SecretRef>,
}

/// HTTP CloudEvents sink.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct HttpSink {
    /// Sink URL.
    pub url: String,
    /// Structured (JSON envelope) or Binary (ce-* headers).
    #[serde(default)]
    pub mode: CloudEventMode,
    /// TLS options for an `https` url.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsOptions>,
}

/// CloudEvents HTTP content mode.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum CloudEventMode {
    #[default]
    Structured,
    Binary,
}

/// Service registry discovery.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[schemars(extend("x-kubernetes-validations" = [{"rule": "has(self.nacos) != has(self.zookeeper)", "message": "set either nacos or zookeeper"}]))]
pub struct RegistryBackend {
    /// Nacos service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nacos: Option<NacosSource>,
    /// ZooKeeper path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zookeeper: Option<ZooKeeperSource>,
    /// How `https` instances are verified (instances say https: Nacos metadata
    /// `secure: "true"`, a SpringCloud `sslPort`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsOptions>,
    /// HTTP version towards the instances: `HTTP1` (default), or HTTP/2 with `H2C` or
    /// `H2` (the same for a registry: plain instances get HTTP/2 with prior knowledge,
    /// `https` ones negotiate it by ALPN). gRPC needs HTTP/2.
    #[serde(default, skip_serializing_if = "UpstreamProtocol::is_http1")]
    pub protocol: UpstreamProtocol,
}

/// A Nacos service, watched over the Nacos 2 gRPC protocol (pushes) with a periodic full
/// re-sync as a safety net.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NacosSource {
    /// `host:port` of the Nacos server's HTTP port, or several comma-separated; the gRPC
    /// port is the HTTP port + 1000, as in Nacos.
    #[schemars(length(min = 1, max = 1024))]
    pub server_addr: String,
    /// Nacos namespace (default `public`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 128))]
    pub namespace: Option<String>,
    /// Group (default `DEFAULT_GROUP`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 128))]
    pub group: Option<String>,
    /// Service name.
    #[schemars(length(min = 1, max = 512))]
    pub service: String,
    /// Clusters to use; empty means all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub clusters: Vec<String>,
    /// A Secret with keys `username` and `password`: the controller logs in and refreshes
    /// the access token before it expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret_ref: Option<SecretRef>,
    /// Time between full re-syncs besides the pushes (default `30s`, at least `1s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(r"^([0-9]+(ms|s|m|h))+$"))]
    pub resync_interval: Option<String>,
}

/// A ZooKeeper registration path, watched (persistent recursive watches on 3.6+, child
/// watches otherwise).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ZooKeeperSource {
    /// `host:port` of each server.
    #[schemars(length(min = 1, max = 16))]
    pub servers: Vec<String>,
    /// A chroot every path is under (`/apps`); none by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 512))]
    pub chroot: Option<String>,
    /// Path whose children are instances (SpringCloud, Plain) or the interface node whose
    /// `providers` children are (Dubbo).
    #[schemars(length(min = 1, max = 1024))]
    pub path: String,
    /// How instances are written: SpringCloud, Dubbo or Plain.
    #[serde(default)]
    pub layout: ZooKeeperLayout,
    /// A Secret with keys `username` and `password` for digest authentication.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret_ref: Option<SecretRef>,
}

/// ZooKeeper registration layout.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, JsonSchema)]
pub enum ZooKeeperLayout {
    #[default]
    SpringCloud,
    Dubbo,
    Plain,
}

/// Another gateway (multi-level): requests are forwarded with `X-Ca-Hops` one higher,
/// optionally signed as an app.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{"rule": "has(self.url) != has(self.service)", "message": "set either url or service"}]))]
pub struct GatewayBackend {
    /// Remote gateway base URL (`https://gw-east.example.com`, or `http://`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 2048))]
    pub url: Option<String>,
    /// A gateway in this cluster, by its Service (endpoints from EndpointSlices).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<ServiceRef>,
    /// An app (a Secret labelled `switchyard.dev/app` in this namespace) whose `appKey`
    /// and `appSecret` sign every forwarded request (the Signature scheme).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub app: Option<String>,
    /// Gateway hops a request may have made before this one (default 5): a request
    /// arriving with `X-Ca-Hops` of `maxHops` or more is refused with 508.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 32))]
    pub max_hops: Option<u32>,
    /// TLS options for an `https` url. With a `service`, setting `tls` dials its
    /// endpoints over TLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsOptions>,
}

/// Load-balancing policy.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LoadBalancing {
    /// RoundRobin (default), LeastRequest or ConsistentHash.
    #[serde(default)]
    pub policy: LoadBalancingPolicy,
    /// What ConsistentHash hashes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash_on: Option<HashOn>,
}

/// Load-balancing policy name.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum LoadBalancingPolicy {
    #[default]
    RoundRobin,
    LeastRequest,
    ConsistentHash,
}

/// Hash key of ConsistentHash.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HashOn {
    /// Hash this request header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
    /// Hash this cookie.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cookie: Option<String>,
    /// Hash the client address.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub source_ip: bool,
}

/// Health checking.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct HealthCheck {
    /// Periodic probes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active: Option<ActiveHealthCheck>,
    /// Outlier detection from live traffic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passive: Option<PassiveHealthCheck>,
}

/// Periodic probe.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ActiveHealthCheck {
    /// HTTP path to GET (`/` followed by visible ASCII: no spaces or control
    /// characters); without it a TCP connect is the check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = crate::MAX_WIRE_PATH), pattern(crate::WIRE_PATH_PATTERN))]
    pub path: Option<String>,
    /// Time between probes (default `5s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(r"^([0-9]+(ms|s|m|h))+$"))]
    pub interval: Option<String>,
    /// Successes before an endpoint is healthy again (default 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100))]
    pub healthy_threshold: Option<u32>,
    /// Failures before an endpoint is unhealthy (default 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100))]
    pub unhealthy_threshold: Option<u32>,
}

/// Outlier detection.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PassiveHealthCheck {
    /// Consecutive failures that eject an endpoint (default 5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000))]
    pub consecutive_failures: Option<u32>,
    /// Base ejection time (default `30s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(r"^([0-9]+(ms|s|m|h))+$"))]
    pub ejection_time: Option<String>,
}

/// Load shedding thresholds, per proxy process (Envoy's circuit breaker `max_requests`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CircuitBreaker {
    /// Requests in flight to this backend from one proxy (waiting for its response
    /// headers) above which new ones are refused at once with 503 `D503OL` instead of
    /// queueing (default 1024).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000000))]
    pub max_requests: Option<u32>,
}

/// Status of a BackendService.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = crate::formats::kubernetes_formats)]
pub struct BackendServiceStatus {
    /// The metadata.generation the controller last processed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Current conditions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// Backend kind that is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Number of known endpoints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoints: Option<u32>,
}
