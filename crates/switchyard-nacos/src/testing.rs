//! A real Nacos-compatible server for integration tests: [rnacos], started on free
//! loopback ports with a data directory of its own, and killed when dropped.
//!
//! The binary is `$SWITCHYARD_RNACOS`, else `rnacos` on `PATH`, else
//! `/tmp/rnacos-root/bin/rnacos`; `scripts/test.sh` installs it. Without it, starting a
//! server panics: a test that needs a registry fails rather than passing untested.
//!
//! Instances are registered the way applications register them, over the Nacos open API,
//! as persistent instances (`ephemeral=false`): rnacos probes those over TCP (every 5 s
//! here), so register ports where a listener runs, and stop it to make one unhealthy.
//!
//! [rnacos]: https://github.com/r-nacos/r-nacos

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use http::Method;
use tokio::time::{Instant, sleep};

use crate::http::{HttpClient, client, send};

/// The variable naming the rnacos binary.
pub const BINARY_ENV: &str = "SWITCHYARD_RNACOS";
/// Set (to anything) to keep each server's directory (its log, `rnacos.log`, and data)
/// in the system temp directory after the test, for debugging.
pub const KEEP_DATA_ENV: &str = "SWITCHYARD_RNACOS_KEEP_DATA";
/// How long the tokens of a server with auth on live (rnacos' default is an hour).
pub const AUTH_TOKEN_TTL: Duration = Duration::from_secs(10);
const FALLBACK_BINARY: &str = "/tmp/rnacos-root/bin/rnacos";
const READY_TIMEOUT: Duration = Duration::from_secs(15);
const START_ATTEMPTS: u32 = 5;
/// The shortest probe interval rnacos accepts for persistent instances.
const PROBE_INTERVAL_SECONDS: &str = "5";
/// Registrations right after start can fail while rnacos elects itself raft leader.
const REGISTER_TIMEOUT: Duration = Duration::from_secs(10);

/// A running rnacos; killed on drop, its data directory removed.
pub struct NacosServer {
    child: Option<Child>,
    http_port: u16,
    dir: PathBuf,
    auth: Option<(String, String)>,
    http: HttpClient,
    /// The helpers' own login (with auth on) and when it was made.
    token: Mutex<Option<(String, Instant)>>,
    registrations: Mutex<HashMap<InstanceKey, Registration>>,
}

type InstanceKey = (String, String, String, u16);

#[derive(Clone)]
struct Registration {
    weight: f64,
    metadata_json: String,
    cluster: String,
    enabled: bool,
}

impl NacosServer {
    /// Starts a server without authentication and waits until it answers.
    pub async fn start() -> Self {
        Self::launch(None).await
    }

    /// Starts a server whose open API and gRPC requests need a login as
    /// `username`/`password` (its initial admin). Its tokens live only
    /// [`AUTH_TOKEN_TTL`], so that tests see clients refresh them.
    pub async fn start_with_auth(username: &str, password: &str) -> Self {
        Self::launch(Some((username.to_owned(), password.to_owned()))).await
    }

    async fn launch(auth: Option<(String, String)>) -> Self {
        let mut server = Self {
            child: None,
            http_port: free_port_pair(),
            dir: fresh_dir(),
            auth,
            http: client(),
            token: Mutex::new(None),
            registrations: Mutex::new(HashMap::new()),
        };
        server.spawn_and_wait(true).await;
        server
    }

    /// `127.0.0.1:port` of the HTTP port (what `NacosWatch::servers` lists).
    pub fn http_addr(&self) -> String {
        format!("127.0.0.1:{}", self.http_port)
    }

    /// A watch of `service` in the public namespace's `DEFAULT_GROUP` on this server (no
    /// clusters filter, no credentials, a 30 s re-sync).
    pub fn watch_spec(&self, service: &str) -> switchyard_compile::NacosWatch {
        switchyard_compile::NacosWatch {
            servers: vec![self.http_addr()],
            namespace: "public".to_owned(),
            group: "DEFAULT_GROUP".to_owned(),
            service: service.to_owned(),
            clusters: vec![],
            credentials: None,
            resync_interval_ms: 30_000,
        }
    }

