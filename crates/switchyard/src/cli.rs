//! Command line. Every flag can also come from a `SWITCHYARD_*` environment variable.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(name = "switchyard", version, about = "Kubernetes-native API gateway")]
pub struct Cli {
    /// Process logs on stderr: `text`, or `json` (one object per line, the fields of each
    /// event as keys). One format per process.
    #[arg(long, global = true, env = "SWITCHYARD_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

/// `--log-format`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// `--access-log`: one line per request on stdout.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccessLogArg {
    Off,
    Json,
    Text,
}

impl AccessLogArg {
    pub fn format(self) -> switchyard_proxy::access_log::AccessLogFormat {
        use switchyard_proxy::access_log::AccessLogFormat;
        match self {
            Self::Off => AccessLogFormat::Off,
            Self::Json => AccessLogFormat::Json,
            Self::Text => AccessLogFormat::Text,
        }
    }
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Controller and proxy in one process, reading resources from a folder of YAML.
    Standalone(StandaloneArgs),
    /// Data plane: pulls snapshots from a controller and serves traffic.
    Proxy(ProxyArgs),
    /// Kubernetes controller: watches the custom resources and serves snapshots.
    Controller(ControllerArgs),
    /// Prints the CustomResourceDefinitions as YAML.
    Crds,
    /// Checks manifests offline and prints every condition the controller would set.
    /// Exits 1 when any condition is False.
    Validate(ValidateArgs),
    /// VpcAuthorization tools.
    Vpc {
        #[command(subcommand)]
        command: VpcCommand,
    },
}

#[derive(Subcommand, Debug)]
pub enum VpcCommand {
    /// Runs a connectivity test of one VpcAuthorization now and prints the result
    /// (exit 0 when connected, 1 when not).
    ///
    /// With --config-dir the test runs here, on the standalone folder's resources. Without it
    /// the test runs in the cluster of the current kubeconfig (or the pod's credentials): only
    /// the controller reaches the private network, so the command sets the
    /// `switchyard.dev/test-connectivity` annotation to a fresh value and waits until the
    /// status answers it (`status.connectivityTestRequest` names the request the `Connected`
    /// condition answers). That needs get and patch on vpcauthorizations.switchyard.dev.
    Test(VpcTestArgs),
}

#[derive(Args, Debug)]
pub struct VpcTestArgs {
    /// The VpcAuthorization's name.
    pub name: String,
    /// Its namespace (default: the kubeconfig's namespace in a cluster, `default` with --config-dir).
    #[arg(long, short = 'n')]
    pub namespace: Option<String>,
    /// Folder of resource YAML files (as for standalone): test from here instead of in the cluster.
    #[arg(long, env = "SWITCHYARD_CONFIG_DIR")]
    pub config_dir: Option<PathBuf>,
    /// In a cluster: how long to wait for the controller's answer.
    #[arg(long, default_value = "30s", value_parser = switchyard_compile::units::parse_duration)]
    pub timeout: Duration,
    /// With --config-dir (in a cluster the controller's own flag decides).
    #[command(flatten)]
    pub link_local: LinkLocalArgs,
}

/// TLS termination for client traffic.
#[derive(Args, Debug, Clone)]
pub struct HttpsArgs {
    /// HTTPS listener (TLS 1.3/1.2, ALPN h2 and http/1.1): certificates are the
    /// `kubernetes.io/tls` Secrets labelled `switchyard.dev/certificate: "true"`, picked by SNI.
    #[arg(long, env = "SWITCHYARD_HTTPS_LISTEN")]
    pub https_listen: Option<String>,
    /// `NAMESPACE/NAME` of the certificate Secret answering handshakes whose name no
    /// certificate covers (or that send no SNI); without it such handshakes fail.
    #[arg(long, env = "SWITCHYARD_DEFAULT_CERTIFICATE", value_parser = namespaced_name)]
    pub default_certificate: Option<String>,
    /// The port the 308 redirects of HTTPS-only routes name, when clients reach the HTTPS
    /// listener on another port than it listens on (a Service 443 -> 8443). Default: the
    /// --https-listen port, else 443 (left out of the URL).
    #[arg(long, env = "SWITCHYARD_HTTPS_REDIRECT_PORT")]
    pub https_redirect_port: Option<u16>,
}

fn namespaced_name(value: &str) -> Result<String, String> {
    match value.split_once('/') {
        Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => Ok(value.to_owned()),
        _ => Err(format!("{value:?} is not NAMESPACE/NAME")),
    }
}

