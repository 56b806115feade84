//! Against small scripted servers on loopback (the real redis-server is exercised by the
//! end-to-end tests in crates/switchyard/tests/signature_auth.rs).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::net::TcpListener;

use super::*;

/// A server that answers `SET ... NX` like Redis (from one shared key set) and PING;
/// `close_after` replies it closes the connection (a restart seen from the pool).
async fn fake_redis(close_after: Option<usize>) -> (String, Arc<Mutex<usize>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let keys = Arc::new(Mutex::new(HashSet::new()));
    let connections = Arc::new(Mutex::new(0));
    let counted = connections.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            *counted.lock().unwrap() += 1;
            let keys = keys.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut replies = 0;
                let mut chunk = [0u8; 1024];
                loop {
                    let Ok(n) = stream.read(&mut chunk).await else { return };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buf).into_owned();
                    let parts: Vec<&str> = text.split("\r\n").collect();
                    let reply: &[u8] = if text.contains("PING") {
                        b"+PONG\r\n"
                    } else if parts.len() >= 13 {
                        if parts[4] == "boom" {
                            b"-ERR boom\r\n"
                        } else if keys.lock().unwrap().insert(parts[4].to_owned()) {
                            b"+OK\r\n"
                        } else {
                            b"$-1\r\n"
                        }
                    } else {
                        continue;
                    };
                    buf.clear();
                    stream.write_all(reply).await.unwrap();
                    replies += 1;
                    if close_after == Some(replies) {
                        return;
                    }
                }
            });
        }
    });
    (format!("redis://{addr}"), connections)
}

#[tokio::test]
async fn a_key_is_set_once_and_then_reported_as_existing() {
    let (url, connections) = fake_redis(None).await;
    let client = Client::from_url(&url).unwrap();
    client.ping().await.unwrap();
    assert!(client.set_nx_px(b"switchyard:nonce:a", b"1", 900_000).await.unwrap());
    assert!(!client.set_nx_px(b"switchyard:nonce:a", b"1", 900_000).await.unwrap());
    assert!(client.set_nx_px(b"switchyard:nonce:b", b"1", 900_000).await.unwrap());
    assert_eq!(*connections.lock().unwrap(), 1, "one connection, reused by the thread");
}

#[tokio::test]
async fn an_error_reply_is_an_error_not_a_replay() {
    let (url, _) = fake_redis(None).await;
    let error = Client::from_url(&url).unwrap().set_nx_px(b"boom", b"1", 1).await.unwrap_err();
    assert_eq!(error.kind(), "error reply");
    assert!(error.to_string().contains("ERR boom"), "{error}");
}

#[tokio::test]
async fn a_connection_the_server_closed_is_replaced_and_the_command_sent_again() {
    let (url, connections) = fake_redis(Some(1)).await;
    let client = Client::from_url(&url).unwrap();
    assert!(client.set_nx_px(b"k1", b"1", 1000).await.unwrap());
    // The pooled connection is closed by now; the next command must not fail for it.
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(client.set_nx_px(b"k2", b"1", 1000).await.unwrap());
    assert!(!client.set_nx_px(b"k2", b"1", 1000).await.unwrap());
    assert_eq!(*connections.lock().unwrap(), 3);
}

#[tokio::test]
async fn a_refused_connection_fails_at_once() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let started = Instant::now();
    let error = Client::from_url(&format!("redis://127.0.0.1:{port}")).unwrap().ping().await.unwrap_err();
    assert_eq!(error.kind(), "connection refused");
    assert!(started.elapsed() < Duration::from_millis(400));
    assert!(error.to_string().contains(&format!("127.0.0.1:{port}")), "the log gets the address: {error}");
}

#[tokio::test]
async fn a_server_that_never_answers_times_out() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            open.push(stream);
        }
    });
    let client = Client::from_url(&format!("redis://{addr}")).unwrap().with_timeouts(DEFAULT_TIMEOUT, Duration::from_millis(200));
    let started = Instant::now();
    let error = client.set_nx_px(b"k", b"1", 1000).await.unwrap_err();
    assert_eq!(error.kind(), "no answer in time");
    assert!((Duration::from_millis(200)..Duration::from_millis(1000)).contains(&started.elapsed()));
    held.abort();
}

#[test]
fn urls_are_a_host_and_a_port() {
    for (url, addr) in [
        ("redis://127.0.0.1:6380", "127.0.0.1:6380"),
        ("redis://redis.switchyard.svc", "redis.switchyard.svc:6379"),
        ("redis://redis:7000/", "redis:7000"),
        ("redis://[::1]:6379", "[::1]:6379"),
        ("redis://[::1]", "[::1]:6379"),
    ] {
        assert_eq!(Client::from_url(url).unwrap().addr(), addr, "{url}");
    }
    for url in
        ["http://redis:6379", "redis://", "redis://:6379", "redis://h:0", "redis://h:x", "redis://u:p@h:1", "redis://h:1/2", "rediss://h"]
    {
        assert!(Client::from_url(url).is_err(), "{url}");
    }
}
