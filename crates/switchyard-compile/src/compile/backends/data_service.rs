//! `dataService`: one read-only SELECT with `${name}` placeholders, checked here with a
//! real SQL parser (`sqlparser`, the driver's dialect) and compiled to the driver's bind
//! markers. Request values never become SQL text: the snapshot holds the SQL with markers
//! and, per marker, which parameter binds to it. `Ready` follows what the controller's
//! database monitor last saw (`Resources::databases`).

use sqlparser::ast::{Expr, Ident, Select, SelectItem, SetExpr, Statement};
use sqlparser::dialect::{Dialect, MySqlDialect, PostgreSqlDialect, SQLiteDialect};
use sqlparser::parser::Parser;
use sqlparser::tokenizer::{Token, Tokenizer, Whitespace};
use switchyard_api::condition_type::READY;
use switchyard_api::{BackendService, DataParameter, DataParameterLocation, DataParameterType, DataServiceBackend, SqlDriver};

use super::{BackendEntry, KindCompiler, KindContext, Resolved};
use crate::compile::{Rejection, namespace, secrets};
use crate::database::{DatabaseSource, DatabaseState, describe};
use crate::snapshot::{BackendKind, DataConnection, DataDriver, DataParam, DataParamLocation, DataParamType, DataService, SecretText};
use crate::{ConditionSpec, Resources, reason, validate};

const DEFAULT_PAGE_SIZE: u32 = 20;
const DEFAULT_MAX_PAGE_SIZE: u32 = 100;
const DEFAULT_MAX_CONNECTIONS: u32 = 10;
const DEFAULT_MAX_LENGTH: u32 = 1024;
const MAX_QUERY_BYTES: usize = 64 * 1024;
const MAX_PARAMETERS: usize = 64;
/// Query parameter names the gateway reads itself.
const RESERVED: [&str; 2] = ["pageNumber", "pageSize"];

/// Unquoted words that have no place in a read-only SELECT, anywhere in it (a CTE, a
/// subquery): writes, DDL, locks, `INTO`, and statements that change the session.
const FORBIDDEN: &[(&str, &str)] = &[
    ("INSERT", "INSERT"),
    ("UPDATE", "UPDATE (also FOR UPDATE)"),
    ("DELETE", "DELETE"),
    ("MERGE", "MERGE"),
    ("CREATE", "CREATE"),
    ("ALTER", "ALTER"),
    ("DROP", "DROP"),
    ("TRUNCATE", "TRUNCATE"),
    ("GRANT", "GRANT"),
    ("REVOKE", "REVOKE"),
    ("CALL", "CALL"),
    ("EXEC", "EXEC"),
    ("EXECUTE", "EXECUTE"),
    ("COPY", "COPY"),
    ("LOAD", "LOAD"),
    ("LOCK", "LOCK"),
    ("SHARE", "FOR SHARE"),
    ("INTO", "INTO"),
    ("OUTFILE", "INTO OUTFILE"),
    ("DUMPFILE", "INTO DUMPFILE"),
    ("ATTACH", "ATTACH"),
    ("DETACH", "DETACH"),
    ("PRAGMA", "PRAGMA"),
    ("VACUUM", "VACUUM"),
    ("SET", "SET"),
    ("BEGIN", "BEGIN"),
    ("COMMIT", "COMMIT"),
    ("ROLLBACK", "ROLLBACK"),
];

