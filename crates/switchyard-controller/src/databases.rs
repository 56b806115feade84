//! Database monitors: one per distinct database connection that `dataService`
//! BackendServices name, started and stopped as they come and go. Each pings its database
//! (`SELECT 1`, [`switchyard_sql::Database::ping`]) every [`PING_INTERVAL`] and publishes
//! its [`DatabaseState`]; the owner's loop recompiles with [`crate::monitors::Monitors::results`] as
//! input (`Resources::databases`), so `Ready` follows the database through the same compile
//! path as everything else. Like the bus monitors, they run on every controller replica.

use std::sync::Arc;
use std::time::Duration;

use switchyard_compile::Resources;
use switchyard_compile::database::{DatabaseSource, DatabaseState, database_source, describe};
use switchyard_compile::snapshot::{DataConnection, DataDriver};
use switchyard_sql::{Database, Driver, SqlError, Target};
use tokio::sync::watch;

use crate::monitors::{self, Monitors};

/// How often each database is pinged.
pub const PING_INTERVAL: Duration = Duration::from_secs(2);
/// How long a ping may take before the database counts as not answering.
pub const PING_TIMEOUT: Duration = Duration::from_secs(2);

/// Starts the monitor of one database, publishing on the sender until it is closed.
pub type StartMonitor = monitors::StartMonitor<DatabaseSource, DatabaseState>;

pub type DatabaseMonitors = Monitors<DatabaseSource>;

impl monitors::Source for DatabaseSource {
    type State = DatabaseState;

    fn of(backend: &switchyard_api::BackendService, resources: &Resources) -> Option<Self> {
        database_source(backend, resources)
    }

    fn log_start(&self) {
        // `describe` names the server and database, never the user or password.
        tracing::info!(database = %describe(self), "starting database monitor");
    }
}

/// The real monitor: `SELECT 1` on a one-connection pool of its own.
pub fn sql_monitors() -> StartMonitor {
    Arc::new(|source, out| tokio::spawn(ping_loop(source, out)))
}

/// Pings `source` until `out` has no receivers.
async fn ping_loop(source: DatabaseSource, out: watch::Sender<DatabaseState>) {
    let secrets = secrets_of(&source.connection);
    let driver = match source.driver {
        DataDriver::Postgres => Driver::Postgres,
        DataDriver::Mysql => Driver::Mysql,
        DataDriver::Sqlite => Driver::Sqlite,
    };
    let target = match &source.connection {
        DataConnection::Url { url_secret } => Target::Url(url_secret.0.clone()),
        DataConnection::SqliteFile { path } => Target::SqliteFile(path.into()),
    };
    let database = match Database::connect_lazy(driver, &target, 1) {
        Ok(database) => database,
        Err(e) => {
            out.send_replace(DatabaseState::Unreachable { error: scrub(&e.to_string(), &secrets) });
            out.closed().await;
            return;
        }
    };
    loop {
        let state = match database.ping(PING_TIMEOUT).await {
            Ok(()) => DatabaseState::Reachable,
            Err(e) => DatabaseState::Unreachable { error: scrub(&why(e), &secrets) },
        };
        out.send_if_modified(|current| {
            let changed = *current != state;
            *current = state.clone();
            changed
        });
        tokio::select! {
            () = out.closed() => break,
            () = tokio::time::sleep(PING_INTERVAL) => {}
        }
    }
    database.close().await;
}

/// What went wrong, in the driver's words (the log-only detail included: the condition is
/// for operators).
fn why(e: SqlError) -> String {
    match e {
        SqlError::Unavailable { detail } => detail,
        SqlError::Failed { message } | SqlError::BadData { message } => message,
        other => other.to_string(),
    }
}

/// Everything secret in a connection: the URL itself, its password and any `password`
/// option, raw and percent-decoded.
fn secrets_of(connection: &DataConnection) -> Vec<String> {
    let DataConnection::Url { url_secret } = connection else { return Vec::new() };
    let url = &url_secret.0;
    let mut secrets = vec![url.clone()];
    let rest = url.split_once("://").map_or(url.as_str(), |(_, rest)| rest);
    if let Some((userinfo, _)) = rest.rsplit_once('@')
        && let Some((_, password)) = userinfo.split_once(':')
    {
        secrets.push(password.to_owned());
    }
    if let Some((_, options)) = url.split_once('?') {
        secrets.extend(form_urlencoded::parse(options.as_bytes()).filter(|(k, _)| k.contains("pass")).map(|(_, v)| v.into_owned()));
    }
    let decoded: Vec<String> = secrets.iter().map(|s| percent_decoded(s)).collect();
    secrets.extend(decoded);
    secrets.retain(|s| !s.is_empty());
    // Longest first, so the URL goes before the password inside it.
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    secrets
}

