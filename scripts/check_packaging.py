#!/usr/bin/env python3
"""Offline checks of the Kubernetes packaging, run by scripts/check-packaging.sh.

Renders charts/switchyard with helm under several value sets and checks, for each:
  - every built-in object validates against the Kubernetes OpenAPI schemas (kubernetes-validate,
    strict: unknown fields fail), at the chart's minimum Kubernetes version and the newest one
    the package knows; objects of other API groups (ServiceMonitor) are skipped;
  - exactly the expected objects (kind/name) are rendered;
  - the contract with the switchyard binary: subcommands, flags, ports, env, probe paths, mounts;
  - least privilege: the RBAC rules are exactly the expected set; pods are non-root, read-only
    root filesystem, no capabilities; the proxy has no API token;
  - selectors, named ports and the token checksum are consistent; no image names a registry host;
  - NOTES.txt renders;
  - grafanaDashboard.enabled renders the dashboard ConfigMap (label, namespace, the JSON verbatim),
    and every query of the dashboard parses as PromQL (promtool, when installed).
It also checks that every key of the CRDs (crds/, the chart with its CRDs, deploy/) reads the
same under YAML 1.1 (kubectl: a bare `on:` key is True) as under YAML 1.2 / JSON, checks
deploy/switchyard.yaml the same way as the chart, validates e2e/manifests (built-in kinds
with kubernetes-validate, Switchyard resources against the CRDs' openAPIV3Schema), and that the
chart's appVersion is the Cargo workspace version.

    HELM=.tools/helm/helm python scripts/check_packaging.py
"""

import copy
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

import jsonschema
import kubernetes_validate
import yaml
from kubernetes_validate.utils import latest_version

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "charts" / "switchyard"
HELM = os.environ.get("HELM", str(ROOT / ".tools" / "helm" / "helm"))
MIN_KUBE = yaml.safe_load((CHART / "Chart.yaml").read_text())["kubeVersion"]
MIN_KUBE = re.search(r"(\d+\.\d+)", MIN_KUBE).group(1)
KUBE_VERSIONS = [MIN_KUBE, latest_version()]
# API groups whose objects kubernetes-validate has schemas for (the built-in ones).
NOT_BUILT_IN = ("monitoring.coreos.com/", "switchyard.dev/")
TOKEN_PATH = "/var/run/switchyard/token"
TLS_DIR = "/var/run/switchyard-tls"

RESULTS = []  # (ok, name, details)


def record(name, problems):
    RESULTS.append((not problems, name, problems))
    status = "PASS" if not problems else "FAIL"
    print(f"{status}  {name}")
    for p in problems:
        print(f"        - {p}")


def helm_template(release, namespace, *args):
    cmd = [HELM, "template", release, str(CHART), "--namespace", namespace, *args]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"helm template failed ({' '.join(args)}):\n{out.stderr}")
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def index(objects):
    return {(o["kind"], o["metadata"]["name"]): o for o in objects}


# --- generic checks -------------------------------------------------------------------------

def check_schemas(objects):
    problems = []
    for o in objects:
        if o["apiVersion"].startswith(NOT_BUILT_IN):
            continue
        for version in KUBE_VERSIONS:
            try:
                kubernetes_validate.validate(o, version, strict=True)
            except kubernetes_validate.ValidationError as e:
                where = ".".join(str(p) for p in e.path)
                problems.append(f"{o['kind']}/{o['metadata']['name']} (Kubernetes {version}): {where}: {e.message}")
            except kubernetes_validate.SchemaNotFoundError:
                problems.append(f"{o['kind']}/{o['metadata']['name']}: no schema for {o['apiVersion']} in Kubernetes {version}")
    return problems


def check_expected(objects, expected):
    got = {(o["kind"], o["metadata"]["name"]) for o in objects}
    problems = [f"missing {k}/{n}" for k, n in sorted(expected - got)]
    problems += [f"unexpected {k}/{n}" for k, n in sorted(got - expected)]
    return problems


CLUSTER_SCOPED = {"ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition", "Namespace"}


def check_namespaces(objects, namespace):
    return [f"{o['kind']}/{o['metadata']['name']}: namespace {o['metadata'].get('namespace')!r}, want {namespace!r}"
            for o in objects
            if o["kind"] not in CLUSTER_SCOPED and o["metadata"].get("namespace") != namespace]


def pod_specs(objects):
    return {o["metadata"]["name"]: o["spec"]["template"] for o in objects if o["kind"] == "Deployment"}


def check_images(objects):
    problems = []
    for name, template in pod_specs(objects).items():
        for c in template["spec"]["containers"]:
            first = c["image"].split("/")[0]
            if "/" in c["image"] and ("." in first or ":" in first or first == "localhost"):
                problems.append(f"{name}: image {c['image']} names a registry host")
    return problems


def check_security(objects):
    """The restricted Pod Security Standard, and a read-only root filesystem."""
    problems = []
    for name, template in pod_specs(objects).items():
        pod = template["spec"].get("securityContext", {})
        if pod.get("runAsNonRoot") is not True or pod.get("runAsUser") in (None, 0):
            problems.append(f"{name}: pod must run as a non-root user")
        if pod.get("seccompProfile", {}).get("type") != "RuntimeDefault":
            problems.append(f"{name}: seccompProfile must be RuntimeDefault")
        if template["spec"].get("enableServiceLinks") is not False:
            problems.append(f"{name}: enableServiceLinks must be false (service env vars look like SWITCHYARD_* flags)")
        for c in template["spec"]["containers"]:
            sc = c.get("securityContext", {})
            if sc.get("readOnlyRootFilesystem") is not True:
                problems.append(f"{name}/{c['name']}: readOnlyRootFilesystem must be true")
            if sc.get("allowPrivilegeEscalation") is not False:
                problems.append(f"{name}/{c['name']}: allowPrivilegeEscalation must be false")
            if sc.get("capabilities", {}).get("drop") != ["ALL"] or sc.get("capabilities", {}).get("add"):
                problems.append(f"{name}/{c['name']}: capabilities must drop ALL and add none")
            if sc.get("privileged"):
                problems.append(f"{name}/{c['name']}: privileged")
            if not c.get("resources", {}).get("requests"):
                problems.append(f"{name}/{c['name']}: no resource requests")
    return problems


