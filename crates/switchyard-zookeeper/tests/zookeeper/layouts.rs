//! Each layout end to end, as applications register.

use switchyard_api::ZooKeeperLayout;
use switchyard_compile::Skipped;
use switchyard_zookeeper::layout::DUBBO_BINARY_WHY;
use switchyard_zookeeper::testing::{
    ZooKeeperServer, dubbo_encode, register_dubbo, register_plain, register_spring_cloud, spring_cloud_instance_json,
};

use crate::common::*;

#[tokio::test]
async fn spring_cloud_instances_serve_unless_down_disabled_or_malformed() {
    let server = ZooKeeperServer::start();
    let app = server.client().await;
    register_spring_cloud(&app, "orders", "a1", "10.0.0.1", 8080, None, &[("instance_status", "UP")]).await.unwrap();
    register_spring_cloud(&app, "orders", "a2", "10.0.0.2", 8080, Some(8443), &[]).await.unwrap();
    let down = register_spring_cloud(&app, "orders", "a3", "10.0.0.3", 8080, None, &[("instance_status", "OUT_OF_SERVICE")]);
    let down = down.await.unwrap();
    register_spring_cloud(&app, "orders", "a4", "10.0.0.4", 8080, None, &[("enabled", "false")]).await.unwrap();
    register_plain(&app, "/services/orders", "broken", b"{\"address\": \"10.0.0.9\", ").await.unwrap();

    let mut watch = start_watch(server.watch_spec("/services/orders", ZooKeeperLayout::SpringCloud));
    let seen = watch.until_synced_with(&[http("10.0.0.1", 8080, 1), https("10.0.0.2", 8443, 1)]).await;
    let [Skipped { entry, why, malformed: true }] = seen.skipped.as_slice() else { panic!("{:?}", seen.skipped) };
    assert_eq!(entry, "broken");
    assert!(why.contains("not JSON"), "{why}");
    assert_eq!(seen.malformed_total, 1);

    // The instance comes back into service (Spring Boot's service-registry endpoint).
    let up = spring_cloud_instance_json("orders", "a3", "10.0.0.3", 8080, None, &[("instance_status", "UP")]);
    app.set_data(&down, up.as_bytes(), None).await.unwrap();
    // Sorted: http before https.
    watch.until_synced_with(&[http("10.0.0.1", 8080, 1), http("10.0.0.3", 8080, 1), https("10.0.0.2", 8443, 1)]).await;

    // Deregistration, and an app whose session ends (its ephemeral node goes).
    app.delete("/services/orders/a1", None).await.unwrap();
    let other_app = server.client().await;
    register_spring_cloud(&other_app, "orders", "b1", "10.0.1.1", 8080, None, &[]).await.unwrap();
    watch.until_synced_with(&[http("10.0.0.3", 8080, 1), http("10.0.1.1", 8080, 1), https("10.0.0.2", 8443, 1)]).await;
    drop(other_app);
    let seen = watch.until_synced_with(&[http("10.0.0.3", 8080, 1), https("10.0.0.2", 8443, 1)]).await;
    assert_eq!(seen.malformed_total, 1, "the malformed entry is counted once, however often it is read");
}

