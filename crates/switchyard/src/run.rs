//! What each subcommand does: wiring only; the work lives in the library crates.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use bytes::Bytes;
use prometheus_client::registry::Registry;
use switchyard_controller::publisher::Publisher;
use switchyard_controller::snapshot_server::{DEFAULT_HOLD, SnapshotServer};
use switchyard_controller::status::StatusBook;
use switchyard_proxy::Proxy;
use switchyard_proxy::admin::{self, AdminView};

use crate::cli::{Cli, Command, ControllerArgs, ProxyArgs, StandaloneArgs, ValidateArgs, VpcCommand, VpcTestArgs};

pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Crds => crds(),
        Command::Validate(args) => validate(&args),
        Command::Standalone(args) => runtime()?.block_on(standalone(args)),
        Command::Proxy(args) => runtime()?.block_on(proxy(args)),
        Command::Controller(args) => runtime()?.block_on(controller(args)),
        Command::Vpc { command: VpcCommand::Test(args) } => runtime()?.block_on(vpc_test(args)),
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the async runtime")
}

fn crds() -> anyhow::Result<ExitCode> {
    for crd in switchyard_api::all_crds() {
        print!("---\n{}", switchyard_api::render_crd(&crd));
    }
    Ok(ExitCode::SUCCESS)
}

