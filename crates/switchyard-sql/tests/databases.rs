//! Against real servers: PostgreSQL 15 and MariaDB (started per test on loopback by
//! `switchyard_sql::testing`) and SQLite files.

use std::time::{Duration, Instant};

use serde_json::json;
use switchyard_sql::testing::{self, MariaDb, Postgres};
use switchyard_sql::{Database, Driver, SqlError, Statements, Target, Value};

fn statements(select: &str, driver: Driver, binds: usize) -> Statements {
    let (limit, offset) = match driver {
        Driver::Postgres => (format!("${}", binds + 1), format!("${}", binds + 2)),
        _ => ("?".into(), "?".into()),
    };
    Statements {
        page: format!("{select} LIMIT {limit} OFFSET {offset}"),
        count: format!("SELECT COUNT(*) FROM ({select}) AS switchyard_count"),
        page_counts: false,
    }
}

/// As compile makes them for a plain SELECT: the page query carries the count of all rows
/// (PostgreSQL: the count query as a scalar subquery; the `?` drivers: a window).
fn counting(select: &str, driver: Driver, binds: usize) -> Statements {
    let (projection, from) = select.split_once(" FROM ").expect("a SELECT ... FROM");
    let plain = statements(select, driver, binds);
    let total = match driver {
        Driver::Postgres => format!("({})", plain.count),
        Driver::Mysql | Driver::Sqlite => "COUNT(*) OVER ()".to_owned(),
    };
    let page = statements(&format!("{projection}, {total} AS {} FROM {from}", switchyard_sql::TOTAL_COLUMN), driver, binds).page;
    Statements { page, page_counts: true, ..plain }
}

/// Pages of `items` (24 rows named `item…`) with the count carried by the page query: the
/// same totals as a count query, none of the count column in the rows, and past the end
/// (no row to carry it) the count query's answer.
async fn counting_pages_match_the_count_query(db: &Database, driver: Driver) {
    let marker = if driver == Driver::Postgres { "$1" } else { "?" };
    let select = format!("SELECT id FROM items WHERE name LIKE {marker} ORDER BY id");
    let item = [Value::Text("item%".into())];
    for offset in [0, 10, 20, 23, 24, 240] {
        let counted = db.page(&counting(&select, driver, 1), &item, 10, offset, soon(5000)).await.unwrap();
        let separate = db.page(&statements(&select, driver, 1), &item, 10, offset, soon(5000)).await.unwrap();
        assert_eq!((counted.values(), counted.total), (separate.values(), separate.total), "offset {offset}");
        assert_eq!((counted.total, counted.values().len()), (24, counted.rows), "offset {offset}");
    }
    let none = [Value::Text("nothing%".into())];
    assert_eq!(db.page(&counting(&select, driver, 1), &none, 10, 0, soon(5000)).await.unwrap().total, 0);
}

fn soon(ms: u64) -> Instant {
    Instant::now() + Duration::from_millis(ms)
}

const PG_SETUP: &[&str] = &[
    "CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL, price numeric(12,4), active boolean, small smallint, big bigint, \
     ratio double precision, made timestamp, made_tz timestamptz, day date, at time, doc jsonb, raw bytea, note text, uid uuid)",
    "INSERT INTO items VALUES (1, 'apple', 12345678.1234, true, -3, 9007199254740993, 0.25, '2024-05-01 12:30:00', \
     '2024-05-01 12:30:00+02', '2024-05-01', '08:15:30.5', '{\"a\": [1, 2], \"b\": null}', '\\x00ff10', NULL, \
     'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11')",
    "INSERT INTO items (id, name, price) SELECT g, 'item' || g, g * 1.5 FROM generate_series(2, 25) AS g",
];

#[tokio::test]
async fn postgres_every_column_type_as_json() {
    let pg = Postgres::start();
    testing::execute(Driver::Postgres, &pg.url(), PG_SETUP).await;
    let db = Database::connect_lazy(Driver::Postgres, &Target::Url(pg.url()), 2).unwrap();
    let select = "SELECT id, name, price, active, small, big, ratio, made, made_tz, day, at, doc, raw, note, uid FROM items WHERE id = $1";
    let page = db.page(&statements(select, Driver::Postgres, 1), &[Value::Integer(1)], 10, 0, soon(5000)).await.unwrap();
    assert_eq!(page.total, 1);
    assert_eq!(
        page.values()[0],
        json!({
            "id": 1, "name": "apple", "price": "12345678.1234", "active": true, "small": -3, "big": 9007199254740993_i64,
            "ratio": 0.25, "made": "2024-05-01T12:30:00Z", "made_tz": "2024-05-01T10:30:00Z", "day": "2024-05-01",
            "at": "08:15:30.500000", "doc": {"a": [1, 2], "b": null}, "raw": "AP8Q", "note": null,
            "uid": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"
        })
    );
    // Computed columns keep their types too (numeric arithmetic stays exact).
    let select = "SELECT price * 2 AS doubled, count(*) OVER () AS n FROM items WHERE id = $1";
    let page = db.page(&statements(select, Driver::Postgres, 1), &[Value::Integer(2)], 10, 0, soon(5000)).await.unwrap();
    assert_eq!(page.values()[0], json!({"doubled": "6.0000", "n": 1}));
}

