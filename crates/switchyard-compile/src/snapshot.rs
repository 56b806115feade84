//! The routing snapshot: what the controller publishes and every proxy serves from.
//! Plain data (serde), versioned, self-contained: a proxy needs nothing else.

pub mod delta;

use serde::{Deserialize, Serialize};

/// One complete, consistent routing configuration.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Set by the publisher; a proxy asks for anything newer than the version it has.
    pub version: u64,
    /// Programmed routes, oldest first.
    pub routes: Vec<Route>,
    /// Backends referenced by routes (by index).
    pub backends: Vec<Backend>,
    /// Apps for AppCode / Signature auth.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub apps: Vec<App>,
    /// Accepted DnsRecords.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns_records: Vec<DnsEntry>,
    /// Accepted VpcAuthorizations.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub vpc_authorizations: Vec<VpcGrant>,
    /// Which namespace owns each host a route names (hosts per namespace); empty when
    /// hosts are shared. A request for an owned host matches only its owner's routes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub host_owners: Vec<HostOwner>,
    /// Accepted server certificates for the HTTPS listener, by namespace and name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub certificates: Vec<ServerCertificate>,
}

/// A server certificate the HTTPS listener serves for the names it covers. The private
/// key travels in the snapshot (behind the snapshot channel's token and TLS); Debug
/// never shows it and `/config_dump` redacts it by its field name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerCertificate {
    /// `namespace/name` of the Secret.
    pub id: String,
    /// The DNS names of the leaf's subjectAltName it is served for, lowercase: exact names
    /// and `*.suffix` wildcards (one label).
    pub names: Vec<String>,
    /// The chain as PEM, leaf first.
    pub certificate_chain: String,
    /// PEM: PKCS#1 RSA, SEC1 EC or PKCS#8.
    pub private_key: SecretText,
    /// The leaf's notAfter, seconds since the epoch (for `/config_dump` and rotation checks).
    pub not_after: i64,
}

/// A host (exact, or `*.suffix`) and the namespace it belongs to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostOwner {
    pub host: String,
    pub namespace: String,
}

impl Snapshot {
    /// Same routing content, whatever the version numbers say.
    pub fn same_content(&self, other: &Snapshot) -> bool {
        self.routes == other.routes
            && self.backends == other.backends
            && self.apps == other.apps
            && self.dns_records == other.dns_records
            && self.vpc_authorizations == other.vpc_authorizations
            && self.host_owners == other.host_owners
            && self.certificates == other.certificates
    }
}

/// A programmed ApiRoute.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Route {
    /// `namespace/name`.
    pub id: String,
    /// Lowercase exact hosts or `*.suffix` patterns; empty matches any host.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    pub path: String,
    pub path_type: PathKind,
    /// Uppercase methods; empty matches any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub methods: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<KeyMatch>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub query_params: Vec<KeyMatch>,
    /// One or more backends with weights (all weights > 0 here).
    pub backends: Vec<RouteBackend>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rewrite_path: Option<String>,
    /// Constant header parameters (the `host` parameter is folded into each backend's host rule).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub add_headers: Vec<(String, String)>,
    /// Constant query parameters.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub add_query: Vec<(String, String)>,
    pub auth: Auth,
    /// Total budget until response headers, retries included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Route-level retry policy; overrides the backend's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<RetryPolicy>,
    pub body_limit: u64,
    /// Which client connections the route serves.
    #[serde(default, skip_serializing_if = "Protocols::is_both")]
    pub protocols: Protocols,
}

/// The client connections a route serves (`protocols` of the ApiRoute).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Protocols {
    #[default]
    Both,
    /// Plain HTTP only: an HTTPS request is refused (421).
    HttpOnly,
    /// HTTPS only: a plain HTTP request is redirected to the https URL (308).
    HttpsOnly,
}

impl Protocols {
    pub fn is_both(&self) -> bool {
        *self == Self::Both
    }
}

/// How a route's path is compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PathKind {
    Exact,
    Prefix,
    Template,
}

/// Header or query matcher: exact value, or presence when `value` is None.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct KeyMatch {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

/// One weighted backend of a route, with the Host header rule for that pair.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RouteBackend {
    /// Index into [`Snapshot::backends`].
    pub backend: usize,
    pub weight: u32,
    pub host: HostRule,
}

/// Which Host header the backend request carries (the spec's priority list, resolved).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "rule", content = "value")]
pub enum HostRule {
    /// A fixed value (route hostOverride, backend hostHeader, authorization hostName,
    /// or the route's `host` header parameter).
    Fixed(String),
    /// The client's own Host header (`passHostHeader: true`).
    Client,
    /// The host (and port) of the endpoint dialled.
    Endpoint,
}

