//! Test support: the real `switchyard` binary on loopback, real upstream HTTP servers,
//! and a small client. Every process and server stops when its handle drops.
#![allow(dead_code)]

pub mod dns;
pub mod pki;
pub mod redis;
pub mod registries;
pub mod scratch;
pub mod upstream;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// A running `switchyard` process.
pub struct Switchyard {
    child: Child,
    pub addrs: HashMap<String, SocketAddr>,
    pub log: Arc<Mutex<Vec<String>>>,
    /// Lines on stdout: the access log.
    pub stdout: Arc<Mutex<Vec<String>>>,
}

impl Switchyard {
    /// `switchyard standalone` on ephemeral ports, serving `dir`.
    pub fn standalone(dir: &Path, extra: &[&str]) -> Self {
        let mut args =
            vec!["standalone", "--config-dir", dir.to_str().unwrap(), "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"];
        args.extend_from_slice(extra);
        Self::start(&args, &["proxy", "admin"])
    }

    /// `switchyard proxy` pulling from `controller` (an `http://` URL gets
    /// `--controller-insecure-http`), with its metrics listener on loopback too.
    pub fn proxy(controller: &str, token_file: &Path, cache_dir: &Path) -> Self {
        let insecure: &[&str] = if controller.starts_with("http://") { &["--controller-insecure-http"] } else { &[] };
        Self::proxy_with(controller, token_file, cache_dir, insecure)
    }

    /// [`Switchyard::proxy`] with extra flags (`--controller-ca FILE`, ...).
    pub fn proxy_with(controller: &str, token_file: &Path, cache_dir: &Path, extra: &[&str]) -> Self {
        let mut args = vec![
            "proxy",
            "--controller",
            controller,
            "--token-file",
            token_file.to_str().unwrap(),
            "--cache-dir",
            cache_dir.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "127.0.0.1:0",
        ];
        args.extend_from_slice(extra);
        Self::start(&args, &["proxy", "admin", "metrics"])
    }

    /// Starts the binary and waits until it has announced every listener in `roles`.
    pub fn start(args: &[&str], roles: &[&str]) -> Self {
        Self::start_with_env(args, roles, &[])
    }

    /// [`Switchyard::start`] with extra environment variables.
    pub fn start_with_env(args: &[&str], roles: &[&str], env: &[(&str, &str)]) -> Self {
        let mut child = spawn_with(args, env, Stdio::piped());
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let (out, sink) = (child.stdout.take().unwrap(), stdout.clone());
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some((role, addr)) = line.strip_prefix("switchyard: listening role=").and_then(|rest| rest.split_once(" addr=")) {
                    let _ = tx.send((role.to_owned(), addr.parse::<SocketAddr>().unwrap()));
                }
                // The same announcement with `--log-format json`.
                if let Ok(event) = serde_json::from_str::<serde_json::Value>(&line)
                    && event["message"] == "listening"
                    && let (Some(role), Some(addr)) = (event["role"].as_str(), event["addr"].as_str())
                {
                    let _ = tx.send((role.to_owned(), addr.parse::<SocketAddr>().unwrap()));
                }
                sink.lock().unwrap().push(line);
            }
        });
        let mut addrs = HashMap::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        while roles.iter().any(|r| !addrs.contains_key(*r)) {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok((role, addr)) => {
                    addrs.insert(role, addr);
                }
                Err(_) => panic!("switchyard did not announce {roles:?}; log:\n{}", log.lock().unwrap().join("\n")),
            }
        }
        Self { child, addrs, log, stdout }
    }

    pub fn url(&self, role: &str, path: &str) -> String {
        format!("http://{}{path}", self.addrs[role])
    }

    pub fn proxy_url(&self, path: &str) -> String {
        self.url("proxy", path)
    }

    /// Waits for `/readyz` to answer 200.
    pub async fn wait_ready(&self) {
        let url = self.url("admin", "/readyz");
        wait_until("ready", Duration::from_secs(10), || async { get(&url).await.map(|r| r.status == 200).unwrap_or(false) }).await;
    }

    /// The admin `/status` JSON.
    pub async fn status(&self) -> serde_json::Value {
        get(&self.url("admin", "/status")).await.unwrap().json()
    }

    /// One condition's status ("True"/"False") and reason, if the object has it.
    pub async fn condition(&self, kind: &str, name: &str, type_: &str) -> Option<(String, String)> {
        let status = self.status().await;
        let resource = status["resources"].as_array()?.iter().find(|r| r["kind"] == kind && r["name"] == name)?.clone();
        let c = resource["conditions"].as_array()?.iter().find(|c| c["type"] == type_)?.clone();
        Some((c["status"].as_str()?.to_owned(), c["reason"].as_str()?.to_owned()))
    }

    /// The access log lines printed so far.
    pub fn access_log(&self) -> Vec<String> {
        self.stdout.lock().unwrap().clone()
    }

    pub fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// The process id (to send it signals).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// True once the process has exited.
    pub fn has_exited(&mut self) -> bool {
        self.child.try_wait().ok().flatten().is_some()
    }

    /// Stops the process (SIGKILL) and waits for it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Switchyard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The binary with `args` and extra `env`, logging at `warn`, stderr piped for the caller.
