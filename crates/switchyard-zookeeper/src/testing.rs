//! A real ZooKeeper server for tests, and helpers that register instances the way Spring
//! Cloud and Dubbo applications do (feature `test-server`).
//!
//! The server is the Debian package `zookeeper` (3.8 on bookworm), run in the foreground
//! with `ZooKeeperServerMain` on a free port of 127.0.0.1 and a temporary data directory.
//! `/usr/share/java/zookeeper.jar` names its own dependencies in its manifest, so it is the
//! whole classpath; `SWITCHYARD_ZOOKEEPER_CLASSPATH` overrides it (e.g. an Apache tarball's
//! `lib/*`), `SWITCHYARD_ZOOKEEPER_JAVA` the `java` binary.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::json;
use switchyard_compile::{Discovered, ZooKeeperWatch};
use zookeeper_client::{Acls, Client, CreateMode, Error};

/// The jar of the Debian package (its manifest's Class-Path lists the rest).
pub const DEBIAN_CLASSPATH: &str = "/usr/share/java/zookeeper.jar";

const INSTALL_HINT: &str = "ZooKeeper is not installed: the switchyard-zookeeper tests run a real server. \
     scripts/test.sh installs it (apt-get install -y --no-install-recommends zookeeper, as root); \
     or set SWITCHYARD_ZOOKEEPER_CLASSPATH to a ZooKeeper classpath (and SWITCHYARD_ZOOKEEPER_JAVA to java)";

/// Runs the JVM (`"$@"`) and kills it with SIGKILL when stdin closes: when the test
/// process stops it, drops it, or dies in any way (even SIGKILL, which skips Drop), so no
/// server outlives its test. Exits when the JVM does.
const WATCHDOG: &str = r#"exec 3<&0; "$@" </dev/null & jvm=$!; { read -r _ <&3; kill -9 "$jvm" 2>/dev/null; } & wait "$jvm""#;

/// How long a (cold, loaded) JVM may take to answer.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A standalone ZooKeeper server, killed on drop.
pub struct ZooKeeperServer {
    process: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
}

