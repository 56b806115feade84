//! What each subcommand does: wiring only; the work lives in the library crates.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use prometheus_client::registry::Registry;
use switchyard_compile::snapshot::Snapshot;
use switchyard_controller::discovery::{Discovery, RegistryReport};
use switchyard_controller::publisher::Publisher;
use switchyard_controller::snapshot_server::tls::Transport;
use switchyard_controller::snapshot_server::{DEFAULT_HOLD, SnapshotServer, TokenFile, TokenSource};
use switchyard_controller::status::StatusBook;
use switchyard_proxy::Proxy;
use switchyard_proxy::admin::{self, AdminView, Scope};

use crate::cli::{Cli, Command, ControllerArgs, ProxyArgs, StandaloneArgs, ValidateArgs, VpcCommand, VpcTestArgs};

pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Crds => crds(),
        Command::Validate(args) => validate(&args),
        Command::Standalone(args) => run_async(standalone(args)),
        Command::Proxy(args) => run_async(proxy(args)),
        Command::Controller(args) => run_async(controller(args)),
        Command::Vpc { command: VpcCommand::Test(args) } => run_async(vpc_test(args)),
    }
}

/// Runs a subcommand on a multi-threaded runtime. Once it has returned (drained, on a
/// signal), blocking work still running (a folder scan stuck on a bad file system) gets
/// a moment, not a veto: the process exits.
fn run_async(work: impl std::future::Future<Output = anyhow::Result<ExitCode>>) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the async runtime")?;
    let outcome = runtime.block_on(work);
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    outcome
}

fn crds() -> anyhow::Result<ExitCode> {
    for crd in switchyard_api::all_crds() {
        print!("---\n{}", switchyard_api::render_crd(&crd));
    }
    Ok(ExitCode::SUCCESS)
}

