//! Status book-keeping: turns compile's conditions into `metav1.Condition`s, keeping
//! `lastTransitionTime` while a condition's status holds, and reports what changed.
//! The Kubernetes status writer and standalone's `/status` both read from here.

use std::collections::BTreeMap;
use std::sync::Mutex;

use serde::Serialize;
use switchyard_api::Condition;
use switchyard_compile::{ConditionSpec, ObjectRef, ResourceStatus};

/// Merges freshly computed conditions into the previous ones. A condition keeps its
/// `lastTransitionTime` unless its status flipped; reason and message always update.
pub fn merge_conditions(previous: &[Condition], fresh: &[ConditionSpec], generation: Option<i64>, now: &str) -> Vec<Condition> {
    fresh
        .iter()
        .map(|c| {
            let status = c.status_str();
            let since = previous
                .iter()
                .find(|p| p.type_ == c.type_ && p.status == status)
                .map_or_else(|| now.to_owned(), |p| p.last_transition_time.clone());
            Condition {
                type_: c.type_.clone(),
                status: status.to_owned(),
                reason: c.reason.clone(),
                message: c.message.clone(),
                last_transition_time: since,
                observed_generation: generation,
            }
        })
        .collect()
}

/// What one object's status looks like now.
#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ObjectStatus {
    #[serde(flatten)]
    pub object: ObjectRef,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    pub conditions: Vec<Condition>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backend_kind: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoints: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connectivity_test_request: Option<String>,
}

/// A condition that appeared or changed status, reason or message.
#[derive(Clone, Debug, PartialEq)]
pub struct Change {
    pub object: ObjectRef,
    pub condition: Condition,
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let c = &self.condition;
        write!(f, "{}: {}={} ({}): {}", self.object, c.type_, c.status, c.reason, c.message)
    }
}

/// An object's kind as a log field (`ApiRoute`; an unknown kind as written).
pub struct Kind<'a>(pub &'a ObjectRef);

impl std::fmt::Display for Kind<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0.written_kind {
            Some(kind) => f.write_str(kind),
            None => write!(f, "{:?}", self.0.kind),
        }
    }
}

/// Logs one changed condition with the object as fields (`kind`, `namespace`, `name`),
/// at `info`; the condition's message is `detail` (`message` is the event's own).
pub fn log_change(change: &Change) {
    let (object, c) = (&change.object, &change.condition);
    let namespace = object.namespace.as_deref().unwrap_or("");
    tracing::info!(
        kind = %Kind(object), namespace, name = %object.name,
        condition = %c.type_, status = %c.status, reason = %c.reason, detail = %c.message,
        "condition changed"
    );
}

/// Standalone prints each changed condition, whatever the log filter: `switchyard: status
/// OBJECT: TYPE=STATUS (REASON): MESSAGE` on stderr, or with `--log-format json` the
/// fields of [`log_change`] as one JSON line (one format per process).
pub fn print_change(change: &Change) {
    if !json_logs() {
        eprintln!("switchyard: status {change}");
        return;
    }
    let (object, c) = (&change.object, &change.condition);
    print_json_line(
        "condition changed",
        serde_json::json!({
            "kind": Kind(object).to_string(), "namespace": object.namespace.as_deref().unwrap_or(""), "name": object.name,
            "condition": c.type_, "status": c.status, "reason": c.reason, "detail": c.message,
        }),
    );
}

/// One line on stderr shaped like the JSON log's events (`timestamp`, `level`, `message`,
/// the fields), for what is printed whatever the log filter (listeners, conditions).
pub fn print_json_line(message: &str, fields: serde_json::Value) {
    let mut line = serde_json::json!({"timestamp": crate::now_rfc3339(), "level": "INFO", "message": message});
    if let (Some(line), serde_json::Value::Object(fields)) = (line.as_object_mut(), fields) {
        line.extend(fields);
    }
    eprintln!("{line}");
}

