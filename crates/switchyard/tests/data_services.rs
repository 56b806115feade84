//! `dataService` backends end to end: the real binary (standalone) serving read-only SQL
//! APIs over a real PostgreSQL 15 and an SQLite file shipped in the config folder.

mod support;

use std::time::Duration;

use http::Method;
use serde_json::{Value, json};
use support::{ConfigDir, Switchyard, get, send, wait_until};
use switchyard_sql::Driver;
use switchyard_sql::testing::{self, Postgres};

const CONVERGE: Duration = Duration::from_secs(15);

const ROWS: &[&str] = &[
    "CREATE TABLE products (id int PRIMARY KEY, name text NOT NULL, category text NOT NULL, price numeric(10,2) NOT NULL, added timestamptz NOT NULL)",
    "INSERT INTO products SELECT g, 'fruit ' || g, 'fruit', g * 1.25, timestamptz '2024-01-01 00:00:00Z' + g * interval '1 day' FROM generate_series(1, 12) AS g",
    "INSERT INTO products VALUES (100, 'O''Brien''s tea', 'drink', 3.50, '2024-03-01T00:00:00Z'), (101, 'secret stash', 'hidden', 0.01, '2024-03-02T00:00:00Z')",
    "CREATE ROLE reader LOGIN PASSWORD 'hunter2-pw'",
    "GRANT SELECT ON products TO reader",
];

fn config(pg_port: u16) -> String {
    format!(
        r#"apiVersion: v1
kind: Secret
metadata: {{name: pg, namespace: default}}
stringData: {{url: "postgres://reader:hunter2-pw@127.0.0.1:{pg_port}/postgres"}}
---
apiVersion: switchyard.dev/v1alpha1
kind: BackendService
metadata: {{name: products, namespace: default}}
spec:
  dataService:
    driver: postgres
    connection: {{secretRef: {{name: pg, key: url}}}}
    query: "SELECT id, name, price, added FROM products WHERE category = ${{category}} AND price <= ${{maxPrice}} ORDER BY id"
    parameters:
      - {{name: category, in: query, type: string, required: true, maxLength: 200}}
      - {{name: maxPrice, in: query, type: number, default: "1000"}}
    pagination: {{defaultPageSize: 5, maxPageSize: 10}}
    maxConnections: 2
---
apiVersion: switchyard.dev/v1alpha1
kind: ApiRoute
metadata: {{name: products, namespace: default}}
spec:
  match: {{path: /pg/products, pathType: Exact}}
  timeout: 3s
  backendRefs: [{{name: products}}]
---
apiVersion: switchyard.dev/v1alpha1
kind: BackendService
metadata: {{name: by-path, namespace: default}}
spec:
  dataService:
    driver: postgres
    connection: {{secretRef: {{name: pg, key: url}}}}
    query: "SELECT id, name FROM products WHERE category = ${{category}} AND added >= ${{since}} AND (${{cheap}} = false OR price < 5) ORDER BY id"
    parameters:
      - {{name: category, in: path, required: true}}
      - {{name: since, in: body, type: timestamp, required: true}}
      - {{name: cheap, in: body, type: boolean, default: "false"}}
---
apiVersion: switchyard.dev/v1alpha1
kind: ApiRoute
metadata: {{name: by-path, namespace: default}}
spec:
  match: {{path: "/pg/categories/{{category}}", pathType: Template}}
  timeout: 3s
  backendRefs: [{{name: by-path}}]
---
apiVersion: switchyard.dev/v1alpha1
kind: BackendService
metadata: {{name: slow, namespace: default}}
spec:
  dataService:
    driver: postgres
    connection: {{secretRef: {{name: pg, key: url}}}}
    query: "SELECT pg_sleep(${{seconds}})::text AS slept"
    parameters: [{{name: seconds, type: number, required: true, max: 30}}]
---
apiVersion: switchyard.dev/v1alpha1
kind: ApiRoute
metadata: {{name: slow, namespace: default}}
spec:
  match: {{path: /pg/slow, pathType: Exact}}
  timeout: 500ms
  backendRefs: [{{name: slow}}]
---
apiVersion: switchyard.dev/v1alpha1
kind: BackendService
metadata: {{name: lite, namespace: default}}
spec:
  dataService:
    driver: sqlite
    connection: {{url: "sqlite://shop.db"}}
    query: "SELECT id, name, price, active FROM items WHERE price >= ${{minPrice}} ORDER BY id"
    parameters: [{{name: minPrice, type: number, default: "0"}}]
---
apiVersion: switchyard.dev/v1alpha1
kind: ApiRoute
metadata: {{name: lite, namespace: default}}
spec:
  match: {{path: /lite/items, pathType: Exact}}
  backendRefs: [{{name: lite}}]
---
apiVersion: switchyard.dev/v1alpha1
kind: BackendService
metadata: {{name: writer, namespace: default}}
spec:
  dataService:
    driver: sqlite
    connection: {{url: "sqlite://shop.db"}}
    query: "DELETE FROM items WHERE id = ${{id}}"
    parameters: [{{name: id, type: integer}}]
"#
    )
}

