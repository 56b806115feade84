#!/usr/bin/env bash
# End-to-end test of the Kubernetes packaging on a throwaway kind cluster:
#   build the image -> kind load -> helm install (restricted namespace) -> leader Lease ->
#   upstream + resources -> ApiRoutes Programmed -> requests through the proxy Service ->
#   helm upgrade keeps the token and does not roll the pods.
# Needs docker (a running engine), kind, kubectl, and helm (on PATH, or installed by
# scripts/install-helm.sh). Prints PASS and exits 0 when every check holds. The cluster is
# deleted on exit unless KEEP_CLUSTER=1. See e2e/README.md.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

CLUSTER=${KIND_CLUSTER_NAME:-switchyard-e2e}
CONTEXT=kind-$CLUSTER
IMAGE_TAG=${IMAGE_TAG:-e2e}
IMAGE=switchyard:$IMAGE_TAG
NAMESPACE=switchyard-system
APP_NAMESPACE=switchyard-e2e
RELEASE=switchyard
LOCAL_PORT=${LOCAL_PORT:-18080}
KEEP_CLUSTER=${KEEP_CLUSTER:-0}
WORK=$(mktemp -d)
PF_PID=""

log() { printf '\n==> %s\n' "$*"; }
fail() { printf '\nFAIL: %s\n' "$*" >&2; exit 1; }
k() { kubectl --context "$CONTEXT" "$@"; }

for tool in docker kind kubectl; do
  command -v "$tool" >/dev/null || fail "$tool is not installed (see e2e/README.md)"
done
docker info >/dev/null 2>&1 || fail "docker cannot reach a container engine"
HELM=$(command -v helm || bash scripts/install-helm.sh)
h() { "$HELM" --kube-context "$CONTEXT" "$@"; }

diagnostics() {
  echo "---- diagnostics ----"
  k get pods,svc,endpointslices,lease -n "$NAMESPACE" -o wide || true
  k get pods,svc -n "$APP_NAMESPACE" -o wide || true
  k get apiroutes,backendservices -n "$APP_NAMESPACE" -o yaml || true
  k get events -n "$NAMESPACE" --sort-by=.lastTimestamp | tail -n 30 || true
  for component in controller proxy; do
    echo "---- logs: $component ----"
    k logs -n "$NAMESPACE" -l "app.kubernetes.io/component=$component" --all-containers --prefix --tail=100 || true
  done
  [[ -f $WORK/port-forward.log ]] && { echo "---- port-forward ----"; cat "$WORK/port-forward.log"; }
}

