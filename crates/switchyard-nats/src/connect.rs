//! Connection options shared by the publisher and the monitor.

use std::time::Duration;

use async_nats::{ConnectOptions, Event};
use switchyard_compile::snapshot::{NatsCredentials, NatsTarget};

/// A dial that takes longer is a failed attempt.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Longest pause between reconnect attempts: a bus that comes back is used within this.
const MAX_RECONNECT_DELAY: Duration = Duration::from_secs(2);

/// Options for `target`: retried initial connect and unlimited reconnects with a short
/// capped backoff, the credentials, and `on_event` told of every connection event.
pub(crate) fn options(target: &NatsTarget, name: &str, on_event: impl Fn(Event) + Send + Sync + 'static) -> ConnectOptions {
    let on_event = std::sync::Arc::new(on_event);
    let mut options = ConnectOptions::new()
        .name(name)
        .retry_on_initial_connect()
        .max_reconnects(None)
        .connection_timeout(CONNECT_TIMEOUT)
        .ping_interval(Duration::from_secs(10))
        .reconnect_delay_callback(|attempts| (Duration::from_millis(100) * attempts.min(20) as u32).min(MAX_RECONNECT_DELAY))
        .event_callback(move |event| {
            let on_event = on_event.clone();
            async move { on_event(event) }
        });
    options = match &target.credentials {
        None => options,
        Some(NatsCredentials::Token { token }) => options.token(token.0.clone()),
        Some(NatsCredentials::UserPassword { username, password }) => options.user_and_password(username.clone(), password.0.clone()),
    };
    options
}