async fn call(gw: &Switchyard, path: &str) -> support::Reply {
    send(Method::GET, &gw.proxy_url(path), &[], &b""[..]).await.expect("the gateway answers")
}

fn ids(reply: &support::Reply) -> Vec<i64> {
    reply.json()["data"].as_array().unwrap_or_else(|| panic!("{}", reply.text())).iter().map(|r| r["id"].as_i64().unwrap()).collect()
}

async fn setup() -> (Postgres, ConfigDir, Switchyard) {
    let pg = Postgres::start();
    testing::execute(Driver::Postgres, &pg.url(), ROWS).await;
    let config = ConfigDir::with(&[("data.yaml", &config(pg.port()))]);
    testing::execute(
        Driver::Sqlite,
        config.file("shop.db").to_str().unwrap(),
        &[
            "CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT, price REAL, active BOOLEAN)",
            "INSERT INTO items VALUES (1, 'pen', 1.5, 1), (2, 'book', 12.0, 0), (3, 'lamp', 30.25, 1)",
        ],
    )
    .await;
    let gw = Switchyard::standalone(config.path(), &[]);
    gw.wait_ready().await;
    wait_until("the routes are served", CONVERGE, || async { call(&gw, "/lite/items").await.status == 200 }).await;
    (pg, config, gw)
}

