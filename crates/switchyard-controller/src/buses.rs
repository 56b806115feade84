//! Bus monitors: one per distinct NATS target and subject that `eventBus` BackendServices
//! name ([`crate::monitors`]), each publishing its [`BusState`] for compile
//! (`Resources::buses`). The client is in `switchyard-nats`. Monitors run on every
//! controller replica, like the registry watches: each replica compiles the same statuses.

use std::sync::Arc;

use switchyard_compile::Resources;
use switchyard_compile::bus::{BusSource, BusState, bus_source};

use crate::monitors::{self, Monitors};

/// Starts the monitor of one source, publishing on the sender until it is closed.
pub type StartMonitor = monitors::StartMonitor<BusSource, BusState>;

pub type BusMonitors = Monitors<BusSource>;

impl monitors::Source for BusSource {
    type State = BusState;

    fn of(backend: &switchyard_api::BackendService, resources: &Resources) -> Option<Self> {
        bus_source(backend, resources)
    }

    fn log_start(&self) {
        tracing::info!(servers = %self.target.servers.join(","), subject = %self.subject, "starting event bus monitor");
    }
}

/// The real NATS monitor.
pub fn nats_monitors() -> StartMonitor {
    Arc::new(|source, out| tokio::spawn(switchyard_nats::monitor(source, out)))
}

#[cfg(test)]
mod tests {
    use tokio::sync::{Notify, watch};

    use super::*;

    fn bus(name: &str, subject: &str) -> String {
        format!(
            "apiVersion: switchyard.dev/v1alpha1\nkind: BackendService\nmetadata: {{name: {name}, namespace: shop}}\nspec: {{eventBus: {{nats: {{url: \"nats://127.0.0.1:4222\", subject: {subject}}}, source: /s, type: t}}}}\n"
        )
    }

    /// A monitor that says Ready with the subject as the stream name, at once.
    fn fake() -> (StartMonitor, Arc<std::sync::atomic::AtomicUsize>) {
        let started = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = started.clone();
        let start: StartMonitor = Arc::new(move |source: BusSource, out: watch::Sender<BusState>| {
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::spawn(async move {
                out.send_replace(BusState::Ready { server: "s".into(), stream: source.subject.clone() });
                out.closed().await;
            })
        });
        (start, started)
    }

    #[tokio::test]
    async fn backends_on_the_same_bus_share_a_monitor_and_a_gone_one_stops() {
        let (start, started) = fake();
        let mut monitors = BusMonitors::new(start);
        let changed = Arc::new(Notify::new());
        let mut resources = Resources::default();
        let yaml = [bus("a", "orders.created"), bus("b", "orders.created"), bus("c", "orders.paid")].join("---\n");
        switchyard_compile::manifest::add_yaml(&mut resources, "t", &yaml);
        assert!(monitors.reconcile(&resources, &changed));
        assert_eq!((monitors.monitor_count(), started.load(std::sync::atomic::Ordering::SeqCst)), (2, 2));
        tokio::time::timeout(std::time::Duration::from_secs(2), changed.notified()).await.expect("a publish pokes the loop");
        tokio::task::yield_now().await;
        let results = monitors.results();
        assert_eq!(results.len(), 3);
        assert!(matches!(&results[&("shop".into(), "c".into())], BusState::Ready { stream, .. } if stream == "orders.paid"));
        let mut fewer = Resources::default();
        switchyard_compile::manifest::add_yaml(&mut fewer, "t", &bus("a", "orders.created"));
        assert!(monitors.reconcile(&fewer, &changed));
        assert_eq!((monitors.monitor_count(), monitors.results().len()), (1, 1));
        assert!(!monitors.reconcile(&fewer, &changed), "nothing to change");
    }
}
