//! NATS JetStream for `eventBus` backends, on the maintained `async-nats` client:
//!
//! - [`Publisher`] (proxy side): one connection per backend, shared by every worker;
//!   [`Publisher::publish`] returns only once JetStream has acknowledged the event, with
//!   the event id as `Nats-Msg-Id` so the stream drops a retried request's duplicate.
//! - [`monitor`] (controller side): watches a target's connection and whether a stream
//!   takes the subject, and reports [`BusState`] for compile to turn into `Ready`.
//!
//! Nothing here logs or reports credentials: errors are described by kind.

mod connect;
mod monitor;
#[cfg(feature = "test-server")]
pub mod testing;

use std::time::Duration;

use async_nats::jetstream::{self, context::PublishErrorKind, message::PublishMessage};
use bytes::Bytes;
pub use monitor::monitor;
use switchyard_compile::snapshot::NatsTarget;

/// A publish that has not been acknowledged in this long fails (the route's deadline may
/// cut it sooner).
pub const ACK_TIMEOUT: Duration = Duration::from_secs(5);

/// A connection to one NATS target, for publishing to JetStream.
#[derive(Clone)]
pub struct Publisher {
    client: async_nats::Client,
    jetstream: jetstream::Context,
}

/// What JetStream said of an accepted event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Published {
    pub stream: String,
    pub sequence: u64,
    /// The stream already had an event with this id (within its duplicate window): the
    /// event is stored once.
    pub duplicate: bool,
}

/// Why an event was not accepted. No variant holds credentials or server error text that
/// could (the server's own description of a refusal is kept, it names the stream).
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("not connected to the NATS servers")]
    NotConnected,
    #[error("no JetStream stream takes the subject")]
    NoStream,
    #[error("JetStream did not acknowledge in time")]
    TimedOut,
    #[error("the event is larger than the NATS server's max_payload")]
    TooLarge,
    #[error("JetStream refused the event: {0}")]
    Refused(String),
}

impl Publisher {
    /// Starts connecting (in the background, retrying for ever) and returns at once: a
    /// backend is built synchronously on every snapshot swap. Until the connection is up,
    /// publishes fail fast with [`PublishError::NotConnected`]. Needs a tokio runtime.
    pub async fn connect(target: &NatsTarget, name: &str) -> Result<Self, String> {
        let client = connect::options(target, name, |_| {}).connect(target.servers.clone()).await.map_err(|e| e.kind().to_string())?;
        let mut jetstream = jetstream::new(client.clone());
        jetstream.set_timeout(ACK_TIMEOUT);
        Ok(Self { client, jetstream })
    }

    pub fn is_connected(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }

    /// Publishes `payload` to `subject` with `Nats-Msg-Id: event_id` and waits for the ack.
    /// Refuses at once while disconnected: an event buffered for a later reconnect could
    /// reach the stream after the client was told it failed.
    pub async fn publish(&self, subject: &str, event_id: &str, payload: Bytes) -> Result<Published, PublishError> {
        if !self.is_connected() {
            return Err(PublishError::NotConnected);
        }
        let message = PublishMessage::build().payload(payload).message_id(event_id);
        let ack = self.jetstream.send_publish(subject.to_owned(), message).await.map_err(publish_error)?;
        let ack = ack.await.map_err(publish_error)?;
        Ok(Published { stream: ack.stream, sequence: ack.sequence, duplicate: ack.duplicate })
    }
}

fn publish_error(error: async_nats::jetstream::context::PublishError) -> PublishError {
    match error.kind() {
        PublishErrorKind::StreamNotFound => PublishError::NoStream,
        PublishErrorKind::TimedOut => PublishError::TimedOut,
        PublishErrorKind::BrokenPipe => PublishError::NotConnected,
        PublishErrorKind::MaxPayloadExceeded => PublishError::TooLarge,
        _ => PublishError::Refused(error.to_string()),
    }
}