def check_wiring(objects):
    """Service and PDB selectors select a Deployment's pods; named target ports exist."""
    problems = []
    pods = pod_specs(objects)
    for o in objects:
        if o["kind"] == "Service":
            selector = o["spec"]["selector"]
        elif o["kind"] == "PodDisruptionBudget":
            selector = o["spec"]["selector"]["matchLabels"]
        else:
            continue
        matches = [n for n, t in pods.items() if selector.items() <= t["metadata"]["labels"].items()]
        if len(matches) != 1:
            problems.append(f"{o['kind']}/{o['metadata']['name']}: selector matches {matches or 'no Deployment'}")
            continue
        if o["kind"] == "Service":
            ports = {p["name"] for c in pods[matches[0]]["spec"]["containers"] for p in c.get("ports", [])}
            for p in o["spec"]["ports"]:
                if isinstance(p["targetPort"], str) and p["targetPort"] not in ports:
                    problems.append(f"Service/{o['metadata']['name']}: targetPort {p['targetPort']} is not a container port")
    for name, template in pods.items():
        if not template["metadata"]["labels"].items() >= next(
                o["spec"]["selector"]["matchLabels"].items() for o in objects
                if o["kind"] == "Deployment" and o["metadata"]["name"] == name):
            problems.append(f"Deployment/{name}: pod labels do not match its selector")
    for o in objects:
        if o["kind"] == "HorizontalPodAutoscaler":
            target = o["spec"]["scaleTargetRef"]
            if target["kind"] != "Deployment" or target["name"] not in pods:
                problems.append(f"HPA/{o['metadata']['name']}: targets {target}")
            if "replicas" in next(d["spec"] for d in objects
                                  if d["kind"] == "Deployment" and d["metadata"]["name"] == target["name"]):
                problems.append(f"Deployment/{target['name']}: sets replicas although an HPA owns it")
    return problems


def container(objects, deployment):
    return pod_specs(objects)[deployment]["spec"]["containers"][0]


def env_map(c):
    return {e["name"]: e for e in c.get("env", [])}


def check_probes_and_mounts(c, name, metrics_port):
    problems = []
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    if ports.get("metrics") != metrics_port:
        problems.append(f"{name}: metrics port {ports.get('metrics')}, want {metrics_port}")
    if "admin" in ports:
        problems.append(f"{name}: the admin port (loopback only) must not be a container port")
    for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz"), ("startupProbe", "/healthz")):
        got = c.get(probe, {}).get("httpGet", {})
        if got.get("path") != path or got.get("port") != "metrics":
            problems.append(f"{name}: {probe} is {got}, want GET {path} on the metrics port")
    mounts = {m["mountPath"]: m for m in c.get("volumeMounts", [])}
    if os.path.dirname(TOKEN_PATH) not in mounts or not mounts[os.path.dirname(TOKEN_PATH)].get("readOnly"):
        problems.append(f"{name}: the token volume must be mounted read-only at {os.path.dirname(TOKEN_PATH)}")
    return problems


def check_snapshot_tls(objects, prefix, secret_name):
    """The snapshot is served over TLS: the controller mounts the key pair, proxies only the CA."""
    problems = []
    pods = pod_specs(objects)
    want_items = {f"{prefix}-controller": ["tls.crt", "tls.key"], f"{prefix}-proxy": ["ca.crt"]}
    for name, keys in want_items.items():
        template = pods[name]
        vols = {v["name"]: v for v in template["spec"].get("volumes", [])}
        secret = vols.get("snapshot-tls", {}).get("secret", {})
        items = [{"key": k, "path": k} for k in keys]
        if secret.get("secretName") != secret_name or secret.get("items") != items:
            problems.append(f"{name}: snapshot-tls volume is {secret}, want {keys} of Secret {secret_name!r}")
        mounts = {m["mountPath"]: m for m in template["spec"]["containers"][0].get("volumeMounts", [])}
        if mounts.get(TLS_DIR, {}).get("name") != "snapshot-tls" or not mounts[TLS_DIR].get("readOnly"):
            problems.append(f"{name}: snapshot-tls must be mounted read-only at {TLS_DIR}")
    by = index(objects)
    if ("Secret", secret_name) in by:
        secret = by[("Secret", secret_name)]
        if secret.get("type") != "kubernetes.io/tls" or set(secret.get("data", {})) != {"tls.crt", "tls.key", "ca.crt"}:
            problems.append(f"Secret/{secret_name}: want a kubernetes.io/tls Secret with tls.crt, tls.key, ca.crt")
    return problems


def check_generated_tls(objects, prefix, namespace):
    """The generated certificate names the controller Service and chains to the CA the proxies get
    (checked with the openssl command line, when installed)."""
    import base64
    problems = []
    data = index(objects)[("Secret", f"{prefix}-snapshot-tls")]["data"]
    want = hashlib.sha256(data["ca.crt"].encode()).hexdigest()
    got = pod_specs(objects)[f"{prefix}-proxy"]["metadata"].get("annotations", {}).get("checksum/snapshot-ca")
    if got != want:
        problems.append(f"proxy: checksum/snapshot-ca {got} does not match the Secret's CA")
    if not shutil.which("openssl"):
        print("        (openssl not installed: certificate chain and SANs not checked)")
        return problems
    with tempfile.TemporaryDirectory() as tmp:
        for key in ("tls.crt", "ca.crt"):
            (Path(tmp) / key).write_bytes(base64.b64decode(data[key]))
        verify = subprocess.run(["openssl", "verify", "-purpose", "sslserver", "-CAfile", f"{tmp}/ca.crt", f"{tmp}/tls.crt"],
                                capture_output=True, text=True)
        if verify.returncode != 0:
            problems.append(f"the snapshot certificate does not verify against ca.crt: {verify.stdout}{verify.stderr}")
        sans = subprocess.run(["openssl", "x509", "-noout", "-ext", "subjectAltName", "-in", f"{tmp}/tls.crt"],
                              capture_output=True, text=True).stdout
    names = set(re.findall(r"DNS:([^,\s]+)", sans))
    svc = f"{prefix}-controller"
    for name in (svc, f"{svc}.{namespace}", f"{svc}.{namespace}.svc", f"{svc}.{namespace}.svc.cluster.local"):
        if name not in names:
            problems.append(f"snapshot certificate lacks the SAN {name} (has {sorted(names)})")
    return problems


