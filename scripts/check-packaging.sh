#!/usr/bin/env bash
# Checks the Kubernetes packaging offline (no cluster, no container engine needed):
#   1. helm is installed (scripts/install-helm.sh, cached in .tools/helm)
#   2. helm lint --strict, with the default values and with every option on
#   3. deploy/ is what scripts/render-deploy.sh renders now (fails on drift)
#   4. charts/switchyard/crds/ is byte-identical to crds/
#   5. the chart's values table and values.schema.json match values.yaml
#   6. rendered objects: Kubernetes schemas (kubernetes-validate, in .tools/venv), expected
#      objects, the contract with the binary, least-privilege RBAC, pod security
#      (scripts/check_packaging.py), plus e2e/manifests, and that every CRD key (crds/, the
#      chart with its CRDs, deploy/) reads the same under YAML 1.1 (kubectl) as under JSON
#   7. shellcheck on the packaging and e2e scripts
# Prints PASS/FAIL per step and a summary; exits 1 when anything failed.
# First run on a fresh machine: ~1 min (helm from npm, kubernetes-validate from PyPI).
set -uo pipefail   # not -e: every step runs, the summary tells which failed
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1

FAILED=()
PASSED=()

step() {  # step NAME COMMAND...: runs COMMAND, records PASS/FAIL under NAME
  local name=$1; shift
  printf '\n== %s\n' "$name"
  if "$@"; then PASSED+=("$name"); printf 'PASS  %s\n' "$name"
  else FAILED+=("$name"); printf 'FAIL  %s\n' "$name"; fi
}

PY=""
setup_venv() { PY=$(bash scripts/packaging-venv.sh) && "$PY" -c 'import kubernetes_validate as k; print("kubernetes-validate", k.__version__)'; }

lint() {
  "$HELM" lint --strict charts/switchyard &&
    "$HELM" lint --strict charts/switchyard --namespace gateways \
      --set serviceMonitor.enabled=true --set snapshotToken.existingSecret=t \
      --set proxy.service.type=LoadBalancer --set proxy.autoscaling.enabled=false \
      --set proxy.workers=2 --set rbac.create=false --set grafanaDashboard.enabled=true
}

deploy_is_current() {
  local tmp rc=0
  tmp=$(mktemp -d)
  HELM=$HELM bash scripts/render-deploy.sh --out "$tmp" 2>/dev/null || { rm -rf "$tmp"; return 1; }
  for f in switchyard.yaml namespace.yaml; do
    if ! diff -u "deploy/$f" "$tmp/$f"; then
      echo "deploy/$f is out of date: run scripts/render-deploy.sh and commit the result" >&2
      rc=1
    fi
  done
  rm -rf "$tmp"
  return $rc
}

shellcheck_scripts() {
  if ! command -v shellcheck >/dev/null; then
    if ((EUID == 0)) && command -v apt-get >/dev/null; then
      echo "installing shellcheck"
      { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends shellcheck; } >/dev/null
    fi
    command -v shellcheck >/dev/null || { echo "shellcheck is not installed" >&2; return 1; }
  fi
  shellcheck scripts/install-helm.sh scripts/packaging-venv.sh scripts/render-deploy.sh \
    scripts/sync-chart-crds.sh scripts/check-packaging.sh e2e/kind.sh
}

HELM=""
install_helm() { HELM=$(bash scripts/install-helm.sh) && "$HELM" version --short; }

step "install helm (.tools/helm)" install_helm
step "install kubernetes-validate (.tools/venv)" setup_venv
if [[ -n $HELM ]]; then
  step "helm lint --strict" lint
  step "deploy/ matches the chart (scripts/render-deploy.sh)" deploy_is_current
fi
step "chart crds/ == crds/ byte for byte" bash scripts/sync-chart-crds.sh --check
if [[ -n $PY ]]; then
  step "values table and values.schema.json are current" "$PY" scripts/chart_values.py --check
  if [[ -n $HELM ]]; then
    step "rendered objects (scripts/check_packaging.py)" env HELM="$HELM" "$PY" scripts/check_packaging.py
  fi
fi
step "shellcheck" shellcheck_scripts

printf '\n== packaging summary\n'
for name in "${PASSED[@]}"; do printf 'PASS  %s\n' "$name"; done
for name in "${FAILED[@]}"; do printf 'FAIL  %s\n' "$name"; done
if ((${#FAILED[@]})); then
  printf 'packaging: FAIL\npackaging: %d passed, %d failed\n' "${#PASSED[@]}" "${#FAILED[@]}"
  exit 1
fi
printf 'packaging: PASS\npackaging: %d passed, 0 failed\n' "${#PASSED[@]}"
