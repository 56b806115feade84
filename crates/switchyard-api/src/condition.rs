use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A status condition in the `metav1.Condition` shape.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// Condition type: Accepted, ResolvedRefs, Programmed, Ready or Connected.
    #[serde(rename = "type")]
    pub type_: String,
    /// True, False or Unknown.
    pub status: String,
    /// One CamelCase word naming the cause.
    pub reason: String,
    /// Human readable detail.
    #[serde(default)]
    pub message: String,
    /// When the status last changed (RFC 3339).
    pub last_transition_time: String,
    /// The metadata.generation this condition was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// Condition type names, so no code spells them twice.
pub mod condition_type {
    pub const ACCEPTED: &str = "Accepted";
    pub const RESOLVED_REFS: &str = "ResolvedRefs";
    pub const PROGRAMMED: &str = "Programmed";
    pub const READY: &str = "Ready";
    pub const CONNECTED: &str = "Connected";
}