/// Compiles the given files together and prints every condition.
fn validate(args: &ValidateArgs) -> anyhow::Result<ExitCode> {
    let mut resources = switchyard_compile::Resources::default();
    for file in &args.files {
        let text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
        switchyard_compile::manifest::add_yaml(&mut resources, &file.display().to_string(), &text);
    }
    let compiled = switchyard_compile::compile(&resources);
    let mut any_false = false;
    for status in &compiled.statuses {
        for c in &status.conditions {
            any_false |= !c.status;
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
            let result = vpc_test_in_folder(dir, &namespace, &args.name).await?;
            (namespace, result)
        }
        None => switchyard_controller::kubernetes::vpc_test::run(args.namespace.as_deref(), &args.name, args.timeout).await?,
    };
    println!("{}", connectivity::report_line(&namespace, &args.name, &result));
    Ok(if result.connected { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

async fn vpc_test_in_folder(dir: &Path, namespace: &str, name: &str) -> anyhow::Result<switchyard_compile::Connectivity> {
    use switchyard_controller::connectivity;
    let resources = switchyard_controller::folder::FolderSource::new(dir).scan().unwrap_or_default();
    let wanted = |a: &&switchyard_api::VpcAuthorization| {
        a.metadata.name.as_deref() == Some(name) && a.metadata.namespace.as_deref().unwrap_or("default") == namespace
    };
    let Some(authorization) = resources.vpc_authorizations.iter().find(wanted) else {
        bail!("no VpcAuthorization {namespace}/{name} in {}", dir.display());
    };
    let Some(plan) = connectivity::plan(authorization, &resources) else {
        bail!("VpcAuthorization {namespace}/{name} has no valid target to test");
    };
    Ok(connectivity::run(&plan).await)
}

/// Standalone's admin view: the proxy's readiness, the published snapshot, the statuses.
struct StandaloneView {
    proxy: Arc<Proxy>,
    publisher: Arc<Publisher>,
    book: Arc<StatusBook>,
}

impl AdminView for StandaloneView {
    fn ready(&self) -> bool {
        self.proxy.version().is_some()
    }
    fn config_dump(&self) -> Bytes {
        let snapshot = self.publisher.current().map_or_else(|| Bytes::from_static(b"null"), |p| p.json.clone());
        with_endpoint_health(snapshot, self.proxy.endpoint_health())
    }
    fn status(&self) -> Bytes {
        Bytes::from(self.book.to_json())
    }
}

/// The snapshot JSON plus `endpointHealth` when any backend checks health: the live
/// state next to the configuration it came from.
fn with_endpoint_health(snapshot: Bytes, health: Vec<serde_json::Value>) -> Bytes {
    if health.is_empty() {
        return snapshot;
    }
    match serde_json::from_slice::<serde_json::Value>(&snapshot) {
        Ok(serde_json::Value::Object(mut dump)) => {
            dump.insert("endpointHealth".into(), serde_json::Value::Array(health));
            Bytes::from(serde_json::to_vec(&dump).expect("JSON values serialize"))
        }
        _ => snapshot,
    }
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
    let admin_listener = listen("admin", &args.admin_listen).await?;
    let mut own = vec![proxy_listeners[0].local_addr()?, admin_listener.local_addr()?];
    if let (Some(addr), Some(token_file)) = (&args.snapshot_listen, &args.token_file) {
        let server = Arc::new(SnapshotServer::new(publisher.clone(), read_token(token_file)?, DEFAULT_HOLD));
        registry.register("switchyard_controller_snapshot_polls_waiting", "Long-polls held open by proxies", server.waiting.clone());
        let listener = listen("snapshot", addr).await?;
        own.push(listener.local_addr()?);
        tokio::spawn(serve_snapshots(listener, server));
    }
    let proxy = Arc::new(Proxy::new(&mut registry, args.egress.config(own)));
    tokio::spawn(switchyard_controller::watch_folder(args.config_dir.clone(), publisher.clone(), book.clone()));
    tokio::spawn(apply_published(publisher.clone(), proxy.clone()));
    let view: Arc<dyn AdminView> = Arc::new(StandaloneView { proxy: proxy.clone(), publisher, book });
    tokio::spawn(switchyard_http::serve(admin_listener, admin::handler(view, Arc::new(registry)), std::future::pending()));
    serve_until_signal(proxy_listeners, proxy).await
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

async fn serve_snapshots(listener: tokio::net::TcpListener, server: Arc<SnapshotServer>) {
    let handler = move |request, _client| {
        let server = server.clone();
        async move { server.respond(request).await }
    };
    switchyard_http::serve(listener, handler, std::future::pending()).await;
}

/// The controller's admin view: ready once a snapshot is published (on every replica,
/// leader or not: each one serves snapshots).
struct ControllerView {
    publisher: Arc<Publisher>,
    book: Arc<StatusBook>,
}

impl AdminView for ControllerView {
    fn ready(&self) -> bool {
        self.publisher.current().is_some()
    }
    fn config_dump(&self) -> Bytes {
        self.publisher.current().map_or_else(|| Bytes::from_static(b"null"), |p| p.json.clone())
    }
    fn status(&self) -> Bytes {
        Bytes::from(self.book.to_json())
    }
}

async fn controller(args: ControllerArgs) -> anyhow::Result<ExitCode> {
    args.dns.apply();
    use switchyard_controller::kubernetes::{self, ControllerIdentity};
    let mut registry = Registry::default();
    let publisher = Arc::new(Publisher::new());
    let book = Arc::new(StatusBook::default());
    let metrics = Arc::new(switchyard_controller::metrics::ControllerMetrics::register(&mut registry));
    let server = Arc::new(SnapshotServer::new(publisher.clone(), read_token(&args.token_file)?, DEFAULT_HOLD));
    registry.register("switchyard_controller_snapshot_polls_waiting", "Long-polls held open by proxies", server.waiting.clone());
    let identity =
        ControllerIdentity { lease_namespace: args.lease_namespace.clone(), identity: args.pod_name.clone().unwrap_or_else(host_name) };
    let kube_controller =
        kubernetes::start(identity, publisher.clone(), book.clone(), metrics).await.context("connecting to the Kubernetes API")?;
    let snapshot_listener = listen("snapshot", &args.snapshot_listen).await?;
    let admin_listener = listen("admin", &args.admin_listen).await?;
    tokio::spawn(serve_snapshots(snapshot_listener, server));
    let view: Arc<dyn AdminView> = Arc::new(ControllerView { publisher, book });
    tokio::spawn(switchyard_http::serve(admin_listener, admin::handler(view, Arc::new(registry)), std::future::pending()));
    shutdown_signal().await;
    kube_controller.shutdown().await;
    Ok(ExitCode::SUCCESS)
}

fn host_name() -> String {
    std::fs::read_to_string("/etc/hostname").map(|h| h.trim().to_owned()).unwrap_or_else(|_| format!("switchyard-{}", std::process::id()))
}

/// Proxy mode's admin view.
struct ProxyView {
    proxy: Arc<Proxy>,
}

impl AdminView for ProxyView {
    fn ready(&self) -> bool {
        self.proxy.version().is_some()
    }
    fn config_dump(&self) -> Bytes {
        let runtime = self.proxy.runtime();
        let snapshot = runtime.as_ref().map(|rt| &*rt.snapshot);
        with_endpoint_health(Bytes::from(serde_json::to_vec(&snapshot).expect("snapshots serialize")), self.proxy.endpoint_health())
    }
    fn status(&self) -> Bytes {
        let body = serde_json::json!({
            "resources": [],
            "note": "resource conditions live on the controller; this proxy reports its snapshot version",
            "snapshotVersion": self.proxy.version(),
        });
        Bytes::from(body.to_string())
    }
}

async fn proxy(args: ProxyArgs) -> anyhow::Result<ExitCode> {
    args.dns.apply();
    let mut registry = Registry::default();
    let token = read_token(&args.token_file)?;
    let proxy_listeners = listen_workers(&args.listen, args.workers).await?;
    let admin_listener = listen("admin", &args.admin_listen).await?;
    let own = vec![proxy_listeners[0].local_addr()?, admin_listener.local_addr()?];
    let proxy = Arc::new(Proxy::new(&mut registry, args.egress.config(own)));
    if let Some(dir) = &args.cache_dir {
        switchyard_proxy::pull::load_cache(&proxy, dir).await;
    }
    let config = switchyard_proxy::pull::PullConfig { controller: args.controller.clone(), token, cache_dir: args.cache_dir.clone() };
    tokio::spawn(switchyard_proxy::pull::run(proxy.clone(), config));
    let view: Arc<dyn AdminView> = Arc::new(ProxyView { proxy: proxy.clone() });
    tokio::spawn(switchyard_http::serve(admin_listener, admin::handler(view, Arc::new(registry)), std::future::pending()));
    serve_until_signal(proxy_listeners, proxy).await
}

/// Runs the proxy workers until SIGINT/SIGTERM, then lets them drain.
async fn serve_until_signal(listeners: Vec<std::net::TcpListener>, proxy: Arc<Proxy>) -> anyhow::Result<ExitCode> {
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let workers = switchyard_proxy::serve_workers(listeners, proxy, stopped).context("starting proxy workers")?;
    shutdown_signal().await;
    let _ = stop.send(true);
    tokio::task::spawn_blocking(move || workers.into_iter().for_each(|w| w.join().unwrap_or_default()))
        .await
        .context("joining proxy workers")?;
    Ok(ExitCode::SUCCESS)
}

/// One listener per proxy worker, sharing the address; announced once.
async fn listen_workers(addr: &str, workers: Option<usize>) -> anyhow::Result<Vec<std::net::TcpListener>> {
    let count = workers.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())).max(1);
    let listeners = switchyard_http::bind_shared(addr, count).await?;
    eprintln!("switchyard: listening role=proxy addr={}", listeners[0].local_addr()?);
    Ok(listeners)
}

/// Binds and announces the address on stderr in a fixed form that scripts and tests read.
async fn listen(role: &str, addr: &str) -> anyhow::Result<tokio::net::TcpListener> {
    let listener = switchyard_http::bind(addr).await?;
    eprintln!("switchyard: listening role={role} addr={}", listener.local_addr()?);
    Ok(listener)
}

fn read_token(path: &Path) -> anyhow::Result<String> {
    let token = std::fs::read_to_string(path).with_context(|| format!("reading the token file {}", path.display()))?;
    let token = token.trim().to_owned();
    if token.is_empty() {
        bail!("the token file {} is empty", path.display());
    }
    Ok(token)
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