def check_token_volume(objects, secret_name, key):
    problems = []
    for name, template in pod_specs(objects).items():
        vols = {v["name"]: v for v in template["spec"].get("volumes", [])}
        secret = vols.get("snapshot-token", {}).get("secret", {})
        if secret.get("secretName") != secret_name or secret.get("items") != [{"key": key, "path": "token"}]:
            problems.append(f"{name}: token volume is {secret}, want key {key!r} of Secret {secret_name!r} as 'token'")
    return problems


# --- the contract with the binary (default values) --------------------------------------------

def check_contract(objects, prefix, namespace):
    problems = []
    ctrl = container(objects, f"{prefix}-controller")
    want = ["controller", "--snapshot-listen=0.0.0.0:18000", f"--snapshot-tls-cert={TLS_DIR}/tls.crt",
            f"--snapshot-tls-key={TLS_DIR}/tls.key", "--admin-listen=127.0.0.1:9902", "--metrics-listen=0.0.0.0:9102",
            f"--token-file={TOKEN_PATH}", "--host-ownership=namespace", "--log-format=text"]
    if ctrl["args"] != want:
        problems.append(f"controller args {ctrl['args']}, want {want}")
    env = env_map(ctrl)
    for var, field in (("SWITCHYARD_LEASE_NAMESPACE", "metadata.namespace"), ("SWITCHYARD_POD_NAME", "metadata.name")):
        got = env.get(var, {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")
        if got != field:
            problems.append(f"controller env {var} from {got}, want the downward API {field}")
    if {p["name"]: p["containerPort"] for p in ctrl["ports"]}.get("snapshot") != 18000:
        problems.append("controller: snapshot port must be 18000")
    problems += check_probes_and_mounts(ctrl, "controller", 9102)

    proxy = container(objects, f"{prefix}-proxy")
    want = ["proxy", f"--controller=https://{prefix}-controller.{namespace}.svc:18000",
            f"--controller-ca={TLS_DIR}/ca.crt", f"--token-file={TOKEN_PATH}", "--listen=0.0.0.0:8080",
            "--https-listen=0.0.0.0:8443", "--https-redirect-port=443", "--admin-listen=127.0.0.1:9901", "--metrics-listen=0.0.0.0:9101",
            "--cache-dir=/var/cache/switchyard", "--egress-deny-loopback",
            "--log-format=text", "--access-log=json"]
    if proxy["args"] != want:
        problems.append(f"proxy args {proxy['args']}, want {want}")
    proxy_ports = {p["name"]: p["containerPort"] for p in proxy["ports"]}
    if proxy_ports.get("http") != 8080 or proxy_ports.get("https") != 8443:
        problems.append(f"proxy: http port must be 8080 and https 8443, got {proxy_ports}")
    problems += check_probes_and_mounts(proxy, "proxy", 9101)
    cache = {m["mountPath"]: m["name"] for m in proxy["volumeMounts"]}.get("/var/cache/switchyard")
    vols = {v["name"]: v for v in pod_specs(objects)[f"{prefix}-proxy"]["spec"]["volumes"]}
    if cache is None or "emptyDir" not in vols.get(cache, {}):
        problems.append("proxy: /var/cache/switchyard must be an emptyDir volume")

    deployments = index(objects)
    if deployments[("Deployment", f"{prefix}-controller")]["spec"].get("replicas") != 2:
        problems.append("controller: 2 replicas (leader + standby)")
    pods = pod_specs(objects)
    if pods[f"{prefix}-proxy"]["spec"].get("automountServiceAccountToken") is not False:
        problems.append("proxy: the API token must not be mounted")

    services = {n: o for (k, n), o in index(objects).items() if k == "Service"}
    # Only metrics, traffic and snapshot ports: the admin port (/config_dump, /status) is in no Service.
    want_ports = {f"{prefix}-controller": {"snapshot": 18000, "metrics": 9102},
                  f"{prefix}-proxy": {"http": 8080, "https": 443, "metrics": 9101}}
    for name, ports in want_ports.items():
        got = {p["name"]: p["port"] for p in services.get(name, {}).get("spec", {}).get("ports", [])}
        if got != ports:
            problems.append(f"Service/{name}: ports {got}, want {ports}")
    return problems


def check_no_admin_port(objects):
    problems = []
    for o in objects:
        if o["kind"] != "Service":
            continue
        for p in o["spec"]["ports"]:
            named = ("http", "https", "metrics", "snapshot")
            if p["name"] not in named or p.get("targetPort") not in named:
                problems.append(f"Service/{o['metadata']['name']}: port {p['name']} -> {p.get('targetPort')} (only http, https, metrics, snapshot)")
            if p["port"] in (9901, 9902):
                problems.append(f"Service/{o['metadata']['name']}: exposes the admin port {p['port']}")
    return problems


def check_service_monitor(objects):
    sms = [o for o in objects if o["kind"] == "ServiceMonitor"]
    if len(sms) != 1:
        return [f"want one ServiceMonitor, got {len(sms)}"]
    problems = []
    if [e["port"] for e in sms[0]["spec"]["endpoints"]] != ["metrics"]:
        problems.append(f"ServiceMonitor endpoints {sms[0]['spec']['endpoints']}, want only the metrics port")
    scraped = [o for o in objects if o["kind"] == "Service"
               and o["metadata"]["labels"].get("switchyard.dev/scrape") == "true"]
    for o in scraped:
        if "metrics" not in {p["name"] for p in o["spec"]["ports"]}:
            problems.append(f"Service/{o['metadata']['name']} is scraped but has no metrics port")
    if len(scraped) != 2:
        problems.append(f"want the controller and proxy Services scraped, got {[o['metadata']['name'] for o in scraped]}")
    return problems


def rules_set(rules):
    out = set()
    for r in rules:
        for g in r.get("apiGroups", []):
            for res in r.get("resources", []):
                for v in r.get("verbs", []):
                    for name in r.get("resourceNames", ["*"]):
                        out.add((g, res, v, name))
    return out


CRS = ["apiroutes", "backendservices", "vpcauthorizations", "dnsrecords"]
WANT_CLUSTER_RULES = (
    {("switchyard.dev", r, v, "*") for r in CRS for v in ("get", "list", "watch")}
    | {("switchyard.dev", f"{r}/status", "patch", "*") for r in CRS}
    | {("", r, v, "*") for r in ("secrets", "services") for v in ("get", "list", "watch")}
    | {("discovery.k8s.io", "endpointslices", v, "*") for v in ("get", "list", "watch")}
    | {(g, "events", v, "*") for g in ("", "events.k8s.io") for v in ("create", "patch")}
)
WANT_LEASE_RULES = (
    {("coordination.k8s.io", "leases", "create", "*")}
    | {("coordination.k8s.io", "leases", v, "switchyard-controller") for v in ("get", "update", "patch")}
)


def check_rbac(objects, prefix, namespace):
    problems = []
    by = index(objects)
    name = f"{prefix}-controller"
    cluster = rules_set(by[("ClusterRole", name)]["rules"])
    if cluster != WANT_CLUSTER_RULES:
        problems += [f"ClusterRole grants more than needed: {r}" for r in sorted(cluster - WANT_CLUSTER_RULES)]
        problems += [f"ClusterRole lacks {r}" for r in sorted(WANT_CLUSTER_RULES - cluster)]
    lease = rules_set(by[("Role", f"{name}-leader-election")]["rules"])
    if lease != WANT_LEASE_RULES:
        problems += [f"Role grants more than needed: {r}" for r in sorted(lease - WANT_LEASE_RULES)]
        problems += [f"Role lacks {r}" for r in sorted(WANT_LEASE_RULES - lease)]
    for kind, binding in (("ClusterRoleBinding", name), ("RoleBinding", f"{name}-leader-election")):
        subjects = by[(kind, binding)]["subjects"]
        if subjects != [{"kind": "ServiceAccount", "name": name, "namespace": namespace}]:
            problems.append(f"{kind}/{binding}: subjects {subjects}, want only the controller's ServiceAccount")
    for o in objects:
        if o["kind"] in ("ClusterRoleBinding", "RoleBinding"):
            if any(s.get("name") == f"{prefix}-proxy" for s in o["subjects"]):
                problems.append(f"{o['kind']}/{o['metadata']['name']}: binds the proxy, which needs no RBAC")
    if pod_specs(objects)[name]["spec"]["serviceAccountName"] != name:
        problems.append("controller pods do not run as the bound ServiceAccount")
    return problems


def check_generated_token(objects, prefix):
    """The Secret and the pods' checksum annotation must see the same random token."""
    secret = index(objects)[("Secret", f"{prefix}-snapshot-token")]
    token = secret.get("data", {}).get("token", "")
    problems = [] if len(token) >= 48 else ["the generated token is missing or short"]
    want = hashlib.sha256(token.encode()).hexdigest()
    for name, template in pod_specs(objects).items():
        got = template["metadata"].get("annotations", {}).get("checksum/snapshot-token")
        if got != want:
            problems.append(f"{name}: checksum/snapshot-token {got} does not match the Secret's token")
    return problems


# --- scenarios --------------------------------------------------------------------------------

def expected_defaults(prefix, with_secret=True, crds=(), with_tls_secret=True):
    c, p = f"{prefix}-controller", f"{prefix}-proxy"
    objects = {("Deployment", c), ("Deployment", p), ("Service", c), ("Service", p),
               ("HorizontalPodAutoscaler", p), ("PodDisruptionBudget", c), ("PodDisruptionBudget", p),
               ("ServiceAccount", c), ("ServiceAccount", p), ("ClusterRole", c), ("ClusterRoleBinding", c),
               ("Role", f"{c}-leader-election"), ("RoleBinding", f"{c}-leader-election")}
    if with_secret:
        objects.add(("Secret", f"{prefix}-snapshot-token"))
    if with_tls_secret:
        objects.add(("Secret", f"{prefix}-snapshot-tls"))
    return objects | {("CustomResourceDefinition", n) for n in crds}


def crd_names():
    return sorted(yaml.safe_load(f.read_text())["metadata"]["name"] for f in (ROOT / "crds").glob("*.yaml"))


def common(name, objects, namespace, expected):
    record(f"{name}: expected objects ({len(expected)})", check_expected(objects, expected))
    record(f"{name}: Kubernetes schemas ({', '.join(KUBE_VERSIONS)}, strict)", check_schemas(objects))
    record(f"{name}: namespaces, selectors, ports, images, pod security",
           check_namespaces(objects, namespace) + check_wiring(objects) + check_images(objects)
           + check_security(objects))


def scenario_defaults():
    objects = helm_template("switchyard", "switchyard-system")
    common("defaults", objects, "switchyard-system", expected_defaults("switchyard"))
    record("defaults: binary contract (subcommands, flags, env, ports, probes, mounts)",
           check_contract(objects, "switchyard", "switchyard-system")
           + check_token_volume(objects, "switchyard-snapshot-token", "token"))
    record("defaults: least-privilege RBAC", check_rbac(objects, "switchyard", "switchyard-system"))
    record("defaults: generated token and pod checksum agree", check_generated_token(objects, "switchyard"))
    record("defaults: snapshot over TLS (key pair in the controller, CA in proxies, SANs, CA checksum)",
           check_snapshot_tls(objects, "switchyard", "switchyard-snapshot-tls")
           + check_generated_tls(objects, "switchyard", "switchyard-system"))
    record("defaults: no Service exposes an admin port; the ServiceMonitor targets metrics",
           check_no_admin_port(objects) + check_service_monitor(
               helm_template("switchyard", "switchyard-system", "--set", "serviceMonitor.enabled=true")))


def scenario_deploy():
    objects = [d for d in yaml.safe_load_all((ROOT / "deploy" / "switchyard.yaml").read_text()) if d]
    common("deploy/switchyard.yaml", objects, "switchyard-system",
           expected_defaults("switchyard", crds=crd_names(), with_tls_secret=False))
    problems = check_contract(objects, "switchyard", "switchyard-system")
    problems += check_snapshot_tls(objects, "switchyard", "switchyard-snapshot-tls") + check_no_admin_port(objects)
    problems += check_rbac(objects, "switchyard", "switchyard-system")
    secret = index(objects)[("Secret", "switchyard-snapshot-token")]
    if secret.get("stringData") != {"token": "change-me"}:
        problems.append("the token Secret must hold the documented placeholder stringData.token=change-me")
    crds = {o["metadata"]["name"]: o for o in objects if o["kind"] == "CustomResourceDefinition"}
    for f in (ROOT / "crds").glob("*.yaml"):
        source = yaml.safe_load(f.read_text())
        if crds.get(source["metadata"]["name"]) != source:
            problems.append(f"CRD {source['metadata']['name']} differs from crds/{f.name}")
    ns = yaml.safe_load((ROOT / "deploy" / "namespace.yaml").read_text())
    problems += [f"deploy/namespace.yaml: {e}" for e in check_schemas([ns])]
    if ns["metadata"]["name"] != "switchyard-system":
        problems.append("deploy/namespace.yaml must create switchyard-system")
    if "create secret generic switchyard-snapshot-tls" not in (ROOT / "deploy" / "switchyard.yaml").read_text():
        problems.append("deploy/switchyard.yaml's header must say how to create the snapshot TLS Secret")
    record("deploy/switchyard.yaml: contract, RBAC, placeholder token, TLS Secret expected, CRDs, namespace", problems)


def scenario_options():
    """Every optional branch of the templates at once, under another release name."""
    objects = helm_template(
        "edge", "gateways",
        "--set", "serviceMonitor.enabled=true",
        "--set", "serviceMonitor.labels.release=prometheus",
        "--set", "snapshotToken.existingSecret=edge-token",
        "--set", "snapshotToken.existingSecretKey=value",
        "--set", "snapshotTLS.existingSecret=edge-tls",
        "--set", "proxy.service.type=LoadBalancer",
        "--set", "proxy.service.externalTrafficPolicy=Local",
        "--set", "proxy.service.loadBalancerSourceRanges={10.0.0.0/8}",
        "--set", "proxy.service.nodePort=30080",
        "--set", "proxy.service.httpsNodePort=30443",
        "--set", "proxy.https.defaultCertificate=gateways/default-tls",
        "--set", "proxy.autoscaling.enabled=false",
        "--set", "proxy.replicaCount=3",
        "--set", "proxy.workers=4",
        "--set", "proxy.nonceStore=redis://redis.switchyard-system.svc:6379",
        "--set", "proxy.tracing.otlpEndpoint=http://otel-collector.observability:4318",
        "--set", "proxy.tracing.sampling=0.01",
        "--set", "proxy.preStopSleepSeconds=0",
        "--set", "proxy.podDisruptionBudget.minAvailable=50%",
        "--set", "controller.podDisruptionBudget.enabled=false",
        "--set", "controller.spreadAcrossNodes=false",
        "--set", "controller.podAnnotations.team=edge",
        "--set", "controller.nodeSelector.kubernetes\\.io/os=linux",
        "--set", "controller.hostOwnership=shared",
        "--set", "controller.allowLinkLocalGrants=true",
        "--set", "commonLabels.owner=platform",
        "--set", "image.repository=switchyard-dev",
        "--set", "image.tag=1.2.3",
        "--set", "logLevel=debug",
    )
    prefix = "edge-switchyard"
    expected = expected_defaults(prefix, with_secret=False, with_tls_secret=False)
    expected -= {("HorizontalPodAutoscaler", f"{prefix}-proxy"), ("PodDisruptionBudget", f"{prefix}-controller")}
    expected |= {("Service", f"{prefix}-proxy-metrics"), ("ServiceMonitor", prefix)}
    common("options", objects, "gateways", expected)
    by = index(objects)
    problems = check_token_volume(objects, "edge-token", "value")
    problems += check_snapshot_tls(objects, prefix, "edge-tls") + check_no_admin_port(objects) + check_service_monitor(objects)
    problems += check_rbac(objects, prefix, "gateways")
    ctrl_args = container(objects, f"{prefix}-controller")["args"]
    if "--host-ownership=shared" not in ctrl_args or "--allow-link-local-grants" not in ctrl_args:
        problems.append(f"controller: hostOwnership/allowLinkLocalGrants not applied: {ctrl_args}")
    proxy = container(objects, f"{prefix}-proxy")
    if "--workers=4" not in proxy["args"] or "lifecycle" in proxy:
        problems.append("proxy: --workers=4 and no preStop hook expected")
    if "--nonce-store=redis://redis.switchyard-system.svc:6379" not in proxy["args"]:
        problems.append("proxy: --nonce-store=redis://... expected from proxy.nonceStore")
    if not {"--otlp-endpoint=http://otel-collector.observability:4318", "--trace-sampling=0.01"} <= set(proxy["args"]):
        problems.append(f"proxy: --otlp-endpoint/--trace-sampling expected from proxy.tracing: {proxy['args']}")
    if by[("Deployment", f"{prefix}-proxy")]["spec"].get("replicas") != 3:
        problems.append("proxy: replicas 3 expected without the HPA")
    lb = by[("Service", f"{prefix}-proxy")]
    if [p["name"] for p in lb["spec"]["ports"]] != ["http", "https"] or lb["spec"].get("type") != "LoadBalancer":
        problems.append("a LoadBalancer proxy Service must carry only the http and https ports")
    if [p.get("nodePort") for p in lb["spec"]["ports"]] != [30080, 30443]:
        problems.append("proxy.service.nodePort/httpsNodePort not applied")
    if "--default-certificate=gateways/default-tls" not in proxy["args"]:
        problems.append(f"proxy: --default-certificate expected from proxy.https.defaultCertificate: {proxy['args']}")
    if "switchyard.dev/scrape" in lb["metadata"]["labels"]:
        problems.append("the LoadBalancer Service must not be scraped")
    metrics = by[("Service", f"{prefix}-proxy-metrics")]
    if metrics["spec"].get("type") != "ClusterIP" or [p["port"] for p in metrics["spec"]["ports"]] != [9101]:
        problems.append("the proxy metrics Service must be ClusterIP with port 9101")
    sm = by[("ServiceMonitor", prefix)]
    if sm["spec"]["endpoints"][0]["port"] != "metrics" or sm["metadata"]["labels"].get("release") != "prometheus":
        problems.append("ServiceMonitor must scrape the metrics port and carry serviceMonitor.labels")
    for name, template in pod_specs(objects).items():
        for checksum in ("checksum/snapshot-token", "checksum/snapshot-ca"):
            if checksum in template["metadata"].get("annotations", {}):
                problems.append(f"{name}: no {checksum} with an existingSecret")
        if template["spec"]["containers"][0]["image"] != "switchyard-dev:1.2.3":
            problems.append(f"{name}: image.repository/tag not applied")
    if pod_specs(objects)[f"{prefix}-controller"]["metadata"]["annotations"] != {"team": "edge"}:
        problems.append("controller.podAnnotations not applied")
    if any(o["metadata"]["labels"].get("owner") != "platform" for o in objects):
        problems.append("commonLabels missing on some object")
    pdb = by[("PodDisruptionBudget", f"{prefix}-proxy")]["spec"]
    if pdb.get("minAvailable") != "50%" or "maxUnavailable" in pdb:
        problems.append("proxy PDB: minAvailable 50% expected alone")
    record("options: existingSecrets, LoadBalancer + metrics Service, ServiceMonitor, no HPA, overrides, shared nonce store", problems)


def scenario_no_rbac():
    objects = helm_template("switchyard", "switchyard-system",
                            "--set", "rbac.create=false",
                            "--set", "controller.serviceAccount.create=false",
                            "--set", "controller.serviceAccount.name=my-controller",
                            "--set", "proxy.serviceAccount.create=false",
                            "--set", "proxy.https.enabled=false")
    expected = expected_defaults("switchyard")
    expected = {o for o in expected if o[0] not in ("ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding",
                                                    "ServiceAccount")}
    problems = check_expected(objects, expected)
    pods = pod_specs(objects)
    if pods["switchyard-controller"]["spec"]["serviceAccountName"] != "my-controller":
        problems.append("controller.serviceAccount.name not used")
    if pods["switchyard-proxy"]["spec"]["serviceAccountName"] != "default":
        problems.append("proxy must fall back to the default ServiceAccount")
    proxy = container(objects, "switchyard-proxy")
    service = index(objects)[("Service", "switchyard-proxy")]
    if any(a.startswith("--https") for a in proxy["args"]) or "https" in [p["name"] for p in service["spec"]["ports"]]:
        problems.append("proxy.https.enabled=false must drop the HTTPS flags and ports")
    record("no RBAC, existing ServiceAccounts, no HTTPS", problems + check_schemas(objects))


def scenario_grafana_dashboard():
    """grafanaDashboard.enabled: one ConfigMap holding dashboards/switchyard.json byte for byte,
    with the sidecar's label (key and value from the values), extra labels and annotations, in
    the release namespace or grafanaDashboard.namespace; nothing else changes."""
    import json
    source = (CHART / "dashboards" / "switchyard.json").read_text()
    problems = []
    try:
        dashboard = json.loads(source)
    except ValueError as e:
        dashboard = {}
        problems.append(f"dashboards/switchyard.json is not JSON: {e}")
    if dashboard and (not isinstance(dashboard.get("schemaVersion"), int) or not dashboard.get("panels")):
        problems.append("dashboards/switchyard.json: no schemaVersion or no panels")
    cases = [
        ([], "switchyard-system", "grafana_dashboard", "1", {}, {}),
        (["--set", "grafanaDashboard.namespace=monitoring", "--set", "grafanaDashboard.label=dashboards.example.com/grafana",
          "--set", "grafanaDashboard.labelValue=switchyard", "--set", "grafanaDashboard.labels.team=edge",
          "--set", "grafanaDashboard.annotations.grafana_folder=Gateways"],
         "monitoring", "dashboards.example.com/grafana", "switchyard", {"team": "edge"}, {"grafana_folder": "Gateways"}),
    ]
    for args, namespace, key, value, labels, annotations in cases:
        objects = helm_template("switchyard", "switchyard-system", "--set", "grafanaDashboard.enabled=true", *args)
        label = " ".join(args[1::2]) or "enabled"
        expected = expected_defaults("switchyard") | {("ConfigMap", "switchyard-dashboard")}
        problems += [f"{label}: {p}" for p in check_expected(objects, expected)]
        problems += [f"{label}: {p}" for p in check_schemas(objects)]
        problems += [f"{label}: {p}" for p in check_namespaces([o for o in objects if o["kind"] != "ConfigMap"], "switchyard-system")]
        cm = index(objects).get(("ConfigMap", "switchyard-dashboard"))
        if cm is None:
            continue
        meta = cm["metadata"]
        if meta.get("namespace") != namespace:
            problems.append(f"{label}: ConfigMap in {meta.get('namespace')!r}, want {namespace!r}")
        got_labels = meta.get("labels", {})
        if got_labels.get(key) != value:
            problems.append(f"{label}: label {key}={got_labels.get(key)!r}, want {value!r}")
        for k, v in labels.items():
            if got_labels.get(k) != v:
                problems.append(f"{label}: extra label {k}={v} missing")
        if got_labels.get("app.kubernetes.io/instance") != "switchyard":
            problems.append(f"{label}: the chart's labels are missing")
        if meta.get("annotations", {}) != annotations and (annotations or meta.get("annotations")):
            problems.append(f"{label}: annotations {meta.get('annotations')}, want {annotations}")
        if cm.get("data", {}).keys() != {"switchyard.json"} or cm["data"]["switchyard.json"] != source.rstrip("\n"):
            problems.append(f"{label}: data.switchyard.json is not dashboards/switchyard.json")
    problems += promql_problems(dashboard)
    record("grafanaDashboard: ConfigMap with the sidecar label, namespace, labels, annotations, the JSON verbatim", problems)


def promql_problems(dashboard):
    """Every panel's expr and variable query parses as PromQL (`promtool check rules`, when
    installed; Grafana's variables replaced by values of their kind). That each metric exists
    is crates/switchyard/tests/dashboard.rs's check, against real scrapes."""
    if not shutil.which("promtool"):
        print("        (promtool not installed: the dashboard's PromQL syntax not checked)")
        return []

    def plain(expr):
        expr = expr.replace("$__rate_interval", "1m").replace("$__range", "1h")
        return re.sub(r"\$\{?[A-Za-z_]+\}?", ".*", expr)

    exprs = []
    def walk(panels):
        for panel in panels:
            exprs.extend((panel.get("title"), t["expr"]) for t in panel.get("targets", []) if "expr" in t)
            walk(panel.get("panels", []))
    walk(dashboard.get("panels", []))
    for v in dashboard.get("templating", {}).get("list", []):
        m = re.fullmatch(r"label_values\((.*),\s*\w+\)", v.get("definition", "").strip()) if v.get("type") == "query" else None
        if m:
            exprs.append((f"${v['name']}", m.group(1)))
    rules = {"groups": [{"name": "dashboard", "rules": [{"record": f"dashboard:q{i}", "expr": plain(e)}
                                                          for i, (_, e) in enumerate(exprs)]}]}
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as f:
        yaml.safe_dump(rules, f)
        f.flush()
        out = subprocess.run(["promtool", "check", "rules", f.name], capture_output=True, text=True)
    if out.returncode != 0:
        return [f"PromQL that does not parse: {(out.stdout + out.stderr).strip()} "
                f"(dashboard:qN is query N of the panels {[t for t, _ in exprs]})"]
    print(f"        (promtool: {len(exprs)} queries parse)")
    return []


def render_notes(*args):
    """NOTES.txt as `helm install` would print it. `helm template` skips NOTES, so a copy of the
    chart renders it with `tpl` inside a ConfigMap (a NOTES error would fail a real install)."""
    with tempfile.TemporaryDirectory() as tmp:
        chart = Path(tmp) / "switchyard"
        shutil.copytree(CHART, chart)
        (chart / "notes").mkdir()
        shutil.move(chart / "templates" / "NOTES.txt", chart / "notes" / "NOTES.txt")
        (chart / "templates" / "notes-check.yaml").write_text(
            'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: notes}\ndata:\n  notes: |\n'
            '    {{- tpl (.Files.Get "notes/NOTES.txt") . | nindent 4 }}\n')
        out = subprocess.run([HELM, "template", "switchyard", str(chart), "--namespace", "switchyard-system",
                              "--show-only", "templates/notes-check.yaml", *args],
                             capture_output=True, text=True)
        if out.returncode != 0:
            return None, out.stderr.strip()
        return yaml.safe_load(out.stdout)["data"]["notes"], ""


def scenario_notes():
    problems = []
    cases = [
        ([], ["port-forward service/switchyard-proxy 8080:8080", "rollout status deployment/switchyard-controller"],
         ["WARNING"]),
        (["--set", "snapshotToken.value=change-me"], ['placeholder "change-me"'], []),
        (["--set", "snapshotToken.existingSecret=mine", "--set", "serviceMonitor.enabled=true"],
         ['Secret "mine"', "ServiceMonitor"], ["WARNING"]),
        (["--set", "grafanaDashboard.enabled=true", "--set", "grafanaDashboard.namespace=monitoring"],
         ['ConfigMap "switchyard-dashboard" in namespace monitoring, labelled grafana_dashboard=1'], []),
    ]
    for args, want, unwanted in cases:
        notes, err = render_notes(*args)
        label = " ".join(args[1::2]) or "defaults"
        if notes is None:
            problems.append(f"{label}: NOTES.txt does not render: {err}")
            continue
        problems += [f"{label}: NOTES.txt lacks {w!r}" for w in want if w not in notes]
        problems += [f"{label}: NOTES.txt has {u!r}" for u in unwanted if u in notes]
    record("NOTES.txt renders (defaults, placeholder token, existingSecret + ServiceMonitor, dashboard)", problems)


def scenario_bad_values():
    """The values schema turns typos into errors instead of silently ignored keys."""
    out = subprocess.run([HELM, "template", "x", str(CHART), "--set", "proxy.replicas=3"],
                         capture_output=True, text=True)
    record("values.schema.json rejects an unknown key (proxy.replicas)",
           [] if out.returncode != 0 and "replicas" in out.stderr else ["helm accepted proxy.replicas"])


# --- YAML 1.1 readers ---------------------------------------------------------------------------

class Yaml12Loader(yaml.SafeLoader):
    """PyYAML with the implicit types of YAML 1.2's core schema, i.e. the JSON reading: only
    true/false are booleans, so `on`, `off`, `yes`, `no`, `y`, `n` stay strings."""


Yaml12Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
Yaml12Loader.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
                                   list("tTfF"))


def yaml11_key_problems(text, source):
    """Mapping keys (schema property names above all) that a YAML 1.1 reader (PyYAML's
    safe_load, kubectl, the API server's YAML path) reads differently from YAML 1.2 / JSON:
    a bare `on:` key becomes the boolean True, so a CRD property `on` is installed as "true".
    Returns (problems, number of CRDs seen)."""
    problems, crds = [], 0

    def walk(v11, v12, at):
        if isinstance(v12, dict):
            if not isinstance(v11, dict) or len(v11) != len(v12):
                problems.append(f"{source}: {at}: the mapping reads differently under YAML 1.1 (keys collide?)")
                return
            for (k11, c11), (k12, c12) in zip(v11.items(), v12.items()):
                if not isinstance(k11, str) or k11 != k12:
                    problems.append(f"{source}: {at}.{k12}: YAML 1.1 reads the key {k12!r} as {k11!r}")
                walk(c11, c12, f"{at}.{k12}")
        elif isinstance(v12, list):
            for i, (c11, c12) in enumerate(zip(v11, v12)):
                walk(c11, c12, f"{at}[{i}]")

    docs11 = [d for d in yaml.safe_load_all(text) if d]
    docs12 = [d for d in yaml.load_all(text, Loader=Yaml12Loader) if d]
    for d11, d12 in zip(docs11, docs12):
        name = f"{d12.get('kind')}/{d12.get('metadata', {}).get('name')}"
        crds += d12.get("kind") == "CustomResourceDefinition"
        walk(d11, d12, name)
    return problems, crds


def scenario_yaml11_property_names():
    """Every key of the CRDs (crds/, the chart rendered with its CRDs, deploy/) survives a
    YAML 1.1 reading; a known-bad CRD (a property named `on`) must be caught."""
    bad = ("kind: CustomResourceDefinition\nmetadata: {name: bad}\nspec:\n  versions:\n  - schema:\n"
           "      openAPIV3Schema:\n        properties:\n          on: {type: string}\n")
    problems, _ = yaml11_key_problems(bad, "self-test")
    problems = [] if problems else ["self-test: a CRD property named `on` was not caught"]
    want = len(crd_names())
    out = subprocess.run([HELM, "template", "switchyard", str(CHART), "--namespace", "switchyard-system",
                          "--include-crds"], capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"helm template --include-crds failed:\n{out.stderr}")
    sources = [(f"crds/{f.name}", f.read_text(), 1) for f in sorted((ROOT / "crds").glob("*.yaml"))]
    sources += [("helm template --include-crds", out.stdout, want),
                ("deploy/switchyard.yaml", (ROOT / "deploy" / "switchyard.yaml").read_text(), want),
                ("deploy/namespace.yaml", (ROOT / "deploy" / "namespace.yaml").read_text(), 0)]
    for source, text, expected_crds in sources:
        found, crds = yaml11_key_problems(text, source)
        problems += found
        if crds != expected_crds:
            problems.append(f"{source}: {crds} CRDs, expected {expected_crds}")
    record(f"CRD property names survive a YAML 1.1 reading (crds/, chart with CRDs, deploy/; {want} CRDs)", problems)


# --- e2e manifests ----------------------------------------------------------------------------

def structural_to_jsonschema(schema):
    """A CRD's openAPIV3Schema as JSON schema, with unknown fields rejected as `kubectl apply`
    (strict field validation) does. CEL rules (x-kubernetes-validations) are not evaluated."""
    s = copy.deepcopy(schema)

    def walk(node):
        if not isinstance(node, dict):
            return
        if node.pop("x-kubernetes-int-or-string", False):
            node.pop("type", None)
            node["anyOf"] = [{"type": "integer"}, {"type": "string"}]
        if node.pop("nullable", False) and "type" in node:
            node["type"] = [node["type"], "null"]
        if "properties" in node and "additionalProperties" not in node \
                and not node.get("x-kubernetes-preserve-unknown-fields"):
            node["additionalProperties"] = False
        for key in ("properties",):
            for child in node.get(key, {}).values():
                walk(child)
        for key in ("items", "additionalProperties"):
            walk(node.get(key))
        for key in ("allOf", "anyOf", "oneOf"):
            for child in node.get(key, []):
                walk(child)

    walk(s)
    props = s.setdefault("properties", {})
    props.update({"apiVersion": {"type": "string"}, "kind": {"type": "string"}, "metadata": {"type": "object"}})
    return s


def crd_validators():
    validators = {}
    for f in (ROOT / "crds").glob("*.yaml"):
        crd = yaml.safe_load(f.read_text())
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for v in crd["spec"]["versions"]:
            schema = structural_to_jsonschema(v["schema"]["openAPIV3Schema"])
            validators[(f"{group}/{v['name']}", kind)] = jsonschema.Draft7Validator(schema)
    return validators


def scenario_e2e_manifests():
    validators = crd_validators()
    problems, count = [], 0
    for f in sorted((ROOT / "e2e" / "manifests").glob("*.yaml")):
        for o in (d for d in yaml.safe_load_all(f.read_text()) if d):
            count += 1
            key = (o["apiVersion"], o["kind"])
            if o["apiVersion"].startswith("switchyard.dev/"):
                if key not in validators:
                    problems.append(f"{f.name}: no CRD for {key}")
                    continue
                for e in validators[key].iter_errors(o):
                    where = ".".join(str(p) for p in e.path)
                    problems.append(f"{f.name}: {o['kind']}/{o['metadata']['name']}: {where}: {e.message}")
            else:
                problems += [f"{f.name}: {e}" for e in check_schemas([o])]
    if count == 0:
        problems.append("no objects in e2e/manifests")
    record(f"e2e/manifests: {count} objects against Kubernetes schemas and the CRDs", problems)


def scenario_versions():
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    cargo = tomllib.loads((ROOT / "Cargo.toml").read_text())["workspace"]["package"]["version"]
    record(f"Chart.yaml appVersion {chart['appVersion']} == Cargo workspace version {cargo}",
           [] if str(chart["appVersion"]) == cargo else ["bump appVersion (and the chart version) in Chart.yaml"])


def main():
    for scenario in (scenario_versions, scenario_defaults, scenario_deploy, scenario_options,
                     scenario_no_rbac, scenario_grafana_dashboard, scenario_notes, scenario_bad_values, scenario_yaml11_property_names,
                     scenario_e2e_manifests):
        try:
            scenario()
        except Exception as e:  # one broken scenario must not hide the others' results
            record(f"{scenario.__name__}: crashed", [f"{type(e).__name__}: {e}"])
    failed = [name for ok, name, _ in RESULTS if not ok]
    print(f"check_packaging: {len(RESULTS) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
