//! Custom resource types of Switchyard, group `switchyard.dev`, version `v1alpha1`.
//!
//! These types are the public contract with operators: field names match the product
//! spec (docs/resources.md is the reference), every field carries a doc comment (it
//! becomes the OpenAPI description that `kubectl explain` prints), and whatever
//! validation can live in the schema lives there (enums, ranges, patterns, CEL rules).
//! Semantic checks that need other resources happen in `switchyard-compile`.
#![forbid(unsafe_code)]

mod api_route;
mod backend_service;
mod common;
mod condition;
mod crds;
mod dns_record;
mod formats;
mod vpc_authorization;
mod wire;

pub use api_route::*;
pub use backend_service::*;
pub use common::*;
pub use condition::*;
pub use crds::{all_crds, crd_file_name, render_crd};
pub use dns_record::*;
pub use formats::KUBERNETES_INTEGER_FORMATS;
pub use vpc_authorization::*;
pub use wire::*;

/// API group of every Switchyard resource.
pub const GROUP: &str = "switchyard.dev";
/// API version of every Switchyard resource.
pub const VERSION: &str = "v1alpha1";
/// `apiVersion` as written in manifests.
pub const API_VERSION: &str = "switchyard.dev/v1alpha1";
/// Label that marks a Secret as an app (credentials for AppCode / Signature auth).
pub const APP_LABEL: &str = "switchyard.dev/app";
/// Label that marks a `kubernetes.io/tls` Secret as a server certificate the proxies
/// serve on `--https-listen` (picked by SNI from its SAN names).
pub const CERTIFICATE_LABEL: &str = "switchyard.dev/certificate";
/// Annotation whose change asks the controller for a connectivity test now.
pub const TEST_CONNECTIVITY_ANNOTATION: &str = "switchyard.dev/test-connectivity";
