//! One gRPC connection to a Nacos server: unary requests and the bidirectional stream,
//! both over the same HTTP/2 connection (Nacos binds a client to its connection, so a
//! request on another connection would not see the stream's subscription).

use std::collections::HashMap;
use std::time::Duration;

use http::uri::PathAndQuery;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tonic::client::Grpc;
use tonic::transport::{Channel, Endpoint};
use tonic_prost::ProstCodec;

use crate::auth::TOKEN_HEADER;
use crate::messages::{ResponseHead, SUCCESS_CODE, kind};
use crate::proto::Payload;

const UNARY_PATH: &str = "/Request/request";
const STREAM_PATH: &str = "/BiRequestStream/requestBiStream";

/// A larger message from the server is refused rather than buffered (a service with
/// 10,000 instances and some metadata stays well below this).
pub const MAX_MESSAGE_BYTES: usize = 16 << 20;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// HTTP/2 pings notice a server that vanished without closing the TCP connection.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(5);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(3);
/// Error messages from the server are cut to this many characters.
const MAX_ERROR_CHARS: usize = 200;

pub struct Connection {
    grpc: Grpc<Channel>,
    /// Sent in every request's metadata (the access token, with auth on).
    headers: HashMap<String, String>,
    token: Option<String>,
    next_request_id: u64,
}

impl Connection {
    /// Connects to `grpc_addr` (`host:port`).
    pub async fn open(grpc_addr: &str) -> Result<Self, String> {
        let endpoint = Endpoint::from_shared(format!("http://{grpc_addr}"))
            .map_err(|_| format!("{grpc_addr} is not a valid address"))?
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
            .keep_alive_timeout(KEEPALIVE_TIMEOUT)
            .keep_alive_while_idle(true);
        let channel = endpoint.connect().await.map_err(|e| format!("gRPC connect failed: {}", innermost(&e)))?;
        let grpc = Grpc::new(channel).max_decoding_message_size(MAX_MESSAGE_BYTES);
        Ok(Self { grpc, headers: HashMap::new(), token: None, next_request_id: 1 })
    }

    pub fn set_token(&mut self, token: &str) {
        self.headers.insert(TOKEN_HEADER.to_owned(), token.to_owned());
        self.token = Some(token.to_owned());
    }

    pub fn request_id(&mut self) -> String {
        let id = self.next_request_id;
        self.next_request_id += 1;
        id.to_string()
    }

    /// A payload of class `kind` with this connection's headers.
    pub fn payload(&self, kind: &str, body: &Value) -> Payload {
        Payload::new(kind, body.to_string().into_bytes(), self.headers.clone())
    }

    /// Sends a unary request and returns the response if the server reports success.
    pub async fn call(&mut self, kind: &str, body: &Value, timeout: Duration) -> Result<Payload, String> {
        let request = tonic::Request::new(self.payload(kind, body));
        let grpc = &mut self.grpc;
        let exchange = async {
            grpc.ready().await.map_err(|e| format!("gRPC connection lost: {}", innermost(&e)))?;
            let codec = ProstCodec::<Payload, Payload>::default();
            grpc.unary(request, PathAndQuery::from_static(UNARY_PATH), codec).await.map_err(|s| describe_status(&s))
        };
        let response = tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| format!("{kind} got no answer within {}s", timeout.as_secs_f32()))??
            .into_inner();
        self.check(kind, &response)?;
        Ok(response)
    }

    fn check(&self, kind: &str, response: &Payload) -> Result<(), String> {
        let head: ResponseHead = serde_json::from_slice(response.body()).map_err(|_| format!("{kind}: the answer is not JSON"))?;
        if response.kind() != kind::ERROR_RESPONSE && head.result_code == Some(SUCCESS_CODE) {
            return Ok(());
        }
        let code = head.error_code.filter(|c| *c != 0).or(head.result_code).unwrap_or_default();
        let message = self.redact(head.message.as_deref().unwrap_or(""));
        let denied = if code == 403 { " (access denied)" } else { "" };
        Err(format!("{kind} refused{denied}: {code} {message}").trim_end().to_owned())
    }

    /// Server messages are untrusted text: bounded, and never echoing the token.
    fn redact(&self, message: &str) -> String {
        let short: String = message.chars().take(MAX_ERROR_CHARS).map(|c| if c.is_control() { ' ' } else { c }).collect();
        match &self.token {
            Some(token) if !token.is_empty() => short.replace(token.as_str(), "<redacted>"),
            _ => short,
        }
    }

    /// Opens the bidirectional stream with `first` as its first message. The stream is
    /// driven by a task of its own because servers may send no response headers until
    /// their first push, and the unary requests must not wait for that.
    pub fn open_stream(&self, first: Payload) -> BiStream {
        let (outbound, outbound_rx) = mpsc::channel(OUTBOUND_CAPACITY);
        // The channel is new and has room: this cannot fail.
        let _ = outbound.try_send(first);
        let (inbound_tx, inbound) = mpsc::channel(INBOUND_CAPACITY);
        let task = tokio::spawn(pump_stream(self.grpc.clone(), outbound_rx, inbound_tx));
        BiStream { outbound, inbound, task }
    }
}

const OUTBOUND_CAPACITY: usize = 32;
const INBOUND_CAPACITY: usize = 64;

/// The bidirectional stream: requests the server sends arrive on `inbound` (an `Err` is
/// the last item when the stream broke); answers go to `outbound`.
pub struct BiStream {
    pub outbound: mpsc::Sender<Payload>,
    pub inbound: mpsc::Receiver<Result<Payload, String>>,
    task: JoinHandle<()>,
}

impl BiStream {
    /// Queues an answer; a server that stops reading its stream is dead to us.
    pub fn answer(&self, payload: Payload) -> Result<(), String> {
        self.outbound.try_send(payload).map_err(|_| "the stream to the server is backed up or closed".to_owned())
    }
}

impl Drop for BiStream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn pump_stream(mut grpc: Grpc<Channel>, outbound: mpsc::Receiver<Payload>, inbound: mpsc::Sender<Result<Payload, String>>) {
    let pump = async {
        grpc.ready().await.map_err(|e| format!("gRPC connection lost: {}", innermost(&e)))?;
        let request = tonic::Request::new(ReceiverStream::new(outbound));
        let codec = ProstCodec::<Payload, Payload>::default();
        let response = grpc.streaming(request, PathAndQuery::from_static(STREAM_PATH), codec).await.map_err(|s| describe_status(&s))?;
        let mut messages = response.into_inner();
        while let Some(message) = messages.message().await.map_err(|s| describe_status(&s))? {
            if inbound.send(Ok(message)).await.is_err() {
                return Ok(());
            }
        }
        Err("the server closed the stream".to_owned())
    };
    if let Err(error) = pump.await {
        let _ = inbound.send(Err(error)).await;
    }
}

/// A gRPC status as a short message: what failed, and the innermost cause when the
/// failure is a transport one (`Connection refused`).
fn describe_status(status: &tonic::Status) -> String {
    use std::error::Error;
    let cause = status.source().map(innermost).filter(|c| !status.message().contains(c.as_str()));
    let message = if status.message().is_empty() { status.code().description() } else { status.message() };
    let text = match cause {
        Some(cause) => format!("{message}: {cause}"),
        None => message.to_owned(),
    };
    text.chars().take(MAX_ERROR_CHARS).collect()
}

fn innermost(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error;
    while let Some(source) = cause.source() {
        cause = source;
    }
    cause.to_string()
}
