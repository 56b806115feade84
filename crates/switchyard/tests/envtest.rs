//! Envtest-style harness: the whole Kubernetes flow against a real API server.
//!
//! When `KUBEBUILDER_ASSETS` points at a folder holding `etcd` and `kube-apiserver` (the
//! layout controller-runtime's `setup-envtest use` produces), this starts both on
//! loopback, applies `crds/`, runs `switchyard controller` and `switchyard proxy`,
//! applies a BackendService and an ApiRoute, waits for their conditions and sends
//! traffic through the proxy, applies a route with `retries.retryOn` and checks the stored
//! object and the compiled policy, then runs `switchyard vpc test` against the cluster. Without the variable it says it skipped and why: no real
//! API server can run on machines without those binaries, and that must be visible.
//! It also needs `openssl` on PATH (service-account keys).

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::config::{AuthInfo, Config};
use support::{Switchyard, get, wait_until};

const TOKEN: &str = "envtest-admin-token";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_flow_runs_against_a_real_api_server() {
    let Some(assets) = std::env::var_os("KUBEBUILDER_ASSETS").map(PathBuf::from) else {
        eprintln!(
            "SKIPPED envtest: KUBEBUILDER_ASSETS is not set. Point it at a folder with etcd and kube-apiserver \
             (e.g. `export KUBEBUILDER_ASSETS=$(setup-envtest use -p path 1.33.x)`) to run the controller against a real API server."
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(&assets, dir.path()).await;
    let client = cluster.client();
    apply_crds(&client).await;

    let kubeconfig = cluster.write_kubeconfig(dir.path());
    let token_file = dir.path().join("snapshot-token");
    std::fs::write(&token_file, "snapshot-secret").unwrap();
    let env =
        [("KUBECONFIG", kubeconfig.to_str().unwrap()), ("SWITCHYARD_LEASE_NAMESPACE", "default"), ("SWITCHYARD_POD_NAME", "envtest-0")];
    let controller_args = [
        "controller",
        "--snapshot-listen",
        "127.0.0.1:0",
        "--snapshot-insecure-http",
        "--admin-listen",
        "127.0.0.1:0",
        "--metrics-listen",
        "127.0.0.1:0",
        "--token-file",
        token_file.to_str().unwrap(),
    ];
    let controller = Switchyard::start_with_env(&controller_args, &["snapshot", "admin"], &env);
    let cache = dir.path().join("cache");
    let proxy = Switchyard::proxy(&controller.url("snapshot", ""), &token_file, &cache);

    create(&client, "backendservices", "apiVersion: switchyard.dev/v1alpha1\nkind: BackendService\nmetadata: {name: hello, namespace: default}\nspec: {mock: {statusCode: 200, body: from-kubernetes}}\n").await;
    create(&client, "apiroutes", "apiVersion: switchyard.dev/v1alpha1\nkind: ApiRoute\nmetadata: {name: hello, namespace: default}\nspec: {match: {path: /hello}, backendRefs: [{name: hello}]}\n").await;

    let routes = api(&client, "apiroutes", "ApiRoute");
    wait_until("ApiRoute hello Programmed=True", Duration::from_secs(30), || async {
        let Ok(route) = routes.get("hello").await else { return false };
        let conditions = route.data["status"]["conditions"].as_array().cloned().unwrap_or_default();
        conditions.iter().any(|c| c["type"] == "Programmed" && c["status"] == "True")
    })
    .await;
    wait_until("traffic through the proxy", Duration::from_secs(30), || async {
        get(&proxy.proxy_url("/hello")).await.map(|r| r.text() == "from-kubernetes").unwrap_or(false)
    })
    .await;

    retry_on_round_trip(&client, &controller).await;

    // `switchyard vpc test` in the cluster: the controller's leader runs the test the
    // annotation asks for and the command prints its answer.
    let target = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = target.local_addr().unwrap().port();
    create(&client, "vpcauthorizations", &format!("apiVersion: switchyard.dev/v1alpha1\nkind: VpcAuthorization\nmetadata: {{name: local, namespace: default}}\nspec: {{target: {{address: 127.0.0.1}}, ports: [{port}]}}\n")).await;
    let kubeconfig_env = kubeconfig.clone();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_switchyard"))
            .args(["vpc", "test", "local", "-n", "default", "--timeout", "30s"])
            .env("KUBECONFIG", kubeconfig_env)
            .env_remove("SWITCHYARD_CONFIG_DIR")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.starts_with("VpcAuthorization default/local: Connected=True: 127.0.0.1:"), "{stdout}");
    drop((proxy, controller, target));
}

/// `retries.retryOn` through the API server: the installed CRD has the property under that
/// name (what `kubectl explain` shows), an applied route keeps both values (strict field
/// validation, as kubectl applies: a field the CRD lacks is an error, not silently pruned),
/// and the controller compiles them. With a CRD whose property reads as `on`/`true`, the
/// apply fails.
async fn retry_on_round_trip(client: &kube::Client, controller: &Switchyard) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let installed = serde_json::to_value(crds.get("apiroutes.switchyard.dev").await.unwrap()).unwrap();
    let retries = &installed["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["retries"];
    let fields: Vec<&String> = retries["properties"].as_object().map(|p| p.keys().collect()).unwrap_or_default();
    assert!(fields.iter().any(|f| *f == "retryOn"), "the installed ApiRoute CRD has no spec.retries.retryOn: {fields:?}");

    let manifest = "apiVersion: switchyard.dev/v1alpha1\nkind: ApiRoute\nmetadata: {name: retrying, namespace: default}\n\
                    spec: {match: {path: /retrying}, backendRefs: [{name: hello}], retries: {attempts: 2, retryOn: [gateway-error, reset]}}\n";
    let object: DynamicObject = serde_yaml::from_str(manifest).unwrap();
    let routes = api(client, "apiroutes", "ApiRoute");
    routes
        .patch("retrying", &PatchParams::apply("switchyard-envtest").validation_strict(), &Patch::Apply(&object))
        .await
        .unwrap_or_else(|e| panic!("applying ApiRoute retrying (retries.retryOn) with strict field validation: {e}"));
    let stored = routes.get("retrying").await.unwrap();
    assert_eq!(
        stored.data["spec"]["retries"],
        serde_json::json!({"attempts": 2, "retryOn": ["gateway-error", "reset"]}),
        "the API server stored retries differently: {}",
        stored.data["spec"]
    );

    let dump_url = controller.url("admin", "/config_dump");
    wait_until("the controller compiles retryOn [gateway-error, reset]", Duration::from_secs(30), || async {
        let Ok(dump) = get(&dump_url).await else { return false };
        let dump = dump.json();
        dump["routes"].as_array().into_iter().flatten().any(|route| {
            let retries = &route["retries"];
            route["id"] == "default/retrying"
                && retries["attempts"] == 2
                && retries["on_gateway_error"] == true
                && retries["on_reset"] == true
                && retries["on_connect_failure"] == false
        })
    })
    .await;
}

/// etcd and kube-apiserver on loopback; both stop on drop.
struct Cluster {
    processes: Vec<Child>,
    url: String,
}

impl Cluster {
    async fn start(assets: &Path, dir: &Path) -> Self {
        let (etcd_port, peer_port, api_port) = (free_port(), free_port(), free_port());
        let etcd = Command::new(assets.join("etcd"))
            .args(["--data-dir", dir.join("etcd").to_str().unwrap()])
            .args(["--listen-client-urls", &format!("http://127.0.0.1:{etcd_port}")])
            .args(["--advertise-client-urls", &format!("http://127.0.0.1:{etcd_port}")])
            .args(["--listen-peer-urls", &format!("http://127.0.0.1:{peer_port}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start etcd from KUBEBUILDER_ASSETS");
        let (key, public) = (dir.join("sa.key"), dir.join("sa.pub"));
        run("openssl", &["genrsa", "-out", key.to_str().unwrap(), "2048"]);
        run("openssl", &["rsa", "-in", key.to_str().unwrap(), "-pubout", "-out", public.to_str().unwrap()]);
        let tokens = dir.join("tokens.csv");
        std::fs::write(&tokens, format!("{TOKEN},admin,admin,\"system:masters\"\n")).unwrap();
        let apiserver = Command::new(assets.join("kube-apiserver"))
            .args(["--etcd-servers", &format!("http://127.0.0.1:{etcd_port}")])
            .args(["--secure-port", &api_port.to_string(), "--bind-address", "127.0.0.1"])
            .args(["--cert-dir", dir.join("certs").to_str().unwrap()])
            .args(["--token-auth-file", tokens.to_str().unwrap(), "--authorization-mode", "RBAC"])
            .args(["--service-account-issuer", "https://kubernetes.default.svc"])
            .args(["--service-account-key-file", public.to_str().unwrap()])
            .args(["--service-account-signing-key-file", key.to_str().unwrap()])
            .args(["--service-cluster-ip-range", "10.0.0.0/24", "--disable-admission-plugins", "ServiceAccount"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start kube-apiserver from KUBEBUILDER_ASSETS");
        let cluster = Self { processes: vec![etcd, apiserver], url: format!("https://127.0.0.1:{api_port}") };
        let client = cluster.client();
        wait_until("kube-apiserver answers", Duration::from_secs(60), || async { client.apiserver_version().await.is_ok() }).await;
        cluster
    }

    fn config(&self) -> Config {
        let mut config = Config::new(self.url.parse().unwrap());
        config.accept_invalid_certs = true;
        config.auth_info = AuthInfo { token: Some(TOKEN.to_owned().into()), ..Default::default() };
        config
    }

    fn client(&self) -> kube::Client {
        kube::Client::try_from(self.config()).unwrap()
    }

    fn write_kubeconfig(&self, dir: &Path) -> PathBuf {
        let path = dir.join("kubeconfig");
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters: [{{name: envtest, cluster: {{server: '{}', insecure-skip-tls-verify: true}}}}]\n\
             users: [{{name: admin, user: {{token: {TOKEN}}}}}]\ncontexts: [{{name: envtest, context: {{cluster: envtest, user: admin, namespace: default}}}}]\n\
             current-context: envtest\n",
            self.url
        );
        std::fs::write(&path, text).unwrap();
        path
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for process in self.processes.iter_mut().rev() {
            let _ = process.kill();
            let _ = process.wait();
        }
    }
}

async fn apply_crds(client: &kube::Client) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../crds");
    for entry in std::fs::read_dir(dir).unwrap() {
        let crd: CustomResourceDefinition = serde_yaml::from_str(&std::fs::read_to_string(entry.unwrap().path()).unwrap()).unwrap();
        let name = crd.metadata.name.clone().unwrap();
        crds.create(&PostParams::default(), &crd).await.unwrap_or_else(|e| panic!("the API server refused CRD {name}: {e}"));
        wait_until(&format!("CRD {name} established"), Duration::from_secs(30), || async {
            let Ok(crd) = crds.get(&name).await else { return false };
            crd.status.and_then(|s| s.conditions).unwrap_or_default().iter().any(|c| c.type_ == "Established" && c.status == "True")
        })
        .await;
    }
}

fn api(client: &kube::Client, plural: &str, kind: &str) -> Api<DynamicObject> {
    let gvk = kube::api::GroupVersionKind::gvk("switchyard.dev", "v1alpha1", kind);
    Api::namespaced_with(client.clone(), "default", &kube::api::ApiResource::from_gvk_with_plural(&gvk, plural))
}

async fn create(client: &kube::Client, plural: &str, manifest: &str) {
    let object: DynamicObject = serde_yaml::from_str(manifest).unwrap();
    let kind = object.types.as_ref().unwrap().kind.clone();
    api(client, plural, &kind).create(&PostParams::default(), &object).await.unwrap_or_else(|e| panic!("creating {kind}: {e}"));
}

fn run(program: &str, args: &[&str]) {
    let status = Command::new(program).args(args).stdout(Stdio::null()).stderr(Stdio::null()).status();
    assert!(status.is_ok_and(|s| s.success()), "{program} {args:?} failed");
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}
