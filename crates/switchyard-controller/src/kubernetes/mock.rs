//! A scripted Kubernetes API for tests, in the style of kube-rs/controller-rs: each test
//! lists the calls it expects, in order, with the response to give; a call that never
//! comes fails after one second, and an unexpected one fails the test.

use http::{Method, Request, Response, StatusCode};
use kube::client::Body;
use serde_json::Value;
use tower_test::mock::{Handle, pair};

/// One expected call: method, path (and query), and the reply.
pub struct Expect {
    pub method: Method,
    pub path: String,
    pub status: StatusCode,
    pub reply: Value,
}

/// A client wired to a mock server, plus the handle that plays the server.
pub fn client() -> (kube::Client, Handle<Request<Body>, Response<Body>>) {
    let (service, handle) = pair::<Request<Body>, Response<Body>>();
    (kube::Client::new(service, "default"), handle)
}

/// Serves the expected calls in order, owning the handle (for a spawned server task).
pub async fn serve(mut handle: Handle<Request<Body>, Response<Body>>, script: Vec<Expect>) -> Vec<Value> {
    serve_one_by_one(&mut handle, script).await
}

/// Asserts no further call arrives within a short while.
pub async fn expect_no_more_calls(handle: &mut Handle<Request<Body>, Response<Body>>) {
    let next = tokio::time::timeout(std::time::Duration::from_millis(200), handle.next_request()).await;
    assert!(next.is_err(), "an unexpected API call was made");
}

/// A Kubernetes `Status` error body.
pub fn status_error(code: u16, reason: &str) -> Value {
    serde_json::json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": reason, "code": code, "message": reason})
}

/// Serves exactly one expected call (for tests that then check nothing else comes).
pub async fn serve_one(handle: &mut Handle<Request<Body>, Response<Body>>, expect: Expect) {
    serve_one_by_one(handle, vec![expect]).await;
}

/// Serves the expected calls in order on a borrowed handle (so the test can check for
/// stray calls afterwards); returns the request bodies.
pub async fn serve_one_by_one(handle: &mut Handle<Request<Body>, Response<Body>>, script: Vec<Expect>) -> Vec<Value> {
    let mut bodies = Vec::new();
    for expect in script {
        let next = tokio::time::timeout(std::time::Duration::from_secs(1), handle.next_request()).await;
        let (request, send) = next.expect("an expected API call never came").expect("the client went away");
        assert_eq!(request.method(), expect.method);
        assert_eq!(request.uri().path_and_query().map(|p| p.as_str()), Some(expect.path.as_str()));
        let bytes = request.into_body().collect_bytes().await.unwrap();
        bodies.push(serde_json::from_slice(&bytes).unwrap_or(Value::Null));
        let response = Response::builder().status(expect.status).body(Body::from(serde_json::to_vec(&expect.reply).unwrap())).unwrap();
        send.send_response(response);
    }
    bodies
}
