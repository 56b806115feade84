//! The Kubernetes source: reflectors keep an in-memory copy of every resource
//! Switchyard reads; any change triggers (after a short debounce) one compile over all
//! of them, a publish when the snapshot changed, and — on the leader — status writes.
//!
//! The kube-facing code is kept thin: what to compile is `resources()` (plain copies of
//! the stores), what to write is `status::status_patch` (pure), how to write it is
//! `writer`. Each is tested on its own; the API server is mocked with `tower-test`.

pub mod endpoints;
pub mod events;
pub mod leader;
pub mod status;
pub mod vpc_test;
pub mod writer;

#[cfg(test)]
pub(crate) mod mock;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{ObjectReference, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;
use switchyard_api::{APP_LABEL, ApiRoute, BackendService, CERTIFICATE_LABEL, DnsRecord, VpcAuthorization};
use switchyard_compile::{AppSecret, CertificateSecret, CompileOptions, ObjectRef, ResourceKind, Resources, SecretData};
use tokio::sync::{Notify, watch};

use crate::metrics::ControllerMetrics;
use crate::publisher::Publisher;
use crate::status::StatusBook;
use writer::StatusWriter;

/// Changes arriving within this window are compiled together.
pub const DEBOUNCE: Duration = Duration::from_millis(200);
/// Compile and re-check statuses at least this often (retries failed status writes).
pub const RESYNC: Duration = Duration::from_secs(30);

/// Read-only views of every watched kind.
#[derive(Clone)]
pub struct Stores {
    routes: Store<ApiRoute>,
    backends: Store<BackendService>,
    authorizations: Store<VpcAuthorization>,
    dns_records: Store<DnsRecord>,
    apps: Store<Secret>,
    /// Every Secret but service-account tokens and Helm release records, for the ones
    /// resources reference by name (`credentialsSecretRef`).
    secrets: Store<Secret>,
    services: Store<Service>,
    slices: Store<EndpointSlice>,
}

impl Stores {
    /// Starts one reflector per kind; each change pokes `changed`.
    pub fn start(client: &Client, changed: Arc<Notify>) -> Self {
        let apps_only = watcher::Config::default().labels(&format!("{APP_LABEL}=true"));
        Self {
            routes: reflect(Api::all(client.clone()), watcher::Config::default(), changed.clone()),
            backends: reflect(Api::all(client.clone()), watcher::Config::default(), changed.clone()),
            authorizations: reflect(Api::all(client.clone()), watcher::Config::default(), changed.clone()),
            dns_records: reflect(Api::all(client.clone()), watcher::Config::default(), changed.clone()),
            apps: reflect(Api::all(client.clone()), apps_only, changed.clone()),
            secrets: reflect(Api::all(client.clone()), referenceable_secrets(), changed.clone()),
            services: reflect(Api::all(client.clone()), watcher::Config::default(), changed.clone()),
            slices: reflect(Api::all(client.clone()), watcher::Config::default(), changed),
        }
    }

    /// Waits until every store has its initial list, so the first compile sees all.
    pub async fn wait_ready(&self) {
        let _ = tokio::join!(
            self.routes.wait_until_ready(),
            self.backends.wait_until_ready(),
            self.authorizations.wait_until_ready(),
            self.dns_records.wait_until_ready(),
            self.apps.wait_until_ready(),
            self.secrets.wait_until_ready(),
            self.services.wait_until_ready(),
            self.slices.wait_until_ready(),
        );
    }

