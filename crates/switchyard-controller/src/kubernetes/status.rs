//! Status patches: what to write on each object, computed purely from compile's
//! statuses and the object's current status. `None` means "already right": no write,
//! so an unchanged world causes no API traffic and no status churn.

use serde_json::{Value, json};
use switchyard_api::{API_VERSION, Condition};
use switchyard_compile::{ResourceKind, ResourceStatus};

use crate::status::merge_conditions;

/// The field manager every status write uses (server-side apply).
pub const FIELD_MANAGER: &str = "switchyard-controller";

/// The server-side apply body for one object's status, or None when the object's
/// current status already says the same (transition times are kept when a condition's
/// status did not change).
pub fn status_patch(status: &ResourceStatus, current: Option<&Value>, now: &str) -> Option<Value> {
    let kind = kind_name(status.object.kind)?;
    let previous: Vec<Condition> =
        current.and_then(|c| c.get("conditions")).and_then(|c| serde_json::from_value(c.clone()).ok()).unwrap_or_default();
    let conditions = merge_conditions(&previous, &status.conditions, status.generation, now);
    let mut desired = json!({ "conditions": conditions });
    if let Some(generation) = status.generation {
        desired["observedGeneration"] = json!(generation);
    }
    if let Some(kind) = &status.backend_kind {
        desired["kind"] = json!(kind);
    }
    if let Some(endpoints) = status.endpoints {
        desired["endpoints"] = json!(endpoints);
    }
    if let Some(request) = &status.connectivity_test_request {
        desired["connectivityTestRequest"] = json!(request);
    }
    if current.is_some_and(|c| same_status(c, &desired)) {
        return None;
    }
    let mut metadata = json!({ "name": status.object.name });
    if let Some(ns) = &status.object.namespace {
        metadata["namespace"] = json!(ns);
    }
    Some(json!({ "apiVersion": API_VERSION, "kind": kind, "metadata": metadata, "status": desired }))
}

/// Compares only the fields Switchyard owns.
fn same_status(current: &Value, desired: &Value) -> bool {
    ["conditions", "observedGeneration", "kind", "endpoints", "connectivityTestRequest"].iter().all(|k| current.get(k) == desired.get(k))
}

/// Kinds whose status Switchyard writes (apps are Secrets: no status).
pub fn kind_name(kind: ResourceKind) -> Option<&'static str> {
    match kind {
        ResourceKind::ApiRoute => Some("ApiRoute"),
        ResourceKind::BackendService => Some("BackendService"),
        ResourceKind::VpcAuthorization => Some("VpcAuthorization"),
        ResourceKind::DnsRecord => Some("DnsRecord"),
        ResourceKind::Secret | ResourceKind::Unknown => None,
    }
}

/// The plural resource name used in API paths.
pub fn plural(kind: ResourceKind) -> Option<&'static str> {
    match kind {
        ResourceKind::ApiRoute => Some("apiroutes"),
        ResourceKind::BackendService => Some("backendservices"),
        ResourceKind::VpcAuthorization => Some("vpcauthorizations"),
        ResourceKind::DnsRecord => Some("dnsrecords"),
        ResourceKind::Secret | ResourceKind::Unknown => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_compile::{ConditionSpec, ObjectRef};

    fn route_status(accepted: bool) -> ResourceStatus {
        let mut s = ResourceStatus::new(ObjectRef::new(ResourceKind::ApiRoute, Some("shop"), "get-order"), Some(4));
        s.set(ConditionSpec::new("Accepted", accepted, if accepted { "Accepted" } else { "InvalidPath" }, "m"));
        s
    }

    #[test]
    fn a_first_status_is_a_full_apply_body_with_observed_generation() {
        let patch = status_patch(&route_status(true), None, "2026-01-01T00:00:00Z").unwrap();
        assert_eq!(patch["apiVersion"], "switchyard.dev/v1alpha1");
        assert_eq!(patch["kind"], "ApiRoute");
        assert_eq!(patch["metadata"], json!({"name": "get-order", "namespace": "shop"}));
        assert_eq!(patch["status"]["observedGeneration"], 4);
        let c = &patch["status"]["conditions"][0];
        assert_eq!((c["type"].as_str(), c["status"].as_str(), c["observedGeneration"].as_i64()), (Some("Accepted"), Some("True"), Some(4)));
        assert_eq!(c["lastTransitionTime"], "2026-01-01T00:00:00Z");
    }

    #[test]
    fn an_unchanged_status_needs_no_write() {
        let first = status_patch(&route_status(true), None, "t1").unwrap();
        assert_eq!(status_patch(&route_status(true), Some(&first["status"]), "t2"), None);
    }

    #[test]
    fn a_flipped_condition_is_written_with_a_new_transition_time() {
        let first = status_patch(&route_status(true), None, "t1").unwrap();
        let second = status_patch(&route_status(false), Some(&first["status"]), "t2").unwrap();
        assert_eq!(second["status"]["conditions"][0]["status"], "False");
        assert_eq!(second["status"]["conditions"][0]["lastTransitionTime"], "t2");
    }

    #[test]
    fn a_new_generation_alone_is_written() {
        let first = status_patch(&route_status(true), None, "t1").unwrap();
        let mut newer = route_status(true);
        newer.generation = Some(5);
        let patch = status_patch(&newer, Some(&first["status"]), "t2").unwrap();
        assert_eq!(patch["status"]["observedGeneration"], 5);
        assert_eq!(patch["status"]["conditions"][0]["lastTransitionTime"], "t1", "status did not flip");
    }

    #[test]
    fn a_new_connectivity_test_request_alone_is_written() {
        let mut vpc = ResourceStatus::new(ObjectRef::new(ResourceKind::VpcAuthorization, Some("shop"), "orders"), Some(1));
        vpc.set(ConditionSpec::new("Connected", false, "ConnectFailed", "connection refused"));
        vpc.connectivity_test_request = Some("first".into());
        let first = status_patch(&vpc, None, "t1").unwrap();
        assert_eq!(first["status"]["connectivityTestRequest"], "first");
        vpc.connectivity_test_request = Some("second".into());
        let second = status_patch(&vpc, Some(&first["status"]), "t2").expect("the same result answers a new request");
        assert_eq!(second["status"]["connectivityTestRequest"], "second");
        assert_eq!(second["status"]["conditions"][0]["lastTransitionTime"], "t1");
    }

    #[test]
    fn cluster_scoped_objects_have_no_namespace_and_secrets_get_no_status() {
        let mut dns = ResourceStatus::new(ObjectRef::new(ResourceKind::DnsRecord, None, "orders"), Some(1));
        dns.set(ConditionSpec::new("Accepted", true, "Accepted", ""));
        assert_eq!(status_patch(&dns, None, "t").unwrap()["metadata"], json!({"name": "orders"}));
        let secret = ResourceStatus::new(ObjectRef::new(ResourceKind::Secret, Some("shop"), "partner"), None);
        assert_eq!(status_patch(&secret, None, "t"), None);
    }
}