    /// Kills the server (SIGKILL: no goodbye to its clients), keeping its data.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Freezes the server (SIGSTOP): its connections stay open but nothing answers, as
    /// with a hung process or a lost route. [`Self::resume`] undoes it.
    pub fn pause(&self) {
        self.signal(libc::SIGSTOP);
    }

    pub fn resume(&self) {
        self.signal(libc::SIGCONT);
    }

    fn signal(&self, signal: libc::c_int) {
        let child = self.child.as_ref().expect("the server is not running");
        let pid = libc::pid_t::try_from(child.id()).expect("a pid fits pid_t");
        // SAFETY: kill(2) takes plain integers; the pid is our own child, not yet reaped.
        let sent = unsafe { libc::kill(pid, signal) };
        assert_eq!(sent, 0, "signalling rnacos failed: {}", std::io::Error::last_os_error());
    }

    /// Starts the server again on the same ports and data directory.
    pub async fn restart(&mut self) {
        self.kill();
        *self.token.lock().unwrap() = None;
        self.spawn_and_wait(false).await;
    }

    /// Registers (or updates) a persistent, enabled instance of `group`/`service` in the
    /// public namespace. `metadata_json` is a JSON object of strings (`{"secure":"true"}`);
    /// `cluster` may be empty (Nacos' `DEFAULT`).
    #[allow(clippy::too_many_arguments)]
    pub async fn register(&self, group: &str, service: &str, ip: &str, port: u16, weight: f64, metadata_json: &str, cluster: &str) {
        let registration = Registration { weight, metadata_json: metadata_json.to_owned(), cluster: cluster.to_owned(), enabled: true };
        self.put_instance(Method::POST, group, service, ip, port, &registration).await;
        self.registrations.lock().unwrap().insert(key(group, service, ip, port), registration);
    }

    /// Removes an instance registered with [`Self::register`].
    pub async fn deregister(&self, group: &str, service: &str, ip: &str, port: u16) {
        let registration = self.registration(group, service, ip, port);
        self.put_instance(Method::DELETE, group, service, ip, port, &registration).await;
        self.registrations.lock().unwrap().remove(&key(group, service, ip, port));
    }

    /// Enables or disables an instance registered with [`Self::register`], keeping its
    /// weight, metadata and cluster.
    pub async fn set_enabled(&self, group: &str, service: &str, ip: &str, port: u16, enabled: bool) {
        let registration = Registration { enabled, ..self.registration(group, service, ip, port) };
        self.put_instance(Method::PUT, group, service, ip, port, &registration).await;
        self.registrations.lock().unwrap().insert(key(group, service, ip, port), registration);
    }

    fn registration(&self, group: &str, service: &str, ip: &str, port: u16) -> Registration {
        let registrations = self.registrations.lock().unwrap();
        registrations
            .get(&key(group, service, ip, port))
            .cloned()
            .unwrap_or_else(|| panic!("{group}/{service} {ip}:{port} was never registered"))
    }

    async fn put_instance(&self, method: Method, group: &str, service: &str, ip: &str, port: u16, registration: &Registration) {
        let port = port.to_string();
        let weight = registration.weight.to_string();
        let mut form = form_urlencoded::Serializer::new(String::new());
        form.extend_pairs([
            ("namespaceId", "public"),
            ("groupName", group),
            ("serviceName", service),
            ("ip", ip),
            ("port", port.as_str()),
            ("weight", weight.as_str()),
            ("enabled", if registration.enabled { "true" } else { "false" }),
            ("healthy", "true"),
            ("ephemeral", "false"),
            ("metadata", registration.metadata_json.as_str()),
            ("clusterName", registration.cluster.as_str()),
        ]);
        if let Some(token) = self.helper_token().await {
            form.append_pair("accessToken", &token);
        }
        let form = form.finish();
        let deadline = Instant::now() + REGISTER_TIMEOUT;
        loop {
            let answer = send(&self.http, method.clone(), &self.http_addr(), "/nacos/v1/ns/instance", form.clone()).await;
            let why = match answer {
                Ok(answer) if answer.status.is_success() => return,
                Ok(answer) => format!("HTTP {}: {}", answer.status, String::from_utf8_lossy(&answer.body)),
                Err(error) => error,
            };
            assert!(Instant::now() < deadline, "{method} {group}/{service} {ip}:{port} on rnacos failed: {why}");
            sleep(Duration::from_millis(200)).await;
        }
    }