cleanup() {
  local rc=$?
  if [[ -n $PF_PID ]]; then kill "$PF_PID" 2>/dev/null || true; fi
  if ((rc != 0)) && kind get clusters 2>/dev/null | grep -qx "$CLUSTER"; then diagnostics; fi
  if [[ $KEEP_CLUSTER == 1 ]]; then
    echo "keeping cluster $CLUSTER (kind delete cluster --name $CLUSTER)"
  else
    kind delete cluster --name "$CLUSTER" >/dev/null 2>&1 || true
  fi
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT

log "kind cluster $CLUSTER"
if kind get clusters 2>/dev/null | grep -qx "$CLUSTER"; then
  echo "reusing the existing cluster"
else
  kind create cluster --name "$CLUSTER" --wait 120s
fi

log "docker build -t $IMAGE"
# BuildKit: the Dockerfile uses cache mounts.
DOCKER_BUILDKIT=1 docker build -t "$IMAGE" .
kind load docker-image "$IMAGE" --name "$CLUSTER"

log "helm install $RELEASE into $NAMESPACE (Pod Security: restricted)"
# deploy/namespace.yaml enforces the restricted Pod Security Standard: pods that do not meet
# it are refused, so a passing install proves the chart's security contexts.
k apply -f deploy/namespace.yaml
h upgrade --install "$RELEASE" charts/switchyard --namespace "$NAMESPACE" \
  --set image.tag="$IMAGE_TAG" --wait --timeout 5m
k rollout status -n "$NAMESPACE" "deployment/$RELEASE-controller" --timeout=120s
k rollout status -n "$NAMESPACE" "deployment/$RELEASE-proxy" --timeout=120s

log "leader election"
holder=""
for _ in $(seq 60); do
  holder=$(k get lease switchyard-controller -n "$NAMESPACE" -o jsonpath='{.spec.holderIdentity}' 2>/dev/null || true)
  [[ -n $holder ]] && break
  sleep 1
done
[[ $holder == "$RELEASE-controller-"* ]] || fail "Lease switchyard-controller has holder '$holder', want a controller pod"
echo "leader: $holder"

log "upstream and resources ($APP_NAMESPACE)"
k apply -f e2e/manifests/upstream.yaml
k rollout status -n "$APP_NAMESPACE" deployment/upstream --timeout=180s
k apply -f e2e/manifests/resources.yaml
k wait --for=condition=Programmed apiroute --all -n "$APP_NAMESPACE" --timeout=120s
k get apiroutes,backendservices -n "$APP_NAMESPACE"
# kubectl reads manifests as YAML 1.1 (a bare `on:` key would arrive as "true" and be pruned).
retry_on=$(k get apiroute files -n "$APP_NAMESPACE" -o jsonpath='{.spec.retries.retryOn}')
[[ $retry_on == '["gateway-error","reset"]' ]] || fail "ApiRoute files: stored retries.retryOn is '$retry_on'"
echo "retries.retryOn stored as $retry_on"

log "port-forward service/$RELEASE-proxy to 127.0.0.1:$LOCAL_PORT"
# kubectl itself, not the k function: $! must be kubectl's PID for the kill in cleanup.
kubectl --context "$CONTEXT" port-forward -n "$NAMESPACE" "service/$RELEASE-proxy" "$LOCAL_PORT:8080" \
  >"$WORK/port-forward.log" 2>&1 &
PF_PID=$!
for _ in $(seq 50); do
  curl -s -o /dev/null "http://127.0.0.1:$LOCAL_PORT/" && break
  kill -0 "$PF_PID" 2>/dev/null || fail "kubectl port-forward exited"
  sleep 0.2
done

# expect PATH STATUS TEXT: retries for up to 30 s, because Programmed means "in the published
# snapshot" and the proxies pick it up on their next long-poll answer, a moment later.
expect() {
  local path=$1 want_status=$2 want_text=$3 status=""
  for _ in $(seq 60); do
    status=$(curl -sS -o "$WORK/body" -D "$WORK/headers" -w '%{http_code}' "http://127.0.0.1:$LOCAL_PORT$path" || true)
    if [[ $status == "$want_status" ]] && grep -qiF -- "$want_text" "$WORK/body" "$WORK/headers"; then
      printf 'ok   GET %-18s -> %s, has "%s"\n' "$path" "$status" "$want_text"
      return 0
    fi
    sleep 0.5
  done
  echo "---- last response to GET $path ----"; cat "$WORK/headers" "$WORK/body" 2>/dev/null || true
  fail "GET $path: got $status, want $want_status with \"$want_text\""
}

log "requests through the proxy"
expect /hello            200 '{"message":"hello from switchyard"}'
expect /hello            200 'x-ca-request-id'
expect /files/hello.txt  200 'Hello from the upstream, through Switchyard.'
expect /files/echo       200 'path=/echo x-gateway=switchyard-e2e'
expect /nope             404 'A404NF'

log "the admin listeners are in no Service; /config_dump redacts secrets (through kubectl port-forward)"
k get service -n "$NAMESPACE" -o jsonpath='{range .items[*]}{.spec.ports[*].name}{"\n"}{end}' | grep -qw admin \
  && fail "a Service exposes an admin port"
k port-forward -n "$NAMESPACE" "deployment/$RELEASE-proxy" 19901:9901 >/dev/null 2>&1 &
ADMIN_PF=$!
for _ in $(seq 1 50); do curl -s -o "$WORK/dump" http://127.0.0.1:19901/config_dump && break; sleep 0.2; done
kill "$ADMIN_PF" 2>/dev/null || true
grep -q '"version"' "$WORK/dump" || fail "no /config_dump through port-forward to the admin port"
grep -qF '"retries":{"attempts":2,"on_connect_failure":false,"on_gateway_error":true,"on_reset":true' "$WORK/dump" \
  || fail "the proxy's snapshot lacks the files route's retries (gateway-error, reset)"
echo "admin reachable by port-forward only"

log "helm upgrade keeps the snapshot token, the snapshot certificate and the pods"
tls_before=$(k get secret "$RELEASE-snapshot-tls" -n "$NAMESPACE" -o jsonpath='{.data.ca\.crt}')
token_before=$(k get secret "$RELEASE-snapshot-token" -n "$NAMESPACE" -o jsonpath='{.data.token}')
generation_before=$(k get deployment "$RELEASE-proxy" -n "$NAMESPACE" -o jsonpath='{.metadata.generation}')
h upgrade "$RELEASE" charts/switchyard --namespace "$NAMESPACE" --reuse-values --wait --timeout 5m
token_after=$(k get secret "$RELEASE-snapshot-token" -n "$NAMESPACE" -o jsonpath='{.data.token}')
generation_after=$(k get deployment "$RELEASE-proxy" -n "$NAMESPACE" -o jsonpath='{.metadata.generation}')
[[ -n $token_before && $token_before == "$token_after" ]] || fail "helm upgrade changed the snapshot token"
tls_after=$(k get secret "$RELEASE-snapshot-tls" -n "$NAMESPACE" -o jsonpath='{.data.ca\.crt}')
[[ -n $tls_before && $tls_before == "$tls_after" ]] || fail "helm upgrade changed the snapshot CA"
[[ $generation_before == "$generation_after" ]] || fail "helm upgrade rolled the proxy pods (generation $generation_before -> $generation_after)"
echo "token, CA and proxy Deployment unchanged"
expect /hello 200 'hello from switchyard'

printf '\nPASS: switchyard e2e on kind (%s)\n' "$CLUSTER"
