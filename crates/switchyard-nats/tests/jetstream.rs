//! The publisher and the monitor against a real nats-server with JetStream.

use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use switchyard_compile::bus::BusState;
use switchyard_nats::testing::{Auth, NatsServer};
use switchyard_nats::{PublishError, Publisher};
use tokio::sync::watch;

async fn connected(target: &switchyard_compile::snapshot::NatsTarget) -> Publisher {
    let publisher = Publisher::connect(target, "test").await.expect("options are valid");
    for _ in 0..200 {
        if publisher.is_connected() {
            return publisher;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the publisher did not connect");
}

async fn wait_for(rx: &mut watch::Receiver<BusState>, what: &str, want: impl Fn(&BusState) -> bool) -> BusState {
    let outcome = tokio::time::timeout(Duration::from_secs(15), rx.wait_for(|s| want(s))).await.map(|r| r.map(|s| s.clone()));
    match outcome {
        Ok(state) => state.expect("the monitor runs"),
        Err(_) => panic!("the monitor never reported {what}; last: {:?}", *rx.borrow()),
    }
}

#[tokio::test]
async fn an_acknowledged_event_is_in_the_stream_once_even_when_published_twice_with_its_id() {
    let server = NatsServer::start();
    let stream = server.create_stream("ORDERS", &["orders.>"]).await;
    let publisher = connected(&server.target()).await;
    let first = publisher.publish("orders.created", "evt-1", Bytes::from_static(b"{\"n\":1}")).await.unwrap();
    assert_eq!((first.stream.as_str(), first.sequence, first.duplicate), ("ORDERS", 1, false));
    let again = publisher.publish("orders.created", "evt-1", Bytes::from_static(b"{\"n\":1}")).await.unwrap();
    assert!(again.duplicate && again.sequence == 1, "{again:?}");
    let other = publisher.publish("orders.created", "evt-2", Bytes::from_static(b"{\"n\":2}")).await.unwrap();
    assert_eq!(other.sequence, 2);
    let mut stream = stream;
    assert_eq!(stream.info().await.unwrap().state.messages, 2);
    let message = stream.get_raw_message(1).await.unwrap();
    assert_eq!(message.payload, Bytes::from_static(b"{\"n\":1}"));
    assert_eq!(message.headers.get("Nats-Msg-Id").map(|v| v.as_str()), Some("evt-1"));
}

#[tokio::test]
async fn a_subject_without_a_stream_and_a_server_that_is_down_are_refused_and_the_publisher_reconnects() {
    let mut server = NatsServer::start();
    let publisher = connected(&server.target()).await;
    let refused = publisher.publish("nobody.listens", "e", Bytes::new()).await.unwrap_err();
    assert!(matches!(refused, PublishError::NoStream), "{refused:?}");
    server.create_stream("ORDERS", &["orders.*"]).await;
    server.stop();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let down = publisher.publish("orders.created", "e1", Bytes::new()).await.unwrap_err();
    assert!(matches!(down, PublishError::NotConnected | PublishError::TimedOut), "{down:?}");
    server.restart();
    let back = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match publisher.publish("orders.created", "e2", Bytes::new()).await {
                Ok(ack) => return ack,
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    })
    .await
    .expect("publishing works again within 10 s of the server's return");
    assert_eq!(back.stream, "ORDERS", "the file store kept the stream across the restart");
}

#[tokio::test]
async fn the_monitor_follows_the_connection_and_the_subjects_stream() {
    let mut server = NatsServer::start_with(Auth::Token("bus-t0ken".into()));
    let (tx, mut rx) = watch::channel(BusState::default());
    let task = tokio::spawn(switchyard_nats::monitor(server.source("orders.created"), tx));
    let state = wait_for(&mut rx, "NoStream", |s| matches!(s, BusState::NoStream { .. })).await;
    assert!(!format!("{state:?}").contains("bus-t0ken"));
    server.create_stream("ORDERS", &["orders.>"]).await;
    let state = wait_for(&mut rx, "Ready", |s| matches!(s, BusState::Ready { .. })).await;
    assert!(matches!(&state, BusState::Ready { stream, .. } if stream == "ORDERS"), "{state:?}");
    server.stop();
    let state = wait_for(&mut rx, "Unreachable", |s| matches!(s, BusState::Unreachable { .. })).await;
    assert!(!format!("{state:?}").contains("bus-t0ken"), "{state:?}");
    server.restart();
    wait_for(&mut rx, "Ready again", |s| matches!(s, BusState::Ready { .. })).await;
    task.abort();
}

#[tokio::test]
async fn a_wrong_token_is_unreachable_with_the_reason_and_never_the_token() {
    let server = NatsServer::start_with(Auth::Token("right".into()));
    let mut source = server.source("orders.created");
    source.target.credentials = Some(switchyard_compile::snapshot::NatsCredentials::Token {
        token: switchyard_compile::snapshot::SecretText("wr0ng-t0ken".into()),
    });
    let (tx, mut rx) = watch::channel(BusState::default());
    let task = tokio::spawn(switchyard_nats::monitor(source, tx));
    let state = wait_for(&mut rx, "Unreachable", |s| matches!(s, BusState::Unreachable { .. })).await;
    let text = format!("{state:?}");
    assert!(!text.contains("wr0ng-t0ken") && text.to_ascii_lowercase().contains("auth"), "{text}");
    task.abort();
    // The stream of a subscriber sees nothing either: nothing was published.
    let mut sub = server.client().await.subscribe("orders.>").await.unwrap();
    assert!(tokio::time::timeout(Duration::from_millis(100), sub.next()).await.is_err());
}
