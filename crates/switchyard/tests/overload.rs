//! Overload: a backend slower than the offered load. The proxy keeps at most the
//! backend's `circuitBreaker.maxRequests` waiting on it and sheds the rest at once with
//! 503 `D503OL` (never blamed on the backend, never queued), while other routes and the
//! health endpoints keep answering.

mod support;

use std::time::{Duration, Instant};

use support::upstream::Upstream;
use support::{ConfigDir, Switchyard, get};

const LIMIT: usize = 4;
const OFFERED: usize = 40;

fn config(slow: &Upstream) -> String {
    format!(
        "apiVersion: switchyard.dev/v1alpha1\nkind: BackendService\nmetadata: {{name: slow}}\nspec:\n  http: {{urls: [\"{}\"]}}\n  timeout: 10s\n  circuitBreaker: {{maxRequests: {LIMIT}}}\n---\n\
         apiVersion: switchyard.dev/v1alpha1\nkind: ApiRoute\nmetadata: {{name: slow}}\nspec: {{match: {{path: /slow}}, backendRefs: [{{name: slow}}], timeout: 10s}}\n---\n\
         apiVersion: switchyard.dev/v1alpha1\nkind: BackendService\nmetadata: {{name: quick}}\nspec: {{mock: {{statusCode: 200, body: quick}}}}\n---\n\
         apiVersion: switchyard.dev/v1alpha1\nkind: ApiRoute\nmetadata: {{name: quick}}\nspec: {{match: {{path: /quick}}, backendRefs: [{{name: quick}}]}}\n---\n\
         apiVersion: switchyard.dev/v1alpha1\nkind: BackendService\nmetadata: {{name: broken}}\nspec:\n  http: {{urls: [\"{}\"]}}\n  circuitBreaker: {{maxRequests: 0}}\n",
        slow.url(),
        slow.url()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_backend_gets_at_most_its_limit_in_flight_and_the_rest_are_shed_at_once_while_other_routes_answer() {
    let slow = Upstream::start_slow("slow", 1_500).await;
    let dir = ConfigDir::with(&[("overload.yaml", &config(&slow))]);
    let gw = Switchyard::standalone(dir.path(), &[]);
    gw.wait_ready().await;
    assert_eq!(
        gw.condition("BackendService", "broken", "Accepted").await,
        Some(("False".into(), "InvalidSpec".into())),
        "maxRequests 0 is refused, and the rest of the folder still serves"
    );

    let started = Instant::now();
    let url = gw.proxy_url("/slow");
    let offered: Vec<_> = (0..OFFERED)
        .map(|_| {
            tokio::spawn({
                let url = url.clone();
                async move {
                    let reply = get(&url).await.unwrap();
                    (reply.status.as_u16(), reply.error_code().map(str::to_owned), started.elapsed())
                }
            })
        })
        .collect();
    // While the slow requests wait: another route and the health endpoint answer at once.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let t = Instant::now();
    let quick = get(&gw.proxy_url("/quick")).await.unwrap();
    assert_eq!((quick.status.as_u16(), quick.text().as_str()), (200, "quick"));
    assert_eq!(get(&gw.url("admin", "/healthz")).await.unwrap().status, 200);
    assert!(t.elapsed() < Duration::from_millis(500), "other routes waited {:?}", t.elapsed());

    let mut served = 0;
    let mut shed = 0;
    for task in offered {
        let (status, code, took) = task.await.unwrap();
        match status {
            200 => served += 1,
            503 => {
                assert_eq!(code.as_deref(), Some("D503OL"));
                assert!(took < Duration::from_millis(1_000), "a shed request waited {took:?} instead of being refused at once");
                shed += 1;
            }
            other => panic!("unexpected status {other} ({code:?})"),
        }
    }
    assert_eq!(served, LIMIT, "exactly the limit reached the backend at once");
    assert_eq!(shed, OFFERED - LIMIT);
    assert_eq!(slow.hits(), LIMIT, "no shed request reached the backend");

    // The places are given back: the backend serves again, and shedding is not an outlier.
    let again = get(&url).await.unwrap();
    assert_eq!(again.status, 200, "{:?}", again.error_code());
    let metrics = get(&gw.url("admin", "/metrics")).await.unwrap().text();
    let shed_series =
        metrics.lines().find(|l| l.contains("D503OL") && !l.starts_with('#')).unwrap_or_else(|| panic!("no D503OL series in\n{metrics}"));
    assert!(shed_series.ends_with(&format!(" {}", OFFERED - LIMIT)), "{shed_series}");
}