#[tokio::test]
async fn data_apis_page_type_and_refuse_bad_parameters() {
    let (pg, _config, gw) = setup().await;

    // SQLite, from a file relative to the config folder.
    let lite = call(&gw, "/lite/items?minPrice=10").await;
    assert_eq!(lite.status, 200, "{}", lite.text());
    assert_eq!(
        lite.json(),
        json!({"data": [{"id": 2, "name": "book", "price": 12.0, "active": false}, {"id": 3, "name": "lamp", "price": 30.25, "active": true}],
               "pageNumber": 1, "pageSize": 20, "totalCount": 2})
    );

    // PostgreSQL through a Secret's URL: typed rows, paging in SQL.
    let first = call(&gw, "/pg/products?category=fruit").await;
    assert_eq!(first.status, 200, "{}", first.text());
    let body = first.json();
    assert_eq!((body["pageNumber"].clone(), body["pageSize"].clone(), body["totalCount"].clone()), (json!(1), json!(5), json!(12)));
    assert_eq!(body["data"][0], json!({"id": 1, "name": "fruit 1", "price": "1.25", "added": "2024-01-02T00:00:00Z"}));
    assert_eq!(ids(&call(&gw, "/pg/products?category=fruit&pageNumber=3").await), [11, 12]);
    assert_eq!(ids(&call(&gw, "/pg/products?category=fruit&pageNumber=2&pageSize=4").await), [5, 6, 7, 8]);
    let past = call(&gw, "/pg/products?category=fruit&pageNumber=99").await;
    assert_eq!((ids(&past).len(), past.json()["totalCount"].clone()), (0, json!(12)));
    assert_eq!(ids(&call(&gw, "/pg/products?category=fruit&maxPrice=3").await), [1, 2]);

    // Bad parameters: each a 400 with its own code, naming the parameter.
    for (path, code, names) in [
        ("/pg/products", "A400DM", "category"),
        ("/pg/products?category=fruit&maxPrice=cheap", "A400DP", "maxPrice"),
        ("/pg/products?category=fruit&pageSize=11", "A400DS", "pageSize"),
        ("/pg/products?category=fruit&pageSize=0", "A400DG", "pageSize"),
        ("/pg/products?category=fruit&pageNumber=-1", "A400DG", "pageNumber"),
        ("/pg/slow?seconds=31", "A400DP", "seconds"),
    ] {
        let reply = call(&gw, path).await;
        assert_eq!((reply.status.as_u16(), reply.error_code()), (400, Some(code)), "{path}: {}", reply.text());
        assert!(reply.json()["message"].as_str().unwrap().contains(names), "{path}: {}", reply.text());
    }
    let long = format!("/pg/products?category={}", "x".repeat(201));
    assert_eq!(call(&gw, &long).await.error_code(), Some("A400DP"));

    // Path and body parameters (JSON and form).
    let url = gw.proxy_url("/pg/categories/fruit");
    let json_body =
        send(Method::POST, &url, &[("content-type", "application/json")], &br#"{"since": "2024-01-10T00:00:00Z"}"#[..]).await.unwrap();
    assert_eq!(ids(&json_body), [9, 10, 11, 12], "{}", json_body.text());
    let form = send(
        Method::POST,
        &gw.proxy_url("/pg/categories/drink"),
        &[("content-type", "application/x-www-form-urlencoded")],
        &b"since=2024-01-01T00%3A00%3A00%2B00%3A00&cheap=true"[..],
    )
    .await
    .unwrap();
    assert_eq!(ids(&form), [100], "{}", form.text());
    let bad_time = send(Method::POST, &url, &[("content-type", "application/json")], &br#"{"since": "last tuesday"}"#[..]).await.unwrap();
    assert_eq!(bad_time.error_code(), Some("A400DP"), "{}", bad_time.text());
    let not_json = send(Method::POST, &url, &[("content-type", "application/json")], &b"{"[..]).await.unwrap();
    assert_eq!(not_json.error_code(), Some("A400DB"));

    // The statement timeout: a 504 within the route's 500 ms, the query cancelled.
    let started = std::time::Instant::now();
    let slow = call(&gw, "/pg/slow?seconds=5").await;
    assert_eq!((slow.status.as_u16(), slow.error_code()), (504, Some("D504DT")), "{}", slow.text());
    assert!(started.elapsed() < Duration::from_millis(1500), "{:?}", started.elapsed());

    // A refused query is Accepted=False with the reason; the credentials are nowhere.
    let (accepted, reason) = gw.condition("BackendService", "writer", "Accepted").await.unwrap();
    assert_eq!((accepted.as_str(), reason.as_str()), ("False", "InvalidQuery"));
    let status = get(&gw.url("admin", "/status")).await.unwrap().text();
    let dump = get(&gw.url("admin", "/config_dump")).await.unwrap().text();
    for text in [&status, &dump, &gw.log_text()] {
        assert!(!text.contains("hunter2-pw"), "a credential leaked: {text}");
    }
    assert!(dump.contains("DataService"), "{dump}");
    drop(pg);
}

#[tokio::test]
async fn injection_payloads_are_only_ever_data() {
    let (pg, _config, gw) = setup().await;
    let baseline = call(&gw, "/pg/products?category=fruit&pageSize=10").await.json();
    let payloads = [
        "fruit'",
        "fruit' OR '1'='1",
        "fruit' OR 1=1 --",
        "' OR 1=1; --",
        "fruit'; DROP TABLE products; --",
        "fruit'; DELETE FROM products; SELECT '",
        "x' UNION SELECT id, name, price, added FROM products WHERE category = 'hidden' --",
        "fruit\\' OR 1=1 --",
        "fruit\\",
        "fruit /* */",
        "fruit\u{2019} OR \u{2018}1\u{2019}=\u{2019}1",
        "fruit\u{FF07} OR 1=1",
        "fruit\u{02BC} OR 1=1",
        "${category}",
        "$1",
        "?",
        "%",
        "fruit%",
        "O'Brien's tea",
    ];
    for payload in payloads {
        let query = form_encode(payload);
        let reply = call(&gw, &format!("/pg/products?category={query}&pageSize=10")).await;
        assert_eq!(reply.status, 200, "{payload}: {}", reply.text());
        let body = reply.json();
        assert_eq!(body["totalCount"], json!(0), "{payload} matched rows: {body}");
        // As a number parameter, each is refused before the database sees it.
        let number = call(&gw, &format!("/pg/products?category=fruit&maxPrice={query}")).await;
        assert_eq!(number.error_code(), Some("A400DP"), "{payload}");
    }
    // The category that exists is still found exactly, quotes and all.
    let tea = call(&gw, "/pg/products?category=drink").await.json();
    assert_eq!(tea["data"][0]["name"], json!("O'Brien's tea"));
    // A NUL byte: the database refuses it as data, a 400.
    let nul = call(&gw, "/pg/products?category=fruit%00").await;
    assert_eq!((nul.status.as_u16(), nul.error_code()), (400, Some("A400DV")), "{}", nul.text());
    // Oversized values: refused by maxLength, before the database.
    let huge = call(&gw, &format!("/pg/products?category={}", "'".repeat(5000))).await;
    assert_eq!(huge.error_code(), Some("A400DP"));
    // Nothing changed.
    assert_eq!(call(&gw, "/pg/products?category=fruit&pageSize=10").await.json(), baseline);
    let hidden = call(&gw, "/pg/products?category=hidden").await.json();
    assert_eq!(hidden["totalCount"], json!(1), "the table is intact");
    drop(pg);
}

/// Waits until the BackendService's `Ready` has `status` and `reason`.
async fn wait_ready(gw: &Switchyard, backend: &str, want: (&str, &str)) {
    let mut last = None;
    let deadline = tokio::time::Instant::now() + CONVERGE;
    while tokio::time::Instant::now() < deadline {
        last = gw.condition("BackendService", backend, "Ready").await;
        if last.as_ref().is_some_and(|(status, reason)| (status.as_str(), reason.as_str()) == want) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{backend}: Ready never became {want:?}; last {last:?}");
}

#[tokio::test]
async fn database_down_is_a_503_and_not_ready_and_back_is_served_and_ready() {
    let (mut pg, _config, gw) = setup().await;
    wait_ready(&gw, "products", ("True", "Ready")).await;
    wait_ready(&gw, "lite", ("True", "Ready")).await;
    assert_eq!(call(&gw, "/pg/products?category=fruit").await.status, 200);
    pg.stop();
    // Refused at once, well inside the route's 3 s: the first call may meet the pool's
    // broken idle connection, the next ones a connect the database refuses.
    for attempt in 0..3 {
        let started = std::time::Instant::now();
        let down = call(&gw, "/pg/products?category=fruit").await;
        assert_eq!((down.status.as_u16(), down.error_code()), (503, Some("D503DU")), "{}", down.text());
        assert!(started.elapsed() < Duration::from_secs(1), "attempt {attempt}: {:?}", started.elapsed());
    }
    wait_ready(&gw, "products", ("False", "DatabaseUnreachable")).await;
    let status = gw.status().await.to_string();
    assert!(status.contains("127.0.0.1:") && !status.contains("hunter2-pw") && !status.contains("reader:"), "{status}");
    wait_ready(&gw, "lite", ("True", "Ready")).await;
    pg.restart();
    wait_until("the database is served again", CONVERGE, || async { call(&gw, "/pg/products?category=fruit").await.status == 200 }).await;
    wait_ready(&gw, "products", ("True", "Ready")).await;
    let value: Value = call(&gw, "/pg/products?category=fruit").await.json();
    assert_eq!(value["totalCount"], json!(12));
    assert!(!gw.log_text().contains("hunter2-pw"), "a credential leaked into the log");
}

fn form_encode(s: &str) -> String {
    s.bytes().map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") }).collect()
}

#[tokio::test]
async fn the_sqlite_quickstart_example_serves() {
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/data-services");
    let config = ConfigDir::new();
    for file in ["data-service.yaml", "shop.db"] {
        std::fs::copy(example.join(file), config.file(file)).unwrap();
    }
    let gw = Switchyard::standalone(config.path(), &[]);
    gw.wait_ready().await;
    wait_until("the example is served", CONVERGE, || async { call(&gw, "/products?category=tea").await.status == 200 }).await;
    let coffee = call(&gw, "/products?category=coffee&maxPrice=20").await;
    assert_eq!(
        coffee.json(),
        json!({"data": [{"id": 1, "name": "Espresso beans", "price": 12.5, "in_stock": true},
                        {"id": 2, "name": "Filter papers", "price": 3.2, "in_stock": true}],
               "pageNumber": 1, "pageSize": 20, "totalCount": 2})
    );
    assert_eq!(call(&gw, "/products?category=juice").await.error_code(), Some("A400DP"));
    let paged = call(&gw, "/products?category=coffee&pageSize=1&pageNumber=3").await.json();
    assert_eq!((paged["data"][0]["id"].clone(), paged["totalCount"].clone()), (json!(4), json!(3)));
}

/// `make bench` (bench/data-service.sh, release build): rows per second of 100-row pages
/// through a PostgreSQL `dataService` (HTTP GET -> JSON) against the same page query run
/// directly with the same driver (sqlx: fetch the page, decode every column), same server,
/// same concurrency and pool size, one run; also directly with everything the gateway runs
/// per page (read-only transaction, statement timeout, the page with its count), to tell the database's
/// share from the gateway's. A warm-up, then alternating rounds; the best round of each counts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: bench/data-service.sh runs it"]
async fn data_service_bench() {
    use http_body_util::{BodyExt, Empty};
    use hyper_util::client::legacy::Client;
    use hyper_util::client::legacy::connect::HttpConnector;
    use hyper_util::rt::TokioExecutor;
    use switchyard_sql::testing::sqlx::{self, Row};

    let env = |name: &str, default: usize| std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default);
    let pages = env("DATA_BENCH_PAGES", 2000);
    let concurrency = env("DATA_BENCH_CONCURRENCY", 8);
    let rounds = env("DATA_BENCH_ROUNDS", 3);
    const PAGE: usize = 100;
    const PAGES_PER_CATEGORY: usize = 10;
    let pg = Postgres::start();
    testing::execute(
        Driver::Postgres,
        &pg.url(),
        &[
            "CREATE TABLE products (id int PRIMARY KEY, name text NOT NULL, category text NOT NULL, price numeric(10,2) NOT NULL, added timestamptz NOT NULL)",
            "CREATE INDEX products_category ON products (category, id)",
            "INSERT INTO products SELECT g, 'product number ' || g, 'c' || (g % 10), g * 1.25, timestamptz '2024-01-01 00:00:00Z' + g * interval '1 minute' FROM generate_series(1, 10000) AS g",
            "ANALYZE products",
        ],
    )
    .await;
    // What autovacuum does to a freshly loaded table soon after (10,000 inserted rows pass
    // its insert threshold): the visibility map lets the count read the index only.
    // DATA_BENCH_VACUUM=0 measures the table as loaded.
    if env("DATA_BENCH_VACUUM", 1) == 1 {
        testing::execute(Driver::Postgres, &pg.url(), &["VACUUM ANALYZE products"]).await;
    }
    let select = "SELECT id, name, price, added FROM products WHERE category = ${category} ORDER BY id";
    let manifest = format!(
        r#"apiVersion: switchyard.dev/v1alpha1
kind: BackendService
metadata: {{name: products, namespace: default}}
spec:
  dataService:
    driver: postgres
    connection: {{url: "{url}"}}
    query: "{select}"
    parameters: [{{name: category, in: query, type: string, required: true}}]
    pagination: {{defaultPageSize: 100, maxPageSize: 100}}
    maxConnections: {concurrency}
---
apiVersion: switchyard.dev/v1alpha1
kind: ApiRoute
metadata: {{name: products, namespace: default}}
spec:
  match: {{path: /products, pathType: Exact}}
  timeout: 10s
  backendRefs: [{{name: products}}]
"#,
        url = pg.url()
    );
    let config = ConfigDir::with(&[("data.yaml", &manifest)]);
    let gw = Switchyard::standalone(config.path(), &[]);
    gw.wait_ready().await;
    wait_ready(&gw, "products", ("True", "Ready")).await;
    // Page `i` of the run: categories and page numbers cycle, the same on every side.
    let page_of = |i: usize| (format!("c{}", i % 10), (i / 10) % PAGES_PER_CATEGORY + 1);
    let client: Client<HttpConnector, Empty<bytes::Bytes>> = Client::builder(TokioExecutor::new()).build(HttpConnector::new());
    let first = client.get(gw.proxy_url("/products?category=c1&pageNumber=2").parse().unwrap()).await.unwrap();
    let body: Value = serde_json::from_slice(&first.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!((body["data"].as_array().map(Vec::len), body["totalCount"].clone()), (Some(PAGE), json!(1000)), "{body}");

    let pool = sqlx::postgres::PgPoolOptions::new().max_connections(concurrency as u32).connect(&pg.url()).await.unwrap();
    let page_sql = "SELECT id, name, price, added FROM products WHERE category = $1 ORDER BY id LIMIT $2 OFFSET $3";
    // The gateway's page query as compile writes it: the count of all rows as a scalar
    // subquery in the projection (docs/data-services.md).
    let counting_page_sql = "SELECT id, name, price, added, (SELECT COUNT(*) FROM (SELECT id, name, price, added FROM products WHERE category = $1 ORDER BY id) AS switchyard_count) AS switchyard_total FROM products WHERE category = $1 ORDER BY id LIMIT $2 OFFSET $3";
    let per_worker = pages / concurrency;
    let rows_per_round = (per_worker * concurrency * PAGE) as f64;

    let through_gateway = || {
        let (client, base) = (client.clone(), gw.proxy_url("/products"));
        async move {
            let started = std::time::Instant::now();
            let workers: Vec<_> = (0..concurrency)
                .map(|w| {
                    let (client, base) = (client.clone(), base.clone());
                    tokio::spawn(async move {
                        for i in 0..per_worker {
                            let (category, number) = page_of(w * per_worker + i);
                            let uri = format!("{base}?category={category}&pageNumber={number}").parse().unwrap();
                            let response = client.get(uri).await.expect("the gateway answers");
                            assert_eq!(response.status(), 200);
                            let body = response.into_body().collect().await.unwrap().to_bytes();
                            assert!(body.len() > PAGE * 40, "a full page");
                        }
                    })
                })
                .collect();
            for worker in workers {
                worker.await.unwrap();
            }
            rows_per_round / started.elapsed().as_secs_f64()
        }
    };
    // Each row decoded as an application would: every column read into a Rust value.
    let decode = |rows: &[sqlx::postgres::PgRow]| {
        for row in rows {
            let id: i32 = row.try_get(0).unwrap();
            let name: &str = row.try_get(1).unwrap();
            let price = row.try_get_raw(2).unwrap();
            let added: switchyard_sql::time::OffsetDateTime = row.try_get(3).unwrap();
            std::hint::black_box((id, name, sqlx::ValueRef::is_null(&price), added));
        }
        assert_eq!(rows.len(), PAGE);
    };
    let direct = |like_the_gateway: bool| {
        let pool = pool.clone();
        async move {
            let started = std::time::Instant::now();
            let workers: Vec<_> = (0..concurrency)
                .map(|w| {
                    let pool = pool.clone();
                    tokio::spawn(async move {
                        for i in 0..per_worker {
                            let (category, number) = page_of(w * per_worker + i);
                            let offset = ((number - 1) * PAGE) as i64;
                            if like_the_gateway {
                                // What switchyard-sql runs per page: the read-only transaction
                                // with its statement timeout, the counting page, and a dropped
                                // transaction (its ROLLBACK goes with the pool's test of the
                                // returned connection).
                                let page = sqlx::query(counting_page_sql).bind(&category).bind(PAGE as i64).bind(offset);
                                let mut conn = pool.acquire().await.unwrap();
                                let begin = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET LOCAL statement_timeout = 10000";
                                let mut tx = sqlx::Connection::begin_with(&mut *conn, begin).await.unwrap();
                                let rows = page.fetch_all(&mut *tx).await.unwrap();
                                decode(&rows);
                                assert_eq!(rows[0].get::<i64, _>(4), 1000);
                                drop(tx);
                            } else {
                                let page = sqlx::query(page_sql).bind(&category).bind(PAGE as i64).bind(offset);
                                decode(&page.fetch_all(&pool).await.unwrap());
                            }
                        }
                    })
                })
                .collect();
            for worker in workers {
                worker.await.unwrap();
            }
            rows_per_round / started.elapsed().as_secs_f64()
        }
    };
    // Warm every path (connections, prepared statements, the table in the buffer cache).
    through_gateway().await;
    direct(false).await;
    direct(true).await;
    // The harness has printed `test data_service_bench ... ` without a newline.
    println!();
    let (mut best_direct, mut best_like, mut best_gateway) = (0f64, 0f64, 0f64);
    for round in 1..=rounds {
        let d = direct(false).await;
        let l = direct(true).await;
        let g = through_gateway().await;
        println!("round {round}: direct {d:.0} rows/s, direct like the gateway {l:.0} rows/s, switchyard {g:.0} rows/s");
        best_direct = best_direct.max(d);
        best_like = best_like.max(l);
        best_gateway = best_gateway.max(g);
    }
    println!(
        "# {} pages of {PAGE} rows per round ({} of 10,000 rows per category, 4 columns: int, text, numeric, timestamptz), {concurrency} concurrent clients, pool {concurrency}",
        per_worker * concurrency,
        PAGE * PAGES_PER_CATEGORY
    );
    println!("direct (sqlx: page query, every column decoded): {best_direct:.0} rows/s");
    println!("direct like the gateway (sqlx: read-only transaction, statement timeout, counting page): {best_like:.0} rows/s");
    println!("switchyard (HTTP GET -> JSON page): {best_gateway:.0} rows/s");
    println!("data service ratio (switchyard / direct): {:.3} (target >= 0.7)", best_gateway / best_direct);
    println!("data service ratio (switchyard / direct like the gateway): {:.3}", best_gateway / best_like);
    drop(pg);
}
