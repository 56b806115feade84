//! A real `nats-server` with JetStream for tests (feature `test-server`): Debian's package
//! (`/usr/sbin/nats-server`, or `SWITCHYARD_NATS_SERVER`), on a free port of 127.0.0.1 with
//! a temporary store directory, killed on drop (and by a watchdog if the test process dies:
//! `switchyard_testkit::Supervised`).

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use switchyard_testkit::{Stop, Supervised};

use switchyard_compile::bus::BusSource;
use switchyard_compile::snapshot::{NatsCredentials, NatsTarget};

const INSTALL_HINT: &str = "nats-server is not installed: the event bus tests run a real server. \
     scripts/test.sh installs it (apt-get install -y --no-install-recommends nats-server, as root); \
     or set SWITCHYARD_NATS_SERVER to a nats-server binary";

/// How a test server wants clients to log in.
#[derive(Clone, Debug, Default)]
pub enum Auth {
    #[default]
    None,
    Token(String),
    UserPassword(String, String),
}

/// A nats-server with JetStream on loopback.
pub struct NatsServer {
    server: Supervised,
    auth: Auth,
}

impl NatsServer {
    /// Starts a server on a free port and waits until it accepts connections.
    ///
    /// # Panics
    /// When nats-server is not installed or does not start.
    pub fn start() -> Self {
        Self::start_with(Auth::None)
    }

    pub fn start_with(auth: Auth) -> Self {
        let store = tempfile::Builder::new().prefix("switchyard-nats-").tempdir().expect("a temporary directory");
        let mut server = Self { server: Supervised::new("nats-server", store, Stop::Kill), auth };
        server.launch();
        server
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.server.port())
    }

    pub fn port(&self) -> u16 {
        self.server.port()
    }

    /// A target for this server with its credentials.
    pub fn target(&self) -> NatsTarget {
        let credentials = match &self.auth {
            Auth::None => None,
            Auth::Token(token) => Some(NatsCredentials::Token { token: switchyard_compile::snapshot::SecretText(token.clone()) }),
            Auth::UserPassword(user, password) => Some(NatsCredentials::UserPassword {
                username: user.clone(),
                password: switchyard_compile::snapshot::SecretText(password.clone()),
            }),
        };
        NatsTarget { servers: vec![self.url()], credentials }
    }

    pub fn source(&self, subject: &str) -> BusSource {
        BusSource { target: self.target(), subject: subject.to_owned() }
    }

    /// A client of this server (with its credentials).
    pub async fn client(&self) -> async_nats::Client {
        let options = match &self.auth {
            Auth::None => async_nats::ConnectOptions::new(),
            Auth::Token(token) => async_nats::ConnectOptions::with_token(token.clone()),
            Auth::UserPassword(user, password) => async_nats::ConnectOptions::with_user_and_password(user.clone(), password.clone()),
        };
        options.connect(self.url()).await.expect("connect to the test nats-server")
    }

    /// Creates a file-backed stream `name` taking `subjects`, with a 2-minute duplicate
    /// window (JetStream's default).
    pub async fn create_stream(&self, name: &str, subjects: &[&str]) -> async_nats::jetstream::stream::Stream {
        let jetstream = async_nats::jetstream::new(self.client().await);
        let config = async_nats::jetstream::stream::Config {
            name: name.to_owned(),
            subjects: subjects.iter().map(|s| (*s).to_owned()).collect(),
            ..Default::default()
        };
        jetstream.create_stream(config).await.expect("create the test stream")
    }

    /// Kills the server (SIGKILL, as a crash). The store stays, for [`Self::restart`].
    pub fn stop(&mut self) {
        self.server.stop();
    }

    /// Starts the server again on the same port with the same store.
    pub fn restart(&mut self) {
        self.stop();
        self.launch();
    }

    fn launch(&mut self) {
        let mut program: Vec<OsString> = vec![binary().into()];
        program.extend(["-a", "127.0.0.1", "-p"].map(OsString::from));
        program.push(self.server.port().to_string().into());
        program.extend(["-js", "-sd"].map(OsString::from));
        program.push(self.server.dir().join("js").into());
        match &self.auth {
            Auth::None => {}
            Auth::Token(token) => program.extend(["--auth", token.as_str()].map(OsString::from)),
            Auth::UserPassword(user, password) => {
                program.extend(["--user", user.as_str(), "--pass", password.as_str()].map(OsString::from));
            }
        }
        let program: Vec<&std::ffi::OsStr> = program.iter().map(OsString::as_os_str).collect();
        self.server.launch(&program, Duration::from_secs(10));
    }
}

fn binary() -> PathBuf {
    if let Some(path) = std::env::var_os("SWITCHYARD_NATS_SERVER") {
        return path.into();
    }
    let debian = PathBuf::from("/usr/sbin/nats-server");
    if debian.exists() {
        return debian;
    }
    which("nats-server").unwrap_or_else(|| panic!("{INSTALL_HINT}"))
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?).map(|dir| dir.join(name)).find(|p| p.is_file())
}
