//! Real database servers for tests (feature `test-server`): PostgreSQL 15 and MariaDB from
//! Debian's packages (scripts/test.sh installs them), each on a free port of 127.0.0.1 with
//! a temporary data directory, stopped on drop (and by a watchdog if the test process dies:
//! `switchyard_testkit::Supervised`, with PostgreSQL's immediate shutdown, SIGQUIT).

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use switchyard_testkit::{Stop, Supervised};

/// The driver itself, for tests and benchmarks that compare with it directly.
pub use sqlx;

const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

fn run(command: &mut Command, what: &str) {
    let output = command.output().unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    assert!(
        output.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// PostgreSQL 15 on loopback, trust authentication, superuser `postgres`.
pub struct Postgres {
    server: Supervised,
}

impl Postgres {
    /// # Panics
    /// When PostgreSQL 15 is not installed (scripts/test.sh installs it) or does not start.
    pub fn start() -> Self {
        let initdb = Path::new(PG_BIN).join("initdb");
        assert!(initdb.exists(), "PostgreSQL 15 is not installed: scripts/test.sh installs it (apt-get install -y postgresql)");
        let dir = tempfile::Builder::new().prefix("switchyard-pg-").tempdir().expect("a temporary directory");
        // initdb and the server run as `postgres`, who must own the directory.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).expect("chmod");
        run(Command::new("chown").arg("-R").arg("postgres:postgres").arg(dir.path()), "chown");
        let data = dir.path().join("data");
        run(
            Command::new("setpriv")
                .args(["--reuid=postgres", "--regid=postgres", "--init-groups", "--"])
                .arg(&initdb)
                .arg("-D")
                .arg(&data)
                .args(["-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8", "--locale=C"]),
            "initdb",
        );
        let mut pg = Self { server: Supervised::new("postgres", dir, Stop::QuitThenKill) };
        pg.launch();
        pg
    }

    fn launch(&mut self) {
        let data = self.server.dir().join("data");
        let port = self.server.port().to_string();
        let socket = self.server.dir().to_owned();
        let postgres = Path::new(PG_BIN).join("postgres");
        let args: Vec<std::ffi::OsString> = vec![
            "setpriv".into(),
            "--reuid=postgres".into(),
            "--regid=postgres".into(),
            "--init-groups".into(),
            "--".into(),
            postgres.into(),
            "-D".into(),
            data.into(),
            "-p".into(),
            port.into(),
            "-k".into(),
            socket.into(),
            "-c".into(),
            "listen_addresses=127.0.0.1".into(),
            "-c".into(),
            "fsync=off".into(),
            "-c".into(),
            "max_connections=50".into(),
        ];
        let refs: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_os_str()).collect();
        self.server.launch(&refs, Duration::from_secs(30));
        // Listening is not yet accepting queries: wait for a real answer.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = Command::new(Path::new(PG_BIN).join("pg_isready"))
                .args(["-h", "127.0.0.1", "-p", &self.server.port().to_string(), "-t", "1"])
                .output()
                .is_ok_and(|o| o.status.success());
            if ready {
                break;
            }
            assert!(Instant::now() < deadline, "postgres did not become ready within 30 s");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn port(&self) -> u16 {
        self.server.port()
    }

    /// The superuser's URL for database `postgres`.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.server.port())
    }

    /// Stops the server (immediate shutdown, as a crash); the data stays, for [`Self::restart`].
    pub fn stop(&mut self) {
        self.server.stop();
    }

    pub fn restart(&mut self) {
        self.stop();
        self.launch();
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop();
        // Files created by the `postgres` user: the temp dir removes them as root.
    }
}

/// MariaDB on loopback; `url()` is a user `gw` (password `gw-pass`) with every privilege on
/// database `shop`.
pub struct MariaDb {
    server: Supervised,
}

/// Where `mariadbd` is, or None (the tests that need it say so and fail).
pub fn mariadbd() -> Option<PathBuf> {
    ["/usr/sbin/mariadbd", "/usr/bin/mariadbd"].into_iter().map(PathBuf::from).find(|p| p.exists())
}

impl MariaDb {
    /// # Panics
    /// When MariaDB is not installed (scripts/test.sh installs it) or does not start.
    pub fn start() -> Self {
        let binary = mariadbd().expect("MariaDB is not installed: scripts/test.sh installs it (apt-get install -y mariadb-server)");
        let dir = tempfile::Builder::new().prefix("switchyard-mariadb-").tempdir().expect("a temporary directory");
        let data = dir.path().join("data");
        run(
            Command::new("mariadb-install-db").arg("--no-defaults").arg(format!("--datadir={}", data.display())).args([
                "--user=root",
                "--auth-root-authentication-method=socket",
                "--skip-test-db",
            ]),
            "mariadb-install-db",
        );
        let mut db = Self { server: Supervised::new("mariadbd", dir, Stop::QuitThenKill) };
        db.launch(&binary);
        let socket = db.socket();
        let sql = "CREATE DATABASE shop; CREATE USER 'gw'@'%' IDENTIFIED BY 'gw-pass'; GRANT ALL ON shop.* TO 'gw'@'%'; FLUSH PRIVILEGES;";
        run(Command::new("mariadb").arg("--no-defaults").arg("-S").arg(&socket).args(["-u", "root", "-e", sql]), "mariadb (create user)");
        db
    }

    fn socket(&self) -> PathBuf {
        self.server.dir().join("sock")
    }

    fn launch(&mut self, binary: &Path) {
        let data = self.server.dir().join("data");
        let args: Vec<std::ffi::OsString> = vec![
            binary.into(),
            "--no-defaults".into(),
            format!("--datadir={}", data.display()).into(),
            format!("--socket={}", self.socket().display()).into(),
            format!("--port={}", self.server.port()).into(),
            "--bind-address=127.0.0.1".into(),
            "--user=root".into(),
            "--skip-log-bin".into(),
            "--innodb-buffer-pool-size=32M".into(),
            "--max-connections=50".into(),
        ];
        let refs: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_os_str()).collect();
        self.server.launch(&refs, Duration::from_secs(30));
    }

    pub fn port(&self) -> u16 {
        self.server.port()
    }

    pub fn url(&self) -> String {
        format!("mysql://gw:gw-pass@127.0.0.1:{}/shop", self.server.port())
    }

    pub fn stop(&mut self) {
        self.server.stop();
    }

    pub fn restart(&mut self) {
        self.stop();
        let binary = mariadbd().expect("mariadbd");
        self.launch(&binary);
    }
}