impl KindCompiler for DataServiceBackend {
    fn compile(&self, cx: &KindContext<'_>, _entry: &mut BackendEntry) -> Result<Resolved, Rejection> {
        let driver = driver(self.driver);
        let parameters = parameters(&self.parameters)?;
        let query = compile_query(&self.query, driver, &parameters)?;
        let (default_page_size, max_page_size) = match &self.pagination {
            None => (DEFAULT_PAGE_SIZE, DEFAULT_MAX_PAGE_SIZE),
            Some(p) if p.default_page_size == 0 || p.max_page_size == 0 || p.max_page_size > 10_000 => {
                return Err(invalid("dataService.pagination: page sizes are 1 to 10000"));
            }
            Some(p) if p.default_page_size > p.max_page_size => {
                return Err(invalid(format!(
                    "dataService.pagination: defaultPageSize {} is above maxPageSize {}",
                    p.default_page_size, p.max_page_size
                )));
            }
            Some(p) => (p.default_page_size, p.max_page_size),
        };
        let max_connections = match self.max_connections {
            None => DEFAULT_MAX_CONNECTIONS,
            Some(n @ 1..=200) => n,
            Some(n) => return Err(invalid(format!("dataService.maxConnections {n}: 1 to 200"))),
        };
        let connection = match connection(self, driver, cx.ns, cx.resources)? {
            Ok(connection) => connection,
            Err(unresolved) => return Ok(Resolved::Unresolved(unresolved)),
        };
        let ready = ready(driver, &connection, cx.resources.databases.get(&(cx.ns.to_owned(), cx.name.to_owned())), cx.resources);
        let kind = BackendKind::DataService(DataService {
            driver,
            connection,
            page_sql: query.page_sql,
            count_sql: query.count_sql,
            page_counts: query.page_counts,
            binds: query.binds,
            parameters,
            default_page_size,
            max_page_size,
            max_connections,
        });
        Ok(Resolved::ReadyWith(kind, 1, ready))
    }
}

/// The database a `dataService` BackendService reads, for the controller's monitors; None
/// for other kinds, for specs compile refuses or cannot resolve, and for what is not
/// monitored (see [`monitored`]).
pub(crate) fn database_source(backend: &BackendService, resources: &Resources) -> Option<DatabaseSource> {
    let spec = backend.spec.data_service.as_ref()?;
    let driver = driver(spec.driver);
    let parameters = parameters(&spec.parameters).ok()?;
    compile_query(&spec.query, driver, &parameters).ok()?;
    let connection = connection(spec, driver, namespace(&backend.metadata), resources).ok()?.ok()?;
    monitored(&connection, resources).then_some(DatabaseSource { driver, connection })
}

/// A database server is pinged by the controller. An SQLite file only in standalone (a
/// config folder): in Kubernetes mode the file is on each proxy, not where the controller
/// runs, so its reachability shows per request only.
fn monitored(connection: &DataConnection, resources: &Resources) -> bool {
    !matches!(connection, DataConnection::SqliteFile { .. }) || resources.config_dir.is_some()
}

/// `Ready` from the monitor's last ping of the database (`state`: None before its first
/// result).
fn ready(driver: DataDriver, connection: &DataConnection, state: Option<&DatabaseState>, resources: &Resources) -> ConditionSpec {
    if !monitored(connection, resources) {
        return ConditionSpec::new(
            READY,
            true,
            reason::READY,
            "SQLite data service; the file is read on each proxy and checked per request (503 while it cannot be opened)",
        );
    }
    let described = describe(&DatabaseSource { driver, connection: connection.clone() });
    match state.unwrap_or(&DatabaseState::Connecting) {
        DatabaseState::Connecting => ConditionSpec::new(READY, false, reason::CONNECTING, format!("connecting to the {described}")),
        DatabaseState::Reachable => ConditionSpec::new(READY, true, reason::READY, format!("the {described} answers")),
        DatabaseState::Unreachable { error } => ConditionSpec::new(
            READY,
            false,
            reason::DATABASE_UNREACHABLE,
            format!("the {described} does not answer: {error}; requests are refused (503 D503DU) until it does"),
        ),
    }
}

fn invalid(message: impl Into<String>) -> Rejection {
    Rejection::new(reason::INVALID_SPEC, message)
}

fn invalid_query(message: impl Into<String>) -> Rejection {
    Rejection::new(reason::INVALID_QUERY, format!("dataService.query: {}", message.into()))
}

fn driver(driver: SqlDriver) -> DataDriver {
    match driver {
        SqlDriver::Postgres => DataDriver::Postgres,
        SqlDriver::Mysql => DataDriver::Mysql,
        SqlDriver::Sqlite => DataDriver::Sqlite,
    }
}

/// The compiled SQL of a query.
#[derive(Debug, PartialEq)]
pub(crate) struct CompiledQuery {
    pub page_sql: String,
    pub count_sql: String,
    /// `page_sql` also returns the count of all rows, as its last column [`TOTAL_COLUMN`].
    pub page_counts: bool,
    pub binds: Vec<usize>,
}