    /// A plain copy of everything compile reads.
    pub fn resources(&self) -> Resources {
        let services: Vec<Service> = copy(&self.services);
        let slices: Vec<EndpointSlice> = copy(&self.slices);
        let backend_services: Vec<BackendService> = copy(&self.backends);
        let all_secrets = self.secrets.state();
        let secrets = referenced_secrets(&backend_services, &all_secrets);
        Resources {
            api_routes: copy(&self.routes),
            backend_services,
            vpc_authorizations: copy(&self.authorizations),
            dns_records: copy(&self.dns_records),
            apps: self.apps.state().iter().filter_map(|s| app_secret(s)).collect(),
            invalid: Vec::new(),
            service_endpoints: endpoints::service_endpoints(&services, &slices),
            // Filled by the run loop from the prober (leader only).
            connectivity: Default::default(),
            secrets,
            certificates: all_secrets.iter().filter_map(|s| certificate_secret(s)).collect(),
            clock: Some(std::time::SystemTime::now()),
            // Filled by the run loop from the registry watches, bus and database monitors.
            registry: Default::default(),
            buses: Default::default(),
            databases: Default::default(),
            // Set by the run loop from the command line.
            options: Default::default(),
            config_dir: None,
        }
    }

    /// A reference to an object (with its uid) for Events.
    pub fn reference(&self, object: &ObjectRef) -> Option<ObjectReference> {
        let ns = object.namespace.as_deref();
        let meta = match object.kind {
            ResourceKind::ApiRoute => find(&self.routes, ns, &object.name).map(|o| o.metadata.clone()),
            ResourceKind::BackendService => find(&self.backends, ns, &object.name).map(|o| o.metadata.clone()),
            ResourceKind::VpcAuthorization => find(&self.authorizations, ns, &object.name).map(|o| o.metadata.clone()),
            ResourceKind::DnsRecord => find(&self.dns_records, ns, &object.name).map(|o| o.metadata.clone()),
            // Certificate Secrets get Events (their conditions are only in `/status`).
            ResourceKind::Secret => find(&self.secrets, ns, &object.name).map(|o| o.metadata.clone()),
            ResourceKind::Unknown => None,
        }?;
        let (api_version, kind) = match object.kind {
            ResourceKind::Secret => ("v1", Some("Secret")),
            other => (switchyard_api::API_VERSION, status::kind_name(other)),
        };
        Some(ObjectReference {
            api_version: Some(api_version.into()),
            kind: kind.map(str::to_owned),
            name: meta.name,
            namespace: meta.namespace,
            uid: meta.uid,
            resource_version: meta.resource_version,
            ..Default::default()
        })
    }

    /// An object's `.status` as last seen by the watch.
    pub fn current_status(&self, object: &ObjectRef) -> Option<serde_json::Value> {
        let ns = object.namespace.as_deref();
        let status = |value: Result<serde_json::Value, _>| value.ok().and_then(|v: serde_json::Value| v.get("status").cloned());
        match object.kind {
            ResourceKind::ApiRoute => find(&self.routes, ns, &object.name).map(|o| status(serde_json::to_value(&*o))),
            ResourceKind::BackendService => find(&self.backends, ns, &object.name).map(|o| status(serde_json::to_value(&*o))),
            ResourceKind::VpcAuthorization => find(&self.authorizations, ns, &object.name).map(|o| status(serde_json::to_value(&*o))),
            ResourceKind::DnsRecord => find(&self.dns_records, ns, &object.name).map(|o| status(serde_json::to_value(&*o))),
            ResourceKind::Secret | ResourceKind::Unknown => None,
        }
        .flatten()
    }
}

/// Clones every object out of a store (compile takes plain values).
fn copy<K>(store: &Store<K>) -> Vec<K>
where
    K: Resource + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    store.state().iter().map(|o| (**o).clone()).collect()
}

fn find<K>(store: &Store<K>, namespace: Option<&str>, name: &str) -> Option<Arc<K>>
where
    K: Resource + Clone + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone,
{
    let key = reflector::ObjectRef::new(name).within_opt(namespace);
    store.get(&key)
}

trait WithinOpt {
    fn within_opt(self, namespace: Option<&str>) -> Self;
}

