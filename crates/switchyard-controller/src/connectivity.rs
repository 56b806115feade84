//! Connectivity tests of VpcAuthorizations: a TCP connect to every authorized address and
//! port (and an optional HTTP GET), on change, on the configured interval, and when the
//! `switchyard.dev/test-connectivity` annotation changes. Results go back into compile
//! (as `Resources::connectivity`), which turns them into the `Connected` condition.
//!
//! A test never sends what compile would refuse: a probe path or Host that could smuggle
//! a second request is not tested at all, and link-local addresses (cloud metadata) are
//! neither dialled nor recorded as a host's verified addresses unless the gateway runs
//! with `--allow-link-local-grants` (`Resources::options`).

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use switchyard_api::{TEST_CONNECTIVITY_ANNOTATION, VpcAuthorization};
use switchyard_compile::{Connectivity, Resources, units, validate};
use switchyard_http::tls::{Trust, UpstreamTls};
use tokio::sync::{Notify, mpsc};

/// Default time between tests.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(60);
/// One connect (or HTTP exchange) may take this long.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

type Key = (String, String);

/// What one test dials.
#[derive(Clone, Debug)]
pub struct Plan {
    pub targets: Vec<SocketAddrOrHost>,
    pub http_path: Option<String>,
    pub host_header: String,
    /// The HTTP probe goes over TLS (`connectivityTest.http.scheme: https`).
    pub tls: Option<Arc<UpstreamTls>>,
    /// A host target's DnsRecord addresses: the proxy dials those, so the test does too.
    pub dns_record: Option<Vec<IpAddr>>,
    /// Whether link-local addresses may be dialled (and recorded): `--allow-link-local-grants`.
    pub allow_link_local: bool,
}

#[derive(Clone, Debug)]
pub enum SocketAddrOrHost {
    Addr(SocketAddr),
    Host(String, u16),
}

/// Schedules tests and keeps their latest results.
pub struct Prober {
    scheduled: HashMap<Key, Scheduled>,
    results: BTreeMap<Key, Connectivity>,
    done_tx: mpsc::UnboundedSender<(Key, String, Connectivity)>,
    done_rx: mpsc::UnboundedReceiver<(Key, String, Connectivity)>,
    /// Poked when a test finishes, so the owner can recompile.
    pub finished: Arc<Notify>,
}

struct Scheduled {
    fingerprint: String,
    /// The spec alone (the fingerprint also holds the test-now request).
    spec: String,
    interval: Duration,
    last_start: Instant,
    running: bool,
}

impl Default for Prober {
    fn default() -> Self {
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        Self { scheduled: HashMap::new(), results: BTreeMap::new(), done_tx, done_rx, finished: Arc::new(Notify::new()) }
    }
}

impl Prober {
    /// Starts every test that is due: a new or changed authorization (spec or the
    /// test-now annotation), or the interval elapsed since the last start.
    pub fn start_due(&mut self, resources: &Resources) {
        let live: Vec<Key> = resources.vpc_authorizations.iter().map(key).collect();
        self.scheduled.retain(|k, _| live.contains(k));
        self.results.retain(|k, _| live.contains(k));
        for auth in &resources.vpc_authorizations {
            let key = key(auth);
            let fingerprint = fingerprint(auth);
            let spec = serde_json::to_string(&auth.spec).unwrap_or_default();
            let interval = interval(auth);
            let due = match self.scheduled.get(&key) {
                None => true,
                Some(s) => !s.running && (s.fingerprint != fingerprint || s.last_start.elapsed() >= s.interval),
            };
            if self.scheduled.get(&key).is_some_and(|s| s.spec != spec) {
                // A new target: the old result (and the addresses it resolved) no longer
                // applies. A test-now request alone keeps it until the new one is in.
                self.results.remove(&key);
            }
            if !due {
                continue;
            }
            let Ok(plan) = plan(auth, resources) else { continue };
            self.scheduled.insert(
                key.clone(),
                Scheduled { fingerprint: fingerprint.clone(), spec, interval, last_start: Instant::now(), running: true },
            );
            let (tx, finished) = (self.done_tx.clone(), self.finished.clone());
            let requested = test_request(auth).map(str::to_owned);
            tokio::spawn(async move {
                let result = Connectivity { requested, ..run(&plan).await };
                let _ = tx.send((key, fingerprint, result));
                finished.notify_one();
            });
        }
    }

