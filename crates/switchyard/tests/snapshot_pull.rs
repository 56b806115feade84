//! The proxy's snapshot pull against a controller that misbehaves on the wire: one that
//! sends the response headers and part of the body, then stops. The proxy must notice,
//! say so in its log, reconnect, and show how stale its configuration is.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use support::{Switchyard, wait_until};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A "controller" that answers every pull with headers and a few bytes of body, then
/// holds the connection open forever. Counts the connections it accepted.
async fn stalling_controller() -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else { return };
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = stream.read(&mut buf).await;
                let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 100000\r\n\r\n{\"version\": 1, \"rou";
                let _ = stream.write_all(head.as_bytes()).await;
                tokio::time::sleep(Duration::from_secs(3600)).await;
            });
        }
    });
    (addr, accepted)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pull_whose_body_stalls_is_abandoned_logged_and_retried_and_its_age_is_exported() {
    let (controller, accepted) = stalling_controller().await;
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "t0ken").unwrap();
    let url = format!("http://{controller}");
    let proxy = Switchyard::proxy_with(&url, &token, dir.path(), &["--controller-insecure-http", "--pull-stall-timeout", "500ms"]);
    wait_until("the proxy reconnects after a stalled body", Duration::from_secs(10), || async { accepted.load(Ordering::SeqCst) >= 2 })
        .await;
    let log = proxy.log_text();
    assert!(log.contains("snapshot pull failed") && log.contains("stalled"), "{log}");
    wait_until("the pull age is exported and grows", Duration::from_secs(10), || async {
        let metrics = support::get(&proxy.url("metrics", "/metrics")).await.unwrap().text();
        metrics
            .lines()
            .find_map(|l| l.strip_prefix("switchyard_proxy_snapshot_pull_age_seconds "))
            .and_then(|v| v.trim().parse::<i64>().ok())
            .is_some_and(|age| age >= 2)
    })
    .await;
}