impl<K: Resource> WithinOpt for reflector::ObjectRef<K>
where
    K::DynamicType: Default,
{
    fn within_opt(self, namespace: Option<&str>) -> Self {
        match namespace {
            Some(ns) => self.within(ns),
            None => self,
        }
    }
}

/// Starts a reflector for one kind and returns its store.
fn reflect<K>(api: Api<K>, config: watcher::Config, changed: Arc<Notify>) -> Store<K>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone + Send + Sync,
{
    let (reader, writer) = reflector::store();
    let stream = watcher(api, config).default_backoff().reflect(writer);
    tokio::spawn(poke_on_change(stream, changed));
    reader
}

async fn poke_on_change<S, T>(stream: S, changed: Arc<Notify>)
where
    S: Stream<Item = Result<watcher::Event<T>, watcher::Error>>,
{
    let mut stream = std::pin::pin!(stream);
    while let Some(event) = stream.next().await {
        match event {
            Ok(_) => changed.notify_one(),
            Err(e) => tracing::warn!(error = %e, "watch error; the watcher retries with backoff"),
        }
    }
}

/// The Secrets a reference may name. Service-account tokens and Helm release records are
/// never referenced by a resource and are the bulk of a cluster's Secrets: not watched.
fn referenceable_secrets() -> watcher::Config {
    watcher::Config::default().fields("type!=kubernetes.io/service-account-token,type!=helm.sh/release.v1")
}

/// The Secrets BackendServices reference by name, decoded (values that are not UTF-8 are
/// left out, so their reference reports the key missing). Only these reach compile.
pub fn referenced_secrets(backends: &[BackendService], secrets: &[Arc<Secret>]) -> BTreeMap<(String, String), SecretData> {
    let wanted: std::collections::BTreeSet<(String, String)> = backends
        .iter()
        .flat_map(|b| {
            let ns = b.metadata.namespace.clone().unwrap_or_else(|| "default".into());
            let registry = b.spec.registry.as_ref();
            let refs = [
                registry.and_then(|r| r.nacos.as_ref()).and_then(|n| n.credentials_secret_ref.as_ref()).map(|r| &r.name),
                registry.and_then(|r| r.zookeeper.as_ref()).and_then(|z| z.credentials_secret_ref.as_ref()).map(|r| &r.name),
                b.spec.model.as_ref().and_then(|m| m.token_secret_ref.as_ref()).map(|r| &r.name),
                b.spec.event_bus.as_ref().and_then(|e| e.nats.as_ref()).and_then(|n| n.credentials_secret_ref.as_ref()).map(|r| &r.name),
                b.spec.data_service.as_ref().and_then(|d| d.connection.secret_ref.as_ref()).map(|r| &r.name),
            ];
            refs.into_iter().flatten().map(move |name| (ns.clone(), name.clone()))
        })
        .collect();
    secrets
        .iter()
        .filter_map(|secret| {
            let key = (secret.metadata.namespace.clone()?, secret.metadata.name.clone()?);
            if !wanted.contains(&key) {
                return None;
            }
            let data = secret.data.iter().flatten().filter_map(|(k, v)| Some((k.clone(), String::from_utf8(v.0.clone()).ok()?)));
            Some((key, SecretData(data.collect())))
        })
        .collect()
}

/// A Secret labelled `switchyard.dev/certificate: "true"`, as compile checks it (None
/// for any other Secret).
pub fn certificate_secret(secret: &Secret) -> Option<CertificateSecret> {
    let labels = secret.metadata.labels.as_ref()?;
    if labels.get(CERTIFICATE_LABEL).map(String::as_str) != Some("true") {
        return None;
    }
    let text = |key: &str| secret.data.as_ref()?.get(key).and_then(|v| String::from_utf8(v.0.clone()).ok());
    Some(CertificateSecret {
        namespace: secret.metadata.namespace.clone()?,
        name: secret.metadata.name.clone()?,
        secret_type: secret.type_.clone(),
        certificate_chain: text("tls.crt"),
        private_key: text("tls.key"),
    })
}