    /// Takes finished tests in; true when any result changed.
    pub fn collect(&mut self) -> bool {
        let mut changed = false;
        while let Ok((key, fingerprint, result)) = self.done_rx.try_recv() {
            if let Some(s) = self.scheduled.get_mut(&key) {
                s.running = false;
                if s.fingerprint != fingerprint {
                    continue; // the authorization changed meanwhile; its new test decides
                }
            }
            changed |= self.results.get(&key) != Some(&result);
            self.results.insert(key, result);
        }
        changed
    }

    pub fn results(&self) -> BTreeMap<Key, Connectivity> {
        self.results.clone()
    }

    /// Time until the next interval test is due (for the owner's wake-up).
    pub fn next_due(&self) -> Duration {
        self.scheduled
            .values()
            .filter(|s| !s.running)
            .map(|s| s.interval.saturating_sub(s.last_start.elapsed()))
            .min()
            .unwrap_or(DEFAULT_INTERVAL)
    }
}

fn key(auth: &VpcAuthorization) -> Key {
    (auth.metadata.namespace.clone().unwrap_or_else(|| "default".into()), auth.metadata.name.clone().unwrap_or_default())
}

/// The test-now annotation's value: a test started while it holds answers that request.
fn test_request(auth: &VpcAuthorization) -> Option<&str> {
    auth.metadata.annotations.as_ref().and_then(|a| a.get(TEST_CONNECTIVITY_ANNOTATION)).map(String::as_str)
}

/// What makes a new test necessary: the spec and the test-now annotation.
fn fingerprint(auth: &VpcAuthorization) -> String {
    format!("{}|{}", serde_json::to_string(&auth.spec).unwrap_or_default(), test_request(auth).unwrap_or_default())
}

fn interval(auth: &VpcAuthorization) -> Duration {
    auth.spec
        .connectivity_test
        .as_ref()
        .and_then(|t| t.interval.as_deref())
        .and_then(|i| units::parse_duration(i).ok())
        .filter(|d| !d.is_zero())
        .unwrap_or(DEFAULT_INTERVAL)
}

/// The addresses and ports to test; why not when the authorization cannot be tested:
/// an invalid target, a probe that could not be written as one request, or a link-local
/// address the gateway does not grant (compile refuses all of those).
pub fn plan(auth: &VpcAuthorization, resources: &Resources) -> Result<Plan, String> {
    let spec = &auth.spec;
    let (ns, _) = key(auth);
    let allow_link_local = resources.options.allow_link_local_grants;
    let targets = match (&spec.target.address, &spec.target.host, &spec.target.service) {
        (Some(address), None, None) => {
            let ip: IpAddr = address.parse().map_err(|_| format!("target.address {address:?} is not an IP address"))?;
            if validate::is_link_local(ip) && !allow_link_local {
                return Err(format!("target.address {ip} is link-local: not granted without --allow-link-local-grants"));
            }
            spec.ports.iter().map(|p| SocketAddrOrHost::Addr(SocketAddr::new(ip, *p))).collect()
        }
        (None, Some(host), None) => spec.ports.iter().map(|p| SocketAddrOrHost::Host(host.to_ascii_lowercase(), *p)).collect(),
        (None, None, Some(service)) => {
            // Unknown or without endpoints: tested (and reported) as nothing to connect to.
            let Some(endpoints) = resources.service_endpoints.get(&(ns, service.name.clone())) else {
                return plan_without_targets(spec, allow_link_local);
            };
            spec.ports
                .iter()
                .flat_map(|p| {
                    endpoints
                        .iter()
                        .filter_map(move |e| e.target(Some(*p), None).map(|t| SocketAddrOrHost::Addr(SocketAddr::new(e.address, t))))
                })
                .collect()
        }
        _ => return Err("target: set exactly one of address, service or host".into()),
    };
    let dns_record = spec.target.host.as_deref().and_then(|host| dns_record_addresses(host, resources));
    Ok(Plan { targets, dns_record, ..plan_without_targets(spec, allow_link_local)? })
}

