use std::collections::BTreeMap;

use switchyard_api::{ApiRoute, BackendService, DnsRecord, VpcAuthorization};

use crate::ObjectRef;
use crate::discovered::{Discovered, SecretData};

/// Everything the compile step reads. Sources (a folder of YAML, Kubernetes watches)
/// fill it; compile never looks anywhere else.
#[derive(Clone, Debug, Default)]
pub struct Resources {
    pub api_routes: Vec<ApiRoute>,
    pub backend_services: Vec<BackendService>,
    pub vpc_authorizations: Vec<VpcAuthorization>,
    pub dns_records: Vec<DnsRecord>,
    /// Secrets labelled `switchyard.dev/app`, already decoded.
    pub apps: Vec<AppSecret>,
    /// Objects a source could not decode; each gets `Accepted=False`.
    pub invalid: Vec<InvalidObject>,
    /// Ready endpoints of Kubernetes Services, keyed by (namespace, name).
    pub service_endpoints: BTreeMap<(String, String), Vec<ServiceEndpoint>>,
    /// The latest connectivity test of each VpcAuthorization, keyed by (namespace, name).
    /// Tests run outside compile (they are I/O); compile turns them into `Connected`.
    pub connectivity: BTreeMap<(String, String), Connectivity>,
    /// What discovery last saw for each `registry` BackendService, keyed by the
    /// BackendService's (namespace, name). Watches run outside compile (they are I/O).
    pub registry: BTreeMap<(String, String), Discovered>,
    /// What the bus monitors last saw for each `eventBus` BackendService on NATS, keyed by
    /// the BackendService's (namespace, name). Monitors run outside compile (they are I/O).
    pub buses: BTreeMap<(String, String), crate::bus::BusState>,
    /// What the database monitors last saw for each `dataService` BackendService they
    /// ping, keyed by the BackendService's (namespace, name). Monitors run outside compile
    /// (they are I/O).
    pub databases: BTreeMap<(String, String), crate::database::DatabaseState>,
    /// Secrets that resources reference by name (credentials), keyed by (namespace, name).
    /// Sources fill in only referenced Secrets; compile checks the references. Registry
    /// credentials stay in the controller (its watchers use them); a model token and NATS
    /// credentials travel in the snapshot to the proxies that use them (behind the snapshot
    /// channel's token and TLS; redacted in `/config_dump`).
    pub secrets: BTreeMap<(String, String), SecretData>,
    /// Secrets labelled `switchyard.dev/certificate: "true"`: server certificates for the
    /// HTTPS listener, checked by compile (parse, key match, validity period).
    pub certificates: Vec<CertificateSecret>,
    /// The wall clock a certificate's validity is judged against. Compile reads no clock
    /// itself: the source sets it when it gathers the input (None: validity unchecked).
    pub clock: Option<std::time::SystemTime>,
    /// Gateway-wide choices that change what compile accepts (command-line flags).
    pub options: CompileOptions,
    /// The folder a standalone configuration is read from: a `dataService`'s relative
    /// `sqlite://PATH` is relative to it (None in Kubernetes mode).
    pub config_dir: Option<String>,
}

/// Gateway-wide settings compile reads; set from the command line, the same on every
/// controller replica.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CompileOptions {
    /// Whether hosts belong to the namespace that named them first.
    pub host_ownership: HostOwnership,
    /// Lets a VpcAuthorization grant a link-local address (cloud metadata and the like).
    pub allow_link_local_grants: bool,
}

/// Who may serve a host.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum HostOwnership {
    /// Any namespace's routes may name any host (one tenant: standalone's default).
    #[default]
    Shared,
    /// A host belongs to the namespace of the oldest accepted ApiRoute naming it
    /// (Kubernetes mode's default).
    PerNamespace,
}

/// How a connectivity test went.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Connectivity {
    pub connected: bool,
    /// Latency on success, the exact error otherwise.
    pub message: String,
    /// The `switchyard.dev/test-connectivity` annotation's value when the test started:
    /// the test-now request this result answers (None without the annotation).
    pub requested: Option<String>,
    /// For a host target: the addresses the name resolved to for this test. They become
    /// the only addresses the proxy dials for it (a name later rebound elsewhere is
    /// refused until a test verifies the new addresses).
    pub addresses: Vec<std::net::IpAddr>,
}

/// An app: credentials for AppCode and Signature authentication. Debug shows the key,
/// never the secret or the code.
#[derive(Clone, PartialEq, Eq)]
pub struct AppSecret {
    pub namespace: String,
    pub name: String,
    pub app_key: String,
    pub app_secret: String,
    pub app_code: String,
}

impl std::fmt::Debug for AppSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppSecret")
            .field("namespace", &self.namespace)
            .field("name", &self.name)
            .field("app_key", &self.app_key)
            .field("app_secret", &"<redacted>")
            .field("app_code", &"<redacted>")
            .finish()
    }
}

/// A Secret labelled as a server certificate, as the source found it: its type and the
/// PEM text of `tls.crt` and `tls.key` (None when the key is missing or not UTF-8).
/// Debug never shows the private key.
#[derive(Clone, PartialEq, Eq)]
pub struct CertificateSecret {
    pub namespace: String,
    pub name: String,
    /// `type:` of the Secret (`kubernetes.io/tls` is required; standalone manifests may
    /// leave it out).
    pub secret_type: Option<String>,
    pub certificate_chain: Option<String>,
    pub private_key: Option<String>,
}

impl std::fmt::Debug for CertificateSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertificateSecret")
            .field("namespace", &self.namespace)
            .field("name", &self.name)
            .field("secret_type", &self.secret_type)
            .field("certificate_chain", &self.certificate_chain.as_ref().map(String::len))
            .field("private_key", &"<redacted>")
            .finish()
    }
}

/// An object that could not be decoded into its resource type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidObject {
    pub object: ObjectRef,
    pub generation: Option<i64>,
    /// `UnknownKind` or `InvalidSpec`.
    pub reason: &'static str,
    pub message: String,
}

/// One ready endpoint of a Kubernetes Service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceEndpoint {
    pub address: std::net::IpAddr,
    /// Where each Service port lands on this endpoint.
    pub ports: Vec<ServicePortTarget>,
}

/// A Service port (by number and name) and the endpoint port it maps to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServicePortTarget {
    pub port: u16,
    /// Empty for the single unnamed port of a Service.
    pub name: String,
    pub target: u16,
}

impl ServiceEndpoint {
    /// The endpoint port for a Service port given by number or by name.
    pub fn target(&self, port: Option<u16>, name: Option<&str>) -> Option<u16> {
        self.ports.iter().find(|p| port.is_some_and(|n| n == p.port) || name.is_some_and(|n| n == p.name)).map(|p| p.target)
    }
}