pub fn spawn(args: &[&str], env: &[(&str, &str)]) -> Child {
    spawn_with(args, env, Stdio::null())
}

/// [`spawn`] with stdout (the access log) going to `stdout`.
fn spawn_with(args: &[&str], env: &[(&str, &str)], stdout: Stdio) -> Child {
    Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(args)
        .envs(env.iter().copied())
        .env("SWITCHYARD_LOG", "warn")
        .stdout(stdout)
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn switchyard")
}

/// Polls `check` until true or panics after `timeout`.
pub async fn wait_until<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A folder of manifests that tests write into.
pub struct ConfigDir {
    pub dir: tempfile::TempDir,
}

impl ConfigDir {
    pub fn new() -> Self {
        Self { dir: tempfile::tempdir().unwrap() }
    }

    pub fn with(files: &[(&str, &str)]) -> Self {
        let config = Self::new();
        for (name, text) in files {
            config.write(name, text);
        }
        config
    }

    /// Writes atomically (temp file, rename) so the watcher never reads half a file.
    pub fn write(&self, name: &str, text: &str) {
        let tmp = self.dir.path().join(format!(".{name}.tmp"));
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, self.dir.path().join(name)).unwrap();
    }

    pub fn remove(&self, name: &str) {
        std::fs::remove_file(self.dir.path().join(name)).unwrap();
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// A response, fully read.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn error_code(&self) -> Option<&str> {
        self.header("x-ca-error-code")
    }
}

fn client() -> &'static Client<HttpConnector, Full<Bytes>> {
    static CLIENT: std::sync::OnceLock<Client<HttpConnector, Full<Bytes>>> = std::sync::OnceLock::new();
    CLIENT.get_or_init(|| Client::builder(TokioExecutor::new()).pool_max_idle_per_host(0).build(HttpConnector::new()))
}

/// Sends a request and reads the whole response.
pub async fn send(method: Method, url: &str, headers: &[(&str, &str)], body: impl Into<Bytes>) -> Result<Reply, String> {
    let mut builder = Request::builder().method(method).uri(url);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let request = builder.body(Full::new(body.into())).map_err(|e| e.to_string())?;
    let response = tokio::time::timeout(Duration::from_secs(20), client().request(request))
        .await
        .map_err(|_| "client timeout".to_owned())?
        .map_err(|e| format!("{e:?}"))?;
    let (parts, body) = response.into_parts();
    let body = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
    Ok(Reply { status: parts.status, headers: parts.headers, body })
}

pub async fn get(url: &str) -> Result<Reply, String> {
    send(Method::GET, url, &[], Bytes::new()).await
}

/// GET over HTTPS (one connection), trusting only the PEM CA `ca_pem`; the host of `url`
/// is the name verified (a DNS name or an IP address).
pub async fn get_tls(url: &str, ca_pem: &str, headers: &[(&str, &str)]) -> Result<Reply, String> {
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
    use tokio_rustls::rustls::{ClientConfig, RootCertStore, crypto::ring};
    let uri: http::Uri = url.parse().map_err(|e| format!("{e}"))?;
    let host = uri.host().ok_or("no host")?.trim_matches(['[', ']']).to_owned();
    let port = uri.port_u16().unwrap_or(443);
    let mut roots = RootCertStore::empty();
    for certificate in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(certificate.map_err(|e| format!("{e:?}"))?).map_err(|e| e.to_string())?;
    }
    let config = ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let exchange = async {
        let tcp = tokio::net::TcpStream::connect((host.as_str(), port)).await.map_err(|e| e.to_string())?;
        let name = ServerName::try_from(host.clone()).map_err(|e| e.to_string())?;
        let tls = tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp).await.map_err(|e| format!("TLS: {e}"))?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls)).await.map_err(|e| e.to_string())?;
        tokio::spawn(connection);
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        let mut builder = Request::get(path).header("host", uri.authority().map_or("", |a| a.as_str()));
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let response = sender.send_request(builder.body(Full::new(Bytes::new())).unwrap()).await.map_err(|e| e.to_string())?;
        let (parts, body) = response.into_parts();
        let body = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
        Ok(Reply { status: parts.status, headers: parts.headers, body })
    };
    tokio::time::timeout(Duration::from_secs(20), exchange).await.map_err(|_| "client timeout".to_owned())?
}

/// The Python of the test venv (`scripts/test.sh` creates `.tools/test-venv` with the SDKs
/// the tests drive, `holding` one of them, and exports it as `SWITCHYARD_TEST_PYTHON`).
#[allow(dead_code)]
pub fn test_python(holding: &str) -> String {
    std::env::var("SWITCHYARD_TEST_PYTHON").unwrap_or_else(|_| {
        panic!(
            "SWITCHYARD_TEST_PYTHON is not set: it names a Python with {holding}. Run the suite through \
             `bash scripts/test.sh` (it creates .tools/test-venv), or set it to .tools/test-venv/bin/python"
        )
    })
}
