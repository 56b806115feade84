use switchyard_api::condition_type::{ACCEPTED, READY, RESOLVED_REFS};

use super::compile_query;
use crate::database::{DatabaseState, database_source};
use crate::snapshot::{BackendKind, DataConnection, DataDriver, DataParam, DataParamLocation, DataParamType, SecretText};
use crate::{Compiled, Resources, SecretData, reason};

fn resources(spec: &str) -> Resources {
    let mut resources = Resources::default();
    let yaml = format!(
        "apiVersion: switchyard.dev/v1alpha1\nkind: BackendService\nmetadata: {{name: products, namespace: shop}}\nspec: {{dataService: {spec}}}\n"
    );
    crate::manifest::add_yaml(&mut resources, "t", &yaml);
    assert!(resources.invalid.is_empty(), "{:?}", resources.invalid);
    resources
}

fn condition<'a>(compiled: &'a Compiled, type_: &str) -> (bool, &'a str, &'a str) {
    let c = compiled.statuses[0].condition(type_).unwrap_or_else(|| panic!("no {type_}: {:?}", compiled.statuses));
    (c.status, c.reason.as_str(), c.message.as_str())
}

fn param(name: &str) -> DataParam {
    DataParam {
        name: name.into(),
        location: DataParamLocation::Query,
        kind: DataParamType::String,
        required: false,
        default: None,
        min: None,
        max: None,
        max_length: 100,
        allowed: vec![],
    }
}

const SPEC: &str = r#"{driver: postgres, connection: {url: "postgres://reader@db.internal:5432/shop"},
  query: "SELECT id, name, price FROM products WHERE category = ${category} AND price <= ${maxPrice}",
  parameters: [{name: category, in: query, type: string, required: true}, {name: maxPrice, in: query, type: number, default: "1000"}],
  pagination: {defaultPageSize: 20, maxPageSize: 100}}"#;

#[test]
fn the_reference_manifest_compiles_to_bind_markers_and_pages_in_sql() {
    let compiled = crate::compile(&resources(SPEC));
    assert!(condition(&compiled, ACCEPTED).0, "{:?}", compiled.statuses);
    assert_eq!(condition(&compiled, READY).1, reason::CONNECTING, "no ping result yet");
    let BackendKind::DataService(ds) = &compiled.snapshot.backends[0].kind else { panic!("{:?}", compiled.snapshot.backends[0].kind) };
    assert_eq!(ds.driver, DataDriver::Postgres);
    assert_eq!(
        ds.page_sql,
        "SELECT id, name, price, (SELECT COUNT(*) FROM (SELECT id, name, price FROM products WHERE category = $1 AND price <= $2) AS switchyard_count) AS switchyard_total FROM products WHERE category = $1 AND price <= $2 LIMIT $3 OFFSET $4"
    );
    assert!(ds.page_counts, "one statement reads the page and the count");
    assert_eq!(
        ds.count_sql,
        "SELECT COUNT(*) FROM (SELECT id, name, price FROM products WHERE category = $1 AND price <= $2) AS switchyard_count"
    );
    assert_eq!(ds.binds, [0, 1]);
    assert_eq!((ds.default_page_size, ds.max_page_size), (20, 100));
    assert_eq!(ds.connection, DataConnection::Url { url_secret: SecretText("postgres://reader@db.internal:5432/shop".into()) });
    assert!(!ds.page_sql.contains("${"));
}

#[test]
fn question_mark_drivers_bind_once_per_use_and_postgres_once_per_parameter() {
    let params = [param("a"), param("b")];
    let q = "SELECT x FROM t WHERE a = ${a} OR b = ${b} OR c = ${a}";
    let pg = compile_query(q, DataDriver::Postgres, &params).unwrap();
    assert_eq!(
        pg.page_sql,
        "SELECT x, (SELECT COUNT(*) FROM (SELECT x FROM t WHERE a = $1 OR b = $2 OR c = $1) AS switchyard_count) AS switchyard_total \
         FROM t WHERE a = $1 OR b = $2 OR c = $1 LIMIT $3 OFFSET $4"
    );
    assert_eq!(pg.binds, [0, 1]);
    for driver in [DataDriver::Mysql, DataDriver::Sqlite] {
        let q = compile_query(q, driver, &params).unwrap();
        assert_eq!(q.page_sql, "SELECT x, COUNT(*) OVER () AS switchyard_total FROM t WHERE a = ? OR b = ? OR c = ? LIMIT ? OFFSET ?");
        assert_eq!(q.binds, [0, 1, 0]);
    }
}

