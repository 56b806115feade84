//! dataService query validation: a query compile accepts becomes a page query and a count
//! query that are each exactly one SELECT in the driver's dialect, the page query with the
//! gateway's own LIMIT/OFFSET (so no accepted text can comment it out or add a statement).
//!
//! Input: the first byte picks the driver, the rest is the query; its `${name}`s are
//! declared as parameters.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sqlparser::ast::{SetExpr, Statement};
use sqlparser::dialect::{Dialect, MySqlDialect, PostgreSqlDialect, SQLiteDialect};
use sqlparser::parser::Parser;
use switchyard_compile::snapshot::DataDriver;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else { return };
    let Ok(query) = std::str::from_utf8(rest) else { return };
    let driver = [DataDriver::Postgres, DataDriver::Mysql, DataDriver::Sqlite][usize::from(pick % 3)];
    let names = placeholder_names(query);
    let Ok((page, count)) = switchyard_compile::fuzz_compile_query(query, driver, &names) else { return };
    let dialect: Box<dyn Dialect> = match driver {
        DataDriver::Postgres => Box::new(PostgreSqlDialect {}),
        DataDriver::Mysql => Box::new(MySqlDialect {}),
        DataDriver::Sqlite => Box::new(SQLiteDialect {}),
    };
    let one_query = |sql: &str| {
        let statements = Parser::parse_sql(dialect.as_ref(), sql).unwrap_or_else(|e| panic!("{sql:?} from {query:?} does not parse: {e}"));
        let [Statement::Query(q)] = <[Statement; 1]>::try_from(statements).unwrap_or_else(|s| panic!("{sql:?}: {} statements", s.len()))
        else {
            panic!("{sql:?} from {query:?} is not a query");
        };
        q
    };
    let page_query = one_query(&page);
    assert!(page_query.limit_clause.is_some(), "the page query {page:?} keeps the gateway's LIMIT");
    let count_query = one_query(&count);
    assert!(matches!(*count_query.body, SetExpr::Select(_)), "{count:?}");
    assert!(count_query.limit_clause.is_none());
});

/// The distinct `${name}` names of the text, in order.
fn placeholder_names(query: &str) -> Vec<&str> {
    let mut names = Vec::new();
    let mut rest = query;
    while let Some(at) = rest.find("${") {
        let Some(end) = rest[at..].find('}') else { break };
        let name = &rest[at + 2..at + end];
        if !names.contains(&name) {
            names.push(name);
        }
        rest = &rest[at + end + 1..];
    }
    names
}
