//! What the controller's bus monitors see: the input `eventBus` backends on NATS compile
//! their `Ready` condition from.
//!
//! Watching a NATS connection is I/O (the monitors live in the controller, the client in
//! `switchyard-nats`); compile only reads [`BusState`], as it reads a registry's
//! `Discovered`, so `Ready` follows the connection through the one compile → status path.

use crate::snapshot::NatsTarget;

/// One NATS target and subject: what a monitor watches. BackendServices naming the same
/// one share a monitor.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BusSource {
    pub target: NatsTarget,
    pub subject: String,
}

/// The latest state of one [`BusSource`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum BusState {
    /// Not connected yet (the first attempt is under way).
    #[default]
    Connecting,
    /// Connected, and JetStream stream `stream` takes the subject.
    Ready { server: String, stream: String },
    /// Connected, but no JetStream stream takes the subject: every publish would be refused.
    NoStream { server: String },
    /// The servers do not answer, or refuse the login; `error` holds no credentials.
    Unreachable { error: String },
}

/// Each BackendService's monitor source (for the controller).
pub fn bus_source(backend: &switchyard_api::BackendService, resources: &crate::Resources) -> Option<BusSource> {
    crate::compile::bus_source(backend, resources)
}