#[test]
fn a_plain_select_counts_its_rows_in_the_page_query_and_a_union_keeps_a_count_query() {
    let params = [param("a")];
    let counted = |q: &str, driver| {
        let compiled = compile_query(q, driver, &params).unwrap();
        (compiled.page_counts, compiled.page_sql)
    };
    // PostgreSQL: the count query as a scalar subquery (one InitPlan per page); the `?`
    // drivers: a window.
    let total = |driver| match driver {
        DataDriver::Postgres => ") AS switchyard_count) AS switchyard_total FROM",
        DataDriver::Mysql | DataDriver::Sqlite => "COUNT(*) OVER () AS switchyard_total FROM",
    };
    for driver in [DataDriver::Postgres, DataDriver::Mysql, DataDriver::Sqlite] {
        // Grouping, ordering (also by position: the count is added last), joins and a WITH.
        for q in [
            "SELECT k, count(*) AS n FROM t WHERE a = ${a} GROUP BY k HAVING count(*) > 1 ORDER BY 2 DESC",
            "SELECT t.x, u.y FROM t JOIN u ON u.id = t.id WHERE t.a = ${a} ORDER BY t.x",
            "WITH r AS (SELECT x FROM t WHERE a = ${a}) SELECT x FROM r ORDER BY x",
        ] {
            let (counts, sql) = counted(q, driver);
            assert!(counts, "{q}");
            assert!(sql.contains(total(driver)), "{sql}");
        }
        let (counts, sql) = counted("SELECT x FROM t WHERE a = ${a} UNION SELECT y FROM u", driver);
        assert!(!counts && !sql.contains("switchyard_total"), "each side of a UNION has its own projection: {sql}");
    }
    // DISTINCT: the scalar subquery is a constant of every row (PostgreSQL counts in the
    // page); a window would count the rows before DISTINCT (the others keep the count query).
    let distinct = "SELECT DISTINCT x FROM t WHERE a = ${a}";
    assert_eq!(
        counted(distinct, DataDriver::Postgres),
        (
            true,
            "SELECT DISTINCT x, (SELECT COUNT(*) FROM (SELECT DISTINCT x FROM t WHERE a = $1) AS switchyard_count) AS switchyard_total \
             FROM t WHERE a = $1 LIMIT $2 OFFSET $3"
                .to_owned()
        )
    );
    for driver in [DataDriver::Mysql, DataDriver::Sqlite] {
        let (counts, sql) = counted(distinct, driver);
        assert!(!counts && !sql.contains("switchyard_total"), "{sql}");
    }
    let refused = compile_query("SELECT x AS switchyard_total FROM t WHERE a = ${a}", DataDriver::Postgres, &params).unwrap_err();
    assert!(format!("{refused:?}").contains("switchyard_total is the gateway's own column"), "{refused:?}");
}

#[test]
fn every_refused_query_shape_is_refused_with_a_reason() {
    let a = [param("a")];
    let cases: &[(&str, &str)] = &[
        ("UPDATE t SET x = ${a}", "UPDATE"),
        ("DELETE FROM t WHERE x = ${a}", "DELETE"),
        ("INSERT INTO t VALUES (${a})", "INSERT"),
        ("DROP TABLE t", "DROP"),
        ("CREATE TABLE x (a int)", "CREATE"),
        ("TRUNCATE t", "TRUNCATE"),
        ("SELECT x FROM t WHERE x = ${a}; SELECT 1", ";"),
        ("SELECT x FROM t WHERE x = ${a}; DROP TABLE t", ";"),
        ("SELECT x FROM t WHERE x = ${a} -- hi", "comments"),
        ("SELECT x /* hi */ FROM t WHERE x = ${a}", "comments"),
        ("SELECT * FROM t WHERE x = ${a}", "SELECT *"),
        ("SELECT t.* FROM t WHERE x = ${a}", "SELECT *"),
        ("SELECT x FROM t WHERE x = ${a} FOR UPDATE", "UPDATE"),
        ("SELECT x FROM t WHERE x = ${a} FOR SHARE", "SHARE"),
        ("SELECT x INTO y FROM t WHERE x = ${a}", "INTO"),
        ("SELECT x FROM t WHERE x = ${a} LIMIT 5", "LIMIT"),
        ("SELECT x FROM t WHERE x = ${a} OFFSET 5", "LIMIT"),
        ("WITH d AS (DELETE FROM t RETURNING x) SELECT x FROM d WHERE x = ${a}", "DELETE"),
        ("SELECT x FROM t WHERE x = ${b}", "no declared parameter"),
        ("SELECT x FROM t", "never uses ${a}"),
        ("SELECT x FROM t WHERE x = '${a}'", "inside a quoted string"),
        ("SELECT x FROM t WHERE x = $1 AND y = ${a}", "no $1"),
        ("SELECT x FROM t WHERE x = ? AND y = ${a}", "a ? outside"),
        ("SELECT x FROM t WHERE x = ${a", "not closed"),
        ("SELECT x FROM t WHERE x = ${1a}", "starts with a letter"),
        ("SELECT x FROM t WHERE x = 'open ${a}", "inside a quoted string"),
        ("SELECT x FROM t WHERE x = ${a} AND y = 'open", "not closed"),
        ("SELEKT x FROM t WHERE x = ${a}", "does not parse"),
        ("SET search_path = evil, ${a}", "SET"),
        ("SELECT pg_sleep(1) FROM t WHERE x = ${a}\0", "NUL"),
    ];
    for (query, expect) in cases {
        let why = compile_query(query, DataDriver::Postgres, &a).expect_err(query);
        assert_eq!(why.reason, reason::INVALID_QUERY, "{query}");
        assert!(why.message.contains(expect), "{query}: {}", why.message);
    }
    // MySQL's own comment and INTO OUTFILE.
    for (query, expect) in
        [("SELECT x FROM t WHERE x = ${a} # hi", "comments"), ("SELECT x FROM t WHERE x = ${a} INTO OUTFILE '/tmp/x'", "INTO")]
    {
        let why = compile_query(query, DataDriver::Mysql, &a).expect_err(query);
        assert!(why.message.contains(expect), "{query}: {}", why.message);
    }
    // A backslash-escaped quote in a MySQL string does not end it.
    let why = compile_query(r"SELECT x FROM t WHERE x = 'it\'s ${a}'", DataDriver::Mysql, &a).unwrap_err();
    assert!(why.message.contains("inside a quoted string"), "{}", why.message);
}