impl ZooKeeperServer {
    /// Starts a server on a free port and waits until it answers `ruok`.
    ///
    /// # Panics
    /// When ZooKeeper is not installed, or does not start.
    pub fn start() -> Self {
        let dir = tempfile::Builder::new().prefix("switchyard-zookeeper-").tempdir().expect("a temporary directory");
        let port = free_port();
        write_config(dir.path(), port);
        let mut server = Self { process: None, port, dir };
        server.launch();
        server
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:<port>`.
    pub fn connect_string(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// A watch spec for this server (no chroot, no credentials).
    pub fn watch_spec(&self, path: &str, layout: switchyard_api::ZooKeeperLayout) -> ZooKeeperWatch {
        ZooKeeperWatch { servers: vec![self.connect_string()], chroot: None, path: path.to_owned(), layout, credentials: None }
    }

    /// A new session with this server.
    pub async fn client(&self) -> Client {
        Client::connect(&self.connect_string()).await.expect("connect to the test ZooKeeper")
    }

    /// Kills the server (SIGKILL, as a crash: connections drop at once). The data stays.
    pub fn stop(&mut self) {
        if let Some(mut process) = self.process.take() {
            // Closing the watchdog's stdin makes it `kill -9` the JVM; then it exits.
            drop(process.stdin.take());
            let _ = process.wait();
        }
    }

    /// Starts the server again on the same port and data directory (sessions and
    /// persistent nodes survive, as on a real restart).
    pub fn restart(&mut self) {
        self.stop();
        self.launch();
    }

    /// Starts the server again on the same port with an empty data directory: the
    /// registry lost everything, sessions included (clients see their session expire).
    pub fn restart_empty(&mut self) {
        self.stop();
        let data = self.dir.path().join("data");
        std::fs::remove_dir_all(&data).expect("clear the data directory");
        std::fs::create_dir_all(&data).expect("the data directory");
        self.launch();
    }

    fn launch(&mut self) {
        let log = std::fs::File::create(self.log_path()).expect("the server log file");
        let process = Command::new("sh")
            .args(["-c", WATCHDOG, "sh"])
            .arg(java())
            .args(["-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-Xms32m", "-Xmx256m", "-Djava.awt.headless=true"])
            .arg("-cp")
            .arg(classpath())
            .arg("org.apache.zookeeper.server.ZooKeeperServerMain")
            .arg(self.dir.path().join("zoo.cfg"))
            .stdin(Stdio::piped())
            .stdout(log.try_clone().expect("the server log file"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|error| panic!("cannot run sh ({error})"));
        self.process = Some(process);
        self.wait_until_ready();
    }

    fn wait_until_ready(&mut self) {
        let deadline = Instant::now() + START_TIMEOUT;
        while Instant::now() < deadline {
            if answers_ruok(self.port) {
                return;
            }
            if let Some(status) = self.process.as_mut().and_then(|p| p.try_wait().ok().flatten()) {
                panic!("ZooKeeper exited ({status}) before answering:\n{}\n{INSTALL_HINT}", self.log());
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("ZooKeeper did not answer within {START_TIMEOUT:?}:\n{}", self.log());
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }
}

impl Drop for ZooKeeperServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The classpath to run: the override, or the Debian package's jar (which must exist).
fn classpath() -> String {
    if let Ok(classpath) = std::env::var("SWITCHYARD_ZOOKEEPER_CLASSPATH") {
        return classpath;
    }
    assert!(Path::new(DEBIAN_CLASSPATH).exists(), "{DEBIAN_CLASSPATH} is missing. {INSTALL_HINT}");
    DEBIAN_CLASSPATH.to_owned()
}

fn java() -> String {
    std::env::var("SWITCHYARD_ZOOKEEPER_JAVA").unwrap_or_else(|_| "java".to_owned())
}

fn free_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("a free port");
    listener.local_addr().expect("the free port").port()
}

fn write_config(dir: &Path, port: u16) {
    let data = dir.join("data");
    std::fs::create_dir_all(&data).expect("the data directory");
    let config = format!(
        "tickTime=2000\n\
         dataDir={}\n\
         clientPort={port}\n\
         clientPortAddress=127.0.0.1\n\
         admin.enableServer=false\n\
         4lw.commands.whitelist=ruok,srvr\n\
         maxClientCnxns=0\n",
        data.display()
    );
    std::fs::write(dir.join("zoo.cfg"), config).expect("zoo.cfg");
}

/// ZooKeeper's four-letter health check.
fn answers_ruok(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&(Ipv4Addr::LOCALHOST, port).into(), Duration::from_millis(200)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    let mut answer = String::new();
    stream.write_all(b"ruok").is_ok() && stream.read_to_string(&mut answer).is_ok() && answer == "imok"
}

// ---------------------------------------------------------------------------------------
// Registration the way applications do it

/// Registers an instance as Spring Cloud Zookeeper does (Curator ServiceDiscovery): an
/// EPHEMERAL `/services/<service>/<id>` holding a ServiceInstance JSON, its parents created
/// as containers. It goes away when `client`'s session ends.
#[allow(clippy::too_many_arguments)]
pub async fn register_spring_cloud(
    client: &Client,
    service: &str,
    id: &str,
    address: &str,
    port: u16,
    ssl_port: Option<u16>,
    metadata: &[(&str, &str)],
) -> Result<String, Error> {
    let dir = format!("/services/{service}");
    client.mkdir(&dir, &CreateMode::Container.with_acls(Acls::anyone_all())).await?;
    let path = format!("{dir}/{id}");
    let data = spring_cloud_instance_json(service, id, address, port, ssl_port, metadata);
    create_ephemeral(client, &path, data.as_bytes()).await?;
    Ok(path)
}

/// The ServiceInstance JSON Spring Cloud Zookeeper writes.
pub fn spring_cloud_instance_json(
    service: &str,
    id: &str,
    address: &str,
    port: u16,
    ssl_port: Option<u16>,
    metadata: &[(&str, &str)],
) -> String {
    let metadata: serde_json::Map<String, serde_json::Value> = metadata.iter().map(|(k, v)| ((*k).to_owned(), json!(v))).collect();
    let registered_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
    json!({
        "name": service,
        "id": id,
        "address": address,
        "port": port,
        "sslPort": ssl_port,
        "payload": {
            "@class": "org.springframework.cloud.zookeeper.discovery.ZookeeperInstance",
            "id": format!("{service}-1"),
            "name": service,
            "metadata": metadata,
        },
        "registrationTimeUTC": registered_ms,
        "serviceType": "DYNAMIC",
        "uriSpec": {"parts": [
            {"value": "scheme", "variable": true},
            {"value": "://", "variable": false},
            {"value": "address", "variable": true},
            {"value": ":", "variable": false},
            {"value": "port", "variable": true},
        ]},
    })
    .to_string()
}

/// Registers a provider as Dubbo's ZookeeperRegistry does: an EPHEMERAL
/// `/dubbo/<interface>/providers/<URL.encode(url)>`, its parents persistent.
pub async fn register_dubbo(client: &Client, interface: &str, url: &str) -> Result<String, Error> {
    let dir = format!("/dubbo/{interface}/providers");
    client.mkdir(&dir, &CreateMode::Persistent.with_acls(Acls::anyone_all())).await?;
    let path = format!("{dir}/{}", dubbo_encode(url));
    create_ephemeral(client, &path, b"").await?;
    Ok(path)
}

/// Java's `URLEncoder.encode` (what Dubbo's `URL.encode` is).
pub fn dubbo_encode(url: &str) -> String {
    form_urlencoded::byte_serialize(url.as_bytes()).collect()
}

/// Registers a plain instance: an EPHEMERAL `<dir>/<name>` (`host:port`, or any name when
/// `data` is a `{"host","port","weight"}` JSON), its parents persistent.
pub async fn register_plain(client: &Client, dir: &str, name: &str, data: &[u8]) -> Result<String, Error> {
    client.mkdir(dir, &CreateMode::Persistent.with_acls(Acls::anyone_all())).await?;
    let path = crate::layout::child_path(dir, name);
    create_ephemeral(client, &path, data).await?;
    Ok(path)
}

async fn create_ephemeral(client: &Client, path: &str, data: &[u8]) -> Result<(), Error> {
    client.create(path, data, &CreateMode::Ephemeral.with_acls(Acls::anyone_all())).await.map(|_| ())
}

/// [`crate::watch`] with one-shot child and data watches only: what runs against servers
/// before 3.6, which have no persistent watches.
pub async fn watch_with_oneshot_watches(spec: ZooKeeperWatch, out: tokio::sync::watch::Sender<Discovered>) {
    crate::session::run(spec, out, crate::session::Strategy::Oneshot).await;
}
