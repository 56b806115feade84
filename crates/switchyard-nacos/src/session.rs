//! One connection's life: log in, connect, subscribe, then follow pushes, re-sync and
//! check health until something breaks.

use std::convert::Infallible;
use std::time::Duration;

use switchyard_compile::{Discovered, NacosWatch};
use tokio::sync::watch;
use tokio::time::{Instant, MissedTickBehavior, interval_at, sleep_until};

use crate::auth::{self, Token};
use crate::connection::{BiStream, Connection};
use crate::http::HttpClient;
use crate::messages::{self, ServerRequest, Target, WithServiceInfo, kind};
use crate::proto::Payload;
use crate::publish;
use crate::select::{Hosts, select};

/// A health check every few seconds notices a dead server that keeps its TCP
/// connection open (a hung process, a dropped route) within a few seconds.
const HEALTH_INTERVAL: Duration = Duration::from_secs(3);
const HEALTH_TIMEOUT: Duration = Duration::from_secs(3);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Nacos registers a connection a moment after its setup message; requests before that
/// are refused, so the first health check is retried this often, this many times.
const REGISTRATION_RETRY: Duration = Duration::from_millis(100);
const REGISTRATION_ATTEMPTS: u32 = 30;
/// After a failed token refresh, the next try (the old token is still good for a while).
const REFRESH_RETRY: Duration = Duration::from_secs(5);
/// Re-syncs are not more frequent than this, whatever the spec says.
const MIN_RESYNC: Duration = Duration::from_secs(1);

/// Why a session ended.
pub enum End {
    /// The server is unreachable or misbehaved; the message says how.
    Failed(String),
    /// The server asked this client to reconnect (`ConnectResetRequest`, sent when a
    /// server shuts down gracefully or rebalances its clients).
    ResetByServer,
}

impl From<String> for End {
    fn from(error: String) -> Self {
        Self::Failed(error)
    }
}

pub struct Outcome {
    pub end: End,
    /// Whether a full read completed (then the reconnect backoff starts over).
    pub synced: bool,
}

/// Where a server listens: `spec.servers` names the HTTP port; gRPC is 1000 above.
pub struct ServerAddr {
    pub http: String,
    pub grpc: String,
}

impl ServerAddr {
    pub fn parse(server: &str) -> Result<Self, String> {
        let invalid = || format!("{server} is not host:port");
        let (host, port) = server.rsplit_once(':').ok_or_else(invalid)?;
        let port: u16 = port.parse().map_err(|_| invalid())?;
        let grpc_port = port.checked_add(1000).ok_or_else(|| format!("{server}: the gRPC port (HTTP port + 1000) is above 65535"))?;
        if host.is_empty() {
            return Err(invalid());
        }
        Ok(Self { http: server.to_owned(), grpc: format!("{host}:{grpc_port}") })
    }
}

/// Runs one session against `server` until it ends, publishing what it reads to `out`.
pub async fn run(spec: &NacosWatch, server: &str, http: &HttpClient, out: &watch::Sender<Discovered>) -> Outcome {
    let mut session = Session { spec, http, out, synced: false, token: None };
    let end = match session.run(server).await {
        Err(end) => end,
        Ok(never) => match never {},
    };
    Outcome { end, synced: session.synced }
}

struct Session<'a> {
    spec: &'a NacosWatch,
    http: &'a HttpClient,
    out: &'a watch::Sender<Discovered>,
    synced: bool,
    token: Option<Token>,
}

