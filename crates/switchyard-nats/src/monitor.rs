//! The controller's view of a NATS bus: connected or not, and which stream takes the
//! subject, published as [`BusState`] whenever it changes.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::Event;
use async_nats::connection::State;
use switchyard_compile::bus::{BusSource, BusState};
use tokio::sync::{Notify, watch};

/// How often the subject's stream is looked up again while connected (a stream created
/// or deleted by hand shows within this).
const STREAM_CHECK_INTERVAL: Duration = Duration::from_secs(5);
/// How often the connection state is read while not connected.
const RECONNECT_CHECK_INTERVAL: Duration = Duration::from_millis(500);

/// Watches `source` until `out` has no receivers.
pub async fn monitor(source: BusSource, out: watch::Sender<BusState>) {
    let last_error = Arc::new(Mutex::new(None::<String>));
    let poke = Arc::new(Notify::new());
    let (errors, woken) = (last_error.clone(), poke.clone());
    let on_event = move |event: Event| {
        match &event {
            Event::ClientError(e) => *errors.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(e.to_string()),
            Event::ServerError(e) => *errors.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(e.to_string()),
            _ => {}
        }
        woken.notify_one();
    };
    let servers = source.target.servers.join(",");
    let connected = crate::connect::options(&source.target, "switchyard-controller", on_event).connect(source.target.servers.clone()).await;
    let client = match connected {
        Ok(client) => client,
        Err(e) => {
            out.send_replace(BusState::Unreachable { error: format!("cannot connect to {servers}: {}", e.kind()) });
            return;
        }
    };
    let jetstream = async_nats::jetstream::new(client.clone());
    let mut attempts = 0u32;
    loop {
        let state = match client.connection_state() {
            State::Connected => {
                attempts = 0;
                let server = servers.clone();
                match jetstream.stream_by_subject(source.subject.clone()).await {
                    Ok(stream) => BusState::Ready { server, stream },
                    Err(e) if is_no_stream(&e) => BusState::NoStream { server },
                    Err(e) => BusState::Unreachable { error: format!("JetStream at {servers} does not answer: {}", e.kind()) },
                }
            }
            State::Pending | State::Disconnected => {
                attempts += 1;
                // The first attempt is still under way: say Connecting, not Unreachable.
                if attempts < 3 && matches!(*out.borrow(), BusState::Connecting) {
                    BusState::Connecting
                } else {
                    let why = last_error.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
                    BusState::Unreachable { error: format!("cannot connect to {servers}: {}", why.unwrap_or_else(|| "no answer".into())) }
                }
            }
        };
        out.send_if_modified(|current| {
            let changed = *current != state;
            *current = state.clone();
            changed
        });
        let pause = if matches!(state, BusState::Ready { .. } | BusState::NoStream { .. }) {
            STREAM_CHECK_INTERVAL
        } else {
            RECONNECT_CHECK_INTERVAL
        };
        tokio::select! {
            () = out.closed() => return,
            () = poke.notified() => {}
            () = tokio::time::sleep(pause) => {}
        }
    }
}

fn is_no_stream(error: &async_nats::jetstream::context::GetStreamByNameError) -> bool {
    matches!(error.kind(), async_nats::jetstream::context::GetStreamByNameErrorKind::NotFound)
}