/// An app Secret's credentials; None when a key is missing or not UTF-8.
fn app_secret(secret: &Secret) -> Option<AppSecret> {
    let data = secret.data.as_ref();
    let field = |key: &str| -> Option<String> {
        let bytes = data?.get(key)?;
        String::from_utf8(bytes.0.clone()).ok()
    };
    Some(AppSecret {
        namespace: secret.metadata.namespace.clone()?,
        name: secret.metadata.name.clone()?,
        app_key: field("appKey")?,
        app_secret: field("appSecret")?,
        app_code: field("appCode")?,
    })
}

/// The Lease replicas compete for.
pub const LEASE_NAME: &str = "switchyard-controller";

/// Where this replica runs, for leader election.
pub struct ControllerIdentity {
    /// Namespace of the Lease; defaults to the client's namespace.
    pub lease_namespace: Option<String>,
    /// This replica's name in the Lease (the pod name).
    pub identity: String,
}

/// A running Kubernetes controller.
pub struct Controller {
    pub leading: watch::Receiver<bool>,
    elector: Arc<leader::LeaderElector>,
    /// The election loop: stopped before the lease is released, or its next round could
    /// take the lease straight back.
    election: tokio::task::JoinHandle<()>,
}

impl Controller {
    /// Gives up leadership so another replica takes over without waiting for expiry.
    pub async fn shutdown(&self) {
        self.election.abort();
        match self.elector.release().await {
            Ok(true) => tracing::info!("released the leader lease"),
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "could not release the leader lease; it expires on its own"),
        }
    }
}

/// Connects to the API server (in-cluster credentials or `KUBECONFIG`) and starts leader
/// election and the compile loop in the background.
pub async fn start(
    identity: ControllerIdentity,
    options: CompileOptions,
    publisher: Arc<Publisher>,
    book: Arc<StatusBook>,
    metrics: Arc<ControllerMetrics>,
    discovery: crate::discovery::Discovery,
) -> Result<Controller, kube::Error> {
    let client = Client::try_default().await?;
    let namespace = identity.lease_namespace.unwrap_or_else(|| client.default_namespace().to_owned());
    let (leading_tx, leading) = watch::channel(false);
    let elector = Arc::new(leader::LeaderElector::new(Api::namespaced(client.clone(), &namespace), LEASE_NAME, &identity.identity));
    let election = tokio::spawn(elector.clone().run(leading_tx));
    let events = events::Events::new(client.clone(), &identity.identity);
    let sinks = Sinks { publisher, book, metrics, events };
    tokio::spawn(run(client, options, sinks, leading.clone(), discovery));
    Ok(Controller { leading, elector, election })
}

/// Where a pass's results go: snapshots, statuses, metrics and Events.
pub struct Sinks {
    pub publisher: Arc<Publisher>,
    pub book: Arc<StatusBook>,
    pub metrics: Arc<ControllerMetrics>,
    pub events: events::Events,
}