#[derive(Args, Debug)]
pub struct StandaloneArgs {
    /// Folder of resource YAML files; reloaded on change.
    #[arg(long, env = "SWITCHYARD_CONFIG_DIR")]
    pub config_dir: PathBuf,
    /// Whether hosts belong to the namespace that named them first (`namespace`) or any
    /// namespace may serve any host (`shared`: one folder is one tenant).
    #[arg(long, env = "SWITCHYARD_HOST_OWNERSHIP", value_enum, default_value = "shared")]
    pub host_ownership: HostOwnershipArg,
    #[command(flatten)]
    pub link_local: LinkLocalArgs,
    /// Proxy listener.
    #[arg(long, env = "SWITCHYARD_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: String,
    #[command(flatten)]
    pub https: HttpsArgs,
    /// Proxy worker threads (default: one per CPU).
    #[arg(long, env = "SWITCHYARD_WORKERS")]
    pub workers: Option<usize>,
    /// Access log on stdout, one line per request: `json`, `text` (key=value) or `off`.
    #[arg(long, env = "SWITCHYARD_ACCESS_LOG", value_enum, default_value = "json")]
    pub access_log: AccessLogArg,
    /// A WebSocket tunnel that passes no byte either way for this long is closed.
    #[arg(long, env = "SWITCHYARD_WEBSOCKET_IDLE_TIMEOUT", default_value = "5m", value_parser = switchyard_compile::units::parse_duration)]
    pub websocket_idle_timeout: Duration,
    #[command(flatten)]
    pub client_limits: ClientLimitArgs,
    #[command(flatten)]
    pub egress: EgressArgs,
    #[command(flatten)]
    pub dns: DnsArgs,
    #[command(flatten)]
    pub nonces: NonceArgs,
    #[command(flatten)]
    pub tracing: TracingArgs,
    /// Admin listener (/healthz /readyz /metrics /config_dump /status). Keep it on
    /// loopback: /config_dump shows the whole routing configuration (secrets redacted).
    #[arg(long, env = "SWITCHYARD_ADMIN_LISTEN", default_value = "127.0.0.1:9901")]
    pub admin_listen: String,
    /// Also serve /metrics /healthz /readyz (and nothing else) on this address.
    #[arg(long, env = "SWITCHYARD_METRICS_LISTEN")]
    pub metrics_listen: Option<String>,
    /// Also serve snapshots to remote proxies on this address (needs --token-file, and
    /// --snapshot-tls-cert/--snapshot-tls-key or --snapshot-insecure-http).
    #[arg(long, env = "SWITCHYARD_SNAPSHOT_LISTEN", requires = "token_file")]
    pub snapshot_listen: Option<String>,
    /// File holding the bearer token proxies present; re-read when it changes.
    #[arg(long, env = "SWITCHYARD_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    #[command(flatten)]
    pub snapshot_tls: SnapshotTlsArgs,
}