/// `compile_query` for `fuzz/` (feature `fuzzing`): `names` are declared as required
/// string query parameters; the page and count SQL, or the rejection's message.
#[cfg(feature = "fuzzing")]
pub fn fuzz_compile_query(query: &str, driver: DataDriver, names: &[&str]) -> Result<(String, String), String> {
    let parameters: Vec<DataParam> = names
        .iter()
        .map(|name| DataParam {
            name: (*name).to_owned(),
            location: DataParamLocation::Query,
            kind: DataParamType::String,
            required: true,
            default: None,
            min: None,
            max: None,
            max_length: 64,
            allowed: Vec::new(),
        })
        .collect();
    compile_query(query, driver, &parameters).map(|q| (q.page_sql, q.count_sql)).map_err(|r| r.message)
}

/// The column a counting page query adds, the number of rows of the whole result, so a
/// page is one statement instead of a page and a count (see [`counting_select`]). A query
/// may not name a column so itself.
pub const TOTAL_COLUMN: &str = "switchyard_total";

/// Checks the query and turns its `${name}` placeholders into bind markers.
pub(crate) fn compile_query(query: &str, driver: DataDriver, parameters: &[DataParam]) -> Result<CompiledQuery, Rejection> {
    if query.len() > MAX_QUERY_BYTES {
        return Err(invalid_query(format!("longer than {MAX_QUERY_BYTES} bytes")));
    }
    if query.contains('\0') {
        return Err(invalid_query("holds a NUL character"));
    }
    let (sql, names) = substitute(query, driver)?;
    let dialect = dialect(driver);
    check_tokens(&sql, dialect.as_ref(), names.len())?;
    check_ast(&sql, dialect.as_ref(), driver)?;
    let mut binds = Vec::new();
    let mut distinct: Vec<usize> = Vec::new();
    for name in &names {
        let index = parameters
            .iter()
            .position(|p| &p.name == name)
            .ok_or_else(|| invalid_query(format!("${{{name}}} has no declared parameter: declare it in dataService.parameters")))?;
        binds.push(index);
        if !distinct.contains(&index) {
            distinct.push(index);
        }
    }
    if let Some(unused) = parameters.iter().enumerate().find(|(i, _)| !distinct.contains(i)) {
        return Err(invalid_query(format!("parameter {:?} is declared but the query never uses ${{{}}}", unused.1.name, unused.1.name)));
    }
    // Postgres numbers its markers, one per distinct parameter; `?` drivers bind per use.
    let binds = if driver == DataDriver::Postgres { distinct } else { binds };
    let (limit, offset) = match driver {
        DataDriver::Postgres => (format!("${}", binds.len() + 1), format!("${}", binds.len() + 2)),
        DataDriver::Mysql | DataDriver::Sqlite => ("?".to_owned(), "?".to_owned()),
    };
    let sql = sql.trim();
    let count_sql = format!("SELECT COUNT(*) FROM ({sql}) AS switchyard_count");
    let counting = counting_select(sql, &count_sql, dialect.as_ref(), driver);
    let page_sql = format!("{} LIMIT {limit} OFFSET {offset}", counting.as_deref().unwrap_or(sql));
    check_runs_as_one_query(&page_sql, dialect.as_ref(), true)?;
    check_runs_as_one_query(&count_sql, dialect.as_ref(), false)?;
    Ok(CompiledQuery { page_sql, count_sql, page_counts: counting.is_some(), binds })
}

/// What runs must be one query, the page with the gateway's own LIMIT: the checks above
/// read the query as written, and text at its end can read differently once the gateway's
/// words follow it (in the MySQL dialect a dangling `@` at the end parses, but not before
/// `LIMIT`; found by the `sql_query` fuzz target).
fn check_runs_as_one_query(sql: &str, dialect: &dyn Dialect, paged: bool) -> Result<(), Rejection> {
    let statements = Parser::parse_sql(dialect, sql).ok();
    let runs_as_checked = match statements.as_deref() {
        Some([Statement::Query(query)]) => query.limit_clause.is_some() == paged,
        _ => false,
    };
    if runs_as_checked {
        Ok(())
    } else {
        Err(invalid_query("does not stay one SELECT once the gateway adds its LIMIT and OFFSET: end it with a complete expression"))
    }
}

