//! Writes statuses with server-side apply under one field manager. Thin on purpose:
//! what to write is decided by [`super::status::status_patch`]; this only sends it, and
//! remembers what it sent so a write is not repeated while the watch catches up.

use std::collections::HashMap;

use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use serde_json::Value;
use switchyard_api::{GROUP, VERSION};
use switchyard_compile::{ObjectRef, ResourceStatus};

use super::status::{FIELD_MANAGER, kind_name, plural, status_patch};

/// Outcome of one pass over every status.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct WriteReport {
    pub written: usize,
    pub unchanged: usize,
    pub failed: usize,
}

pub struct StatusWriter {
    client: kube::Client,
    /// The last status body sent per object: the watch may still show the old one.
    sent: HashMap<ObjectRef, Value>,
}

impl StatusWriter {
    pub fn new(client: kube::Client) -> Self {
        Self { client, sent: HashMap::new() }
    }

    /// Writes every status that differs from the object's current one.
    /// `current` returns an object's `.status` as the watch last saw it.
    pub async fn write_all(
        &mut self,
        statuses: &[ResourceStatus],
        current: impl Fn(&ObjectRef) -> Option<Value>,
        now: &str,
    ) -> WriteReport {
        let mut report = WriteReport::default();
        for status in statuses {
            let Some(patch) = status_patch(status, current(&status.object).as_ref(), now) else {
                report.unchanged += 1;
                continue;
            };
            if self.sent.get(&status.object) == Some(&patch["status"]) {
                report.unchanged += 1;
                continue;
            }
            match self.apply(&status.object, &patch).await {
                Ok(()) => {
                    report.written += 1;
                    self.sent.insert(status.object.clone(), patch["status"].clone());
                }
                Err(e) => {
                    report.failed += 1;
                    let (o, kind) = (&status.object, crate::status::Kind(&status.object));
                    let namespace = o.namespace.as_deref().unwrap_or("");
                    tracing::warn!(%kind, namespace, name = %o.name, error = %e, "status write failed; retried on the next pass");
                }
            }
        }
        report
    }

    async fn apply(&self, object: &ObjectRef, patch: &Value) -> Result<(), kube::Error> {
        let (Some(kind), Some(plural)) = (kind_name(object.kind), plural(object.kind)) else { return Ok(()) };
        let resource = ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(GROUP, VERSION, kind), plural);
        let api: Api<DynamicObject> = match &object.namespace {
            Some(ns) => Api::namespaced_with(self.client.clone(), ns, &resource),
            None => Api::all_with(self.client.clone(), &resource),
        };
        let params = PatchParams::apply(FIELD_MANAGER).force();
        api.patch_status(&object.name, &params, &Patch::Apply(patch)).await.map(drop)
    }
}

#[cfg(test)]
mod tests {
    use http::{Method, StatusCode};
    use serde_json::json;
    use switchyard_compile::{ConditionSpec, ResourceKind};

    use super::*;
    use crate::kubernetes::mock::{self, Expect};

    const STATUS_PATH: &str =
        "/apis/switchyard.dev/v1alpha1/namespaces/shop/apiroutes/get-order/status?&force=true&fieldManager=switchyard-controller";

    fn accepted(accepted: bool) -> ResourceStatus {
        let mut s = ResourceStatus::new(ObjectRef::new(ResourceKind::ApiRoute, Some("shop"), "get-order"), Some(2));
        s.set(ConditionSpec::new("Accepted", accepted, if accepted { "Accepted" } else { "InvalidPath" }, "msg"));
        s
    }

    #[tokio::test]
    async fn a_changed_status_is_server_side_applied_on_the_status_subresource() {
        let (client, handle) = mock::client();
        let reply =
            json!({"apiVersion": "switchyard.dev/v1alpha1", "kind": "ApiRoute", "metadata": {"name": "get-order", "namespace": "shop"}});
        let server = tokio::spawn(mock::serve(
            handle,
            vec![Expect { method: Method::PATCH, path: STATUS_PATH.into(), status: StatusCode::OK, reply }],
        ));
        let mut writer = StatusWriter::new(client);
        let report = writer.write_all(&[accepted(true)], |_| None, "2026-11-29T12:00:00Z").await;
        assert_eq!(report, WriteReport { written: 1, unchanged: 0, failed: 0 });
        let body = &server.await.unwrap()[0];
        assert_eq!(body["kind"], "ApiRoute");
        assert_eq!(body["status"]["observedGeneration"], 2);
        assert_eq!(body["status"]["conditions"][0]["type"], "Accepted");
        assert_eq!(body["status"]["conditions"][0]["status"], "True");
        assert_eq!(body["status"]["conditions"][0]["lastTransitionTime"], "2026-11-29T12:00:00Z");
    }

    #[tokio::test]
    async fn nothing_is_written_when_the_object_already_has_the_status() {
        let (client, mut handle) = mock::client();
        let current = status_patch(&accepted(true), None, "t0").unwrap()["status"].clone();
        let mut writer = StatusWriter::new(client);
        let report = writer.write_all(&[accepted(true)], |_| Some(current.clone()), "t1").await;
        assert_eq!(report, WriteReport { written: 0, unchanged: 1, failed: 0 });
        mock::expect_no_more_calls(&mut handle).await;
    }

    #[tokio::test]
    async fn a_status_already_sent_is_not_sent_again_while_the_watch_catches_up() {
        let (client, mut handle) = mock::client();
        let reply = json!({"apiVersion": "switchyard.dev/v1alpha1", "kind": "ApiRoute", "metadata": {"name": "get-order"}});
        let mut writer = StatusWriter::new(client);
        let statuses = [accepted(false)];
        let (first, _) = tokio::join!(
            writer.write_all(&statuses, |_| None, "t1"),
            mock::serve_one(&mut handle, Expect { method: Method::PATCH, path: STATUS_PATH.into(), status: StatusCode::OK, reply })
        );
        assert_eq!(first.written, 1);
        let second = writer.write_all(&[accepted(false)], |_| None, "t1").await;
        assert_eq!(second, WriteReport { written: 0, unchanged: 1, failed: 0 });
        mock::expect_no_more_calls(&mut handle).await;
    }

    #[tokio::test]
    async fn a_failed_write_is_counted_and_retried_on_the_next_pass() {
        let (client, handle) = mock::client();
        let ok = json!({"apiVersion": "switchyard.dev/v1alpha1", "kind": "ApiRoute", "metadata": {"name": "get-order"}});
        let server = tokio::spawn(mock::serve(
            handle,
            vec![
                Expect {
                    method: Method::PATCH,
                    path: STATUS_PATH.into(),
                    status: StatusCode::INTERNAL_SERVER_ERROR,
                    reply: mock::status_error(500, "InternalError"),
                },
                Expect { method: Method::PATCH, path: STATUS_PATH.into(), status: StatusCode::OK, reply: ok },
            ],
        ));
        let mut writer = StatusWriter::new(client);
        assert_eq!(writer.write_all(&[accepted(true)], |_| None, "t1").await.failed, 1);
        assert_eq!(writer.write_all(&[accepted(true)], |_| None, "t1").await.written, 1);
        server.await.unwrap();
    }
}
