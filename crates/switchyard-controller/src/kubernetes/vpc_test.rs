//! `switchyard vpc test NAME` in a cluster. Only the controller can reach the private
//! network, so the command asks it for a test: it sets the `switchyard.dev/test-connectivity`
//! annotation to a fresh value and waits until the status says its `Connected` condition
//! answers that value (`status.connectivityTestRequest`).
//!
//! What a status means is decided by [`answer`] (pure); the API calls around it are thin:
//! one merge patch, then a GET every poll interval until the answer or the timeout.

use std::hash::{BuildHasher, RandomState};
use std::time::Duration;

use kube::api::{Api, Patch, PatchParams};
use serde_json::{Value, json};
use switchyard_api::condition_type::{ACCEPTED, CONNECTED};
use switchyard_api::{TEST_CONNECTIVITY_ANNOTATION, VpcAuthorization};
use switchyard_compile::Connectivity;

/// The field manager of the command's annotation patch.
pub const FIELD_MANAGER: &str = "switchyard-cli";
/// Time between status reads while waiting for the answer.
pub const POLL_INTERVAL: Duration = Duration::from_secs(1);

/// Why no result came back.
#[derive(Debug, thiserror::Error)]
pub enum TestError {
    #[error("no VpcAuthorization {0}")]
    NotFound(String),
    #[error(
        "not allowed to ask for a test of VpcAuthorization {object} ({message}): the command needs get and patch on vpcauthorizations.switchyard.dev"
    )]
    Forbidden { object: String, message: String },
    #[error("VpcAuthorization {object} is not accepted, so the controller does not test it: {message}")]
    NotAccepted { object: String, message: String },
    #[error("no answer from the controller within {timeout:?}: is a switchyard controller running (its leader runs the tests)? {last}")]
    Timeout { timeout: Duration, last: String },
    /// kube's message already names every place it looked; its cause chain repeats it.
    #[error("loading Kubernetes credentials (KUBECONFIG, ~/.kube/config or the pod's service account): {0}")]
    Credentials(String),
    #[error("calling the Kubernetes API")]
    Api(#[from] kube::Error),
}

/// What an object's status says about one test request, once it says anything.
#[derive(Debug, PartialEq, Eq)]
pub enum Answer {
    /// The test that answers the request.
    Tested(Connectivity),
    /// The current spec is rejected: no test will come.
    NotAccepted(String),
}

/// Reads the answer to `requested` from the object (None: not yet): the `Connected`
/// condition once `connectivityTestRequest` names this request (both are written in one
/// status update).
pub fn answer(auth: &VpcAuthorization, requested: &str) -> Option<Answer> {
    let status = auth.status.as_ref()?;
    let condition = |type_: &str| status.conditions.iter().find(|c| c.type_ == type_);
    let current = status.observed_generation == auth.metadata.generation;
    if let Some(accepted) = condition(ACCEPTED).filter(|c| current && c.status == "False") {
        return Some(Answer::NotAccepted(accepted.message.clone()));
    }
    if status.connectivity_test_request.as_deref() != Some(requested) {
        return None;
    }
    let connected = condition(CONNECTED)?;
    Some(Answer::Tested(Connectivity {
        connected: connected.status == "True",
        message: connected.message.clone(),
        requested: Some(requested.to_owned()),
        // The status carries the verdict only; the addresses stay with the controller.
        addresses: Vec::new(),
    }))
}

/// What the object last said, for the timeout message.
pub fn last_result(auth: &VpcAuthorization) -> String {
    let status = auth.status.as_ref();
    match status.and_then(|s| s.conditions.iter().find(|c| c.type_ == CONNECTED)) {
        Some(c) => format!("The last result (an earlier test): Connected={}: {}", c.status, c.message),
        None => "No test result is recorded on it yet.".to_owned(),
    }
}

/// A value no earlier request used: the time plus a per-process random suffix.
pub fn fresh_request(now: &str) -> String {
    format!("{now}-{:08x}", RandomState::new().hash_one(std::time::SystemTime::now()) as u32)
}

/// The merge patch that asks for a test.
pub fn annotation_patch(requested: &str) -> Value {
    json!({ "metadata": { "annotations": { TEST_CONNECTIVITY_ANNOTATION: requested } } })
}