/// Route authentication.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum Auth {
    #[default]
    Anonymous,
    /// Allowed apps by name (same namespace as the route).
    AppCode {
        apps: Vec<String>,
    },
    Signature {
        apps: Vec<String>,
    },
    /// The route names an app that is missing or cannot authenticate this way: it stays
    /// programmed and answers 503 (fail closed), so a broader route never serves its paths.
    Unresolved {
        why: String,
    },
}

/// A retry policy.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetryPolicy {
    pub attempts: u32,
    pub on_connect_failure: bool,
    pub on_gateway_error: bool,
    pub on_reset: bool,
    /// Retries after the request may have reached the upstream (a reset, a 502/503/504)
    /// also for methods that are not idempotent (POST, PATCH).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub non_idempotent: bool,
}

/// An accepted BackendService.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Backend {
    /// `namespace/name`.
    pub id: String,
    pub kind: BackendKind,
    /// Per-attempt budget.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    #[serde(default)]
    pub retries: RetryPolicy,
    /// How an endpoint is picked.
    #[serde(default)]
    pub load_balancer: LoadBalancer,
    /// For `vpc` backends: the only addresses and ports its dials may reach (and, for an
    /// address target, the egress exception). Only this backend's dials get it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dial_grant: Option<DialGrant>,
    /// Passive outlier detection, when configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outlier: Option<OutlierPolicy>,
    /// Active health checks, when configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_health: Option<ActiveHealthPolicy>,
    /// How `https` endpoints are verified; None for a backend without any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsTrust>,
    /// The HTTP version spoken to the endpoints (`http`, `vpc` and `registry` kinds).
    #[serde(default, skip_serializing_if = "UpstreamVersion::is_http1")]
    pub upstream_version: UpstreamVersion,
    /// Requests one proxy keeps in flight to this backend (until response headers)
    /// before it sheds new ones with 503 `D503OL` (`circuitBreaker.maxRequests`).
    #[serde(default = "default_max_requests", skip_serializing_if = "is_default_max_requests")]
    pub max_requests: u32,
}

/// `circuitBreaker.maxRequests` when not set (Envoy's default too).
pub const DEFAULT_MAX_REQUESTS: u32 = 1024;

fn default_max_requests() -> u32 {
    DEFAULT_MAX_REQUESTS
}

fn is_default_max_requests(n: &u32) -> bool {
    *n == DEFAULT_MAX_REQUESTS
}

/// HTTP version towards a backend's endpoints. HTTP/2 is spoken with prior knowledge to
/// `http` endpoints and negotiated by ALPN `h2` with `https` ones.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum UpstreamVersion {
    #[default]
    Http1,
    Http2,
}

impl UpstreamVersion {
    pub fn is_http1(&self) -> bool {
        *self == Self::Http1
    }
}

/// What verifies an upstream's certificate.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TlsTrust {
    /// PEM CA certificates trusted instead of the system roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_certificates: Option<String>,
    /// No verification at all (testing only).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub insecure_skip_verify: bool,
}

/// Periodic probes of every endpoint: a TCP connect, or `GET path` answering below 500.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActiveHealthPolicy {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    pub interval_ms: u64,
    /// Passing probes in a row before an unhealthy endpoint is back.
    pub healthy_threshold: u32,
    /// Failing probes in a row before an endpoint leaves rotation.
    pub unhealthy_threshold: u32,
}

/// Eject an endpoint after consecutive failures (connect failures, timeouts, 5xx), for a
/// time that doubles with each ejection; the last healthy endpoint is never ejected.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutlierPolicy {
    pub consecutive_failures: u32,
    pub ejection_ms: u64,
}

/// What a `vpc` backend may dial: only these addresses, on these ports, whatever a name
/// resolves to at dial time (so a host name rebound elsewhere is refused).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct DialGrant {
    /// `namespace/name` of the VpcAuthorization (for error messages).
    pub authorization: String,
    pub addresses: Vec<std::net::IpAddr>,
    pub ports: Vec<u16>,
    /// The authorization names the address itself: it may be dialled even where the
    /// egress policy refuses it (link-local, loopback in Kubernetes).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub bypass_egress: bool,
}

impl Backend {
    /// A backend of `kind` with the default policy: no timeout override, no retries,
    /// round robin, no health checks, no egress exception.
    pub fn with_defaults(id: impl Into<String>, kind: BackendKind) -> Self {
        Self {
            id: id.into(),
            kind,
            timeout_ms: None,
            retries: RetryPolicy::default(),
            load_balancer: LoadBalancer::default(),
            dial_grant: None,
            outlier: None,
            active_health: None,
            tls: None,
            upstream_version: UpstreamVersion::Http1,
            max_requests: DEFAULT_MAX_REQUESTS,
        }
    }
}