fn percent_decoded(text: &str) -> String {
    let pair = format!("x={text}");
    form_urlencoded::parse(pair.as_bytes()).next().map(|(_, v)| v.into_owned()).unwrap_or_default()
}

/// `message` with every secret replaced (the driver's words should hold none; this makes
/// sure).
fn scrub(message: &str, secrets: &[String]) -> String {
    secrets.iter().fold(message.to_owned(), |text, secret| text.replace(secret.as_str(), "<redacted>"))
}

#[cfg(test)]
mod tests {
    use switchyard_compile::snapshot::SecretText;
    use tokio::sync::Notify;

    use super::*;

    fn data_service(name: &str, url: &str) -> String {
        format!(
            "apiVersion: switchyard.dev/v1alpha1\nkind: BackendService\nmetadata: {{name: {name}, namespace: shop}}\nspec: {{dataService: {{driver: postgres, connection: {{url: \"{url}\"}}, query: \"SELECT a FROM t\"}}}}\n"
        )
    }

    /// A monitor that says Reachable at once.
    fn fake() -> (StartMonitor, Arc<std::sync::atomic::AtomicUsize>) {
        let started = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = started.clone();
        let start: StartMonitor = Arc::new(move |_source: DatabaseSource, out: watch::Sender<DatabaseState>| {
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::spawn(async move {
                out.send_replace(DatabaseState::Reachable);
                out.closed().await;
            })
        });
        (start, started)
    }

    #[tokio::test]
    async fn backends_on_the_same_database_share_a_monitor_and_a_gone_one_stops() {
        let (start, started) = fake();
        let mut monitors = DatabaseMonitors::new(start);
        let changed = Arc::new(Notify::new());
        let mut resources = Resources::default();
        let yaml = [
            data_service("a", "postgres://r@127.0.0.1:5432/shop"),
            data_service("b", "postgres://r@127.0.0.1:5432/shop"),
            data_service("c", "postgres://r@127.0.0.1:5432/other"),
        ]
        .join("---\n");
        switchyard_compile::manifest::add_yaml(&mut resources, "t", &yaml);
        assert!(monitors.reconcile(&resources, &changed));
        assert_eq!((monitors.monitor_count(), started.load(std::sync::atomic::Ordering::SeqCst)), (2, 2));
        tokio::time::timeout(Duration::from_secs(2), changed.notified()).await.expect("a publish pokes the loop");
        tokio::task::yield_now().await;
        let results = monitors.results();
        assert_eq!(results.len(), 3);
        assert_eq!(results[&("shop".into(), "c".into())], DatabaseState::Reachable);
        let mut fewer = Resources::default();
        switchyard_compile::manifest::add_yaml(&mut fewer, "t", &data_service("a", "postgres://r@127.0.0.1:5432/shop"));
        assert!(monitors.reconcile(&fewer, &changed));
        assert_eq!((monitors.monitor_count(), monitors.results().len()), (1, 1));
        assert!(!monitors.reconcile(&fewer, &changed), "nothing to change");
    }

    #[tokio::test]
    async fn a_database_that_refuses_connections_is_unreachable_and_the_message_holds_no_secret() {
        // A port nothing listens on.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let url = format!("postgres://reader:s3cr%65t-pw@127.0.0.1:{port}/shop?password=other-pw");
        let source =
            DatabaseSource { driver: DataDriver::Postgres, connection: DataConnection::Url { url_secret: SecretText(url.clone()) } };
        let (tx, mut rx) = watch::channel(DatabaseState::default());
        let task = tokio::spawn(ping_loop(source, tx));
        let state = tokio::time::timeout(Duration::from_secs(5), rx.wait_for(|s| *s != DatabaseState::Connecting))
            .await
            .expect("a first result within the ping timeout")
            .unwrap()
            .clone();
        let DatabaseState::Unreachable { error } = state else { panic!("{state:?}") };
        assert!(!error.is_empty());
        for secret in ["s3cr%65t-pw", "s3cret-pw", "other-pw", url.as_str()] {
            assert!(!error.contains(secret), "{error}");
        }
        drop(rx);
        tokio::time::timeout(Duration::from_secs(5), task).await.expect("the monitor stops when nobody listens").unwrap();
    }

    #[test]
    fn scrubbing_removes_the_url_and_every_form_of_its_password() {
        let connection = DataConnection::Url { url_secret: SecretText("mysql://gw:p%40ss@db:3306/shop?password=x-pw".to_owned()) };
        let secrets = secrets_of(&connection);
        let text = "failed for mysql://gw:p%40ss@db:3306/shop?password=x-pw, p@ss, p%40ss and x-pw";
        assert_eq!(scrub(text, &secrets), "failed for <redacted>, <redacted>, <redacted> and <redacted>");
    }
}