/// The query with [`TOTAL_COLUMN`] added to its projection, when that counts its result
/// rows: a plain SELECT (with joins, WHERE, GROUP BY, HAVING, ORDER BY, a WITH), not a
/// UNION (each side has its own projection). None otherwise, and when the rewritten text
/// does not parse back to exactly the rewritten tree: the page query then stays the
/// checked text as it was written, with a count query beside it.
///
/// PostgreSQL: the count query itself as an uncorrelated scalar subquery, `(SELECT
/// COUNT(*) FROM (<query>) AS switchyard_count)`, which the planner runs once per page (an
/// InitPlan) and can answer from an index, while the page reads only its own rows through
/// the query's plan with LIMIT. Its `$n` markers are the query's own, bound once. The
/// value is a constant of every row, so DISTINCT may count this way too.
///
/// MySQL and SQLite: `COUNT(*) OVER ()`, a window over every row of the result (computed
/// before LIMIT, so the database reads them all): their `?` markers are positional, and a
/// subquery would need the query's values bound a second time at its place in the text.
/// DISTINCT keeps the count query there (the window counts the rows before DISTINCT).
fn counting_select(sql: &str, count_sql: &str, dialect: &dyn Dialect, driver: DataDriver) -> Option<String> {
    let [Statement::Query(mut query)] = <[Statement; 1]>::try_from(Parser::parse_sql(dialect, sql).ok()?).ok()? else {
        return None;
    };
    let SetExpr::Select(select) = query.body.as_mut() else { return None };
    let total = match driver {
        DataDriver::Postgres => format!("({count_sql})"),
        DataDriver::Mysql | DataDriver::Sqlite if select.distinct.is_some() => return None,
        DataDriver::Mysql | DataDriver::Sqlite => "COUNT(*) OVER ()".to_owned(),
    };
    let template = format!("SELECT {total} AS {TOTAL_COLUMN}");
    let [Statement::Query(total)] = <[Statement; 1]>::try_from(Parser::parse_sql(dialect, &template).ok()?).ok()? else {
        return None;
    };
    let SetExpr::Select(total) = *total.body else { return None };
    select.projection.extend(total.projection);
    let rewritten = Statement::Query(query);
    let text = rewritten.to_string();
    // What runs is what was checked: the printed tree must read back as the same tree.
    let reparsed = Parser::parse_sql(dialect, &text).ok()?;
    (reparsed.as_slice() == [rewritten]).then_some(text)
}

fn dialect(driver: DataDriver) -> Box<dyn Dialect> {
    match driver {
        DataDriver::Postgres => Box::new(PostgreSqlDialect {}),
        DataDriver::Mysql => Box::new(MySqlDialect {}),
        DataDriver::Sqlite => Box::new(SQLiteDialect {}),
    }
}