/// Asks for a test of `namespace/name` (the namespace `api` is bound to) and waits up to
/// `timeout` for its result, re-reading the object every `poll`.
pub async fn request_and_wait(
    api: &Api<VpcAuthorization>,
    namespace: &str,
    name: &str,
    requested: &str,
    timeout: Duration,
    poll: Duration,
) -> Result<Connectivity, TestError> {
    let object = format!("{namespace}/{name}");
    let params = PatchParams { field_manager: Some(FIELD_MANAGER.into()), ..Default::default() };
    let patched = api.patch(name, &params, &Patch::Merge(annotation_patch(requested))).await;
    let mut current = patched.map_err(|e| classify(e, &object))?;
    match tokio::time::timeout(timeout, wait(api, name, requested, poll, &mut current)).await {
        Ok(Ok(Answer::Tested(result))) => Ok(result),
        Ok(Ok(Answer::NotAccepted(message))) => Err(TestError::NotAccepted { object, message }),
        Ok(Err(e)) => Err(classify(e, &object)),
        Err(_) => Err(TestError::Timeout { timeout, last: last_result(&current) }),
    }
}

/// Re-reads the object until its status answers the request (tested or not accepted).
async fn wait(
    api: &Api<VpcAuthorization>,
    name: &str,
    requested: &str,
    poll: Duration,
    current: &mut VpcAuthorization,
) -> Result<Answer, kube::Error> {
    loop {
        if let Some(answer) = answer(current, requested) {
            return Ok(answer);
        }
        tokio::time::sleep(poll).await;
        *current = api.get(name).await?;
    }
}

fn classify(error: kube::Error, object: &str) -> TestError {
    match &error {
        kube::Error::Api(status) if status.is_not_found() => TestError::NotFound(object.to_owned()),
        kube::Error::Api(status) if status.is_forbidden() => {
            TestError::Forbidden { object: object.to_owned(), message: status.message.clone() }
        }
        _ => TestError::Api(error),
    }
}

/// The whole in-cluster command: credentials as the controller loads them (in-cluster or
/// `KUBECONFIG`), the namespace from the flag or the kubeconfig. Returns the namespace used.
pub async fn run(namespace: Option<&str>, name: &str, timeout: Duration) -> Result<(String, Connectivity), TestError> {
    let client = kube::Client::try_default().await.map_err(|e| TestError::Credentials(e.to_string()))?;
    let namespace = namespace.unwrap_or(client.default_namespace()).to_owned();
    let api = Api::namespaced(client, &namespace);
    let result = request_and_wait(&api, &namespace, name, &fresh_request(&crate::now_rfc3339()), timeout, POLL_INTERVAL).await?;
    Ok((namespace, result))
}

#[cfg(test)]
mod tests {
    use http::{Method, StatusCode};

    use super::*;
    use crate::connectivity::report_line;
    use crate::kubernetes::mock::{self, Expect};

    const OBJECT_PATH: &str = "/apis/switchyard.dev/v1alpha1/namespaces/shop/vpcauthorizations/orders";
    const REQUEST: &str = "2026-11-29T12:00:00Z-0badcafe";

    fn condition(type_: &str, status: &str, message: &str) -> Value {
        json!({"type": type_, "status": status, "reason": type_, "message": message, "lastTransitionTime": "2026-11-29T11:00:00Z"})
    }

    /// The object as the API serves it, at generation 2, with the given status.
    fn object(status: Value) -> Value {
        json!({
            "apiVersion": "switchyard.dev/v1alpha1", "kind": "VpcAuthorization",
            "metadata": {"name": "orders", "namespace": "shop", "generation": 2,
                         "annotations": {"switchyard.dev/test-connectivity": REQUEST}},
            "spec": {"target": {"address": "10.0.3.15"}, "ports": [8080]},
            "status": status,
        })
    }

    fn earlier_result() -> Value {
        json!({"observedGeneration": 2, "connectivityTestRequest": "an-earlier-request",
               "conditions": [condition("Accepted", "True", ""), condition("Connected", "False", "10.0.3.15:8080: connection refused")]})
    }

    fn answered() -> Value {
        json!({"observedGeneration": 2, "connectivityTestRequest": REQUEST,
               "conditions": [condition("Accepted", "True", ""), condition("Connected", "True", "10.0.3.15:8080 connected in 1.2 ms")]})
    }