/// Endpoint selection policy.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "policy")]
pub enum LoadBalancer {
    #[default]
    RoundRobin,
    /// Power of two choices on in-flight requests.
    LeastRequest,
    /// Maglev consistent hashing on a request key.
    ConsistentHash { key: HashKey },
}

/// What a consistent hash is computed from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "from", content = "name")]
pub enum HashKey {
    /// A request header (lowercase name).
    Header(String),
    /// A cookie.
    Cookie(String),
    /// The client's IP address.
    SourceIp,
}

/// What serves the request. A closed set: each kind has one module in the proxy.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum BackendKind {
    /// HTTP upstreams.
    Http { endpoints: Vec<Endpoint> },
    /// A fixed response.
    Mock { status: u16, headers: Vec<(String, String)>, body: String },
    /// Another gateway: HTTP endpoints served as `Http` is, plus hop counting (a
    /// request arriving with `X-Ca-Hops` >= `max_hops` is refused with 508; others go out
    /// with it one higher) and, with `signing`, the Signature headers of an app.
    Gateway {
        endpoints: Vec<Endpoint>,
        max_hops: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        signing: Option<GatewaySigning>,
    },
    /// A serverless function at one URL: `Http` invocation is served as `Http` is; `Event`
    /// sends the event JSON of the spec and turns the function's response JSON into the
    /// response.
    Function { endpoints: Vec<Endpoint>, invocation: FunctionInvocation },
    /// A model-serving endpoint: served as `Http` is, with the token replacing any client
    /// `Authorization`, the protocol's paths (and KServe v2 requests) checked, responses
    /// streamed with an idle timeout between chunks, and OpenAI token usage counted.
    Model {
        endpoints: Vec<Endpoint>,
        protocol: ModelProtocol,
        /// The bare token sent as `Authorization`; redacted in `/config_dump` (by its name)
        /// and in Debug.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        token: Option<SecretText>,
        /// Longest wait between two chunks of the response body.
        idle_timeout_ms: u64,
    },
    /// Each request published as a CloudEvent (`source`, `type` from the resource); the
    /// client gets 202 with the event id once the bus acknowledged it.
    EventBus { sink: EventSink, source: String, event_type: String },
    /// A read-only SQL API: one compiled SELECT, paged (see docs/data-services.md).
    DataService(DataService),
    /// A kind this build does not serve yet; answers a clear error.
    Unimplemented { kind: String },
    /// An accepted backend whose references do not resolve (a missing authorization,
    /// an unauthorized port, an unknown Service): routes to it stay programmed and
    /// their requests get a 503 that says why.
    Unavailable { reason: String, message: String },
}

impl BackendKind {
    /// The upstream addresses of the kinds that dial any (none for the others).
    pub fn endpoints(&self) -> &[Endpoint] {
        match self {
            Self::Http { endpoints }
            | Self::Gateway { endpoints, .. }
            | Self::Function { endpoints, .. }
            | Self::Model { endpoints, .. }
            | Self::EventBus { sink: EventSink::Http { endpoints, .. }, .. } => endpoints,
            Self::EventBus { sink: EventSink::Nats { .. }, .. } => &[],
            Self::Mock { .. } | Self::DataService(_) | Self::Unimplemented { .. } | Self::Unavailable { .. } => &[],
        }
    }
}

/// How a function is invoked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "invocation")]
pub enum FunctionInvocation {
    /// The HTTP request is forwarded as the `http` kind forwards it.
    Http,
    /// The request becomes the event JSON; bodies over the limits are refused (413 before
    /// the call, 502 for the response).
    Event { max_request_bytes: u64, max_response_bytes: u64 },
}

/// The inference protocol of a `model` backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ModelProtocol {
    /// Forwarded as it is.
    Raw,
    /// `/v2/models/{name}`, `/v2/models/{name}/ready`, `/v2/models/{name}/infer`; infer
    /// requests are checked.
    KServeV2,
    /// `/v1/chat/completions`, `/v1/completions`, `/v1/embeddings`, `/v1/models`; token
    /// usage is counted.
    OpenAI,
}

/// Where an `eventBus` backend publishes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "bus")]
pub enum EventSink {
    /// A NATS JetStream subject; the JetStream publish ack is the bus's acknowledgement.
    Nats { target: NatsTarget, subject: String },
    /// A CloudEvents HTTP sink; a 2xx is its acknowledgement.
    Http { endpoints: Vec<Endpoint>, mode: CloudEventsMode },
}

/// CloudEvents HTTP content mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CloudEventsMode {
    /// The whole event as `application/cloudevents+json`.
    Structured,
    /// `ce-*` headers, the data as the body.
    Binary,
}

/// A NATS connection: its servers and credentials. One connection per distinct target.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct NatsTarget {
    /// `nats://host:port` (or `tls://host:port`), as given, in order.
    pub servers: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials: Option<NatsCredentials>,
}

