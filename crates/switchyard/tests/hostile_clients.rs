//! Slow and hostile clients against the real binary on loopback (issue 18 item 2): a
//! slowloris client and an idle kept-alive connection are cut off at the header read
//! timeout, a body trickling in gets 408 at the route's timeout, a worker refuses
//! connections over its cap with a 503 and a code, and every
//! request-smuggling shape is refused with a 4xx and its code (or, for Content-Length beside
//! Transfer-Encoding, re-framed so nothing is smuggled) without reaching the upstream or
//! counting against it. The observed behaviour of each case is in docs/reliability.md; the
//! HTTP/2 limits are in hostile_h2_clients.rs.

mod support;

use std::time::{Duration, Instant};

use support::upstream::Upstream;
use support::{ConfigDir, Switchyard, get};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const API: &str = "apiVersion: switchyard.dev/v1alpha1";

/// One upstream behind `/up` (prefix), ejected after a single failure: any request the
/// gateway blamed on it would take it out of rotation, and the next good request would
/// get 503 instead of its answer.
async fn gateway(up: &Upstream, flags: &[&str]) -> (ConfigDir, Switchyard) {
    gateway_with(up, "", flags).await
}

/// [`gateway`] with more of the route's spec (`route_spec`, indented lines).
async fn gateway_with(up: &Upstream, route_spec: &str, flags: &[&str]) -> (ConfigDir, Switchyard) {
    let manifests = format!(
        "{API}\nkind: BackendService\nmetadata: {{name: up}}\nspec:\n  http: {{urls: [\"{}\"]}}\n  healthCheck: {{passive: {{consecutiveFailures: 1, ejectionTime: 60s}}}}\n---\n\
         {API}\nkind: ApiRoute\nmetadata: {{name: up}}\nspec:\n  match: {{path: /up, pathType: Prefix}}\n  backendRefs: [{{name: up}}]\n{route_spec}",
        up.url()
    );
    let config = ConfigDir::with(&[("all.yaml", &manifests)]);
    let gw = Switchyard::standalone(config.path(), flags);
    gw.wait_ready().await;
    (config, gw)
}

/// Everything the gateway writes until it closes the connection (at most 10 s).
async fn until_closed(stream: &mut TcpStream) -> String {
    let mut answer = Vec::new();
    let mut chunk = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return String::from_utf8_lossy(&answer).into_owned(),
            Ok(Ok(n)) => answer.extend_from_slice(&chunk[..n]),
            Err(_) => panic!("the gateway kept the connection open for 10 s; it wrote {:?}", String::from_utf8_lossy(&answer)),
        }
    }
}

/// Writes `bytes` on a fresh connection and returns all the gateway wrote back before
/// closing it.
async fn exchange(gw: &Switchyard, bytes: &[u8]) -> String {
    let mut stream = TcpStream::connect(gw.addrs["proxy"]).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    until_closed(&mut stream).await
}

fn status_of(answer: &str) -> u16 {
    answer.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("no status line in {answer:?}"))
}

fn header_of<'a>(answer: &'a str, name: &str) -> Option<&'a str> {
    let head = answer.split("\r\n\r\n").next()?;
    head.split("\r\n").skip(1).filter_map(|l| l.split_once(':')).find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.trim())
}