    /// Starts rnacos and waits until it answers, trying again (up to [`START_ATTEMPTS`]
    /// times) when it dies or hangs while starting: rnacos 0.8 sometimes panics in its
    /// raft setup on a busy machine. A `fresh` server may move to other ports and a clean
    /// data directory; a restarted one keeps both.
    async fn spawn_and_wait(&mut self, fresh: bool) {
        // One start at a time in this process: the race that makes rnacos panic is far
        // likelier when several start together on a small machine.
        static STARTING: OnceLock<tokio::sync::Mutex<()>> = OnceLock::new();
        let _one_at_a_time = STARTING.get_or_init(|| tokio::sync::Mutex::new(())).lock().await;
        let mut failures = Vec::new();
        for attempt in 0..START_ATTEMPTS {
            sleep(Duration::from_millis(250) * attempt).await;
            self.spawn();
            match self.wait_until_ready().await {
                Ok(()) => return,
                Err(error) => {
                    eprintln!("rnacos start attempt {} failed: {error}", attempt + 1);
                    failures.push(error);
                }
            }
            self.kill();
            if fresh {
                self.http_port = free_port_pair();
                let _ = std::fs::remove_dir_all(self.dir.join("data"));
            }
        }
        panic!("rnacos did not start:\n{}", failures.join("\n----\n"));
    }