impl Drop for MariaDb {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Runs setup statements with a writable connection (tests create their tables and rows
/// with it; the gateway itself only ever reads).
pub async fn execute(driver: crate::Driver, target: &str, statements: &[&str]) {
    use sqlx::Connection as _;
    match driver {
        crate::Driver::Postgres => {
            let mut conn = sqlx::PgConnection::connect(target).await.expect("connect to the test postgres");
            for s in statements {
                sqlx::raw_sql(s).execute(&mut conn).await.unwrap_or_else(|e| panic!("{s}: {e}"));
            }
        }
        crate::Driver::Mysql => {
            let mut conn = sqlx::MySqlConnection::connect(target).await.expect("connect to the test mariadb");
            for s in statements {
                sqlx::raw_sql(s).execute(&mut conn).await.unwrap_or_else(|e| panic!("{s}: {e}"));
            }
        }
        crate::Driver::Sqlite => {
            let options = sqlx::sqlite::SqliteConnectOptions::new().filename(target).create_if_missing(true);
            let mut conn = sqlx::SqliteConnection::connect_with(&options).await.expect("open the test sqlite file");
            for s in statements {
                sqlx::raw_sql(s).execute(&mut conn).await.unwrap_or_else(|e| panic!("{s}: {e}"));
            }
        }
    }
}
