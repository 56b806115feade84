//! What the integration crates' `testing` modules share: a real server process (nats-server,
//! PostgreSQL, MariaDB, ...) started under a shell watchdog on a free port of 127.0.0.1 with
//! a temporary directory, waited for until it listens, and stopped on drop — also when the
//! test process dies without running Drop, since the watchdog stops the server when its
//! stdin closes. Not a dependency of anything that ships.

use std::ffi::OsStr;
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How the watchdog stops the server.
#[derive(Clone, Copy, Debug)]
pub enum Stop {
    /// SIGKILL at once: a crash.
    Kill,
    /// SIGQUIT (PostgreSQL's immediate shutdown, which takes its backends along), then
    /// SIGKILL after 3 s.
    QuitThenKill,
}

impl Stop {
    /// Runs `"$@"` in the background and stops it this way when stdin closes.
    fn watchdog(self) -> &'static str {
        match self {
            Self::Kill => r#"exec 3<&0; "$@" </dev/null & pid=$!; { read -r _ <&3; kill -9 "$pid" 2>/dev/null; } & wait "$pid""#,
            Self::QuitThenKill => {
                r#"exec 3<&0; "$@" </dev/null & pid=$!; { read -r _ <&3; kill -QUIT "$pid" 2>/dev/null; sleep 3; kill -9 "$pid" 2>/dev/null; } & wait "$pid""#
            }
        }
    }
}

/// A free TCP port on 127.0.0.1 (free when asked; the server binds it right after).
pub fn free_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("a free port");
    listener.local_addr().expect("the free port").port()
}

/// One server process under the watchdog, with its port and directory (its log is
/// `server.log` there, appended to by every launch).
pub struct Supervised {
    process: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
    name: &'static str,
    stop: Stop,
}

impl Supervised {
    /// Nothing runs until [`Self::launch`].
    pub fn new(name: &'static str, dir: tempfile::TempDir, stop: Stop) -> Self {
        Self { process: None, port: free_port(), dir, name, stop }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Starts `program` (the binary and its arguments) and waits until its port accepts a
    /// connection, at most `within`.
    ///
    /// # Panics
    /// When the process exits first (with its log) or does not listen in time.
    pub fn launch(&mut self, program: &[&OsStr], within: Duration) {
        let log_path = self.dir.path().join("server.log");
        let log = std::fs::File::options().create(true).append(true).open(&log_path).expect("the server log");
        let process = Command::new("sh")
            .args(["-c", self.stop.watchdog(), "sh"])
            .args(program)
            .stdin(Stdio::piped())
            .stdout(log.try_clone().expect("the server log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run sh ({e})"));
        self.process = Some(process);
        let deadline = Instant::now() + within;
        while TcpStream::connect((Ipv4Addr::LOCALHOST, self.port)).is_err() {
            if let Some(status) = self.process.as_mut().and_then(|p| p.try_wait().ok().flatten()) {
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                panic!("{} exited ({status}): {log}", self.name);
            }
            assert!(Instant::now() < deadline, "{} did not listen within {within:?}", self.name);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the server (the directory stays, for another launch) and waits until its
    /// port is free.
    pub fn stop(&mut self) {
        if let Some(mut process) = self.process.take() {
            // Closing the watchdog's stdin makes it stop the server; then it exits.
            drop(process.stdin.take());
            let _ = process.wait();
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect((Ipv4Addr::LOCALHOST, self.port)).is_ok() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(25));
        }
    }
}

impl Drop for Supervised {
    fn drop(&mut self) {
        self.stop();
    }
}