fn plan_without_targets(spec: &switchyard_api::VpcAuthorizationSpec, allow_link_local: bool) -> Result<Plan, String> {
    let host_header =
        spec.host_name.clone().or_else(|| spec.target.host.clone()).or_else(|| spec.target.address.clone()).unwrap_or_default();
    validate::no_line_break("the Host header", &host_header)?;
    let http = spec.connectivity_test.as_ref().and_then(|t| t.http.as_ref());
    if let Some(http) = http {
        validate::wire_path(&http.path).map_err(|e| format!("connectivityTest.http.path: {e}"))?;
    }
    let tls = http.filter(|h| h.scheme == switchyard_api::Scheme::Https).and_then(|_| reachability_tls(&host_header));
    Ok(Plan { targets: Vec::new(), http_path: http.map(|h| h.path.clone()), host_header, dns_record: None, tls, allow_link_local })
}

/// TLS for a connectivity test: SNI as the proxy would send it (a `host:port` hostName
/// without its port), no verification (the test is about reachability; the proxy
/// verifies certificates on its own connections).
fn reachability_tls(host_header: &str) -> Option<Arc<UpstreamTls>> {
    let trust = Trust { ca_certificates: None, insecure_skip_verify: true };
    // Compile accepted the name as a Host header, so it parses as a server name too.
    UpstreamTls::new(&trust, &switchyard_compile::validate::server_name_of_host(host_header)).ok().map(Arc::new)
}

/// The addresses (weight above 0) of the oldest DnsRecord for `host`, as compile picks it.
fn dns_record_addresses(host: &str, resources: &Resources) -> Option<Vec<IpAddr>> {
    let mut records: Vec<&switchyard_api::DnsRecord> =
        resources.dns_records.iter().filter(|r| r.spec.domain.eq_ignore_ascii_case(host)).collect();
    records.sort_by_key(|r| (r.metadata.creation_timestamp.clone().map(|t| t.0), r.metadata.name.clone()));
    let record = records.first()?;
    Some(record.spec.records.iter().filter(|r| r.weight > 0).filter_map(|r| r.address.parse().ok()).collect())
}

/// Runs one test: a host target is resolved first (its DnsRecord, else DNS), then every
/// address must accept (and answer the HTTP probe below 500). A host's resolved addresses
/// are kept in the result: they are what the proxy may dial for it. Link-local addresses
/// (unless allowed) are skipped: not dialled, not recorded, named in the message.
pub async fn run(plan: &Plan) -> Connectivity {
    let failed = |message: String, addresses: Vec<IpAddr>| Connectivity { connected: false, message, requested: None, addresses };
    let mut sockets = Vec::with_capacity(plan.targets.len());
    let mut resolved: Vec<IpAddr> = Vec::new();
    let mut skipped: Vec<IpAddr> = Vec::new();
    let mut take = |addr: SocketAddr, sockets: &mut Vec<SocketAddr>, resolved: Option<&mut Vec<IpAddr>>| {
        if !plan.allow_link_local && validate::is_link_local(addr.ip()) {
            if !skipped.contains(&addr.ip()) {
                skipped.push(addr.ip());
            }
            return;
        }
        if let Some(resolved) = resolved
            && !resolved.contains(&addr.ip())
        {
            resolved.push(addr.ip());
        }
        sockets.push(addr);
    };
    for target in &plan.targets {
        match target {
            SocketAddrOrHost::Addr(addr) => take(*addr, &mut sockets, None),
            SocketAddrOrHost::Host(host, port) => match resolve(host, *port, plan.dns_record.as_deref()).await {
                Ok(found) => found.into_iter().for_each(|addr| take(addr, &mut sockets, Some(&mut resolved))),
                Err(error) => return failed(error, Vec::new()),
            },
        }
    }
    let skipped_note = (!skipped.is_empty()).then(|| {
        let list: Vec<String> = skipped.iter().map(IpAddr::to_string).collect();
        format!("link-local address(es) {} skipped: not tested and not granted without --allow-link-local-grants", list.join(", "))
    });
    if sockets.is_empty() {
        let why = skipped_note.unwrap_or_else(|| "the target has no endpoints".into());
        return failed(format!("no address to test ({why})"), resolved);
    }
    let mut reports = Vec::with_capacity(sockets.len() + 1);
    for addr in &sockets {
        match probe(*addr, plan).await {
            Ok(report) => reports.push(report),
            Err(error) => return failed(error, resolved),
        }
    }
    reports.extend(skipped_note);
    Connectivity { connected: true, message: reports.join("; "), requested: None, addresses: resolved }
}

