use http::{Method, StatusCode};
use serde_json::json;

use super::*;
use crate::kubernetes::mock::{self, Expect};

const PATH: &str = "/apis/coordination.k8s.io/v1/namespaces/switchyard-system/leases/switchyard-controller";
const COLLECTION: &str = "/apis/coordination.k8s.io/v1/namespaces/switchyard-system/leases?";

fn elector(client: kube::Client) -> LeaderElector {
    LeaderElector::new(Api::namespaced(client, "switchyard-system"), "switchyard-controller", "pod-a")
}

fn lease(holder: &str, renewed: &str) -> serde_json::Value {
    json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "switchyard-controller", "namespace": "switchyard-system", "resourceVersion": "42"},
        "spec": {"holderIdentity": holder, "leaseDurationSeconds": 15, "renewTime": renewed, "acquireTime": renewed}
    })
}

fn now() -> Timestamp {
    "2026-11-29T12:00:00Z".parse().unwrap()
}

#[tokio::test]
async fn a_missing_lease_is_created_with_this_replica_as_holder() {
    let (client, handle) = mock::client();
    let server = tokio::spawn(mock::serve(
        handle,
        vec![
            Expect { method: Method::GET, path: PATH.into(), status: StatusCode::NOT_FOUND, reply: mock::status_error(404, "NotFound") },
            Expect {
                method: Method::POST,
                path: COLLECTION.into(),
                status: StatusCode::CREATED,
                reply: lease("pod-a", "2026-11-29T12:00:00Z"),
            },
        ],
    ));
    assert!(elector(client).try_lead(now()).await.unwrap());
    let bodies = server.await.unwrap();
    assert_eq!(bodies[1]["spec"]["holderIdentity"], "pod-a");
    assert_eq!(bodies[1]["spec"]["leaseDurationSeconds"], 15);
}

#[tokio::test]
async fn a_lease_held_and_renewed_by_another_replica_is_left_alone() {
    let (client, mut handle) = mock::client();
    let elector = elector(client);
    let (result, _) = tokio::join!(
        elector.try_lead(now()),
        mock::serve_one(
            &mut handle,
            Expect { method: Method::GET, path: PATH.into(), status: StatusCode::OK, reply: lease("pod-b", "2026-11-29T11:59:55Z") }
        )
    );
    assert!(!result.unwrap());
    mock::expect_no_more_calls(&mut handle).await;
}

#[tokio::test]
async fn an_expired_lease_is_taken_over_with_the_version_that_was_read() {
    let (client, handle) = mock::client();
    let server = tokio::spawn(mock::serve(
        handle,
        vec![
            Expect { method: Method::GET, path: PATH.into(), status: StatusCode::OK, reply: lease("pod-b", "2026-11-29T11:59:00Z") },
            Expect { method: Method::PUT, path: format!("{PATH}?"), status: StatusCode::OK, reply: lease("pod-a", "2026-11-29T12:00:00Z") },
        ],
    ));
    assert!(elector(client).try_lead(now()).await.unwrap());
    let bodies = server.await.unwrap();
    assert_eq!(bodies[1]["metadata"]["resourceVersion"], "42", "optimistic concurrency");
    assert_eq!(bodies[1]["spec"]["holderIdentity"], "pod-a");
}

#[tokio::test]
async fn losing_the_race_for_an_expired_lease_is_not_leading() {
    let (client, handle) = mock::client();
    let server = tokio::spawn(mock::serve(
        handle,
        vec![
            Expect { method: Method::GET, path: PATH.into(), status: StatusCode::OK, reply: lease("pod-b", "2026-11-29T11:59:00Z") },
            Expect {
                method: Method::PUT,
                path: format!("{PATH}?"),
                status: StatusCode::CONFLICT,
                reply: mock::status_error(409, "Conflict"),
            },
        ],
    ));
    assert!(!elector(client).try_lead(now()).await.unwrap());
    server.await.unwrap();
}

#[tokio::test]
async fn the_holder_renews_and_keeps_its_acquire_time() {
    let (client, handle) = mock::client();
    let server = tokio::spawn(mock::serve(
        handle,
        vec![
            Expect { method: Method::GET, path: PATH.into(), status: StatusCode::OK, reply: lease("pod-a", "2026-11-29T11:59:58Z") },
            Expect { method: Method::PUT, path: format!("{PATH}?"), status: StatusCode::OK, reply: lease("pod-a", "2026-11-29T12:00:00Z") },
        ],
    ));
    assert!(elector(client).try_lead(now()).await.unwrap());
    let bodies = server.await.unwrap();
    assert_eq!(bodies[1]["spec"]["acquireTime"], "2026-11-29T11:59:58.000000Z");
    assert_eq!(bodies[1]["spec"]["renewTime"], "2026-11-29T12:00:00.000000Z");
}

#[tokio::test]
async fn on_shutdown_the_holder_gives_the_lease_up() {
    let (client, handle) = mock::client();
    let server = tokio::spawn(mock::serve(
        handle,
        vec![
            Expect { method: Method::GET, path: PATH.into(), status: StatusCode::OK, reply: lease("pod-a", "2026-11-29T11:59:58Z") },
            Expect { method: Method::PUT, path: format!("{PATH}?"), status: StatusCode::OK, reply: lease("pod-a", "2026-11-29T11:59:58Z") },
        ],
    ));
    assert!(elector(client).release().await.unwrap());
    let bodies = server.await.unwrap();
    assert!(bodies[1]["spec"].get("holderIdentity").is_none(), "{}", bodies[1]);
    assert_eq!(bodies[1]["metadata"]["resourceVersion"], "42");
}

#[tokio::test]
async fn a_replica_that_does_not_hold_the_lease_leaves_it_alone_on_shutdown() {
    let (client, mut handle) = mock::client();
    let elector = elector(client);
    let (released, _) = tokio::join!(
        elector.release(),
        mock::serve_one(
            &mut handle,
            Expect { method: Method::GET, path: PATH.into(), status: StatusCode::OK, reply: lease("pod-b", "2026-11-29T11:59:58Z") }
        )
    );
    assert!(!released.unwrap());
    mock::expect_no_more_calls(&mut handle).await;
}
