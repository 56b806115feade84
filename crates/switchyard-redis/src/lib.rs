//! A thin Redis client for one job: the proxies' shared nonce store (`SET key 1 NX PX
//! ms`, and `PING` to check the server at start).
//!
//! Why not the `redis` crate: it brings a large dependency tree (combine, several
//! async runtimes' glue, TLS and cluster support behind features) for two commands, and
//! its multiplexed connection runs on one runtime, while the proxy has one
//! current-thread runtime per worker. What this needs is small and written here:
//!
//! - RESP2 for the commands and replies used ([`resp`]).
//! - Connections per worker thread: a tokio socket belongs to the runtime that made it,
//!   so each thread keeps its own idle connections (at most [`MAX_IDLE_PER_THREAD`]); a
//!   request takes one (or dials one) and gives it back after a clean reply.
//! - Fail fast: connect and command timeouts (500 ms by default), so a dead or hung Redis
//!   costs a request half a second at most, and the caller fails closed.
//! - A pooled connection the server closed meanwhile (a restart, an idle timeout) is
//!   replaced and the command sent once more, only when not a byte of reply came back
//!   (the server then never ran it, so a retried `SET NX` cannot see its own write).
//!
//! No AUTH, TLS, database selection or cluster: Redis is reached inside the cluster, on a
//! network only the proxies reach (see docs/security.md).
#![forbid(unsafe_code)]

pub mod resp;

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use resp::Reply;

/// Idle connections each worker thread keeps per client.
pub const MAX_IDLE_PER_THREAD: usize = 8;
/// Default connect and command timeouts.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(500);

/// Why a command got no usable answer. [`Error::kind`] is the short, address-free text
/// a client may be shown; Display (with the OS error) is for the log.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("connecting to Redis at {addr} timed out")]
    ConnectTimeout { addr: String },
    #[error("connecting to Redis at {addr} failed: {source}")]
    Connect { addr: String, source: std::io::Error },
    #[error("Redis at {addr} did not answer within {timeout_ms} ms")]
    Timeout { addr: String, timeout_ms: u64 },
    #[error("the connection to Redis at {addr} failed: {source}")]
    Io { addr: String, source: std::io::Error },
    #[error("Redis at {addr} answered with an error: {message}")]
    Server { addr: String, message: String },
    #[error("Redis at {addr} answered something unexpected: {why}")]
    Protocol { addr: String, why: &'static str },
}

impl Error {
    /// The kind of failure, without addresses or OS error text.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::ConnectTimeout { .. } => "connect timed out",
            Self::Connect { source, .. } if source.kind() == std::io::ErrorKind::ConnectionRefused => "connection refused",
            Self::Connect { .. } => "connect failed",
            Self::Timeout { .. } => "no answer in time",
            Self::Io { .. } => "connection failed",
            Self::Server { .. } => "error reply",
            Self::Protocol { .. } => "unexpected reply",
        }
    }
}

/// A `redis://HOST:PORT` URL that is not one.
#[derive(Debug, thiserror::Error)]
#[error("{url:?} is not redis://HOST:PORT: {why}")]
pub struct UrlError {
    url: String,
    why: &'static str,
}

/// A client for one Redis server; cheap to clone, usable from any worker thread.
#[derive(Clone, Debug)]
pub struct Client {
    host: String,
    port: u16,
    addr: String,
    /// Tells this client's idle connections from another's on the same thread.
    id: u64,
    connect_timeout: Duration,
    command_timeout: Duration,
}

static NEXT_ID: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static IDLE: RefCell<Vec<(u64, Connection)>> = const { RefCell::new(Vec::new()) };
}