/// How the gateway logs in to NATS.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum NatsCredentials {
    Token { token: SecretText },
    UserPassword { username: String, password: SecretText },
}

/// A secret value that travels in the snapshot (behind the snapshot channel's token and
/// TLS): Debug never shows it, and `/config_dump` redacts the field that holds it by its
/// name.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SecretText(pub String);

impl std::fmt::Debug for SecretText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// The app a `gateway` backend signs its requests as. The secret travels in the
/// snapshot (behind the snapshot channel's token and TLS) so a rotated app rebuilds the
/// backend; `/config_dump` redacts it by its field name.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatewaySigning {
    /// `namespace/name` of the app (for messages and logs).
    pub app: String,
    /// Sent as `X-Ca-Key`.
    pub app_key: String,
    /// The HMAC key; never logged.
    pub app_secret: String,
}

impl std::fmt::Debug for GatewaySigning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewaySigning").field("app", &self.app).field("app_key", &self.app_key).finish_non_exhaustive()
    }
}

/// One upstream address.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    /// `http` or `https`.
    pub scheme: String,
    /// `host:port` as dialled (port always present).
    pub authority: String,
    /// Host header value for [`HostRule::Endpoint`] (port only when not the default).
    pub host: String,
    /// Path prefix from the URL (`/api`), empty for none.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub base_path: String,
    /// For `https`: the name sent as SNI and verified against the certificate (a DNS
    /// name or an IP address).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_server_name: Option<String>,
    /// Relative share of traffic (registry instance weights); 1 unless a registry says
    /// otherwise.
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub weight: u32,
}

fn one() -> u32 {
    1
}

fn is_one(weight: &u32) -> bool {
    *weight == 1
}

/// An app's credentials. Debug shows the key, never the secret or the code.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct App {
    pub namespace: String,
    pub name: String,
    pub app_key: String,
    pub app_secret: String,
    pub app_code: String,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("namespace", &self.namespace)
            .field("name", &self.name)
            .field("app_key", &self.app_key)
            .field("app_secret", &"<redacted>")
            .field("app_code", &"<redacted>")
            .finish()
    }
}

/// A weighted internal DNS name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsEntry {
    pub domain: String,
    pub records: Vec<(std::net::IpAddr, u32)>,
}

/// What one VpcAuthorization lets the gateway dial.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VpcGrant {
    /// `namespace/name`.
    pub id: String,
    pub target: VpcGrantTarget,
    pub ports: Vec<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_name: Option<String>,
    /// A host target's addresses: its DnsRecord's, else what the name resolved to at the
    /// last connectivity test. The only addresses its backends dial; empty until known.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<std::net::IpAddr>,
}

/// The authorized resource.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "value")]
pub enum VpcGrantTarget {
    Address(std::net::IpAddr),
    Service(String),
    Host(String),
}

/// A `dataService` backend as compile checked it. The SQL text holds only the driver's
/// bind markers (`$1` / `?`), never a request value.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DataService {
    pub driver: DataDriver,
    pub connection: DataConnection,
    /// The SELECT, then `LIMIT <marker> OFFSET <marker>` (bound last).
    pub page_sql: String,
    /// `SELECT COUNT(*) FROM (<the SELECT>) AS switchyard_count`.
    pub count_sql: String,
    /// `page_sql` returns the count of all rows too, as its last column
    /// `switchyard_total` (PostgreSQL: `(<count_sql>)`, a scalar subquery; MySQL and
    /// SQLite: `COUNT(*) OVER ()`): `count_sql` runs only for a page past the end, which
    /// has no row to carry it.
    #[serde(default)]
    pub page_counts: bool,
    /// For each bind marker of the SELECT, in order, the index of its parameter.
    pub binds: Vec<usize>,
    pub parameters: Vec<DataParam>,
    pub default_page_size: u32,
    pub max_page_size: u32,
    /// Pool size per proxy.
    pub max_connections: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum DataDriver {
    Postgres,
    Mysql,
    Sqlite,
}

/// Where the database is. A server URL may hold credentials: it travels as a secret
/// (redacted in `/config_dump` by its field name, never in a message).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum DataConnection {
    Url {
        url_secret: SecretText,
    },
    /// An SQLite file (absolute, or relative to the proxy's working directory).
    SqliteFile {
        path: String,
    },
}

/// One parameter of a data service.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DataParam {
    pub name: String,
    pub location: DataParamLocation,
    pub kind: DataParamType,
    pub required: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    /// Longest string value, in characters.
    pub max_length: u32,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DataParamLocation {
    Query,
    Path,
    Header,
    Body,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DataParamType {
    String,
    Integer,
    Number,
    Boolean,
    Timestamp,
}