/// Replaces each `${name}` outside quotes with the driver's marker (`$N` numbered by
/// first use for Postgres, `?` for the others); returns the names in order of use. A
/// placeholder inside a quoted string, a bare `?` or `$`, is refused: the only
/// parameters are declared ones.
fn substitute(query: &str, driver: DataDriver) -> Result<(String, Vec<String>), Rejection> {
    let backslash_escapes = driver == DataDriver::Mysql;
    let mut out = String::with_capacity(query.len());
    let mut names: Vec<String> = Vec::new();
    let mut distinct: Vec<String> = Vec::new();
    let mut chars = query.chars().peekable();
    let mut quote: Option<char> = None;
    while let Some(c) = chars.next() {
        if let Some(q) = quote {
            out.push(c);
            if c == '\\' && backslash_escapes && q != '`' {
                if let Some(next) = chars.next() {
                    out.push(next);
                }
            } else if c == '$' && chars.peek() == Some(&'{') {
                return Err(invalid_query("a ${...} placeholder inside a quoted string or identifier is text, not a parameter"));
            } else if c == q {
                if chars.peek() == Some(&q) {
                    out.push(chars.next().expect("peeked"));
                } else {
                    quote = None;
                }
            }
            continue;
        }
        match c {
            '\'' | '"' => quote = Some(c),
            '`' if driver == DataDriver::Mysql => quote = Some(c),
            '$' if chars.peek() == Some(&'{') => {
                chars.next();
                let mut name = String::new();
                loop {
                    match chars.next() {
                        Some('}') => break,
                        Some(ch) if ch.is_ascii_alphanumeric() || ch == '_' => name.push(ch),
                        _ => return Err(invalid_query("a ${ is not closed by } around a parameter name (letters, digits, _)")),
                    }
                }
                if name.is_empty() || name.starts_with(|ch: char| ch.is_ascii_digit()) {
                    return Err(invalid_query(format!("${{{name}}}: a parameter name starts with a letter or _")));
                }
                match driver {
                    DataDriver::Postgres => {
                        let number = match distinct.iter().position(|n| *n == name) {
                            Some(i) => i + 1,
                            None => {
                                distinct.push(name.clone());
                                distinct.len()
                            }
                        };
                        out.push_str(&format!("${number}"));
                    }
                    DataDriver::Mysql | DataDriver::Sqlite => out.push('?'),
                }
                names.push(name);
                continue;
            }
            '$' => return Err(invalid_query("a $ outside a string: parameters are written ${name} (no $1, no dollar-quoted strings)")),
            '?' => return Err(invalid_query("a ? outside a string: parameters are written ${name}")),
            _ => {}
        }
        out.push(c);
    }
    if quote.is_some() {
        return Err(invalid_query("a quoted string or identifier is not closed"));
    }
    Ok((out, names))
}

/// No comments, no `;`, none of the forbidden words, and exactly the markers we wrote.
fn check_tokens(sql: &str, dialect: &dyn Dialect, markers: usize) -> Result<(), Rejection> {
    let tokens = Tokenizer::new(dialect, sql).tokenize().map_err(|e| invalid_query(format!("cannot be read as SQL: {e}")))?;
    let mut placeholders = 0;
    for token in &tokens {
        match token {
            Token::Whitespace(Whitespace::SingleLineComment { .. } | Whitespace::MultiLineComment(_)) => {
                return Err(invalid_query("comments are not allowed"));
            }
            Token::SemiColon => return Err(invalid_query("a ; is not allowed: the query is exactly one SELECT")),
            Token::Placeholder(_) => placeholders += 1,
            Token::Word(word) if word.quote_style.is_none() => {
                if let Some((_, what)) = FORBIDDEN.iter().find(|(k, _)| k.eq_ignore_ascii_case(&word.value)) {
                    return Err(invalid_query(format!("{what} is not allowed: the query is one read-only SELECT")));
                }
            }
            _ => {}
        }
    }
    if placeholders != markers {
        return Err(invalid_query("its ${name} placeholders and quoted strings could not be told apart; write strings without $ or ?"));
    }
    Ok(())
}

/// Exactly one SELECT (a UNION of them, a WITH of them), no `*`, no `INTO`, no locks,
/// no LIMIT / OFFSET / FETCH (the gateway pages), no two result columns of one name.
fn check_ast(sql: &str, dialect: &dyn Dialect, driver: DataDriver) -> Result<(), Rejection> {
    let statements = Parser::parse_sql(dialect, sql).map_err(|e| invalid_query(format!("does not parse: {e}")))?;
    let [statement] = statements.as_slice() else {
        return Err(invalid_query(format!("{} statements: the query is exactly one SELECT", statements.len())));
    };
    let Statement::Query(query) = statement else {
        return Err(invalid_query("is not a SELECT"));
    };
    if query.limit_clause.is_some() || query.fetch.is_some() {
        return Err(invalid_query("LIMIT, OFFSET and FETCH are not allowed: the gateway pages with pageNumber and pageSize"));
    }
    if !query.locks.is_empty() || query.for_clause.is_some() {
        return Err(invalid_query("FOR UPDATE / FOR SHARE / FOR XML... are not allowed"));
    }
    if let Some(with) = &query.with {
        for cte in &with.cte_tables {
            check_body(&cte.query.body, false)?;
        }
    }
    check_body(&query.body, true)?;
    check_column_names(&query.body, driver)
}

