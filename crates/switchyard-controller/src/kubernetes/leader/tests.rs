use http::{Method, StatusCode};
use serde_json::json;

use std::time::Duration;

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

/// The GET a round starts with, answering `lease`.
fn get_lease(reply: serde_json::Value) -> Expect {
    Expect { method: Method::GET, path: PATH.into(), status: StatusCode::OK, reply }
}

#[tokio::test(start_paused = true)]
async fn a_lease_seen_unchanged_for_its_duration_is_taken_over_with_the_version_that_was_read() {
    let (client, mut handle) = mock::client();
    let elector = elector(client);
    let stale = lease("pod-b", "2026-11-29T11:59:00Z");
    let round = tokio::time::timeout(Duration::from_secs(1), elector.try_lead(now()));
    let (first, _) = tokio::join!(round, mock::serve_one(&mut handle, get_lease(stale.clone())));
    assert!(
        !first.expect("no takeover attempt yet").unwrap(),
        "first sight: the holder may still be renewing, whatever its renewTime says"
    );
    tokio::time::advance(Duration::from_secs(16)).await;
    let put =
        Expect { method: Method::PUT, path: format!("{PATH}?"), status: StatusCode::OK, reply: lease("pod-a", "2026-11-29T12:00:00Z") };
    let server = tokio::spawn(mock::serve(handle, vec![get_lease(stale), put]));
    assert!(elector.try_lead(now()).await.unwrap());
    let bodies = server.await.unwrap();
    assert_eq!(bodies[1]["metadata"]["resourceVersion"], "42", "optimistic concurrency");
    assert_eq!(bodies[1]["spec"]["holderIdentity"], "pod-a");
}

#[tokio::test(start_paused = true)]
async fn a_lease_renewed_by_a_holder_whose_clock_lags_is_never_taken_over() {
    // The holder's clock is an hour behind: every renewTime looks long expired to a
    // replica comparing wall clocks. It keeps renewing, so the lease is never free.
    let (client, mut handle) = mock::client();
    let elector = elector(client);
    for minute in 0..4 {
        let renewed = format!("2026-11-29T11:0{minute}:00Z");
        let round = tokio::time::timeout(Duration::from_secs(1), elector.try_lead(now()));
        let (leads, _) = tokio::join!(round, mock::serve_one(&mut handle, get_lease(lease("pod-b", &renewed))));
        assert!(!leads.expect("no takeover attempt").unwrap(), "round {minute}");
        tokio::time::advance(Duration::from_secs(10)).await;
    }
    mock::expect_no_more_calls(&mut handle).await;
}

#[tokio::test]
async fn losing_the_race_for_a_free_lease_is_not_leading() {
    let (client, handle) = mock::client();
    let mut released = lease("pod-b", "2026-11-29T11:59:00Z");
    released["spec"].as_object_mut().unwrap().remove("holderIdentity");
    let server = tokio::spawn(mock::serve(
        handle,
        vec![
            get_lease(released),
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
