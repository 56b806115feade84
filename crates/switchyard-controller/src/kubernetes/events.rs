//! Kubernetes Events for condition transitions, so `kubectl describe` shows when and why
//! a resource became (un)accepted, programmed or ready. Leader only, like status.

use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};

use crate::status::Change;

pub struct Events {
    recorder: Recorder,
}

impl Events {
    pub fn new(client: kube::Client, instance: &str) -> Self {
        let reporter = Reporter { controller: "switchyard-controller".into(), instance: Some(instance.to_owned()) };
        Self { recorder: Recorder::new(client, reporter) }
    }

    /// One Event per condition whose status flipped (or appeared) in this pass.
    pub async fn publish(
        &self,
        changes: &[Change],
        now: &str,
        reference: impl Fn(&switchyard_compile::ObjectRef) -> Option<ObjectReference>,
    ) {
        for change in changes.iter().filter(|c| c.condition.last_transition_time == now) {
            let Some(reference) = reference(&change.object) else { continue };
            let event = to_event(change);
            if let Err(e) = self.recorder.publish(&event, &reference).await {
                let (o, kind) = (&change.object, crate::status::Kind(&change.object));
                let namespace = o.namespace.as_deref().unwrap_or("");
                tracing::debug!(%kind, namespace, name = %o.name, error = %e, "could not publish an event");
            }
        }
    }
}

/// The conditions of `statuses` that differ from what the objects' stored status says (a
/// condition that is new, or whose status flipped), as changes at `now`. For the first pass
/// a replica leads (after start or after gaining leadership): its in-memory book has
/// already absorbed the current conditions, so an object created or changed while no
/// controller was leading would otherwise get status but no Events. `current` gives an
/// object's stored `status`.
pub fn changes_against_stored(
    statuses: &[switchyard_compile::ResourceStatus],
    current: impl Fn(&switchyard_compile::ObjectRef) -> Option<serde_json::Value>,
    now: &str,
) -> Vec<Change> {
    statuses
        .iter()
        .flat_map(|status| {
            let stored: Vec<switchyard_api::Condition> = current(&status.object)
                .and_then(|c| c.get("conditions").cloned())
                .and_then(|c| serde_json::from_value(c).ok())
                .unwrap_or_default();
            // Compared by status, not by transition time: a stored time may equal `now`.
            let merged = crate::status::merge_conditions(&stored, &status.conditions, status.generation, now);
            merged
                .into_iter()
                .filter(|c| !stored.iter().any(|s| s.type_ == c.type_ && s.status == c.status))
                .map(|condition| Change { object: status.object.clone(), condition })
                .collect::<Vec<_>>()
        })
        .collect()
}

/// `Normal` when a condition turned True, `Warning` when it turned False.
pub fn to_event(change: &Change) -> Event {
    let c = &change.condition;
    let type_ = if c.status == "True" { EventType::Normal } else { EventType::Warning };
    Event {
        type_,
        reason: c.reason.chars().take(128).collect(),
        note: Some(format!("{}={}: {}", c.type_, c.status, c.message).chars().take(1024).collect()),
        action: "Compile".into(),
        secondary: None,
    }
}

#[cfg(test)]
mod tests {
    use switchyard_api::Condition;
    use switchyard_compile::{ObjectRef, ResourceKind};

    use super::*;

    fn change(status: &str, reason: &str) -> Change {
        Change {
            object: ObjectRef::new(ResourceKind::ApiRoute, Some("shop"), "r"),
            condition: Condition {
                type_: "Accepted".into(),
                status: status.into(),
                reason: reason.into(),
                message: "why".into(),
                last_transition_time: "t".into(),
                observed_generation: Some(1),
            },
        }
    }

    #[test]
    fn a_condition_turning_false_is_a_warning_with_its_reason() {
        let event = to_event(&change("False", "InvalidPathTemplate"));
        assert_eq!(event.type_, EventType::Warning);
        assert_eq!(event.reason, "InvalidPathTemplate");
        assert_eq!(event.note.as_deref(), Some("Accepted=False: why"));
    }

    #[test]
    fn a_condition_turning_true_is_normal() {
        assert_eq!(to_event(&change("True", "Accepted")).type_, EventType::Normal);
    }
}