/// Each row is a JSON object keyed by column name, so two result columns of one name would
/// lose a value. The names compile can tell are checked here: an alias, a bare or
/// qualified column (`a.id` is `id`), as the database returns them (PostgreSQL folds an
/// unquoted name to lower case). An unaliased expression (`count(*)`, `price * 2`) is
/// named by the database; the proxy refuses a duplicate among those per request (502).
fn check_column_names(body: &SetExpr, driver: DataDriver) -> Result<(), Rejection> {
    let Some(select) = first_select(body) else { return Ok(()) };
    let mut seen: Vec<String> = Vec::new();
    for item in &select.projection {
        let ident = match item {
            SelectItem::ExprWithAlias { alias, .. } => alias,
            SelectItem::UnnamedExpr(Expr::Identifier(ident)) => ident,
            SelectItem::UnnamedExpr(Expr::CompoundIdentifier(parts)) => match parts.last() {
                Some(last) => last,
                None => continue,
            },
            _ => continue,
        };
        let name = output_name(ident, driver);
        if name.eq_ignore_ascii_case(TOTAL_COLUMN) {
            return Err(invalid_query(format!(
                "{TOTAL_COLUMN} is the gateway's own column (the count of all rows): name the column otherwise"
            )));
        }
        if seen.contains(&name) {
            return Err(invalid_query(format!(
                "two result columns are named {name:?}: each row is an object keyed by column name; give one another name with AS"
            )));
        }
        seen.push(name);
    }
    Ok(())
}

/// The SELECT whose columns name the result (the first of a UNION).
fn first_select(body: &SetExpr) -> Option<&Select> {
    match body {
        SetExpr::Select(select) => Some(select),
        SetExpr::Query(query) => first_select(&query.body),
        SetExpr::SetOperation { left, .. } => first_select(left),
        _ => None,
    }
}

fn output_name(ident: &Ident, driver: DataDriver) -> String {
    match (driver, ident.quote_style) {
        (DataDriver::Postgres, None) => ident.value.to_ascii_lowercase(),
        _ => ident.value.clone(),
    }
}

fn check_body(body: &SetExpr, top: bool) -> Result<(), Rejection> {
    match body {
        SetExpr::Select(select) => {
            if select.into.is_some() {
                return Err(invalid_query("SELECT ... INTO is not allowed"));
            }
            if top && select.projection.iter().any(|item| matches!(item, SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(..))) {
                return Err(invalid_query("SELECT * is not allowed: name the columns the API returns"));
            }
            Ok(())
        }
        SetExpr::Query(query) => {
            if !query.locks.is_empty() {
                return Err(invalid_query("FOR UPDATE / FOR SHARE are not allowed"));
            }
            check_body(&query.body, top)
        }
        SetExpr::SetOperation { left, right, .. } => check_body(left, top).and_then(|()| check_body(right, top)),
        SetExpr::Values(_) => Ok(()),
        SetExpr::Insert(_) | SetExpr::Update(_) | SetExpr::Delete(_) | SetExpr::Merge(_) => {
            Err(invalid_query("writes are not allowed: the query is one read-only SELECT"))
        }
        _ => Err(invalid_query("only SELECT (with UNION, WITH and subqueries) is allowed")),
    }
}