#[test]
fn reads_that_are_fine_compile() {
    let a = [param("a")];
    for query in [
        "SELECT x, count(*) AS n FROM t WHERE x = ${a} GROUP BY x ORDER BY n DESC",
        "SELECT x FROM t WHERE x = ${a} UNION ALL SELECT y FROM u",
        "WITH c AS (SELECT x FROM t) SELECT x FROM c WHERE x = ${a}",
        "SELECT x FROM t WHERE x IN (SELECT y FROM u WHERE z = ${a})",
        "SELECT x, 'it''s $ and ?' AS s FROM t WHERE name LIKE ${a}",
        "SELECT \"update\" FROM t WHERE x = ${a}",
    ] {
        compile_query(query, DataDriver::Postgres, &a).unwrap_or_else(|e| panic!("{query}: {}", e.message));
    }
}

#[test]
fn parameters_and_pagination_are_checked() {
    let with = |params: &str, extra: &str| {
        format!(
            r#"{{driver: sqlite, connection: {{url: "sqlite:///tmp/x.db"}}, query: "SELECT a FROM t WHERE a = ${{a}}", parameters: [{params}]{extra}}}"#
        )
    };
    let refused = [
        (with("{name: a, type: integer, default: \"x\"}", ""), "not an integer"),
        (with("{name: a, type: integer, min: 5, max: 1}", ""), "above max"),
        (with("{name: a, type: string, min: 1}", ""), "min and max apply"),
        (with("{name: a, type: number, maxLength: 3}", ""), "maxLength applies"),
        (with("{name: a, enum: [x, y], default: z}", ""), "not one of"),
        (with("{name: a, type: boolean, enum: [yes]}", ""), "not true or false"),
        (with("{name: a, type: timestamp, default: \"yesterday\"}", ""), "RFC 3339"),
        (with("{name: a}, {name: a}", ""), "declared twice"),
        (with("{name: a}, {name: pageSize}", ""), "paging parameters"),
        (with("{name: \"a-b\"}", ""), "letters, digits"),
        (with("{name: a}", ", pagination: {defaultPageSize: 50, maxPageSize: 10}"), "above maxPageSize"),
    ];
    for (spec, expect) in refused {
        let compiled = crate::compile(&resources(&spec));
        let (ok, _, message) = condition(&compiled, ACCEPTED);
        assert!(!ok && message.contains(expect), "{spec}: {message}");
    }
    let ok = with("{name: a, type: timestamp, default: \"2024-05-01T12:00:00Z\"}", "");
    assert!(condition(&crate::compile(&resources(&ok)), ACCEPTED).0);
}