impl Client {
    /// `redis://HOST:PORT` (the port defaults to 6379; an IPv6 address in brackets).
    pub fn from_url(url: &str) -> Result<Self, UrlError> {
        let bad = |why| UrlError { url: url.to_owned(), why };
        let rest = url.strip_prefix("redis://").ok_or_else(|| bad("the scheme must be redis://"))?;
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        if authority.contains(['/', '?', '#', '@']) {
            return Err(bad("only a host and a port: no user, password, database or options"));
        }
        let (host, port) = match authority.strip_prefix('[') {
            Some(v6) => {
                let (host, after) = v6.split_once(']').ok_or_else(|| bad("an unclosed ["))?;
                (host, after.strip_prefix(':').map(Some).unwrap_or(if after.is_empty() { None } else { Some("") }))
            }
            None => match authority.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (authority, None),
            },
        };
        if host.is_empty() {
            return Err(bad("the host is missing"));
        }
        let port = match port {
            None => 6379,
            Some(port) => port.parse().ok().filter(|p| *p != 0).ok_or_else(|| bad("the port is not 1-65535"))?,
        };
        let addr = if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") };
        Ok(Self {
            host: host.to_owned(),
            port,
            addr,
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            connect_timeout: DEFAULT_TIMEOUT,
            command_timeout: DEFAULT_TIMEOUT,
        })
    }

    /// The same client with other timeouts.
    pub fn with_timeouts(mut self, connect: Duration, command: Duration) -> Self {
        (self.connect_timeout, self.command_timeout) = (connect, command);
        self
    }

    /// `HOST:PORT`, for logs.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// `SET key value NX PX ttl_ms`: true when the key was set (it did not exist), false
    /// when it exists.
    pub async fn set_nx_px(&self, key: &[u8], value: &[u8], ttl_ms: u64) -> Result<bool, Error> {
        let mut command = Vec::with_capacity(48 + key.len() + value.len());
        resp::encode(&mut command, &[b"SET", key, value, b"NX", b"PX", ttl_ms.max(1).to_string().as_bytes()]);
        match self.command(&command).await? {
            Reply::Simple(ok) if ok == "OK" => Ok(true),
            Reply::Nil => Ok(false),
            other => Err(self.unexpected(other)),
        }
    }

    /// `PING`.
    pub async fn ping(&self) -> Result<(), Error> {
        let mut command = Vec::new();
        resp::encode(&mut command, &[b"PING"]);
        match self.command(&command).await? {
            Reply::Simple(pong) if pong == "PONG" => Ok(()),
            other => Err(self.unexpected(other)),
        }
    }

    fn unexpected(&self, reply: Reply) -> Error {
        match reply {
            Reply::Error(message) => Error::Server { addr: self.addr.clone(), message },
            _ => Error::Protocol { addr: self.addr.clone(), why: "not the reply of this command" },
        }
    }

    /// One command on a pooled connection (or a new one), under the command timeout.
    async fn command(&self, command: &[u8]) -> Result<Reply, Error> {
        let (mut connection, pooled) = match self.take_idle() {
            Some(connection) => (connection, true),
            None => (self.connect().await?, false),
        };
        let mut outcome = self.round_trip(&mut connection, command).await;
        if pooled && matches!(outcome, Err(Failure::BeforeReply(_))) {
            connection = self.connect().await?;
            outcome = self.round_trip(&mut connection, command).await;
        }
        match outcome {
            Ok(reply) => {
                self.put_idle(connection);
                Ok(reply)
            }
            Err(Failure::BeforeReply(error) | Failure::Other(error)) => Err(error),
        }
    }

    async fn round_trip(&self, connection: &mut Connection, command: &[u8]) -> Result<Reply, Failure> {
        let timeout_ms = self.command_timeout.as_millis() as u64;
        match tokio::time::timeout(self.command_timeout, connection.round_trip(command)).await {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(RoundTripError::Closed { replied: false, source })) => {
                Err(Failure::BeforeReply(Error::Io { addr: self.addr.clone(), source }))
            }
            Ok(Err(RoundTripError::Closed { source, .. })) => Err(Failure::Other(Error::Io { addr: self.addr.clone(), source })),
            Ok(Err(RoundTripError::Protocol(why))) => Err(Failure::Other(Error::Protocol { addr: self.addr.clone(), why })),
            Err(_) => Err(Failure::Other(Error::Timeout { addr: self.addr.clone(), timeout_ms })),
        }
    }

    async fn connect(&self) -> Result<Connection, Error> {
        let connect = TcpStream::connect((self.host.as_str(), self.port));
        let stream = match tokio::time::timeout(self.connect_timeout, connect).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(source)) => return Err(Error::Connect { addr: self.addr.clone(), source }),
            Err(_) => return Err(Error::ConnectTimeout { addr: self.addr.clone() }),
        };
        let _ = stream.set_nodelay(true);
        Ok(Connection { stream, buf: Vec::with_capacity(64) })
    }

    fn take_idle(&self) -> Option<Connection> {
        IDLE.with_borrow_mut(|idle| {
            let at = idle.iter().rposition(|(id, _)| *id == self.id)?;
            Some(idle.swap_remove(at).1)
        })
    }

    fn put_idle(&self, connection: Connection) {
        IDLE.with_borrow_mut(|idle| {
            if idle.iter().filter(|(id, _)| *id == self.id).count() < MAX_IDLE_PER_THREAD {
                idle.push((self.id, connection));
            }
        });
    }
}

enum Failure {
    /// The connection broke before any reply byte: the server did not run the command.
    BeforeReply(Error),
    Other(Error),
}

enum RoundTripError {
    Closed { replied: bool, source: std::io::Error },
    Protocol(&'static str),
}

#[derive(Debug)]
struct Connection {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Connection {
    async fn round_trip(&mut self, command: &[u8]) -> Result<Reply, RoundTripError> {
        let closed = |replied, source| RoundTripError::Closed { replied, source };
        self.buf.clear();
        self.stream.write_all(command).await.map_err(|e| closed(false, e))?;
        let mut chunk = [0u8; 512];
        loop {
            if let Some((reply, used)) = resp::parse(&self.buf).map_err(RoundTripError::Protocol)? {
                if used != self.buf.len() {
                    return Err(RoundTripError::Protocol("more than one reply"));
                }
                return Ok(reply);
            }
            let replied = !self.buf.is_empty();
            match self.stream.read(&mut chunk).await {
                Ok(0) => return Err(closed(replied, std::io::ErrorKind::UnexpectedEof.into())),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) => return Err(closed(replied, e)),
            }
        }
    }
}

#[cfg(test)]
mod tests;