/// Declarations checked: names unique identifiers (not `pageNumber` / `pageSize`),
/// defaults and enum values of the declared type within its bounds.
pub(crate) fn parameters(declared: &[DataParameter]) -> Result<Vec<DataParam>, Rejection> {
    if declared.len() > MAX_PARAMETERS {
        return Err(invalid(format!("dataService.parameters: at most {MAX_PARAMETERS}")));
    }
    let mut out: Vec<DataParam> = Vec::new();
    for p in declared {
        let bad = |why: String| Rejection::new(reason::INVALID_PARAMETER, format!("dataService.parameters {:?}: {why}", p.name));
        let name_ok = !p.name.is_empty()
            && p.name.len() <= 64
            && p.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !p.name.starts_with(|c: char| c.is_ascii_digit());
        if !name_ok {
            return Err(bad("a name is 1-64 letters, digits and _, not starting with a digit".into()));
        }
        if out.iter().any(|o| o.name == p.name) {
            return Err(bad("declared twice".into()));
        }
        if p.in_ == DataParameterLocation::Query && RESERVED.contains(&p.name.as_str()) {
            return Err(bad("pageNumber and pageSize are the gateway's paging parameters".into()));
        }
        if p.in_ == DataParameterLocation::Header {
            validate::no_line_break("header name", &p.name).map_err(bad)?;
        }
        let kind = match p.type_ {
            DataParameterType::String => DataParamType::String,
            DataParameterType::Integer => DataParamType::Integer,
            DataParameterType::Number => DataParamType::Number,
            DataParameterType::Boolean => DataParamType::Boolean,
            DataParameterType::Timestamp => DataParamType::Timestamp,
        };
        if (p.min.is_some() || p.max.is_some()) && !matches!(kind, DataParamType::Integer | DataParamType::Number) {
            return Err(bad("min and max apply to integer and number parameters".into()));
        }
        if let (Some(min), Some(max)) = (p.min, p.max)
            && min > max
        {
            return Err(bad(format!("min {min} is above max {max}")));
        }
        if p.max_length.is_some() && kind != DataParamType::String {
            return Err(bad("maxLength applies to string parameters".into()));
        }
        let param = DataParam {
            name: p.name.clone(),
            location: match p.in_ {
                DataParameterLocation::Query => DataParamLocation::Query,
                DataParameterLocation::Path => DataParamLocation::Path,
                DataParameterLocation::Header => DataParamLocation::Header,
                DataParameterLocation::Body => DataParamLocation::Body,
            },
            kind,
            required: p.required,
            default: p.default.clone(),
            min: p.min,
            max: p.max,
            max_length: p.max_length.unwrap_or(DEFAULT_MAX_LENGTH),
            allowed: p.enum_.clone(),
        };
        for value in &param.allowed {
            check_value(&param, value).map_err(|why| bad(format!("enum value {value:?}: {why}")))?;
        }
        if let Some(default) = &param.default {
            if p.required {
                return Err(bad("a required parameter has no use for a default".into()));
            }
            check_value(&param, default).map_err(|why| bad(format!("default {default:?}: {why}")))?;
        }
        out.push(param);
    }
    Ok(out)
}

/// A parameter value as text checked against its declaration (shared with the proxy's
/// own checks in spirit: the proxy parses request values the same way).
pub fn check_value(param: &DataParam, text: &str) -> Result<(), String> {
    match param.kind {
        DataParamType::String => {
            if text.chars().count() > param.max_length as usize {
                return Err(format!("longer than {} characters", param.max_length));
            }
        }
        DataParamType::Integer => {
            let n: i64 = text.parse().map_err(|_| "not an integer".to_owned())?;
            bounds(param, n as f64)?;
        }
        DataParamType::Number => {
            let n: f64 = text.parse().ok().filter(|n: &f64| n.is_finite()).ok_or("not a number")?;
            bounds(param, n)?;
        }
        DataParamType::Boolean => {
            if text != "true" && text != "false" {
                return Err("not true or false".into());
            }
        }
        DataParamType::Timestamp => {
            if !looks_rfc3339(text) {
                return Err("not an RFC 3339 timestamp (2024-05-01T12:00:00Z)".into());
            }
        }
    }
    if !param.allowed.is_empty() && !param.allowed.iter().any(|a| a == text) {
        return Err(format!("not one of {:?}", param.allowed));
    }
    Ok(())
}

fn bounds(param: &DataParam, n: f64) -> Result<(), String> {
    if let Some(min) = param.min
        && n < min
    {
        return Err(format!("below the minimum {min}"));
    }
    if let Some(max) = param.max
        && n > max
    {
        return Err(format!("above the maximum {max}"));
    }
    Ok(())
}

