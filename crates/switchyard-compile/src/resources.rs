use std::collections::BTreeMap;

use switchyard_api::{ApiRoute, BackendService, DnsRecord, VpcAuthorization};

use crate::ObjectRef;

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
}

/// An app: credentials for AppCode and Signature authentication.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppSecret {
    pub namespace: String,
    pub name: String,
    pub app_key: String,
    pub app_secret: String,
    pub app_code: String,
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
    /// Port number per Service port (keyed by the Service port number).
    pub ports: BTreeMap<u16, u16>,
}