#[tokio::test]
async fn dubbo_http_providers_serve_and_binary_ones_are_named() {
    let server = ZooKeeperServer::start();
    let app = server.client().await;
    let interface = "com.example.OrderService";
    let providers = [
        "tri://127.0.0.1:50051/com.example.OrderService?application=shop&weight=200&enabled=true&methods=place,cancel",
        "rest://10.0.0.2:8080/com.example.OrderService?application=shop",
        "dubbo://10.0.0.3:20880/com.example.OrderService?application=legacy",
        "tri://10.0.0.4:50051/com.example.OrderService?application=shop&enabled=false",
        "grpc://10.0.0.5:50051/com.example.OrderService",
    ];
    for url in providers {
        register_dubbo(&app, interface, url).await.unwrap();
    }
    // Consumers register next to providers; they are not instances.
    let consumer = format!("/dubbo/{interface}/consumers/{}", dubbo_encode("consumer://10.0.9.9/com.example.OrderService"));
    create_ephemeral(&app, &consumer, b"").await;

    let mut watch = start_watch(server.watch_spec(&format!("/dubbo/{interface}"), ZooKeeperLayout::Dubbo));
    let seen = watch.until_synced_with(&[http("10.0.0.2", 8080, 100), http("127.0.0.1", 50051, 200)]).await;
    let binary = seen.skipped.iter().find(|s| !s.malformed).expect("the dubbo:// provider is named");
    assert_eq!(binary.why, DUBBO_BINARY_WHY);
    assert_eq!(binary.entry, "dubbo://10.0.0.3:20880/com.example.OrderService", "named by its URL, without the query");
    let malformed: Vec<_> = seen.skipped.iter().filter(|s| s.malformed).collect();
    assert_eq!(malformed.len(), 1, "{:?}", seen.skipped);
    assert!(malformed[0].why.contains("grpc://"), "{}", malformed[0].why);
    assert_eq!(seen.malformed_total, 1);

    // A provider's session ends: it is gone.
    let scaled = server.client().await;
    register_dubbo(&scaled, interface, "tri://10.0.0.6:50051/com.example.OrderService?weight=50").await.unwrap();
    watch.until_synced_with(&[http("10.0.0.2", 8080, 100), http("10.0.0.6", 50051, 50), http("127.0.0.1", 50051, 200)]).await;
    drop(scaled);
    watch.until_synced_with(&[http("10.0.0.2", 8080, 100), http("127.0.0.1", 50051, 200)]).await;
}

#[tokio::test]
async fn plain_names_and_json_with_weights() {
    let server = ZooKeeperServer::start();
    let app = server.client().await;
    let dir = "/plain/web";
    register_plain(&app, dir, "10.0.0.1:8080", b"").await.unwrap();
    register_plain(&app, dir, "[::1]:8081", b"").await.unwrap();
    let weighted = register_plain(&app, dir, "node-1", br#"{"host":"10.0.0.3","port":9090,"weight":5}"#).await.unwrap();
    register_plain(&app, dir, "node-2", br#"{"host":"10.0.0.4","port":9090,"weight":0}"#).await.unwrap();
    register_plain(&app, dir, "10.0.0.5", b"").await.unwrap();
    register_plain(&app, dir, "node-3", br#"{"host":"10.0.0.6","port":9090,"weight":"heavy"}"#).await.unwrap();

    let mut watch = start_watch(server.watch_spec(dir, ZooKeeperLayout::Plain));
    let seen = watch.until_synced_with(&[http("10.0.0.1", 8080, 1), http("10.0.0.3", 9090, 5), http("::1", 8081, 1)]).await;
    let mut skipped: Vec<_> = seen.skipped.iter().map(|s| (s.entry.as_str(), s.malformed)).collect();
    skipped.sort();
    assert_eq!(skipped, [("10.0.0.5", true), ("node-3", true)]);
    assert_eq!(seen.malformed_total, 2);

    // A data change (a new weight) is a change too.
    app.set_data(&weighted, br#"{"host":"10.0.0.3","port":9090,"weight":7}"#, None).await.unwrap();
    watch.until_synced_with(&[http("10.0.0.1", 8080, 1), http("10.0.0.3", 9090, 7), http("::1", 8081, 1)]).await;
    // Fixing a malformed entry takes it out of `skipped`; the counter stays.
    app.set_data("/plain/web/node-3", br#"{"host":"10.0.0.6","port":9090,"weight":2}"#, None).await.unwrap();
    let seen = watch
        .until_synced_with(&[http("10.0.0.1", 8080, 1), http("10.0.0.3", 9090, 7), http("10.0.0.6", 9090, 2), http("::1", 8081, 1)])
        .await;
    assert_eq!(seen.skipped.len(), 1);
    assert_eq!(seen.malformed_total, 2);
}
