//! What the controller's database monitors see: the input `dataService` backends compile
//! their `Ready` condition from.
//!
//! Pinging a database is I/O (the monitors live in the controller, the driver in
//! `switchyard-sql`); compile only reads [`DatabaseState`], as it reads a bus's
//! `BusState`, so `Ready` follows the database through the one compile → status path.

use crate::snapshot::{DataConnection, DataDriver};

/// One database connection: what a monitor pings. BackendServices naming the same driver
/// and connection (the same URL, credentials included, or the same SQLite file) share a
/// monitor. Debug never shows the URL.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct DatabaseSource {
    pub driver: DataDriver,
    pub connection: DataConnection,
}

/// The latest state of one [`DatabaseSource`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum DatabaseState {
    /// No ping has answered or failed yet (the first one is under way).
    #[default]
    Connecting,
    /// The last ping (`SELECT 1`) answered.
    Reachable,
    /// The last ping failed; `error` holds no URL and no credentials.
    Unreachable { error: String },
}

/// Each `dataService` BackendService's monitor source (for the controller); None for other
/// kinds, specs compile refuses or cannot resolve, and SQLite files outside standalone
/// (the file is on each proxy, not where the controller runs).
pub fn database_source(backend: &switchyard_api::BackendService, resources: &crate::Resources) -> Option<DatabaseSource> {
    crate::compile::database_source(backend, resources)
}

/// The database in words for logs and messages: `host:port/database` for a server (no
/// user, no password, no query options), the file's path for SQLite.
pub fn describe(source: &DatabaseSource) -> String {
    match &source.connection {
        DataConnection::SqliteFile { path } => format!("SQLite file {path}"),
        DataConnection::Url { url_secret } => {
            let driver = match source.driver {
                DataDriver::Postgres => "PostgreSQL",
                DataDriver::Mysql => "MySQL",
                DataDriver::Sqlite => "SQLite",
            };
            format!("{driver} at {}", server(&url_secret.0))
        }
    }
}

/// `host[:port][/database]` of `scheme://[userinfo@]host[:port][/database][?options]`.
/// Everything up to the last `@` goes first: a password written without percent-encoding
/// may hold `/`, `?` or `#`.
fn server(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, after)| after);
    let rest = rest.split(['?', '#']).next().unwrap_or("");
    match rest.split_once('/') {
        Some((host, database)) if !database.is_empty() => format!("{host}/{database}"),
        Some((host, _)) => host.to_owned(),
        None => rest.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::SecretText;

    #[test]
    fn a_description_names_the_server_and_database_but_never_the_credentials() {
        let source = |url: &str| DatabaseSource {
            driver: DataDriver::Postgres,
            connection: DataConnection::Url { url_secret: SecretText(url.into()) },
        };
        let described = describe(&source("postgres://reader:hunter2@db.internal:5432/shop?sslmode=disable&password=x"));
        assert_eq!(described, "PostgreSQL at db.internal:5432/shop");
        assert_eq!(describe(&source("postgres://p%40ss:w@rd@10.0.0.1")), "PostgreSQL at 10.0.0.1");
        assert_eq!(describe(&source("postgres://u:pa/ss?#x@db:5432/shop")), "PostgreSQL at db:5432/shop");
        let file = DatabaseSource { driver: DataDriver::Sqlite, connection: DataConnection::SqliteFile { path: "/data/shop.db".into() } };
        assert_eq!(describe(&file), "SQLite file /data/shop.db");
    }
}