impl Session<'_> {
    async fn run(&mut self, server: &str) -> Result<Infallible, End> {
        let addr = ServerAddr::parse(server)?;
        self.login(&addr).await?;
        let mut conn = Connection::open(&addr.grpc).await?;
        if let Some(token) = &self.token {
            conn.set_token(&token.value);
        }
        let body = messages::internal_request(&conn.request_id());
        conn.call(kind::SERVER_CHECK, &body, REQUEST_TIMEOUT).await?;
        let setup = messages::connection_setup(&conn.request_id(), &self.spec.namespace);
        let mut stream = conn.open_stream(conn.payload(kind::CONNECTION_SETUP, &setup));
        wait_until_registered(&mut conn).await?;
        let body = messages::subscribe(&conn.request_id(), &self.target());
        let response = conn.call(kind::SUBSCRIBE_SERVICE, &body, REQUEST_TIMEOUT).await?;
        self.publish_read(response.body())?;
        self.follow(&addr, &mut conn, &mut stream).await
    }

    fn target(&self) -> Target<'_> {
        Target { namespace: &self.spec.namespace, group: &self.spec.group, service: &self.spec.service }
    }

    async fn login(&mut self, addr: &ServerAddr) -> Result<(), String> {
        if let Some(credentials) = &self.spec.credentials {
            self.token = Some(auth::login(self.http, &addr.http, credentials).await?);
        }
        Ok(())
    }

    /// The steady state: pushes, periodic re-syncs, health checks and token refreshes.
    async fn follow(&mut self, addr: &ServerAddr, conn: &mut Connection, stream: &mut BiStream) -> Result<Infallible, End> {
        let mut health = interval_at(Instant::now() + HEALTH_INTERVAL, HEALTH_INTERVAL);
        let resync_every = Duration::from_millis(self.spec.resync_interval_ms).max(MIN_RESYNC);
        let mut resync = interval_at(Instant::now() + resync_every, resync_every);
        resync.set_missed_tick_behavior(MissedTickBehavior::Delay);
        health.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut refresh_at = self.token.as_ref().map(|t| t.refresh_at);
        loop {
            tokio::select! {
                message = stream.inbound.recv() => match message {
                    Some(Ok(request)) => self.on_server_request(conn, stream, &request)?,
                    Some(Err(error)) => return Err(End::Failed(format!("stream broken: {error}"))),
                    None => return Err(End::Failed("stream closed".to_owned())),
                },
                _ = health.tick() => health_check(conn, HEALTH_TIMEOUT).await?,
                _ = resync.tick() => {
                    let body = messages::service_query(&conn.request_id(), &self.target());
                    let response = conn.call(kind::SERVICE_QUERY, &body, REQUEST_TIMEOUT).await?;
                    self.publish_read(response.body())?;
                }
                () = sleep_until(refresh_at.unwrap_or_else(Instant::now)), if refresh_at.is_some() => {
                    refresh_at = Some(self.refresh_token(addr, conn).await?);
                }
            }
        }
    }

    /// Logs in again; returns when to refresh next. A failed refresh is retried while the
    /// current token lasts.
    async fn refresh_token(&mut self, addr: &ServerAddr, conn: &mut Connection) -> Result<Instant, String> {
        let Some(credentials) = &self.spec.credentials else { return Ok(Instant::now() + MAX_SLEEP) };
        match auth::login(self.http, &addr.http, credentials).await {
            Ok(token) => {
                conn.set_token(&token.value);
                let next = token.refresh_at;
                self.token = Some(token);
                Ok(next)
            }
            Err(error) => {
                let expires_at = self.token.as_ref().map_or_else(Instant::now, |t| t.expires_at);
                if Instant::now() + REFRESH_RETRY >= expires_at {
                    return Err(error);
                }
                tracing::warn!(server = %addr.http, %error, "Nacos token refresh failed; retrying");
                Ok(Instant::now() + REFRESH_RETRY)
            }
        }
    }

    fn on_server_request(&mut self, conn: &Connection, stream: &BiStream, request: &Payload) -> Result<(), End> {
        let Ok(head) = serde_json::from_slice::<ServerRequest>(request.body()) else {
            tracing::debug!(kind = request.kind(), "ignoring a server request that is not JSON");
            return Ok(());
        };
        let ack = |kind: &str| stream.answer(conn.payload(kind, &messages::push_ack(head.request_id.as_deref().unwrap_or(""))));
        match request.kind() {
            kind::NOTIFY_SUBSCRIBER => {
                self.on_push(request.body());
                ack(kind::NOTIFY_SUBSCRIBER_RESPONSE)?;
            }
            kind::CLIENT_DETECTION => ack(kind::CLIENT_DETECTION_RESPONSE)?,
            kind::CONNECT_RESET => {
                let _ = ack(kind::CONNECT_RESET_RESPONSE);
                return Err(End::ResetByServer);
            }
            other => tracing::debug!(kind = other, "ignoring an unknown server request"),
        }
        Ok(())
    }

    /// A push replaces the instances like a full read, if it is about the watched service.
    fn on_push(&mut self, body: &[u8]) {
        let push: WithServiceInfo = match serde_json::from_slice(body) {
            Ok(push) => push,
            Err(_) => return tracing::warn!(service = %self.spec.service, "ignoring a malformed Nacos push"),
        };
        match push.service_info {
            Some(info) if info.is_for(&self.target()) => self.publish_hosts(&info.hosts.unwrap_or_default()),
            _ => tracing::debug!(service = %self.spec.service, "ignoring a push for another service"),
        }
    }

    /// A subscribe or query response: its `serviceInfo.hosts` are the instances.
    fn publish_read(&mut self, body: &[u8]) -> Result<(), String> {
        let read: WithServiceInfo = serde_json::from_slice(body).map_err(|_| "the service read is not valid JSON".to_owned())?;
        let hosts = read.service_info.and_then(|info| info.hosts).unwrap_or_default();
        self.publish_hosts(&hosts);
        Ok(())
    }

    fn publish_hosts(&mut self, hosts: &Hosts) {
        publish::synced(self.out, select(hosts, &self.spec.clusters));
        self.synced = true;
    }
}

/// Far enough in the future to mean "never" for a timer.
const MAX_SLEEP: Duration = Duration::from_secs(365 * 24 * 3600);

async fn health_check(conn: &mut Connection, timeout: Duration) -> Result<(), String> {
    let body = messages::internal_request(&conn.request_id());
    conn.call(kind::HEALTH_CHECK, &body, timeout).await.map(drop).map_err(|e| format!("health check failed: {e}"))
}

/// Health-checks until the server knows the connection set up on the stream.
async fn wait_until_registered(conn: &mut Connection) -> Result<(), String> {
    let mut last_error = String::new();
    for _ in 0..REGISTRATION_ATTEMPTS {
        match health_check(conn, HEALTH_TIMEOUT).await {
            Ok(()) => return Ok(()),
            Err(error) => last_error = error,
        }
        tokio::time::sleep(REGISTRATION_RETRY).await;
    }
    Err(format!("the server did not register the connection: {last_error}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_listens_1000_above_the_http_port() {
        let addr = ServerAddr::parse("nacos.example:8848").unwrap();
        assert_eq!((addr.http.as_str(), addr.grpc.as_str()), ("nacos.example:8848", "nacos.example:9848"));
        assert_eq!(ServerAddr::parse("[::1]:8848").unwrap().grpc, "[::1]:9848");
        assert!(ServerAddr::parse("nacos:65000").is_err());
        assert!(ServerAddr::parse("nacos").is_err());
        assert!(ServerAddr::parse(":8848").is_err());
    }
}