#[derive(Args, Debug)]
pub struct ProxyArgs {
    /// Controller snapshot URL, e.g. https://switchyard-controller:18000.
    #[arg(long, env = "SWITCHYARD_CONTROLLER")]
    pub controller: String,
    /// PEM CA certificate(s) the controller's certificate must chain to (only these; without
    /// it, the system's trusted roots).
    #[arg(long, env = "SWITCHYARD_CONTROLLER_CA")]
    pub controller_ca: Option<PathBuf>,
    /// Allow an http:// --controller URL: the snapshot (app credentials included) then
    /// travels in plain text. Local development only.
    #[arg(long, env = "SWITCHYARD_CONTROLLER_INSECURE_HTTP")]
    pub controller_insecure_http: bool,
    /// File holding the bearer token; re-read when it changes.
    #[arg(long, env = "SWITCHYARD_TOKEN_FILE")]
    pub token_file: PathBuf,
    /// Proxy listener: the address clients' traffic arrives on.
    #[arg(long, env = "SWITCHYARD_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: String,
    #[command(flatten)]
    pub https: HttpsArgs,
    /// Proxy worker threads (default: one per CPU).
    #[arg(long, env = "SWITCHYARD_WORKERS")]
    pub workers: Option<usize>,
    /// Access log on stdout, one line per request: `json`, `text` (key=value) or `off`.
    #[arg(long, env = "SWITCHYARD_ACCESS_LOG", value_enum, default_value = "json")]
    pub access_log: AccessLogArg,
    /// A WebSocket tunnel that passes no byte either way for this long is closed.
    #[arg(long, env = "SWITCHYARD_WEBSOCKET_IDLE_TIMEOUT", default_value = "5m", value_parser = switchyard_compile::units::parse_duration)]
    pub websocket_idle_timeout: Duration,
    #[command(flatten)]
    pub client_limits: ClientLimitArgs,
    #[command(flatten)]
    pub egress: EgressArgs,
    #[command(flatten)]
    pub dns: DnsArgs,
    #[command(flatten)]
    pub nonces: NonceArgs,
    #[command(flatten)]
    pub tracing: TracingArgs,
    /// Admin listener (/healthz /readyz /metrics /config_dump /status); loopback by
    /// default (reach it with kubectl port-forward).
    #[arg(long, env = "SWITCHYARD_ADMIN_LISTEN", default_value = "127.0.0.1:9901")]
    pub admin_listen: String,
    /// Metrics listener: /metrics /healthz /readyz only (what a Service exposes).
    #[arg(long, env = "SWITCHYARD_METRICS_LISTEN", default_value = "0.0.0.0:9101")]
    pub metrics_listen: String,
    /// Where the last good snapshot is kept for restarts while the controller is down.
    #[arg(long, env = "SWITCHYARD_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,
    /// The longest a snapshot pull may stall (connect, TLS, the answer beyond the
    /// controller's 30 s long-poll hold, the body) before the proxy logs it and reconnects.
    #[arg(long, env = "SWITCHYARD_PULL_STALL_TIMEOUT", default_value = "15s", value_parser = switchyard_compile::units::parse_duration)]
    pub pull_stall_timeout: Duration,
}

#[derive(Args, Debug)]
pub struct ControllerArgs {
    /// Snapshot listener (HTTPS with --snapshot-tls-cert/--snapshot-tls-key).
    #[arg(long, env = "SWITCHYARD_SNAPSHOT_LISTEN", default_value = "0.0.0.0:18000")]
    pub snapshot_listen: String,
    /// Admin listener (/healthz /readyz /metrics /config_dump /status); loopback by
    /// default (reach it with kubectl port-forward).
    #[arg(long, env = "SWITCHYARD_ADMIN_LISTEN", default_value = "127.0.0.1:9902")]
    pub admin_listen: String,
    /// Metrics listener: /metrics /healthz /readyz only (what a Service exposes).
    #[arg(long, env = "SWITCHYARD_METRICS_LISTEN", default_value = "0.0.0.0:9102")]
    pub metrics_listen: String,
    /// File holding the bearer token proxies present; re-read when it changes.
    #[arg(long, env = "SWITCHYARD_TOKEN_FILE")]
    pub token_file: PathBuf,
    #[command(flatten)]
    pub snapshot_tls: SnapshotTlsArgs,
    /// Namespace of the leader-election Lease (default: the pod's namespace).
    #[arg(long, env = "SWITCHYARD_LEASE_NAMESPACE")]
    pub lease_namespace: Option<String>,
    /// This replica's identity in the Lease (default: the host name).
    #[arg(long, env = "SWITCHYARD_POD_NAME")]
    pub pod_name: Option<String>,
    /// Connectivity tests resolve host targets here (as the proxies must, to agree).
    #[command(flatten)]
    pub dns: DnsArgs,
    /// Whether hosts belong to the namespace whose ApiRoute named them first (`namespace`)
    /// or any namespace may serve any host (`shared`).
    #[arg(long, env = "SWITCHYARD_HOST_OWNERSHIP", value_enum, default_value = "namespace")]
    pub host_ownership: HostOwnershipArg,
    #[command(flatten)]
    pub link_local: LinkLocalArgs,
}

#[derive(Args, Debug)]
pub struct ValidateArgs {
    /// Manifest files to check together: a file, a folder (every *.yaml, *.yml, *.json
    /// under it) or `-` for standard input; repeatable.
    #[arg(short = 'f', long = "filename", required = true)]
    pub files: Vec<PathBuf>,
    /// Host ownership to check against, as the gateway runs (`namespace` for a controller).
    #[arg(long, env = "SWITCHYARD_HOST_OWNERSHIP", value_enum, default_value = "shared")]
    pub host_ownership: HostOwnershipArg,
    #[command(flatten)]
    pub link_local: LinkLocalArgs,
}