static JSON_LOGS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// The process logs JSON (`--log-format json`): lines printed outside `tracing` follow.
pub fn use_json_logs() {
    JSON_LOGS.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// Whether [`use_json_logs`] was called.
pub fn json_logs() -> bool {
    JSON_LOGS.load(std::sync::atomic::Ordering::Relaxed)
}

/// The current status of every object.
#[derive(Default)]
pub struct StatusBook {
    objects: Mutex<BTreeMap<ObjectRef, ObjectStatus>>,
}

impl ObjectStatus {
    /// The entry of an object the book did not have, its conditions all reported.
    fn first(status: &ResourceStatus, now: &str, changes: &mut Vec<Change>) -> Self {
        let mut entry = Self {
            object: status.object.clone(),
            observed_generation: None,
            conditions: Vec::new(),
            backend_kind: None,
            endpoints: None,
            connectivity_test_request: None,
        };
        entry.take(status, now, changes);
        entry
    }

    fn take_if_changed(&mut self, status: &ResourceStatus, now: &str, changes: &mut Vec<Change>) {
        if !self.says(status) {
            self.take(status, now, changes);
        }
    }

    /// Whether this entry already says what `status` says: taking it would change
    /// nothing (each condition's `lastTransitionTime` holds while its status does).
    fn says(&self, status: &ResourceStatus) -> bool {
        self.observed_generation == status.generation
            && self.backend_kind == status.backend_kind
            && self.endpoints == status.endpoints
            && self.connectivity_test_request == status.connectivity_test_request
            && self.conditions.len() == status.conditions.len()
            && self.conditions.iter().zip(&status.conditions).all(|(held, fresh)| {
                held.type_ == fresh.type_
                    && held.status == fresh.status_str()
                    && held.reason == fresh.reason
                    && held.message == fresh.message
                    && held.observed_generation == status.generation
            })
    }

    /// Takes `status`, pushing each condition that appeared or changed onto `changes`.
    fn take(&mut self, status: &ResourceStatus, now: &str, changes: &mut Vec<Change>) {
        let conditions = merge_conditions(&self.conditions, &status.conditions, status.generation, now);
        for c in &conditions {
            let same = self
                .conditions
                .iter()
                .any(|p| p.type_ == c.type_ && p.status == c.status && p.reason == c.reason && p.message == c.message);
            if !same {
                changes.push(Change { object: status.object.clone(), condition: c.clone() });
            }
        }
        self.observed_generation = status.generation;
        self.conditions = conditions;
        self.backend_kind.clone_from(&status.backend_kind);
        self.endpoints = status.endpoints;
        self.connectivity_test_request.clone_from(&status.connectivity_test_request);
    }
}

impl StatusBook {
    /// Replaces the book with the statuses of one compile; returns what changed.
    /// Objects that are gone are dropped. Entries are updated in place: a second book
    /// built next to the old one doubled its memory during every compile (~11 MiB at
    /// 10,000 routes). An object whose status did not change is not touched at all: a
    /// change to one route of 100,000 rewrote every entry (129 ms, docs/benchmarks.md).
    pub fn update(&self, statuses: &[ResourceStatus], now: &str) -> Vec<Change> {
        let mut objects = self.objects.lock().expect("status book lock");
        let mut changes = Vec::new();
        // Compile's statuses come sorted by object ([`switchyard_compile::Compiled`]):
        // then the book and the statuses are walked side by side, no lookups.
        if statuses.windows(2).all(|w| w[0].object < w[1].object) {
            let mut next = statuses.iter().map(|s| &s.object).peekable();
            objects.retain(|object, _| {
                while next.next_if(|s| *s < object).is_some() {}
                next.peek() == Some(&object)
            });
            // What is left of the book is a subsequence of the statuses, in their order.
            let mut held = objects.iter_mut().peekable();
            let mut new = Vec::new();
            for status in statuses {
                match held.next_if(|(object, _)| **object == status.object) {
                    Some((_, existing)) => existing.take_if_changed(status, now, &mut changes),
                    None => new.push(ObjectStatus::first(status, now, &mut changes)),
                }
            }
            objects.extend(new.into_iter().map(|entry| (entry.object.clone(), entry)));
        } else {
            let current: std::collections::BTreeSet<&ObjectRef> = statuses.iter().map(|s| &s.object).collect();
            objects.retain(|object, _| current.contains(object));
            for status in statuses {
                match objects.get_mut(&status.object) {
                    Some(existing) => existing.take_if_changed(status, now, &mut changes),
                    None => {
                        let entry = ObjectStatus::first(status, now, &mut changes);
                        objects.insert(status.object.clone(), entry);
                    }
                }
            }
        }
        changes
    }

    pub fn snapshot(&self) -> Vec<ObjectStatus> {
        self.objects.lock().expect("status book lock").values().cloned().collect()
    }

    /// `{"resources": [...]}` for the admin `/status` endpoint.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(&serde_json::json!({ "resources": self.snapshot() })).expect("statuses serialize")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_compile::ResourceKind;

    fn status(accepted: bool, message: &str) -> ResourceStatus {
        let mut s = ResourceStatus::new(ObjectRef::new(ResourceKind::ApiRoute, Some("d"), "r"), Some(3));
        s.set(ConditionSpec::new("Accepted", accepted, if accepted { "Accepted" } else { "InvalidPath" }, message));
        s
    }

    #[test]
    fn last_transition_time_holds_while_the_status_does_not_change() {
        let book = StatusBook::default();
        book.update(&[status(true, "ok")], "t1");
        let changes = book.update(&[status(true, "still ok")], "t2");
        assert_eq!(changes.len(), 1, "a new message is a change worth printing");
        let c = &book.snapshot()[0].conditions[0];
        assert_eq!((c.last_transition_time.as_str(), c.message.as_str()), ("t1", "still ok"));
        assert_eq!(c.observed_generation, Some(3));
    }

    #[test]
    fn a_status_flip_moves_the_transition_time_and_is_reported() {
        let book = StatusBook::default();
        book.update(&[status(true, "ok")], "t1");
        let changes = book.update(&[status(false, "bad path")], "t2");
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].to_string(), "ApiRoute d/r: Accepted=False (InvalidPath): bad path");
        assert_eq!(book.snapshot()[0].conditions[0].last_transition_time, "t2");
    }

    #[test]
    fn nothing_is_reported_when_nothing_changed() {
        let book = StatusBook::default();
        book.update(&[status(true, "ok")], "t1");
        assert!(book.update(&[status(true, "ok")], "t2").is_empty());
    }

    #[test]
    fn objects_that_disappear_leave_the_book() {
        let book = StatusBook::default();
        book.update(&[status(true, "ok")], "t1");
        book.update(&[], "t2");
        assert!(book.snapshot().is_empty());
    }

    fn route(name: &str, generation: i64) -> ResourceStatus {
        let mut s = ResourceStatus::new(ObjectRef::new(ResourceKind::ApiRoute, Some("d"), name), Some(generation));
        s.set(ConditionSpec::new("Accepted", true, "Accepted", "ok"));
        s
    }

    fn names(book: &StatusBook) -> Vec<String> {
        book.snapshot().into_iter().map(|o| o.object.name).collect()
    }

    #[test]
    fn objects_gone_from_the_middle_leave_the_book_in_sorted_and_in_any_order() {
        let book = StatusBook::default();
        book.update(&["a", "b", "c", "d", "e"].map(|n| route(n, 1)), "t1");
        book.update(&["a", "c", "e"].map(|n| route(n, 1)), "t2");
        assert_eq!(names(&book), ["a", "c", "e"], "compile's sorted statuses");
        book.update(&["e", "f", "a"].map(|n| route(n, 1)), "t3");
        assert_eq!(names(&book), ["a", "e", "f"], "statuses in another order");
    }

    #[test]
    fn an_unchanged_object_is_left_as_it_was_and_a_new_generation_is_taken() {
        let book = StatusBook::default();
        book.update(&[route("a", 1), route("b", 1)], "t1");
        assert!(book.update(&[route("a", 1), route("b", 1)], "t2").is_empty());
        let a = &book.snapshot()[0];
        assert_eq!((a.conditions[0].last_transition_time.as_str(), a.observed_generation), ("t1", Some(1)));
        // Same conditions on a new generation: observedGeneration moves on, the time holds.
        book.update(&[route("a", 2), route("b", 1)], "t3");
        let after = book.snapshot();
        assert_eq!((after[0].observed_generation, after[0].conditions[0].observed_generation), (Some(2), Some(2)));
        assert_eq!(after[0].conditions[0].last_transition_time, "t1");
        assert_eq!(after[1].observed_generation, Some(1));
        let mut endpoints = route("b", 1);
        endpoints.endpoints = Some(3);
        book.update(&[route("a", 2), endpoints], "t4");
        assert_eq!(book.snapshot()[1].endpoints, Some(3), "a changed endpoint count is taken");
    }
}
