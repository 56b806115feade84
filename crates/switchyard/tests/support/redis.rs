//! A real `redis-server` (Debian's package) on a free loopback port, for the tests of the
//! shared nonce store. No persistence; killed by PID on drop, and by a watchdog when the
//! test process dies in any way (even SIGKILL, which skips Drop).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Runs `"$@"` and kills it when stdin closes (the test dropped it, or died); prints the
/// server's PID first.
const WATCHDOG: &str = r#"exec 3<&0; "$@" </dev/null >/dev/null 2>&1 & server=$!; echo "$server"; { read -r _ <&3; kill -9 "$server" 2>/dev/null; } & wait "$server""#;

pub struct RedisServer {
    process: Option<Child>,
    pub port: u16,
    dir: tempfile::TempDir,
}

impl RedisServer {
    /// On a free port. Panics when `redis-server` is not installed (scripts/test.sh
    /// installs it: `need_redis`).
    pub fn start() -> Self {
        Self::start_on(free_port())
    }

    pub fn start_on(port: u16) -> Self {
        let mut server = Self { process: None, port, dir: tempfile::tempdir().unwrap() };
        server.spawn();
        server
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills the server (SIGKILL) and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut process) = self.process.take() {
            drop(process.stdin.take());
            let _ = process.wait();
        }
    }

    /// A new server on the same port (an empty one: nothing is persisted).
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    fn spawn(&mut self) {
        let port = self.port.to_string();
        let dir = self.dir.path().to_str().unwrap().to_owned();
        let mut process = Command::new("sh")
            .args(["-c", WATCHDOG, "redis-watchdog", "redis-server", "--bind", "127.0.0.1", "--port", &port])
            .args(["--save", "", "--appendonly", "no", "--dir", &dir])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("sh");
        let mut pid = String::new();
        let mut stdout = process.stdout.take().unwrap();
        let mut byte = [0u8; 1];
        while stdout.read(&mut byte).unwrap_or(0) == 1 && byte[0] != b'\n' {
            pid.push(byte[0] as char);
        }
        assert!(pid.parse::<u32>().is_ok(), "the watchdog prints the server's pid, got {pid:?}");
        self.process = Some(process);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.answers_ping() {
            assert!(
                Instant::now() < deadline,
                "redis-server did not answer PING on port {port} (is it installed? apt-get install redis-server; scripts/test.sh does)"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn answers_ping(&self) -> bool {
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)) else { return false };
        let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
        let mut reply = [0u8; 7];
        stream.write_all(b"PING\r\n").is_ok() && stream.read_exact(&mut reply).is_ok() && &reply == b"+PONG\r\n"
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A loopback port nothing listens on (now).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}