/// `--host-ownership`: who may serve a host.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostOwnershipArg {
    /// Any namespace's routes may name any host.
    Shared,
    /// A host belongs to the namespace of the oldest accepted ApiRoute naming it.
    Namespace,
}

/// Whether a VpcAuthorization may grant link-local addresses.
#[derive(Args, Debug)]
pub struct LinkLocalArgs {
    /// Let VpcAuthorizations grant link-local addresses (169.254.0.0/16, fe80::/10, cloud
    /// metadata such as 169.254.169.254): without it such an authorization is
    /// Accepted=False (LinkLocalNotAllowed), and connectivity tests neither dial nor verify
    /// link-local addresses a host target resolves to.
    #[arg(long, env = "SWITCHYARD_ALLOW_LINK_LOCAL_GRANTS")]
    pub allow_link_local_grants: bool,
}

/// The gateway-wide options compile reads.
pub fn compile_options(host_ownership: HostOwnershipArg, link_local: &LinkLocalArgs) -> switchyard_compile::CompileOptions {
    switchyard_compile::CompileOptions {
        host_ownership: match host_ownership {
            HostOwnershipArg::Shared => switchyard_compile::HostOwnership::Shared,
            HostOwnershipArg::Namespace => switchyard_compile::HostOwnership::PerNamespace,
        },
        allow_link_local_grants: link_local.allow_link_local_grants,
    }
}

/// What the proxy listener tolerates from its clients (docs/reliability.md).
#[derive(Args, Debug)]
pub struct ClientLimitArgs {
    /// The longest a client may take to send a request head, counted from accept and,
    /// on a kept-alive connection, from the end of the previous response: a slowloris
    /// client is cut off, and a kept-alive connection idle this long is closed.
    #[arg(long, env = "SWITCHYARD_HEADER_READ_TIMEOUT", default_value = "30s", value_parser = switchyard_compile::units::parse_duration)]
    pub header_read_timeout: Duration,
    /// The most client connections one worker keeps open (0: no cap). One more is
    /// answered 503 with `X-Ca-Error-Code: A503CL` and closed.
    #[arg(long, env = "SWITCHYARD_MAX_CONNECTIONS_PER_WORKER", default_value_t = 16384)]
    pub max_connections_per_worker: usize,
}

impl ClientLimitArgs {
    pub fn limits(&self) -> switchyard_http::ConnectionLimits {
        switchyard_http::ConnectionLimits {
            header_read_timeout: self.header_read_timeout,
            max_connections_per_worker: self.max_connections_per_worker,
            refusal: None,
        }
    }
}

/// The gateway-wide egress policy. Link-local addresses are always refused unless a
/// VpcAuthorization grants them; these flags add to that.
#[derive(Args, Debug)]
pub struct EgressArgs {
    /// Refuse to dial loopback addresses (set in Kubernetes, where the proxy's own
    /// ports live there; standalone keeps loopback for local development).
    #[arg(long, env = "SWITCHYARD_EGRESS_DENY_LOOPBACK")]
    pub egress_deny_loopback: bool,
    /// Also refuse this range (`10.96.0.0/12`); repeatable, or comma-separated in the env var.
    #[arg(long = "egress-deny", env = "SWITCHYARD_EGRESS_DENY", value_delimiter = ',')]
    pub egress_deny: Vec<switchyard_proxy::egress::IpRange>,
}

/// How the snapshot listener is secured: TLS, or plain HTTP by explicit choice.
#[derive(Args, Debug)]
pub struct SnapshotTlsArgs {
    /// PEM certificate chain of the snapshot listener (re-read when it changes).
    #[arg(long, env = "SWITCHYARD_SNAPSHOT_TLS_CERT", requires = "snapshot_tls_key")]
    pub snapshot_tls_cert: Option<PathBuf>,
    /// PEM private key of that certificate.
    #[arg(long, env = "SWITCHYARD_SNAPSHOT_TLS_KEY", requires = "snapshot_tls_cert")]
    pub snapshot_tls_key: Option<PathBuf>,
    /// Serve snapshots over plain HTTP (they hold every app credential). Local development only.
    #[arg(long, env = "SWITCHYARD_SNAPSHOT_INSECURE_HTTP", conflicts_with = "snapshot_tls_cert")]
    pub snapshot_insecure_http: bool,
}