/// Compiles on every change and writes statuses while leading. Runs forever. `options`
/// (command line) go with every compile and every connectivity test. Registry watches run
/// on every replica (each serves snapshots); connectivity tests on the leader only.
pub async fn run(
    client: Client,
    options: CompileOptions,
    sinks: Sinks,
    mut leading: watch::Receiver<bool>,
    mut discovery: crate::discovery::Discovery,
) {
    let Sinks { publisher, book, metrics, events } = sinks;
    let changed = Arc::new(Notify::new());
    let stores = Stores::start(&client, changed.clone());
    stores.wait_ready().await;
    tracing::info!("initial lists loaded; compiling");
    let mut writer = StatusWriter::new(client);
    let mut prober = crate::connectivity::Prober::default();
    let probe_finished = prober.finished.clone();
    let registry_changed = discovery.changed.clone();
    // Leadership changes wake the loop while the elector runs; if it ever stops, its
    // channel closes and must not wake the loop in a spin.
    let mut elector_alive = true;
    let mut led_last_pass = false;
    loop {
        let started = Instant::now();
        let leads = *leading.borrow_and_update();
        metrics.set_leader(leads);
        // The first pass as leader takes Events from the stored statuses (see `PassContext`).
        let events_from_stored = leads && !led_last_pass;
        led_last_pass = leads;
        let ctx = PassContext { publisher: &publisher, book: &book, metrics: &metrics, events_from_stored };
        let mut resources = Resources { options, ..stores.resources() };
        if discovery.reconcile(&resources) && publisher.current().is_none() {
            discovery.first_reads(crate::discovery::FIRST_READ_WAIT).await;
        }
        resources.registry = discovery.results();
        resources.buses = discovery.bus_results();
        resources.databases = discovery.database_results();
        if leads {
            // Probes run on the leader only; their results are compile input like the rest.
            prober.collect();
            prober.start_due(&resources);
            resources.connectivity = prober.results();
        }
        let pass = reconcile_once(&resources, leads, &mut writer, |o| stores.current_status(o), ctx).await;
        if leads {
            events.publish(&pass.events, &pass.now, |o| stores.reference(o)).await;
        }
        metrics.observe_compile(started.elapsed(), pass.version, publisher.current().map(|p| p.json().len()));
        // Wake on a change (debounced), on gaining leadership, or on the resync tick.
        tokio::select! {
            () = changed.notified() => tokio::time::sleep(DEBOUNCE).await,
            () = probe_finished.notified() => {}
            () = registry_changed.notified() => {}
            () = tokio::time::sleep(prober.next_due()), if leads => {}
            changed = leading.changed(), if elector_alive => elector_alive = changed.is_ok(),
            () = tokio::time::sleep(RESYNC) => {}
        }
    }
}

/// What one pass shares with the rest of the controller.
#[derive(Clone, Copy)]
pub struct PassContext<'a> {
    pub publisher: &'a Publisher,
    pub book: &'a StatusBook,
    pub metrics: &'a ControllerMetrics,
    /// Events for this pass compare with the objects' stored statuses instead of the
    /// in-memory book: set on the first pass after start or after gaining leadership, so
    /// conditions that changed while no replica led (an object created while the
    /// controller was down) get their Events.
    pub events_from_stored: bool,
}

/// What one reconcile pass did.
pub struct PassOutcome {
    pub changes: Vec<crate::status::Change>,
    /// The transitions to publish as Events (leader only; empty otherwise).
    pub events: Vec<crate::status::Change>,
    pub version: Option<u64>,
    /// The timestamp used for transitions in this pass.
    pub now: String,
}

/// One pass over the whole resource set: compile, publish (every replica), and write
/// statuses (the leader only).
pub async fn reconcile_once(
    resources: &Resources,
    leading: bool,
    writer: &mut StatusWriter,
    current: impl Fn(&ObjectRef) -> Option<serde_json::Value>,
    ctx: PassContext<'_>,
) -> PassOutcome {
    let now = crate::now_rfc3339();
    let pass = crate::compile_and_publish(resources, ctx.publisher, ctx.book, &now);
    for change in &pass.changes {
        crate::status::log_change(change);
    }
    let events = match (leading, ctx.events_from_stored) {
        (false, _) => Vec::new(),
        // Read before this pass writes: the stored status is the previous state.
        (true, true) => events::changes_against_stored(&pass.statuses, &current, &now),
        (true, false) => pass.changes.iter().filter(|c| c.condition.last_transition_time == now).cloned().collect(),
    };
    if leading {
        let report = writer.write_all(&pass.statuses, current, &now).await;
        ctx.metrics.observe_status_writes(&report);
    }
    PassOutcome { changes: pass.changes, events, version: pass.version, now }
}