/// Compiles the given files together and prints every condition.
fn validate(args: &ValidateArgs) -> anyhow::Result<ExitCode> {
    let options = crate::cli::compile_options(args.host_ownership, &args.link_local);
    let mut resources = switchyard_compile::Resources { options, ..Default::default() };
    for file in &args.files {
        if file.as_os_str() == "-" {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut text).context("reading standard input")?;
            switchyard_compile::manifest::add_yaml(&mut resources, "<stdin>", &text);
            continue;
        }
        // A folder is read as standalone reads its --config-dir (recursively, once per file).
        let paths = if file.is_dir() { switchyard_controller::folder::yaml_files(file) } else { vec![file.clone()] };
        for path in paths {
            let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
            switchyard_compile::manifest::add_yaml(&mut resources, &path.display().to_string(), &text);
        }
    }
    let compiled = switchyard_compile::compile(&resources);
    let mut any_false = false;
    for status in &compiled.statuses {
        for c in &status.conditions {
            // Validation does no I/O: a registry backend is always still discovering here,
            // and a NATS event bus still connecting.
            let waiting_on_io = [switchyard_compile::reason::DISCOVERING, switchyard_compile::reason::CONNECTING];
            any_false |= !c.status && !waiting_on_io.contains(&c.reason.as_str());
            println!("{}: {}={} ({}): {}", status.object, c.type_, c.status_str(), c.reason, c.message);
        }
    }
    let routes = compiled.snapshot.routes.len();
    println!(
        "{} object(s), {routes} route(s) programmed{}",
        compiled.statuses.len(),
        if any_false { ", some conditions are False" } else { "" }
    );
    Ok(if any_false { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

/// `switchyard vpc test NAME`: one connectivity test now, from the standalone folder
/// when given one, otherwise by the controller of the current cluster.
async fn vpc_test(args: VpcTestArgs) -> anyhow::Result<ExitCode> {
    use switchyard_controller::connectivity;
    let (namespace, result) = match &args.config_dir {
        Some(dir) => {
            let namespace = args.namespace.clone().unwrap_or_else(|| "default".to_owned());
            let options = switchyard_compile::CompileOptions {
                allow_link_local_grants: args.link_local.allow_link_local_grants,
                ..Default::default()
            };
            let result = vpc_test_in_folder(dir, options, &namespace, &args.name).await?;
            (namespace, result)
        }
        None => switchyard_controller::kubernetes::vpc_test::run(args.namespace.as_deref(), &args.name, args.timeout).await?,
    };
    println!("{}", connectivity::report_line(&namespace, &args.name, &result));
    Ok(if result.connected { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

async fn vpc_test_in_folder(
    dir: &Path,
    options: switchyard_compile::CompileOptions,
    namespace: &str,
    name: &str,
) -> anyhow::Result<switchyard_compile::Connectivity> {
    use switchyard_controller::connectivity;
    let mut resources = switchyard_compile::Resources::default();
    switchyard_controller::folder::FolderSource::new(dir).with_options(options).scan(&mut resources);
    let wanted = |a: &&switchyard_api::VpcAuthorization| {
        a.metadata.name.as_deref() == Some(name) && a.metadata.namespace.as_deref().unwrap_or("default") == namespace
    };
    let Some(authorization) = resources.vpc_authorizations.iter().find(wanted) else {
        bail!("no VpcAuthorization {namespace}/{name} in {}", dir.display());
    };
    let plan = match connectivity::plan(authorization, &resources) {
        Ok(plan) => plan,
        Err(why) => bail!("VpcAuthorization {namespace}/{name} cannot be tested: {why}"),
    };
    Ok(connectivity::run(&plan).await)
}

/// Standalone's admin view: the proxy's readiness, the published snapshot, the statuses.
struct StandaloneView {
    proxy: Arc<Proxy>,
    publisher: Arc<Publisher>,
    book: Arc<StatusBook>,
    registries: RegistryReport,
}

impl AdminView for StandaloneView {
    fn ready(&self) -> bool {
        self.proxy.version().is_some()
    }
    fn snapshot(&self) -> Option<Arc<Snapshot>> {
        self.publisher.current().map(|p| p.snapshot.clone())
    }
    fn endpoint_health(&self) -> Vec<serde_json::Value> {
        self.proxy.endpoint_health()
    }
    fn status(&self) -> serde_json::Value {
        book_json(&self.book)
    }
    fn registries(&self) -> Vec<serde_json::Value> {
        self.registries.get()
    }
}

/// `{"resources": [...]}`: every object's conditions.
fn book_json(book: &StatusBook) -> serde_json::Value {
    serde_json::json!({ "resources": book.snapshot() })
}

/// The admin listener (everything) and, when given, the metrics listener (health and
/// metrics only), both on the side runtime.
fn serve_admin(
    view: Arc<dyn AdminView>,
    registry: Registry,
    admin_listener: tokio::net::TcpListener,
    metrics_listener: Option<tokio::net::TcpListener>,
) {
    serve_admin_shared(view, Arc::new(registry), admin_listener, metrics_listener);
}

/// [`serve_admin`] with a registry the caller also reads.
fn serve_admin_shared(
    view: Arc<dyn AdminView>,
    registry: Arc<Registry>,
    admin_listener: tokio::net::TcpListener,
    metrics_listener: Option<tokio::net::TcpListener>,
) {
    if let Some(listener) = metrics_listener {
        let handler = admin::handler(view.clone(), registry.clone(), Scope::Metrics);
        tokio::spawn(switchyard_http::serve(listener, handler, std::future::pending()));
    }
    tokio::spawn(switchyard_http::serve(admin_listener, admin::handler(view, registry, Scope::Admin), std::future::pending()));
}

async fn standalone(args: StandaloneArgs) -> anyhow::Result<ExitCode> {
    args.dns.apply();
    if !args.config_dir.is_dir() {
        bail!("--config-dir {} is not a directory", args.config_dir.display());
    }
    let mut registry = Registry::default();
    let publisher = Arc::new(Publisher::new());
    let book = Arc::new(StatusBook::default());
    let proxy_listeners = listen_workers(&args.listen, args.workers).await?;
    let https_listeners = listen_https(&args.https, proxy_listeners.len()).await?;
    let admin_listener = listen("admin", &args.admin_listen).await?;
    let metrics_listener = match &args.metrics_listen {
        Some(addr) => Some(listen("metrics", addr).await?),
        None => None,
    };
    let mut own = vec![proxy_listeners[0].local_addr()?, admin_listener.local_addr()?];
    own.extend(https_listeners.as_ref().map(|l| l[0].local_addr()).transpose()?);
    own.extend(metrics_listener.as_ref().map(|l| l.local_addr()).transpose()?);
    if let (Some(addr), Some(token_file)) = (&args.snapshot_listen, &args.token_file) {
        let tls = &args.snapshot_tls;
        let transport =
            Transport::from_flags(tls.snapshot_tls_cert.as_deref(), tls.snapshot_tls_key.as_deref(), tls.snapshot_insecure_http)?;
        let server = Arc::new(SnapshotServer::new(publisher.clone(), TokenFile::open(token_file)?, DEFAULT_HOLD));
        registry.register("switchyard_controller_snapshot_polls_waiting", "Long-polls held open by proxies", server.waiting.clone());
        let listener = listen("snapshot", addr).await?;
        own.push(listener.local_addr()?);
        tokio::spawn(switchyard_controller::snapshot_server::tls::serve_on(listener, transport, server));
    }
    let (tracing, exporter) = args.tracing.start(&mut registry)?;
    let proxy = Arc::new(
        Proxy::new(&mut registry, args.egress.config(own))
            .with_nonce_store(nonce_store(&args.nonces)?)
            .with_access_log(args.access_log.format())
            .with_connection_limits(args.client_limits.limits())
            .with_tracing(tracing)
            .with_websocket_idle_timeout(args.websocket_idle_timeout)
            .with_default_certificate(args.https.default_certificate.clone())
            .with_https_redirect_port(redirect_port(&args.https, https_listeners.as_deref())?),
    );
    let options = crate::cli::compile_options(args.host_ownership, &args.link_local);
    let discovery = registry_discovery(&mut registry);
    let registries = discovery.report_handle();
    tokio::spawn(switchyard_controller::watch_folder(args.config_dir.clone(), options, publisher.clone(), book.clone(), discovery));
    tokio::spawn(apply_published(publisher.clone(), proxy.clone()));
    let view: Arc<dyn AdminView> = Arc::new(StandaloneView { proxy: proxy.clone(), publisher, book, registries });
    serve_admin(view, registry, admin_listener, metrics_listener);
    let code = serve_until_signal(proxy_listeners, https_listeners, proxy).await;
    flush_spans(exporter).await;
    code
}

/// The registry watches (Nacos, ZooKeeper), reporting to the metrics registry.
fn registry_discovery(registry: &mut Registry) -> Discovery {
    use switchyard_controller::discovery::registry_clients;
    let metrics = Arc::new(switchyard_controller::metrics::RegistryMetrics::register(registry));
    Discovery::new(registry_clients()).with_metrics(metrics)
}

/// Standalone's in-process "pull": every published snapshot goes straight to the proxy.
async fn apply_published(publisher: Arc<Publisher>, proxy: Arc<Proxy>) {
    let mut updates = publisher.subscribe();
    loop {
        let current = updates.borrow_and_update().clone();
        if let Some(published) = current {
            let _ = proxy.apply(published.snapshot.clone());
        }
        if updates.changed().await.is_err() {
            return;
        }
    }
}

/// The controller's admin view: ready once a snapshot is published (on every replica,
/// leader or not: each one serves snapshots).
struct ControllerView {
    publisher: Arc<Publisher>,
    book: Arc<StatusBook>,
    registries: RegistryReport,
}

impl AdminView for ControllerView {
    fn ready(&self) -> bool {
        self.publisher.current().is_some()
    }
    fn snapshot(&self) -> Option<Arc<Snapshot>> {
        self.publisher.current().map(|p| p.snapshot.clone())
    }
    fn status(&self) -> serde_json::Value {
        book_json(&self.book)
    }
    fn registries(&self) -> Vec<serde_json::Value> {
        self.registries.get()
    }
}

async fn controller(args: ControllerArgs) -> anyhow::Result<ExitCode> {
    args.dns.apply();
    use switchyard_controller::kubernetes::{self, ControllerIdentity};
    let mut registry = Registry::default();
    let publisher = Arc::new(Publisher::new());
    let book = Arc::new(StatusBook::default());
    let metrics = Arc::new(switchyard_controller::metrics::ControllerMetrics::register(&mut registry));
    let tls = &args.snapshot_tls;
    let transport = Transport::from_flags(tls.snapshot_tls_cert.as_deref(), tls.snapshot_tls_key.as_deref(), tls.snapshot_insecure_http)?;
    let server = Arc::new(SnapshotServer::new(publisher.clone(), TokenFile::open(&args.token_file)?, DEFAULT_HOLD));
    registry.register("switchyard_controller_snapshot_polls_waiting", "Long-polls held open by proxies", server.waiting.clone());
    // Listen before connecting to the API server: a port or certificate problem shows at
    // once, and the probes answer (not ready) while the first lists load.
    let snapshot_listener = listen("snapshot", &args.snapshot_listen).await?;
    let admin_listener = listen("admin", &args.admin_listen).await?;
    let metrics_listener = listen("metrics", &args.metrics_listen).await?;
    let identity =
        ControllerIdentity { lease_namespace: args.lease_namespace.clone(), identity: args.pod_name.clone().unwrap_or_else(host_name) };
    let discovery = registry_discovery(&mut registry);
    let registries = discovery.report_handle();
    let kube_controller = kubernetes::start(
        identity,
        crate::cli::compile_options(args.host_ownership, &args.link_local),
        publisher.clone(),
        book.clone(),
        metrics,
        discovery,
    )
    .await
    .context("connecting to the Kubernetes API")?;
    tokio::spawn(switchyard_controller::snapshot_server::tls::serve_on(snapshot_listener, transport, server));
    let view: Arc<dyn AdminView> = Arc::new(ControllerView { publisher, book, registries });
    serve_admin(view, registry, admin_listener, Some(metrics_listener));
    shutdown_signal().await;
    kube_controller.shutdown().await;
    Ok(ExitCode::SUCCESS)
}

fn host_name() -> String {
    std::fs::read_to_string("/etc/hostname").map(|h| h.trim().to_owned()).unwrap_or_else(|_| format!("switchyard-{}", std::process::id()))
}

/// Proxy mode's admin view. A proxy receives the snapshot, not the resources' statuses
/// (those are on the objects and the controller's `/status`), so its `/status` reports the
/// proxy's own state: the live snapshot version and when it was applied, the controller it
/// pulls from and how long ago that controller last answered a pull.
struct ProxyView {
    proxy: Arc<Proxy>,
    controller: String,
    /// A healthy long-poll is answered at least this often (the controller's hold plus
    /// `--pull-stall-timeout`): a pull age beyond it means the pulls are failing.
    pull_deadline: std::time::Duration,
}

impl AdminView for ProxyView {
    fn ready(&self) -> bool {
        self.proxy.version().is_some()
    }
    fn snapshot(&self) -> Option<Arc<Snapshot>> {
        self.proxy.runtime().map(|rt| rt.snapshot.clone())
    }
    fn endpoint_health(&self) -> Vec<serde_json::Value> {
        self.proxy.endpoint_health()
    }
    fn status(&self) -> serde_json::Value {
        let live = self.proxy.version();
        let applied_at = self.proxy.applied_at();
        let unix = |at: std::time::SystemTime| at.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let age = Some(self.proxy.metrics.pull_age().as_secs());
        serde_json::json!({
            "mode": "proxy",
            "resources": [],
            "note": "a proxy receives the snapshot, not the resources' conditions: see them on the objects (kubectl get ... -o yaml) or on the controller's /status",
            "snapshot": {
                "version": live,
                "appliedAtUnixSeconds": applied_at.map(unix),
                "appliedSecondsAgo": applied_at.and_then(|at| at.elapsed().ok()).map(|d| d.as_secs()),
            },
            "controller": {
                "url": self.controller,
                "lastAnsweredPullSecondsAgo": age,
                "expectAnswerWithinSeconds": self.pull_deadline.as_secs(),
                "pullsFailing": age.is_some_and(|age| age > self.pull_deadline.as_secs()),
            },
        })
    }
}

async fn proxy(args: ProxyArgs) -> anyhow::Result<ExitCode> {
    args.dns.apply();
    let mut registry = Registry::default();
    let token = TokenFile::open(&args.token_file)?;
    let ca = match &args.controller_ca {
        Some(path) => Some(std::fs::read_to_string(path).with_context(|| format!("reading --controller-ca {}", path.display()))?),
        None => None,
    };
    let controller = switchyard_proxy::pull::ControllerUrl::parse(&args.controller, ca.as_deref(), args.controller_insecure_http)
        .map_err(anyhow::Error::msg)?;
    if args.controller_insecure_http {
        tracing::warn!(controller = %controller.base, "--controller-insecure-http: snapshots may travel in plain text; local development only");
    }
    let proxy_listeners = listen_workers(&args.listen, args.workers).await?;
    let https_listeners = listen_https(&args.https, proxy_listeners.len()).await?;
    let admin_listener = listen("admin", &args.admin_listen).await?;
    let metrics_listener = listen("metrics", &args.metrics_listen).await?;
    let mut own = vec![proxy_listeners[0].local_addr()?, admin_listener.local_addr()?, metrics_listener.local_addr()?];
    own.extend(https_listeners.as_ref().map(|l| l[0].local_addr()).transpose()?);
    let (tracing, exporter) = args.tracing.start(&mut registry)?;
    let proxy = Arc::new(
        Proxy::new(&mut registry, args.egress.config(own))
            .with_nonce_store(nonce_store(&args.nonces)?)
            .with_access_log(args.access_log.format())
            .with_connection_limits(args.client_limits.limits())
            .with_tracing(tracing)
            .with_websocket_idle_timeout(args.websocket_idle_timeout)
            .with_default_certificate(args.https.default_certificate.clone())
            .with_https_redirect_port(redirect_port(&args.https, https_listeners.as_deref())?),
    );
    if let Some(dir) = &args.cache_dir {
        switchyard_proxy::pull::load_cache(&proxy, dir).await;
    }
    let token = Box::new(move || token.current());
    let controller_url = controller.base.clone();
    let config =
        switchyard_proxy::pull::PullConfig { controller, token, cache_dir: args.cache_dir.clone(), stall_timeout: args.pull_stall_timeout };
    tokio::spawn(switchyard_proxy::pull::run(proxy.clone(), config));
    let registry = Arc::new(registry);
    let view: Arc<dyn AdminView> =
        Arc::new(ProxyView { proxy: proxy.clone(), controller: controller_url, pull_deadline: DEFAULT_HOLD + args.pull_stall_timeout });
    serve_admin_shared(view, registry, admin_listener, Some(metrics_listener));
    let code = serve_until_signal(proxy_listeners, https_listeners, proxy).await;
    flush_spans(exporter).await;
    code
}

/// The nonce store the flags name; a Redis one is pinged once so an unreachable server
/// is in the log at start (signed requests fail closed meanwhile; the proxy still starts,
/// since Redis may come up after it).
fn nonce_store(args: &crate::cli::NonceArgs) -> anyhow::Result<switchyard_proxy::auth::nonce::NonceStore> {
    let store = args.store()?;
    tracing::info!(store = %store.describe(), "Signature nonces");
    if let switchyard_proxy::auth::nonce::NonceStore::Redis(client) = &store {
        let client = client.clone();
        tokio::spawn(async move {
            match client.ping().await {
                Ok(()) => tracing::info!(redis = client.addr(), "nonce store answers"),
                Err(e) => tracing::warn!(error = %e, "nonce store does not answer: Signature routes answer 503 A503NS until it does"),
            }
        });
    }
    Ok(store)
}

/// Runs the proxy workers until SIGINT/SIGTERM, then lets them drain.
async fn serve_until_signal(
    listeners: Vec<std::net::TcpListener>,
    https_listeners: Option<Vec<std::net::TcpListener>>,
    proxy: Arc<Proxy>,
) -> anyhow::Result<ExitCode> {
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let workers = switchyard_proxy::serve_workers(listeners, https_listeners, proxy, stopped).context("starting proxy workers")?;
    shutdown_signal().await;
    let _ = stop.send(true);
    tokio::task::spawn_blocking(move || workers.into_iter().for_each(|w| w.join().unwrap_or_default()))
        .await
        .context("joining proxy workers")?;
    Ok(ExitCode::SUCCESS)
}

/// Spans still queued are exported before the process exits (workers are done by now).
async fn flush_spans(exporter: Option<Arc<switchyard_telemetry::OtlpSink>>) {
    if let Some(exporter) = exporter {
        exporter.flush(std::time::Duration::from_secs(3)).await;
    }
}

/// One listener per proxy worker, sharing the address; announced once.
async fn listen_workers(addr: &str, workers: Option<usize>) -> anyhow::Result<Vec<std::net::TcpListener>> {
    let count = workers.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())).max(1);
    let listeners = switchyard_http::bind_shared(addr, count).await?;
    announce("proxy", listeners[0].local_addr()?);
    Ok(listeners)
}

/// With `--https-listen`, one HTTPS listener per proxy worker, sharing the address;
/// announced once as role `https`.
async fn listen_https(args: &crate::cli::HttpsArgs, workers: usize) -> anyhow::Result<Option<Vec<std::net::TcpListener>>> {
    let Some(addr) = &args.https_listen else {
        if args.default_certificate.is_some() {
            tracing::warn!("--default-certificate has no effect without --https-listen");
        }
        return Ok(None);
    };
    let listeners = switchyard_http::bind_shared(addr, workers).await?;
    announce("https", listeners[0].local_addr()?);
    Ok(Some(listeners))
}

/// The port plain HTTP requests for HTTPS-only routes are redirected to.
fn redirect_port(args: &crate::cli::HttpsArgs, listeners: Option<&[std::net::TcpListener]>) -> anyhow::Result<u16> {
    if let Some(port) = args.https_redirect_port {
        return Ok(port);
    }
    Ok(match listeners.and_then(|l| l.first()) {
        Some(listener) => listener.local_addr()?.port(),
        None => 443,
    })
}

/// `switchyard: listening role=ROLE addr=ADDR` on stderr, a fixed form that scripts and
/// tests read; with `--log-format json` an event with `role` and `addr` fields.
fn announce(role: &str, addr: std::net::SocketAddr) {
    if switchyard_controller::status::json_logs() {
        switchyard_controller::status::print_json_line("listening", serde_json::json!({"role": role, "addr": addr.to_string()}));
    } else {
        eprintln!("switchyard: listening role={role} addr={addr}");
    }
}

/// Binds and announces the address on stderr in a fixed form that scripts and tests read.
async fn listen(role: &str, addr: &str) -> anyhow::Result<tokio::net::TcpListener> {
    let listener = switchyard_http::bind(addr).await?;
    announce(role, listener.local_addr()?);
    Ok(listener)
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("installing SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down: draining connections");
}
