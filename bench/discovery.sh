#!/usr/bin/env bash
# Discovery benchmark: how long a registry change takes to reach traffic through the
# gateway (standalone, the release binary) for ZooKeeper and Nacos (rnacos), next to the
# registry's own push latency seen by an independent subscriber in the same run, and how
# long a fresh watch takes to read 1,000 instances (and, for ZooKeeper, what a change costs
# when the watched path also holds 1,000 idle instances). The work is the ignored integration
# test crates/switchyard/tests/discovery_bench.rs (method: docs/benchmarks.md); it prints a
# table with PASS/FAIL for the targets and fails when one is missed.
#
# Needs ZooKeeper (Debian package `zookeeper`) and rnacos ($SWITCHYARD_RNACOS, `rnacos` on
# PATH, or the copy scripts/test.sh installs); `bash scripts/test.sh` installs both.
#
# Env (defaults): DISCOVERY_BENCH_ZK_CHANGES=100 DISCOVERY_BENCH_ZK_LARGE_CHANGES=30 (0 skips)
#   DISCOVERY_BENCH_NACOS_CHANGES=50
#   DISCOVERY_BENCH_RESYNC_INSTANCES=1000 DISCOVERY_BENCH_RESYNC_RUNS=10
#   DISCOVERY_BENCH_GAP_MS=0 (pause between two requests of the traffic loop)
# The report is also written to .bench/discovery-last.txt.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD

LOG_PREFIX=discovery
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

for tool in cargo java; do
  command -v "$tool" >/dev/null || die "$tool is required"
done
if [[ -z ${SWITCHYARD_ZOOKEEPER_CLASSPATH:-} && ! -f /usr/share/java/zookeeper.jar ]]; then
  die "ZooKeeper is not installed (apt-get install -y --no-install-recommends zookeeper, or bash scripts/test.sh)"
fi
if [[ -z ${SWITCHYARD_RNACOS:-} ]] && ! command -v rnacos >/dev/null; then
  # Where scripts/test.sh caches it, then the testing module's own fallback.
  for candidate in "${SWITCHYARD_TOOLS:-${HOME:-/root}/.cache/switchyard}"/rnacos-*/bin/rnacos /tmp/rnacos-root/bin/rnacos; do
    if [[ -x $candidate ]]; then export SWITCHYARD_RNACOS=$candidate; break; fi
  done
  [[ -n ${SWITCHYARD_RNACOS:-} ]] || die "rnacos not found: set SWITCHYARD_RNACOS, or run bash scripts/test.sh to install it"
fi

log "cargo test --release -p switchyard --test discovery_bench --no-run"
cargo test --release -p switchyard --test discovery_bench --no-run

# The test runs in a process group of its own (set -m) with the servers it starts (ZooKeeper,
# rnacos, switchyard), so that if this script is interrupted the whole group goes, even
# where the test binary had no chance to drop its servers.
PGID=
cleanup() {
  local rc=$? i
  trap - EXIT INT TERM
  if [[ -n $PGID ]] && kill -0 -- "-$PGID" 2>/dev/null; then
    kill -TERM -- "-$PGID" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do kill -0 -- "-$PGID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL -- "-$PGID" 2>/dev/null || true
    log "stopped the benchmark's process group $PGID"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

mkdir -p .bench
OUT=$ROOT/.bench/discovery-last.txt
log "running the benchmark (about 2 minutes; report also in $OUT)"
set -m
cargo test --release -p switchyard --test discovery_bench -- --ignored --nocapture --test-threads 1 > >(tee "$OUT") &
PGID=$!
set +m
rc=0
wait "$PGID" || rc=$?
PGID=
exit "$rc"