/// Where Signature auth remembers nonces (replay protection).
#[derive(Args, Debug)]
pub struct NonceArgs {
    /// `memory` (this process only) or `redis://HOST:PORT`: one Redis shared by every proxy
    /// replica, so a nonce replayed to another replica is refused too. Signed requests fail
    /// closed (503 A503NS) while Redis does not answer within 500 ms.
    #[arg(long, env = "SWITCHYARD_NONCE_STORE", default_value = "memory")]
    pub nonce_store: String,
    /// With `memory`: the most unexpired nonces held (about 26 bytes each); when full,
    /// signed requests fail closed (503 A503NF) until some expire.
    #[arg(long, env = "SWITCHYARD_NONCE_CAPACITY", default_value_t = switchyard_proxy::auth::nonce::DEFAULT_MEMORY_CAPACITY)]
    pub nonce_capacity: usize,
}

impl NonceArgs {
    /// The store the flags name.
    pub fn store(&self) -> anyhow::Result<switchyard_proxy::auth::nonce::NonceStore> {
        use switchyard_proxy::auth::nonce::NonceStore;
        if self.nonce_store == "memory" {
            anyhow::ensure!(self.nonce_capacity > 0, "--nonce-capacity must be at least 1");
            return Ok(NonceStore::memory(self.nonce_capacity));
        }
        let client =
            switchyard_redis::Client::from_url(&self.nonce_store).map_err(|e| anyhow::anyhow!("--nonce-store: {e} (or `memory`)"))?;
        Ok(NonceStore::Redis(client))
    }
}

/// Where host names without a DnsRecord are resolved.
#[derive(Args, Debug)]
pub struct DnsArgs {
    /// Resolve at this DNS server (`10.96.0.10:53`) instead of the system's
    /// (/etc/resolv.conf); repeatable, or comma-separated in the env var.
    #[arg(long = "dns-server", env = "SWITCHYARD_DNS_SERVER", value_delimiter = ',')]
    pub dns_servers: Vec<std::net::SocketAddr>,
}

impl DnsArgs {
    /// Applies the choice process-wide; call before anything resolves.
    pub fn apply(&self) {
        if !self.dns_servers.is_empty() {
            switchyard_http::resolver::use_name_servers(self.dns_servers.clone());
        }
    }
}

impl EgressArgs {
    /// The policy, given the gateway's own (bound) listeners, which it never dials.
    pub fn config(&self, own_listeners: Vec<std::net::SocketAddr>) -> switchyard_proxy::egress::EgressConfig {
        switchyard_proxy::egress::EgressConfig { deny_loopback: self.egress_deny_loopback, deny: self.egress_deny.clone(), own_listeners }
    }
}

/// Tracing: W3C trace context is always propagated to upstreams; spans are exported only
/// with an endpoint.
#[derive(Args, Debug)]
pub struct TracingArgs {
    /// Export a server span per sampled request over OTLP/HTTP (protobuf), e.g.
    /// `http://otel-collector:4318` (`/v1/traces` is added to a URL without a path).
    #[arg(long, env = "SWITCHYARD_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
    /// Share of new traces sampled (0.0-1.0); a request arriving with a `traceparent`
    /// follows its sampled flag instead.
    #[arg(long, env = "SWITCHYARD_TRACE_SAMPLING", default_value_t = 1.0, value_parser = parse_ratio)]
    pub trace_sampling: f64,
}

fn parse_ratio(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(r) if (0.0..=1.0).contains(&r) => Ok(r),
        _ => Err(format!("{text:?} is not a ratio from 0.0 to 1.0")),
    }
}

impl TracingArgs {
    /// The proxy's tracing and, when exporting, the exporter (to flush at shutdown); its
    /// counters go to `registry`.
    pub fn start(
        &self,
        registry: &mut prometheus_client::registry::Registry,
    ) -> anyhow::Result<(switchyard_proxy::trace::Tracing, Option<std::sync::Arc<switchyard_telemetry::OtlpSink>>)> {
        use switchyard_proxy::trace::Tracing;
        let Some(endpoint) = &self.otlp_endpoint else { return Ok((Tracing::default(), None)) };
        let metrics = switchyard_telemetry::ExportMetrics::register(registry);
        let sink = switchyard_telemetry::start(endpoint, "switchyard", metrics)?;
        Ok((Tracing::exporting(sink.clone(), self.trace_sampling), Some(sink)))
    }
}