/// The upstream still serves through the gateway: it was not ejected.
async fn still_served(gw: &Switchyard, up: &Upstream) {
    let before = up.hits();
    let reply = get(&gw.proxy_url("/up/after")).await.unwrap();
    assert_eq!(reply.status, 200, "the upstream was blamed for a client's fault: {}", reply.text());
    assert_eq!(up.hits(), before + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slowloris_client_is_cut_off_at_the_header_read_timeout_while_others_are_served() {
    let up = Upstream::start("up").await;
    let (_config, gw) = gateway(&up, &["--header-read-timeout", "3s"]).await;
    let mut slow = TcpStream::connect(gw.addrs["proxy"]).await.unwrap();
    let started = Instant::now();
    slow.write_all(b"GET /up/slow HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    // One header byte a second, as long as the gateway takes them.
    let mut cut_after = None;
    for byte in b"X-Slow: aaaaaaaaaaaaaaaaaaaaaaaaa".iter().cycle().take(20) {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let served = get(&gw.proxy_url("/up/meanwhile")).await.unwrap();
        assert_eq!(served.status, 200, "another client is served during the attack");
        if slow.write_all(&[*byte]).await.is_err() {
            cut_after = Some(started.elapsed());
            break;
        }
        let mut probe = [0u8; 256];
        if let Ok(Ok(0) | Err(_)) = tokio::time::timeout(Duration::from_millis(1), slow.read(&mut probe)).await {
            cut_after = Some(started.elapsed());
            break;
        }
    }
    let cut_after = cut_after.expect("the slowloris connection was never cut off");
    assert!(cut_after >= Duration::from_millis(2900) && cut_after < Duration::from_secs(6), "cut off after {cut_after:?}");
    assert!(up.hits() >= 1 && gw.access_log().iter().all(|l| !l.contains("/up/slow")), "the slow request never reached the upstream");
    still_served(&gw, &up).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_kept_alive_connection_is_closed_at_the_header_read_timeout() {
    let up = Upstream::start("up").await;
    let (_config, gw) = gateway(&up, &["--header-read-timeout", "2s"]).await;
    let mut stream = TcpStream::connect(gw.addrs["proxy"]).await.unwrap();
    stream.write_all(b"GET /up/once HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let mut head = [0u8; 4096];
    let n = stream.read(&mut head).await.unwrap();
    assert!(head[..n].starts_with(b"HTTP/1.1 200"), "{:?}", String::from_utf8_lossy(&head[..n]));
    let answered = Instant::now();
    let rest = until_closed(&mut stream).await;
    let idle = answered.elapsed();
    assert!(!rest.starts_with("HTTP/"), "nothing more is written to an idle connection: {rest:?}");
    assert!(idle >= Duration::from_millis(1900) && idle < Duration::from_secs(4), "closed after {idle:?} idle");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_per_worker_cap_are_refused_with_503_a503cl_and_a_freed_slot_serves_again() {
    let up = Upstream::start("up").await;
    let (_config, gw) = gateway(&up, &["--workers", "1", "--max-connections-per-worker", "3"]).await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(TcpStream::connect(gw.addrs["proxy"]).await.unwrap());
    }
    // Let the worker accept (and count) the three before the fourth arrives.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let refused = exchange(&gw, b"GET /up/fourth HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(status_of(&refused), 503, "{refused}");
    assert_eq!(header_of(&refused, "x-ca-error-code"), Some("A503CL"), "{refused}");
    assert!(refused.contains("\"code\":\"A503CL\""), "the JSON body names the code: {refused}");
    assert_eq!(up.hits(), 0, "a refused connection's request never reaches the upstream");

    held.pop();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let served = exchange(&gw, b"GET /up/freed HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await;
    assert_eq!(status_of(&served), 200, "{served}");
    assert_eq!(up.hits(), 1);
}

/// A body that keeps arriving, one byte every 200 ms (1000 declared): no idle timer would
/// fire, but the route's timeout (2 s) bounds the whole request, body included, so the
/// client gets 408 `A408BT` when it runs out, whatever the pace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_trickling_in_a_byte_at_a_time_gets_408_a408bt_at_the_route_timeout_and_others_are_served() {
    let up = Upstream::start("up").await;
    let (_config, gw) = gateway_with(&up, "  timeout: 2s\n", &[]).await;
    for path in ["/up/trickle", "/up/trickle-again"] {
        let stream = TcpStream::connect(gw.addrs["proxy"]).await.unwrap();
        let (mut reader, mut writer) = stream.into_split();
        let started = Instant::now();
        writer.write_all(format!("POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n").as_bytes()).await.unwrap();
        let trickle = tokio::spawn(async move {
            for _ in 0..1000 {
                tokio::time::sleep(Duration::from_millis(200)).await;
                if writer.write_all(b"x").await.is_err() {
                    return;
                }
            }
        });
        let mut answer = Vec::new();
        let mut chunk = [0u8; 4096];
        while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = tokio::time::timeout(Duration::from_secs(10), reader.read(&mut chunk)).await.expect("an answer within 10 s").unwrap();
            assert!(n > 0, "closed without an answer");
            answer.extend_from_slice(&chunk[..n]);
        }
        let answered = started.elapsed();
        trickle.abort();
        let answer = String::from_utf8_lossy(&answer).into_owned();
        assert_eq!((status_of(&answer), header_of(&answer, "x-ca-error-code")), (408, Some("A408BT")), "{answer}");
        assert!(answered >= Duration::from_millis(1900) && answered < Duration::from_secs(4), "answered after {answered:?}");
        let served = get(&gw.proxy_url("/up/meanwhile")).await.unwrap();
        assert_eq!(served.status, 200, "another client is served");
    }
    still_served(&gw, &up).await;
}

/// A request the gateway must refuse: its status and code. The upstream must not see it, except a body that goes bad after its first chunk
/// (`streamed`): bodies stream, so the head is already on its way, and the upstream's
/// request is then cut off, never completed.
struct Refused {
    case: &'static str,
    bytes: String,
    status: u16,
    code: Option<&'static str>,
    streamed: bool,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_smuggling_shapes_are_refused_with_a_4xx_never_reach_the_upstream_and_never_count_against_it() {
    let up = Upstream::start("up").await;
    let (_config, gw) = gateway(&up, &[]).await;
    let post = |headers: &str, body: &str| format!("POST /up/x HTTP/1.1\r\nHost: x\r\n{headers}\r\n{body}");
    let cases = [
        Refused {
            case: "Transfer-Encoding: chunked, identity",
            bytes: post("Transfer-Encoding: chunked, identity\r\n", "0\r\n\r\n"),
            status: 400,
            code: Some("A400BR"),
            streamed: false,
        },
        Refused {
            case: "Transfer-Encoding: identity",
            bytes: post("Transfer-Encoding: identity\r\n", "x"),
            status: 400,
            code: Some("A400BR"),
            streamed: false,
        },
        Refused {
            case: "two Transfer-Encoding lines, chunked not last",
            bytes: post("Transfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n", "0\r\n\r\n"),
            status: 400,
            code: Some("A400BR"),
            streamed: false,
        },
        Refused {
            case: "two different Content-Length values",
            bytes: post("Content-Length: 5\r\nContent-Length: 6\r\n", "hello!"),
            status: 400,
            code: Some("A400BR"),
            streamed: false,
        },
        Refused {
            case: "Content-Length list 5, 6",
            bytes: post("Content-Length: 5, 6\r\n", "hello!"),
            status: 400,
            code: Some("A400BR"),
            streamed: false,
        },
        Refused {
            case: "Content-Length not a number",
            bytes: post("Content-Length: +5\r\n", "hello"),
            status: 400,
            code: Some("A400BR"),
            streamed: false,
        },
        Refused {
            case: "chunked on HTTP/1.0",
            bytes: "POST /up/x HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".to_owned(),
            status: 400,
            code: Some("A400BR"),
            streamed: false,
        },
        Refused {
            case: "a space before the colon",
            bytes: post("Content-Length : 5\r\n", "hello"),
            status: 400,
            code: Some("A400BR"),
            streamed: false,
        },
        Refused {
            case: "obs-fold",
            bytes: post("X-Folded: a\r\n  b\r\nContent-Length: 0\r\n", ""),
            status: 400,
            code: Some("A400BR"),
            streamed: false,
        },
        Refused {
            case: "a bad chunk size",
            bytes: post("Transfer-Encoding: chunked\r\n", "zz\r\nhello\r\n0\r\n\r\n"),
            status: 400,
            code: Some("A400MB"),
            streamed: false,
        },
        Refused {
            case: "a chunk size overflowing 64 bits",
            bytes: post("Transfer-Encoding: chunked\r\n", "fffffffffffffffff1\r\nhello\r\n0\r\n\r\n"),
            status: 400,
            code: Some("A400MB"),
            streamed: false,
        },
        Refused {
            case: "a chunk cut short (no CRLF after its data)",
            bytes: post("Transfer-Encoding: chunked\r\n", "5\r\nhelloXX0\r\n\r\n"),
            status: 400,
            code: Some("A400MB"),
            streamed: true,
        },
        Refused {
            case: "a head over 64 KiB",
            bytes: format!("GET /up/x HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n", "v".repeat(70 * 1024)),
            status: 431,
            code: Some("A431HL"),
            streamed: false,
        },
        Refused {
            case: "a head over 8 KiB",
            bytes: format!("GET /up/x HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Big: {}\r\n\r\n", "v".repeat(9 * 1024)),
            status: 431,
            code: Some("A431HL"),
            streamed: false,
        },
        Refused {
            case: "a NUL in a header value",
            bytes: post("X-Nul: a\0b\r\nContent-Length: 0\r\n", ""),
            status: 400,
            code: Some("A400BR"),
            streamed: false,
        },
    ];
    let mut failures = Vec::new();
    for case in &cases {
        let hits = up.hits();
        let answer = exchange(&gw, case.bytes.as_bytes()).await;
        let observed = (answer.split(' ').nth(1).and_then(|s| s.parse::<u16>().ok()), header_of(&answer, "x-ca-error-code"));
        eprintln!("{}: {:?} {:?}, reached the upstream: {}", case.case, observed.0, observed.1, up.hits() != hits);
        if observed != (Some(case.status), case.code) {
            failures.push(format!("{}: wanted {} {:?}, got {:?} in {answer:?}", case.case, case.status, case.code, observed));
        }
        if let Some(code) = case.code
            && !answer.contains(&format!("\"code\":\"{code}\""))
        {
            failures.push(format!("{}: the JSON body does not name {code}: {answer:?}", case.case));
        }
        if up.hits() != hits && !case.streamed {
            failures.push(format!("{}: reached the upstream", case.case));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    still_served(&gw, &up).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_length_beside_chunked_is_reframed_so_the_upstream_sees_one_request_and_nothing_is_smuggled() {
    let up = Upstream::start("up").await;
    let (_config, gw) = gateway(&up, &[]).await;
    // CL.TE: a front end trusting Content-Length would forward the smuggled GET as the
    // body; one trusting Transfer-Encoding would see it as the next request.
    let smuggle = "POST /up/front HTTP/1.1\r\nHost: x\r\nContent-Length: 44\r\nTransfer-Encoding: chunked\r\n\r\n\
                   0\r\n\r\nGET /up/smuggled HTTP/1.1\r\nHost: x\r\n\r\n";
    let answer = exchange(&gw, smuggle.as_bytes()).await;
    assert_eq!(status_of(&answer), 200, "{answer}");
    assert_eq!(answer.matches("HTTP/1.1 ").count(), 1, "one answer, then the connection closed: {answer}");
    let echo: serde_json::Value = serde_json::from_str(answer.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    assert_eq!(echo["path"], "/up/front");
    assert_eq!(echo["bodyLength"], 0, "the chunked framing won: the body is empty");
    assert!(echo["headers"].get("content-length").is_none_or(|v| v == "0"), "the conflicting length was dropped: {echo}");
    assert_eq!(up.hits(), 1, "the smuggled GET never reached the upstream");
    assert!(gw.access_log().iter().all(|l| !l.contains("/up/smuggled")), "nor was it served by the gateway");
    still_served(&gw, &up).await;
}

/// An upstream's own bare `400` (no body) is a backend answer and passes through untouched:
/// the layer that codes hyper's parse-error answers must not take it for one of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstreams_empty_400_passes_through_without_a_gateway_error_code() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let upstream = tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else { continue };
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if stream.read(&mut byte).await.unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(byte[0]);
                }
                let _ = stream.write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n").await;
            });
        }
    });
    let manifests = format!(
        "{API}\nkind: BackendService\nmetadata: {{name: bare}}\nspec:\n  http: {{urls: [\"http://{addr}\"]}}\n---\n\
         {API}\nkind: ApiRoute\nmetadata: {{name: bare}}\nspec:\n  match: {{path: /bare}}\n  backendRefs: [{{name: bare}}]\n"
    );
    let config = ConfigDir::with(&[("bare.yaml", &manifests)]);
    let gw = Switchyard::standalone(config.path(), &[]);
    gw.wait_ready().await;
    for _ in 0..3 {
        let reply = get(&gw.proxy_url("/bare")).await.unwrap();
        assert_eq!(reply.status, 400);
        assert_eq!(reply.error_code(), None, "the upstream's answer was coded as the gateway's: {:?}", reply.headers);
        assert!(reply.body.is_empty(), "{:?}", reply.text());
        assert!(reply.header("x-ca-request-id").is_some());
    }
    upstream.abort();
    drop(config);
}
