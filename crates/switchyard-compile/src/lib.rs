//! The pure compile step: the full set of resources in, one routing [`Snapshot`] and one
//! [`ResourceStatus`] per resource out. No I/O, no clock, no randomness: the same input
//! always gives the same output, so Kubernetes and standalone share it and it is tested
//! exhaustively (see `tests/golden`).
#![forbid(unsafe_code)]

pub mod bus;
pub mod calendar;
mod compile;
pub mod database;
pub mod discovered;
pub mod manifest;
pub mod path_template;
pub mod request_path;
mod resources;
pub mod snapshot;
mod status;
mod strict;
pub mod units;
pub mod validate;

/// Entry points for `fuzz/` into code that is otherwise private to this crate.
#[cfg(feature = "fuzzing")]
pub use compile::fuzz_compile_query;
pub use compile::{Compiled, TLS_SECRET_TYPE, compile, describe_registry, registry_source};
pub use discovered::{
    Credentials, Discovered, Instance, InstanceScheme, NacosWatch, RegistrySource, SecretData, Skipped, SyncState, ZooKeeperWatch,
};
pub use resources::{
    AppSecret, CertificateSecret, CompileOptions, Connectivity, HostOwnership, InvalidObject, Resources, ServiceEndpoint, ServicePortTarget,
};
pub use status::{ConditionSpec, ObjectRef, ResourceKind, ResourceStatus, reason};