    fn typed(value: Value) -> VpcAuthorization {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn a_result_for_an_earlier_request_is_not_the_answer() {
        assert_eq!(answer(&typed(object(earlier_result())), REQUEST), None);
        assert_eq!(answer(&typed(object(Value::Null)), REQUEST), None, "no status at all");
    }

    #[test]
    fn the_connected_condition_answers_once_the_status_names_the_request() {
        let Some(Answer::Tested(result)) = answer(&typed(object(answered())), REQUEST) else { panic!("expected an answer") };
        assert!(result.connected);
        assert_eq!(result.message, "10.0.3.15:8080 connected in 1.2 ms");
    }

    #[test]
    fn a_failed_test_answers_with_the_exact_error() {
        let mut status = answered();
        status["conditions"][1] = condition("Connected", "False", "10.0.3.15:8080: connection refused");
        let Some(Answer::Tested(result)) = answer(&typed(object(status)), REQUEST) else { panic!("expected an answer") };
        assert!(!result.connected);
        assert_eq!(result.message, "10.0.3.15:8080: connection refused");
    }

    #[test]
    fn a_rejected_current_spec_answers_at_once_but_a_rejection_of_an_older_generation_does_not() {
        let rejected =
            json!({"observedGeneration": 2, "conditions": [condition("Accepted", "False", "target.address \"x\" is not an IP address")]});
        assert_eq!(
            answer(&typed(object(rejected.clone())), REQUEST),
            Some(Answer::NotAccepted("target.address \"x\" is not an IP address".into()))
        );
        let mut older = rejected;
        older["observedGeneration"] = json!(1);
        assert_eq!(answer(&typed(object(older)), REQUEST), None, "the controller has not seen the fixed spec yet");
    }

    #[test]
    fn every_request_gets_a_fresh_value_and_the_patch_sets_only_the_annotation() {
        assert_ne!(fresh_request("t"), fresh_request("t"));
        assert!(fresh_request("2026-11-29T12:00:00Z").starts_with("2026-11-29T12:00:00Z-"));
        assert_eq!(annotation_patch("v"), json!({"metadata": {"annotations": {"switchyard.dev/test-connectivity": "v"}}}));
    }

    #[test]
    fn the_timeout_message_shows_the_last_result_it_saw() {
        assert_eq!(
            last_result(&typed(object(earlier_result()))),
            "The last result (an earlier test): Connected=False: 10.0.3.15:8080: connection refused"
        );
        assert_eq!(last_result(&typed(object(Value::Null))), "No test result is recorded on it yet.");
    }

    fn api(client: kube::Client) -> Api<VpcAuthorization> {
        Api::namespaced(client, "shop")
    }

    #[tokio::test]
    async fn the_command_patches_the_annotation_then_polls_until_the_status_answers_it() {
        let (client, handle) = mock::client();
        let patch_path = format!("{OBJECT_PATH}?&fieldManager=switchyard-cli");
        let script = vec![
            Expect { method: Method::PATCH, path: patch_path, status: StatusCode::OK, reply: object(earlier_result()) },
            Expect { method: Method::GET, path: OBJECT_PATH.into(), status: StatusCode::OK, reply: object(earlier_result()) },
            Expect { method: Method::GET, path: OBJECT_PATH.into(), status: StatusCode::OK, reply: object(answered()) },
        ];
        let server = tokio::spawn(mock::serve(handle, script));
        let poll = Duration::from_millis(10);
        let result = request_and_wait(&api(client), "shop", "orders", REQUEST, Duration::from_secs(5), poll).await.unwrap();
        let bodies = server.await.unwrap();
        assert_eq!(bodies[0], json!({"metadata": {"annotations": {"switchyard.dev/test-connectivity": REQUEST}}}));
        assert_eq!(
            report_line("shop", "orders", &result),
            "VpcAuthorization shop/orders: Connected=True: 10.0.3.15:8080 connected in 1.2 ms"
        );
    }

    #[tokio::test]
    async fn a_missing_authorization_is_reported_by_name() {
        let (client, handle) = mock::client();
        let reply = mock::status_error(404, "NotFound");
        let path = format!("{OBJECT_PATH}?&fieldManager=switchyard-cli");
        let server = tokio::spawn(mock::serve(handle, vec![Expect { method: Method::PATCH, path, status: StatusCode::NOT_FOUND, reply }]));
        let error = request_and_wait(&api(client), "shop", "orders", REQUEST, Duration::from_secs(5), POLL_INTERVAL).await.unwrap_err();
        server.await.unwrap();
        assert_eq!(error.to_string(), "no VpcAuthorization shop/orders");
    }

    #[tokio::test]
    async fn no_answer_within_the_timeout_says_so_and_shows_the_last_result() {
        let (client, mut handle) = mock::client();
        let path = format!("{OBJECT_PATH}?&fieldManager=switchyard-cli");
        let (reply, api) = (object(earlier_result()), api(client));
        let (result, ()) = tokio::join!(
            request_and_wait(&api, "shop", "orders", REQUEST, Duration::from_millis(50), Duration::from_secs(3600)),
            mock::serve_one(&mut handle, Expect { method: Method::PATCH, path, status: StatusCode::OK, reply })
        );
        let message = result.unwrap_err().to_string();
        assert!(message.starts_with("no answer from the controller within 50ms"), "{message}");
        assert!(message.ends_with("Connected=False: 10.0.3.15:8080: connection refused"), "{message}");
    }
}