/// A host's addresses on `port`: its DnsRecord's when it has one, else DNS (the resolver
/// the proxy uses too).
async fn resolve(host: &str, port: u16, dns_record: Option<&[IpAddr]>) -> Result<Vec<SocketAddr>, String> {
    if let Some(addresses) = dns_record {
        return Ok(addresses.iter().map(|ip| SocketAddr::new(*ip, port)).collect());
    }
    match tokio::time::timeout(PROBE_TIMEOUT, switchyard_http::resolver::resolve(host, port)).await {
        Ok(Ok(found)) if !found.is_empty() => Ok(found),
        Ok(Ok(_)) => Err(format!("resolving {host}: no address")),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("resolving {host}: no answer within {PROBE_TIMEOUT:?}")),
    }
}

/// The line `switchyard vpc test` prints, standalone or in-cluster.
pub fn report_line(namespace: &str, name: &str, result: &Connectivity) -> String {
    let status = if result.connected { "True" } else { "False" };
    format!("VpcAuthorization {namespace}/{name}: Connected={status}: {}", result.message)
}

async fn probe(addr: SocketAddr, plan: &Plan) -> Result<String, String> {
    let tls = plan.tls.as_deref();
    let report = switchyard_http::probe(addr, &plan.host_header, plan.http_path.as_deref(), PROBE_TIMEOUT, tls).await?;
    let latency_ms = report.connect_latency.as_secs_f64() * 1e3;
    let over = if tls.is_some() { " (TLS)" } else { "" };
    Ok(match (report.status, &plan.http_path) {
        (Some(status), Some(path)) => format!("{addr} connected{over} in {latency_ms:.1} ms, GET {path} answered {status}"),
        _ => format!("{addr} connected{over} in {latency_ms:.1} ms"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn authorization(yaml: &str) -> Resources {
        let mut resources = Resources::default();
        switchyard_compile::manifest::add_yaml(&mut resources, "t", yaml);
        resources
    }

    #[tokio::test]
    async fn a_listening_port_is_connected_and_a_closed_one_reports_the_error() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let open = Plan {
            targets: vec![SocketAddrOrHost::Addr(SocketAddr::from(([127, 0, 0, 1], port)))],
            http_path: None,
            host_header: String::new(),
            tls: None,
            dns_record: None,
            allow_link_local: false,
        };
        let result = run(&open).await;
        assert!(result.connected, "{}", result.message);
        assert!(result.message.contains("connected in"));
        drop(listener);
        let closed = run(&open).await;
        assert!(!closed.connected);
        assert!(closed.message.contains("refused"), "{}", closed.message);
    }

    #[test]
    fn an_authorization_whose_probe_could_smuggle_a_request_is_not_tested() {
        let yaml = |extra: &str| {
            format!(
                "apiVersion: switchyard.dev/v1alpha1\nkind: VpcAuthorization\nmetadata: {{name: a}}\nspec: {{target: {{address: 127.0.0.1}}, ports: [9], {extra}}}\n"
            )
        };
        let auth = |extra: &str| authorization(&yaml(extra)).vpc_authorizations.remove(0);
        let forged = r#"connectivityTest: {http: {path: "/x HTTP/1.1\r\nHost: a\r\n\r\nPOST /admin/delete-all"}}"#;
        let why = plan(&auth(forged), &Resources::default()).unwrap_err();
        assert!(why.starts_with("connectivityTest.http.path: "), "{why}");
        assert!(plan(&auth(r#"hostName: "a\r\nX: 1""#), &Resources::default()).is_err());
        assert!(plan(&auth("connectivityTest: {http: {path: /healthz}}"), &Resources::default()).is_ok());
    }

    #[test]
    fn a_link_local_address_is_planned_only_when_the_gateway_allows_link_local_grants() {
        let mut resources = authorization(
            "apiVersion: switchyard.dev/v1alpha1\nkind: VpcAuthorization\nmetadata: {name: a}\nspec: {target: {address: 169.254.169.254}, ports: [80]}\n",
        );
        let auth = resources.vpc_authorizations[0].clone();
        assert!(plan(&auth, &resources).unwrap_err().contains("--allow-link-local-grants"));
        resources.options.allow_link_local_grants = true;
        assert!(plan(&auth, &resources).unwrap().allow_link_local);
    }

    #[tokio::test]
    async fn link_local_addresses_a_host_resolves_to_are_neither_dialled_nor_recorded() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let pinned = |addresses: &[&str]| Plan {
            targets: vec![SocketAddrOrHost::Host("pinned.test".into(), port)],
            http_path: None,
            host_header: "pinned.test".into(),
            tls: None,
            dns_record: Some(addresses.iter().map(|a| a.parse().unwrap()).collect()),
            allow_link_local: false,
        };
        let mixed = run(&pinned(&["169.254.169.254", "127.0.0.1"])).await;
        assert!(mixed.connected, "{}", mixed.message);
        assert_eq!(mixed.addresses, ["127.0.0.1".parse::<IpAddr>().unwrap()], "the link-local answer is not verified");
        assert!(mixed.message.contains("169.254.169.254 skipped"), "{}", mixed.message);
        let only = run(&pinned(&["169.254.169.254", "fe80::1"])).await;
        assert!(!only.connected);
        assert!(only.addresses.is_empty());
        assert!(only.message.contains("link-local address(es) 169.254.169.254, fe80::1 skipped"), "{}", only.message);
    }

    #[test]
    fn the_report_line_names_the_object_the_condition_and_the_message() {
        let result = Connectivity { connected: false, message: "connection refused".into(), requested: None, addresses: vec![] };
        assert_eq!(report_line("shop", "orders", &result), "VpcAuthorization shop/orders: Connected=False: connection refused");
    }

    #[tokio::test]
    async fn a_changed_annotation_asks_for_a_new_test() {
        let base = "apiVersion: switchyard.dev/v1alpha1\nkind: VpcAuthorization\nmetadata: {name: a, annotations: {switchyard.dev/test-connectivity: 'ANNOT'}}\nspec: {target: {address: 127.0.0.1}, ports: [9]}\n";
        let mut prober = Prober::default();
        prober.start_due(&authorization(&base.replace("ANNOT", "1")));
        prober.finished.notified().await;
        prober.collect();
        let first = &prober.results()[&("default".into(), "a".into())];
        assert!(!first.connected);
        assert_eq!(first.requested.as_deref(), Some("1"), "the result says which request it answers");
        let first_start = prober.scheduled[&("default".into(), "a".into())].last_start;
        prober.start_due(&authorization(&base.replace("ANNOT", "1")));
        assert_eq!(prober.scheduled[&("default".into(), "a".into())].last_start, first_start, "nothing changed, interval not elapsed");
        prober.start_due(&authorization(&base.replace("ANNOT", "2")));
        assert_ne!(prober.scheduled[&("default".into(), "a".into())].last_start, first_start, "the annotation asks for a test now");
    }

    #[tokio::test]
    async fn a_new_target_drops_the_old_result_but_a_test_now_request_keeps_it_until_the_answer() {
        let yaml = |port: u16, annotation: &str| {
            format!(
                "apiVersion: switchyard.dev/v1alpha1\nkind: VpcAuthorization\nmetadata: {{name: a, annotations: {{switchyard.dev/test-connectivity: '{annotation}'}}}}\n\
                 spec: {{target: {{address: 127.0.0.1}}, ports: [{port}]}}\n"
            )
        };
        let key: Key = ("default".into(), "a".into());
        let mut prober = Prober::default();
        prober.start_due(&authorization(&yaml(9, "1")));
        prober.finished.notified().await;
        prober.collect();
        assert!(prober.results().contains_key(&key));
        prober.start_due(&authorization(&yaml(9, "2")));
        assert!(prober.results().contains_key(&key), "a test-now request keeps the last result until its own arrives");
        prober.finished.notified().await;
        prober.collect();
        prober.start_due(&authorization(&yaml(10, "2")));
        assert!(!prober.results().contains_key(&key), "another target: the old result (and its addresses) is gone at once");
    }
}