    fn spawn(&mut self) {
        let log = std::fs::File::create(self.dir.join("rnacos.log")).expect("create the rnacos log");
        let mut command = Command::new(binary());
        command.current_dir(&self.dir).stdin(Stdio::null()).stdout(log.try_clone().expect("clone the log handle")).stderr(log);
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("RNACOS_") {
                command.env_remove(name);
            }
        }
        command.envs(self.environment());
        let child = command.spawn().unwrap_or_else(|e| panic!("starting {} failed: {e}", command.get_program().to_string_lossy()));
        self.child = Some(child);
    }

    fn environment(&self) -> Vec<(&'static str, String)> {
        let mut env = vec![
            ("RNACOS_SDK_HOST", "127.0.0.1".to_owned()),
            ("RNACOS_CONSOLE_HOST", "127.0.0.1".to_owned()),
            ("RNACOS_HTTP_PORT", self.http_port.to_string()),
            ("RNACOS_GRPC_PORT", (self.http_port + 1000).to_string()),
            // 0: no console (one port fewer to find).
            ("RNACOS_HTTP_CONSOLE_PORT", "0".to_owned()),
            ("RNACOS_DATA_DIR", self.dir.join("data").to_string_lossy().into_owned()),
            ("RNACOS_HTTP_WORKERS", "2".to_owned()),
            ("RNACOS_ENABLE_METRICS", "false".to_owned()),
            ("RNACOS_NAMING_PERPETUAL_INSTANCE_PROBE_INTERVAL_SECOND", PROBE_INTERVAL_SECONDS.to_owned()),
            ("RUST_LOG", "warn".to_owned()),
        ];
        if let Some((username, password)) = &self.auth {
            env.push(("RNACOS_ENABLE_OPEN_API_AUTH", "true".to_owned()));
            env.push(("RNACOS_API_LOGIN_TIMEOUT", AUTH_TOKEN_TTL.as_secs().to_string()));
            env.push(("RNACOS_INIT_ADMIN_USERNAME", username.clone()));
            env.push(("RNACOS_INIT_ADMIN_PASSWORD", password.clone()));
        }
        env
    }

    /// Ready: the gRPC port accepts connections and a login answers (rnacos answers a
    /// placeholder token when auth is off), which it does once its raft store is up.
    async fn wait_until_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                return Err(format!("rnacos exited during start ({status}):\n{}", self.log_tail()));
            }
            if self.log_tail().contains("panicked") {
                return Err(format!("rnacos panicked during start:\n{}", self.log_tail()));
            }
            if TcpStream::connect(("127.0.0.1", self.http_port + 1000)).is_ok()
                && let Some(token) = self.login().await
            {
                *self.token.lock().unwrap() = self.auth.is_some().then(|| (token, Instant::now()));
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!("rnacos was not ready within {READY_TIMEOUT:?}:\n{}", self.log_tail()));
            }
            sleep(Duration::from_millis(100)).await;
        }
    }

    async fn login(&self) -> Option<String> {
        let (username, password) = self.auth.clone().unwrap_or_else(|| ("nacos".to_owned(), "nacos".to_owned()));
        let form =
            form_urlencoded::Serializer::new(String::new()).append_pair("username", &username).append_pair("password", &password).finish();
        let answer = send(&self.http, Method::POST, &self.http_addr(), "/nacos/v1/auth/login", form).await.ok()?;
        let body: serde_json::Value = serde_json::from_slice(&answer.body).ok()?;
        answer.status.is_success().then(|| body["accessToken"].as_str().map(str::to_owned)).flatten()
    }

    /// A token for the helpers' requests, renewed at half its life.
    async fn helper_token(&self) -> Option<String> {
        self.auth.as_ref()?;
        let cached = self.token.lock().unwrap().clone();
        if let Some((token, _)) = cached.filter(|(_, at)| at.elapsed() < AUTH_TOKEN_TTL / 2) {
            return Some(token);
        }
        let token = self.login().await.expect("the helpers' login to rnacos failed");
        *self.token.lock().unwrap() = Some((token.clone(), Instant::now()));
        Some(token)
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.join("rnacos.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

impl Drop for NacosServer {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("the test failed; the end of the rnacos log ({}):\n{}", self.http_addr(), self.log_tail());
        }
        self.kill();
        if std::env::var_os(KEEP_DATA_ENV).is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn key(group: &str, service: &str, ip: &str, port: u16) -> InstanceKey {
    (group.to_owned(), service.to_owned(), ip.to_owned(), port)
}

/// The rnacos binary, or a panic saying how to get one.
fn binary() -> PathBuf {
    const HOW: &str = "scripts/test.sh installs it";
    if let Some(path) = std::env::var_os(BINARY_ENV).map(PathBuf::from) {
        assert!(path.is_file(), "{BINARY_ENV}={} is not a file: it should name the rnacos binary ({HOW})", path.display());
        return path;
    }
    let on_path =
        std::env::var_os("PATH").and_then(|paths| std::env::split_paths(&paths).map(|dir| dir.join("rnacos")).find(|p| p.is_file()));
    on_path.or_else(|| Some(PathBuf::from(FALLBACK_BINARY)).filter(|p| p.is_file())).unwrap_or_else(|| {
        panic!("rnacos (a Nacos-compatible server) is needed for this test and is not installed: {HOW}, or set {BINARY_ENV} to its path")
    })
}

/// An HTTP port whose gRPC port (+1000) is free too, picked at random so parallel test
/// binaries rarely collide.
fn free_port_pair() -> u16 {
    for _ in 0..100 {
        let port = 20_000 + (RandomState::new().hash_one(()) % 20_000) as u16;
        if port_free(port) && port_free(port + 1000) {
            return port;
        }
    }
    panic!("found no free pair of loopback ports for rnacos");
}

fn port_free(port: u16) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_ok()
}

fn fresh_dir() -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let name = format!("switchyard-rnacos-{}-{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed));
    let dir = std::env::temp_dir().join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("data")).expect("create the rnacos directory");
    dir
}