#[tokio::test]
async fn postgres_paging_binds_refusals_timeout_pool_and_restart() {
    let mut pg = Postgres::start();
    testing::execute(Driver::Postgres, &pg.url(), PG_SETUP).await;
    let db = Database::connect_lazy(Driver::Postgres, &Target::Url(pg.url()), 1).unwrap();
    // One connection: every page reuses it after the last one's transaction was dropped.
    counting_pages_match_the_count_query(&db, Driver::Postgres).await;
    let by_name = statements("SELECT id FROM items WHERE name LIKE $1 ORDER BY id", Driver::Postgres, 1);
    let item = [Value::Text("item%".into())];

    // Paging edges: first, middle, last partial, past the end.
    let ids = |p: &switchyard_sql::Page| p.values().iter().map(|r| r["id"].as_i64().unwrap()).collect::<Vec<_>>();
    let first = db.page(&by_name, &item, 10, 0, soon(5000)).await.unwrap();
    assert_eq!((ids(&first), first.total), ((2..12).collect(), 24));
    let last = db.page(&by_name, &item, 10, 20, soon(5000)).await.unwrap();
    assert_eq!((ids(&last), last.total), (vec![22, 23, 24, 25], 24));
    let past = db.page(&by_name, &item, 10, 1000, soon(5000)).await.unwrap();
    assert_eq!((past.rows, past.total), (0, 24));

    // A quote in a value is data: nothing matches, nothing changes.
    for evil in ["x' OR '1'='1", "'; DROP TABLE items; --", "item%' UNION SELECT 1 --"] {
        let page = db.page(&by_name, &[Value::Text(evil.into())], 10, 0, soon(5000)).await.unwrap();
        assert_eq!((page.rows, page.total), (0, 0), "{evil}");
    }

    // Values the database refuses as data: a NUL byte in text, a LIKE pattern ending in its escape.
    let nul = db.page(&by_name, &[Value::Text("a\0b".into())], 10, 0, soon(5000)).await.unwrap_err();
    assert!(matches!(nul, SqlError::BadData { .. }), "{nul:?}");
    let escape = db.page(&by_name, &[Value::Text("item\\".into())], 10, 0, soon(5000)).await.unwrap_err();
    assert!(matches!(escape, SqlError::BadData { .. }), "{escape:?}");

    // Read-only: a writing CTE is refused by the server (compile refuses it first anyway).
    let write = statements("WITH d AS (DELETE FROM items RETURNING id) SELECT id FROM d WHERE id > $1", Driver::Postgres, 1);
    let refused = db.page(&write, &[Value::Integer(0)], 10, 0, soon(5000)).await.unwrap_err();
    assert!(matches!(&refused, SqlError::Failed { message } if message.contains("read-only")), "{refused:?}");
    assert_eq!(db.page(&by_name, &item, 1, 0, soon(5000)).await.unwrap().total, 24, "nothing was deleted");

    // The timeout: a 300 ms budget cancels a 5 s query on the server.
    let slow = statements("SELECT pg_sleep(5)::text AS s FROM items WHERE id = $1", Driver::Postgres, 1);
    let started = Instant::now();
    let timed_out = db.page(&slow, &[Value::Integer(1)], 10, 0, soon(300)).await.unwrap_err();
    assert!(matches!(timed_out, SqlError::Timeout { .. }), "{timed_out:?}");
    assert!(started.elapsed() < Duration::from_millis(1500), "{:?}", started.elapsed());
    let check = Database::connect_lazy(Driver::Postgres, &Target::Url(pg.url()), 1).unwrap();
    let running = statements(
        "SELECT count(*) AS n FROM pg_stat_activity WHERE query LIKE '%pg' || '_sleep(5)%' AND state = 'active' AND pid <> pg_backend_pid() AND $1",
        Driver::Postgres,
        1,
    );
    let n = check.page(&running, &[Value::Boolean(true)], 1, 0, soon(5000)).await.unwrap().values()[0]["n"].as_i64().unwrap();
    assert_eq!(n, 0, "the server cancelled the query");

    // Pool exhaustion (one connection): the second request waits until its deadline, then
    // fails cleanly while the first finishes.
    let db = std::sync::Arc::new(db);
    let busy = statements("SELECT pg_sleep(1.5)::text AS s FROM items WHERE id = $1", Driver::Postgres, 1);
    let holder = {
        let (db, busy) = (db.clone(), busy.clone());
        tokio::spawn(async move { db.page(&busy, &[Value::Integer(1)], 10, 0, soon(5000)).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    let waited = db.page(&by_name, &item, 10, 0, soon(400)).await.unwrap_err();
    assert!(matches!(waited, SqlError::PoolExhausted), "{waited:?}");
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(350) && took < Duration::from_millis(1200), "{took:?}");
    assert_eq!(holder.await.unwrap().unwrap().rows, 1);
    assert_eq!(db.page(&by_name, &item, 1, 0, soon(5000)).await.unwrap().total, 24, "the pool serves again");

    // Down and back. A database that refuses connections is reported at once, not at the
    // deadline: the first page may still find the pool's idle connection (broken), the
    // later ones make the pool open one, which it would retry until the deadline.
    pg.stop();
    for attempt in 0..3 {
        let started = Instant::now();
        let down = db.page(&by_name, &item, 10, 0, soon(5000)).await.unwrap_err();
        assert!(matches!(down, SqlError::Unavailable { .. }), "{down:?}");
        assert!(started.elapsed() < Duration::from_millis(1000), "attempt {attempt}: {:?}", started.elapsed());
    }
    pg.restart();
    let mut back = None;
    for _ in 0..40 {
        match db.page(&by_name, &item, 10, 0, soon(2000)).await {
            Ok(page) => {
                back = Some(page);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    assert_eq!(back.expect("the database is back").total, 24);
}

#[tokio::test]
async fn sqlite_types_paging_read_only_and_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("shop.db");
    let path = file.to_str().unwrap();
    testing::execute(
        Driver::Sqlite,
        path,
        &[
            "CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT, price REAL, active BOOLEAN, raw BLOB, note TEXT, made DATETIME)",
            "INSERT INTO items VALUES (1, 'apple', 1.5, 1, x'00ff10', NULL, '2024-05-01T12:30:00Z')",
            "WITH RECURSIVE g(x) AS (SELECT 2 UNION ALL SELECT x + 1 FROM g WHERE x < 25) INSERT INTO items (id, name, price, active) SELECT x, 'item' || x, x * 1.5, 0 FROM g",
        ],
    )
    .await;
    let db = Database::connect_lazy(Driver::Sqlite, &Target::SqliteFile(file.clone()), 2).unwrap();
    counting_pages_match_the_count_query(&db, Driver::Sqlite).await;
    let one = statements("SELECT id, name, price, active, raw, note, made FROM items WHERE id = ?", Driver::Sqlite, 1);
    let page = db.page(&one, &[Value::Integer(1)], 10, 0, soon(5000)).await.unwrap();
    assert_eq!(
        page.values()[0],
        json!({"id": 1, "name": "apple", "price": 1.5, "active": true, "raw": "AP8Q", "note": null, "made": "2024-05-01T12:30:00Z"})
    );
    let by_name = statements("SELECT id FROM items WHERE name LIKE ? ORDER BY id", Driver::Sqlite, 1);
    let item = [Value::Text("item%".into())];
    let last = db.page(&by_name, &item, 10, 20, soon(5000)).await.unwrap();
    assert_eq!((last.rows, last.total), (4, 24));
    assert_eq!(db.page(&by_name, &item, 10, 240, soon(5000)).await.unwrap().rows, 0);
    for evil in ["x' OR '1'='1", "'; DROP TABLE items; --", "\u{2019} OR 1=1"] {
        assert_eq!(db.page(&by_name, &[Value::Text(evil.into())], 10, 0, soon(5000)).await.unwrap().total, 0);
    }
    // The connection is read-only (a writing CTE cannot run).
    let write = statements("SELECT id FROM items WHERE id = ? AND (DELETE FROM items) IS NULL", Driver::Sqlite, 1);
    assert!(db.page(&write, &[Value::Integer(1)], 1, 0, soon(5000)).await.is_err());
    // An endless query is interrupted at the deadline.
    let endless =
        statements("WITH RECURSIVE c(x) AS (SELECT ? UNION ALL SELECT x + 1 FROM c) SELECT max(x) AS m FROM c", Driver::Sqlite, 1);
    let started = Instant::now();
    let timed_out = db.page(&endless, &[Value::Integer(1)], 1, 0, soon(300)).await.unwrap_err();
    assert!(matches!(timed_out, SqlError::Timeout { .. }), "{timed_out:?}");
    assert!(started.elapsed() < Duration::from_millis(1500), "{:?}", started.elapsed());
    // And the connection serves the next request.
    assert_eq!(db.page(&by_name, &item, 1, 0, soon(5000)).await.unwrap().total, 24);
    // A missing file is unavailable, not created.
    let gone = Database::connect_lazy(Driver::Sqlite, &Target::SqliteFile(dir.path().join("nope.db")), 1).unwrap();
    assert!(gone.page(&by_name, &item, 1, 0, soon(2000)).await.is_err());
    assert!(!dir.path().join("nope.db").exists());
}

#[tokio::test]
async fn mariadb_types_paging_timeout_and_restart() {
    let mut db_server = MariaDb::start();
    testing::execute(
        Driver::Mysql,
        &db_server.url(),
        &[
            "CREATE TABLE items (id INT PRIMARY KEY, name VARCHAR(64) NOT NULL, price DECIMAL(12,4), active TINYINT(1), \
             big BIGINT UNSIGNED, ratio DOUBLE, made DATETIME(3), day DATE, raw VARBINARY(8), note TEXT)",
            "INSERT INTO items VALUES (1, 'apple', 12345678.1234, 1, 18446744073709551615, 0.25, '2024-05-01 12:30:00.250', '2024-05-01', x'00ff10', NULL)",
            "INSERT INTO items (id, name, price) SELECT seq, CONCAT('item', seq), seq * 1.5 FROM seq_2_to_25",
        ],
    )
    .await;
    let db = Database::connect_lazy(Driver::Mysql, &Target::Url(db_server.url()), 1).unwrap();
    counting_pages_match_the_count_query(&db, Driver::Mysql).await;
    let one = statements("SELECT id, name, price, active, big, ratio, made, day, raw, note FROM items WHERE id = ?", Driver::Mysql, 1);
    let page = db.page(&one, &[Value::Integer(1)], 10, 0, soon(5000)).await.unwrap();
    assert_eq!(
        page.values()[0],
        json!({"id": 1, "name": "apple", "price": "12345678.1234", "active": true, "big": 18446744073709551615_u64, "ratio": 0.25,
               "made": "2024-05-01T12:30:00.25Z", "day": "2024-05-01", "raw": "AP8Q", "note": null})
    );
    let by_name = statements("SELECT id FROM items WHERE name LIKE ? ORDER BY id", Driver::Mysql, 1);
    let item = [Value::Text("item%".into())];
    let last = db.page(&by_name, &item, 10, 20, soon(5000)).await.unwrap();
    assert_eq!((last.rows, last.total), (4, 24));
    for evil in ["x' OR '1'='1", "\\' OR 1=1 -- ", "'; DROP TABLE items; #"] {
        assert_eq!(db.page(&by_name, &[Value::Text(evil.into())], 10, 0, soon(5000)).await.unwrap().total, 0, "{evil}");
    }
    let started = Instant::now();
    let slow = statements("SELECT SLEEP(5) AS s FROM items WHERE id = ?", Driver::Mysql, 1);
    let timed_out = db.page(&slow, &[Value::Integer(1)], 10, 0, soon(400)).await;
    assert!(matches!(timed_out, Err(SqlError::Timeout { .. })), "{timed_out:?}");
    assert!(started.elapsed() < Duration::from_millis(2000), "{:?}", started.elapsed());
    assert_eq!(db.page(&by_name, &item, 1, 0, soon(5000)).await.unwrap().total, 24, "the connection serves again");
    db_server.stop();
    assert!(matches!(db.page(&by_name, &item, 1, 0, soon(2000)).await, Err(SqlError::Unavailable { .. })));
    db_server.restart();
    let mut ok = false;
    for _ in 0..50 {
        if db.page(&by_name, &item, 1, 0, soon(2000)).await.is_ok() {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ok, "the database is back");
}

#[tokio::test]
async fn two_result_columns_the_database_names_alike_are_refused_rather_than_one_lost() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("shop.db");
    testing::execute(
        Driver::Sqlite,
        file.to_str().unwrap(),
        &["CREATE TABLE items (id INTEGER PRIMARY KEY)", "INSERT INTO items VALUES (1)"],
    )
    .await;
    let db = Database::connect_lazy(Driver::Sqlite, &Target::SqliteFile(file), 1).unwrap();
    // Unaliased expressions are named by the database: compile cannot see these two agree.
    let twice = statements("SELECT count(*), count(*) FROM items WHERE id >= ?", Driver::Sqlite, 1);
    let refused = db.page(&twice, &[Value::Integer(0)], 10, 0, soon(5000)).await.unwrap_err();
    let SqlError::Failed { message } = refused else { panic!("{refused:?}") };
    assert!(message.contains("two result columns are named \"count(*)\""), "{message}");
    let distinct = statements("SELECT count(*), count(id) FROM items WHERE id >= ?", Driver::Sqlite, 1);
    assert_eq!(
        db.page(&distinct, &[Value::Integer(0)], 10, 0, soon(5000)).await.unwrap().values()[0],
        json!({"count(*)": 1, "count(id)": 1})
    );
}