/// `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)`, shape only (the proxy parses it fully).
fn looks_rfc3339(s: &str) -> bool {
    let b = s.as_bytes();
    let digits = |r: std::ops::Range<usize>| b.get(r).is_some_and(|d| d.iter().all(u8::is_ascii_digit));
    if b.len() < 20 || !digits(0..4) || b[4] != b'-' || !digits(5..7) || b[7] != b'-' || !digits(8..10) {
        return false;
    }
    if !matches!(b[10], b'T' | b't' | b' ') || !digits(11..13) || b[13] != b':' || !digits(14..16) || b[16] != b':' || !digits(17..19) {
        return false;
    }
    let mut i = 19;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == start {
            return false;
        }
    }
    match &b[i..] {
        [b'Z' | b'z'] => true,
        [b'+' | b'-', h1, h2, b':', m1, m2] => [h1, h2, m1, m2].iter().all(|d| d.is_ascii_digit()),
        _ => false,
    }
}

/// The connection: `Err` for a spec compile refuses, `Ok(Err)` for a Secret that does
/// not resolve. No message holds the URL.
fn connection(
    spec: &DataServiceBackend,
    driver: DataDriver,
    ns: &str,
    resources: &Resources,
) -> Result<Result<DataConnection, Rejection>, Rejection> {
    let field = "dataService.connection.secretRef";
    let (url, from_secret) = match (&spec.connection.url, &spec.connection.secret_ref) {
        (Some(_), Some(_)) => return Err(invalid("dataService.connection: set either url or secretRef, not both")),
        (None, None) => return Err(invalid("dataService.connection: set url or secretRef")),
        (Some(url), None) => (url.trim().to_owned(), false),
        (None, Some(secret)) => match secrets::lookup(resources, ns, &secret.name, &[secret.key.as_str()], field) {
            Ok(values) => (values[0].trim().to_owned(), true),
            Err(unresolved) => return Ok(Err(unresolved)),
        },
    };
    let source = if from_secret { "the URL in dataService.connection.secretRef" } else { "dataService.connection.url" };
    let bad = |why: &str| Rejection::new(reason::INVALID_URL, format!("{source}: {why}"));
    let (scheme, rest) = url.split_once(':').ok_or_else(|| bad("is not a URL (postgres://, mysql:// or sqlite://PATH)"))?;
    let scheme = scheme.to_ascii_lowercase();
    match (driver, scheme.as_str()) {
        (DataDriver::Sqlite, "sqlite") => {
            let path = rest.strip_prefix("//").unwrap_or(rest);
            let path = path.split('?').next().unwrap_or("");
            if path.is_empty() || path.contains(":memory:") || path.contains('\0') {
                return Err(bad("sqlite://PATH names a database file"));
            }
            let path = match (&resources.config_dir, std::path::Path::new(path).is_absolute()) {
                (Some(dir), false) => std::path::Path::new(dir).join(path).display().to_string(),
                _ => path.to_owned(),
            };
            Ok(Ok(DataConnection::SqliteFile { path }))
        }
        (DataDriver::Postgres, "postgres" | "postgresql") | (DataDriver::Mysql, "mysql" | "mariadb") => {
            let authority = rest.strip_prefix("//").ok_or_else(|| bad("is not scheme://host[:port]/database"))?;
            let authority = authority.split(['/', '?']).next().unwrap_or("");
            let (userinfo, host_port) = authority.rsplit_once('@').unwrap_or(("", authority));
            if userinfo.contains(':') && !from_secret {
                return Err(bad("a password is not allowed in the URL in clear: put the URL in a Secret (connection.secretRef)"));
            }
            let host = match host_port.strip_prefix('[') {
                Some(v6) => v6.split(']').next().unwrap_or(""),
                None => host_port.split(':').next().unwrap_or(""),
            };
            if host.is_empty() {
                return Err(bad("names no host"));
            }
            if let Ok(ip) = host.parse::<std::net::IpAddr>()
                && validate::is_link_local(ip)
                && !resources.options.allow_link_local_grants
            {
                return Err(Rejection::new(
                    reason::LINK_LOCAL_NOT_ALLOWED,
                    format!("{source}: a link-local address is refused without --allow-link-local-grants"),
                ));
            }
            let url = if scheme == "mariadb" { format!("mysql:{rest}") } else { url.clone() };
            Ok(Ok(DataConnection::Url { url_secret: SecretText(url) }))
        }
        _ => Err(bad(&format!("the scheme does not fit driver {driver:?} (postgres://, mysql:// or sqlite://PATH)"))),
    }
}

#[cfg(test)]
mod tests;