#[test]
fn connections_are_checked_and_never_shown() {
    let spec = |driver: &str, connection: &str| format!(r#"{{driver: {driver}, connection: {connection}, query: "SELECT a FROM t"}}"#);
    let refused = [
        (spec("postgres", r#"{url: "mysql://h/db"}"#), reason::INVALID_URL, "does not fit"),
        (spec("sqlite", r#"{url: "sqlite://:memory:"}"#), reason::INVALID_URL, "database file"),
        (spec("postgres", r#"{url: "postgres://u:hunter2@h/db"}"#), reason::INVALID_URL, "Secret"),
        (spec("mysql", r#"{url: "mysql://169.254.169.254/db"}"#), reason::LINK_LOCAL_NOT_ALLOWED, "link-local"),
        (spec("postgres", "{}"), reason::INVALID_SPEC, "set url or secretRef"),
    ];
    for (s, why, expect) in refused {
        let compiled = crate::compile(&resources(&s));
        let (ok, r, message) = condition(&compiled, ACCEPTED);
        assert!(!ok && r == why && message.contains(expect), "{s}: {r} {message}");
        assert!(!message.contains("hunter2"));
    }
    // A Secret: missing is ResolvedRefs=False; present gives the URL as a secret.
    let s = spec("postgres", "{secretRef: {name: pg, key: url}}");
    let mut res = resources(&s);
    let compiled = crate::compile(&res);
    assert!(condition(&compiled, ACCEPTED).0);
    assert_eq!(condition(&compiled, RESOLVED_REFS).1, reason::SECRET_NOT_FOUND);
    res.secrets.insert(("shop".into(), "pg".into()), SecretData([("url".to_owned(), "postgres://u:hunter2@h/db".to_owned())].into()));
    let compiled = crate::compile(&res);
    assert!(condition(&compiled, RESOLVED_REFS).0);
    let BackendKind::DataService(ds) = &compiled.snapshot.backends[0].kind else { panic!() };
    assert_eq!(ds.connection, DataConnection::Url { url_secret: SecretText("postgres://u:hunter2@h/db".into()) });
    let statuses = format!("{:?}", compiled.statuses);
    assert!(!statuses.contains("hunter2"), "{statuses}");
    assert!(!format!("{:?}", compiled.snapshot).contains("hunter2"), "Debug redacts the URL");
    // A relative SQLite path is relative to the configuration folder.
    let mut res = resources(&spec("sqlite", r#"{url: "sqlite://data/shop.db"}"#));
    res.config_dir = Some("/etc/switchyard".into());
    let BackendKind::DataService(ds) = &crate::compile(&res).snapshot.backends[0].kind else { panic!() };
    assert_eq!(ds.connection, DataConnection::SqliteFile { path: "/etc/switchyard/data/shop.db".into() });
}

#[test]
fn ready_follows_the_monitors_ping_and_its_message_never_holds_the_credentials() {
    let spec = r#"{driver: postgres, connection: {secretRef: {name: pg, key: url}}, query: "SELECT a FROM t"}"#;
    let mut res = resources(spec);
    let url = "postgres://reader:hunter2@db.internal:5432/shop?password=hunter2";
    res.secrets.insert(("shop".into(), "pg".into()), SecretData([("url".to_owned(), url.to_owned())].into()));
    let compiled = crate::compile(&res);
    let (ready, why, message) = condition(&compiled, READY);
    assert_eq!((ready, why), (false, reason::CONNECTING), "{message}");
    let key = ("shop".to_owned(), "products".to_owned());
    res.databases.insert(key.clone(), DatabaseState::Reachable);
    let compiled = crate::compile(&res);
    let (ready, why, message) = condition(&compiled, READY);
    assert!(ready && why == reason::READY && message.contains("db.internal:5432/shop"), "{message}");
    res.databases.insert(key, DatabaseState::Unreachable { error: "connection refused".into() });
    let compiled = crate::compile(&res);
    let (ready, why, message) = condition(&compiled, READY);
    assert!(!ready && why == reason::DATABASE_UNREACHABLE && message.contains("connection refused"), "{message}");
    assert!(!format!("{:?}", compiled.statuses).contains("hunter2"));
    assert!(
        matches!(compiled.snapshot.backends[0].kind, BackendKind::DataService(_)),
        "a database that is down still serves (503 per request)"
    );
}

#[test]
fn backends_on_one_connection_share_a_source_and_an_sqlite_file_is_pinged_only_in_standalone() {
    let yaml = |name: &str, url: &str| {
        format!(
            "apiVersion: switchyard.dev/v1alpha1\nkind: BackendService\nmetadata: {{name: {name}, namespace: shop}}\nspec: {{dataService: {{driver: postgres, connection: {{url: \"{url}\"}}, query: \"SELECT a FROM t\"}}}}\n"
        )
    };
    let mut res = Resources::default();
    let all = [yaml("a", "postgres://r@h/db"), yaml("b", "postgres://r@h/db"), yaml("c", "postgres://r@h/other")].join("---\n");
    crate::manifest::add_yaml(&mut res, "t", &all);
    let sources: Vec<_> = res.backend_services.iter().map(|b| database_source(b, &res).expect("a server is pinged")).collect();
    assert!(sources[0] == sources[1] && sources[0] != sources[2]);
    let lite = resources(r#"{driver: sqlite, connection: {url: "sqlite://shop.db"}, query: "SELECT a FROM t"}"#);
    assert!(database_source(&lite.backend_services[0], &lite).is_none(), "in Kubernetes mode the file is on the proxies");
    assert!(condition(&crate::compile(&lite), READY).0, "so Ready does not wait for a ping");
    let standalone = Resources { config_dir: Some("/etc/switchyard".into()), ..lite };
    assert!(database_source(&standalone.backend_services[0], &standalone).is_some());
    let refused = resources(r#"{driver: postgres, connection: {url: "postgres://r@h/db"}, query: "DELETE FROM t"}"#);
    assert!(database_source(&refused.backend_services[0], &refused).is_none(), "a refused backend is not pinged");
}

#[test]
fn two_result_columns_of_one_name_are_refused_naming_the_column() {
    let cases: &[(DataDriver, &str, &str)] = &[
        (DataDriver::Postgres, "SELECT a.id, b.id FROM a JOIN b ON a.x = b.x", "\"id\""),
        (DataDriver::Postgres, "SELECT x AS total, y AS total FROM t", "\"total\""),
        (DataDriver::Postgres, "SELECT name, x AS Name FROM t", "\"name\""),
        (DataDriver::Postgres, "SELECT id, count(*) AS id FROM t GROUP BY id", "\"id\""),
        (DataDriver::Postgres, "SELECT a.id, b.x FROM a JOIN b ON a.x = b.x UNION SELECT 1 AS n, 2 AS n", "\"n\""),
        (DataDriver::Mysql, "SELECT a.id, b.id FROM a JOIN b ON a.x = b.x", "\"id\""),
        (DataDriver::Sqlite, "SELECT t.price AS p, u.price AS p FROM t, u", "\"p\""),
    ];
    for (driver, query, name) in cases {
        match compile_query(query, *driver, &[]) {
            Err(why) => {
                assert_eq!(why.reason, reason::INVALID_QUERY, "{query}");
                assert!(why.message.contains(name) && why.message.contains("AS"), "{query}: {}", why.message);
            }
            // Only the first SELECT of a UNION names the result.
            Ok(_) => assert!(query.contains("UNION"), "{query} compiled"),
        }
    }
    for (driver, query) in [
        (DataDriver::Postgres, "SELECT a.id, b.id AS b_id FROM a JOIN b ON a.x = b.x"),
        (DataDriver::Postgres, "SELECT \"Id\", \"id\" FROM t"),
        (DataDriver::Mysql, "SELECT ID, id FROM t"),
        (DataDriver::Postgres, "SELECT count(*), sum(x) FROM t"),
    ] {
        compile_query(query, driver, &[]).unwrap_or_else(|e| panic!("{query}: {}", e.message));
    }
    // Through compile: Accepted=False with the reason.
    let compiled =
        crate::compile(&resources(r#"{driver: sqlite, connection: {url: "sqlite:///x.db"}, query: "SELECT a.id, b.id FROM a, b"}"#));
    let (ok, why, message) = condition(&compiled, ACCEPTED);
    assert!(!ok && why == reason::INVALID_QUERY && message.contains("\"id\""), "{message}");
}

/// Found by the `sql_query` fuzz target (the input is in fuzz/corpus/sql_query): in the
/// MySQL dialect a dangling `@` at the end parses as written, but the page query with the
/// gateway's ` LIMIT ? OFFSET ?` after it does not ("no infix parser for token AtSign").
#[test]
fn a_query_that_reads_differently_before_the_gateways_limit_is_refused() {
    let query = format!("SELECT \t\r\r\r1{}.\r\r\r\r\rA\r\r\r\r@{}", "\r".repeat(31), "\r".repeat(29));
    let why = compile_query(&query, DataDriver::Mysql, &[]).expect_err("refused");
    assert!(why.message.contains("does not stay one SELECT"), "{}", why.message);
    // The same select without the dangling `@` is served.
    compile_query("SELECT 1 . A", DataDriver::Mysql, &[]).map(drop).unwrap_or_else(|e| panic!("{}", e.message));
}
