#!/usr/bin/env bash
# Routing at scale, in one run: for each route count (hosts and templates mixed), a
# standalone Switchyard in front of one nginx upstream: req/s and p99 with wrk to a route
# in the middle of the table, the proxy's RSS, and the time from a changed resource to the
# proxy serving it, both in-process (standalone) and through the snapshot server (a
# `switchyard proxy` pulling from the standalone's snapshot listener).
#
# Env (defaults): ROUTES_COUNTS="100 10000 100000" ROUTES_DURATION=8s ROUTES_WARMUP=2s
#   ROUTES_CONNECTIONS=64 ROUTES_CHANGES=10 (changes timed per count; 0 skips)
#   SWITCHYARD_BIN=path (else target/release/switchyard, built when missing)
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
COUNTS=${ROUTES_COUNTS:-100 10000 100000}
DURATION=${ROUTES_DURATION:-8s}
WARMUP=${ROUTES_WARMUP:-2s}
CONNS=${ROUTES_CONNECTIONS:-64}
CHANGES=${ROUTES_CHANGES:-10}
BIN=${SWITCHYARD_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/switchyard}

LOG_PREFIX=routes
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
command -v wrk >/dev/null || die "wrk is required (apt-get install wrk)"
command -v nginx >/dev/null || die "nginx is required (apt-get install nginx-light)"
if [[ ! -x $BIN ]]; then
  log "cargo build --release -p switchyard"
  cargo build --release -p switchyard
fi

PIDS=()
stop_pid() {
  local pid=$1 i
  kill -TERM "$pid" 2>/dev/null || return 0
  for ((i = 0; i < 50; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}
cleanup() {
  local rc=$? pid
  trap - EXIT INT TERM
  for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
start() {
  local name=$1; shift
  "$@" >"$RUN/$name.log" 2>&1 &
  LAST_PID=$!
  PIDS+=("$LAST_PID")
}

mkdir -p .bench
RUN=$(mktemp -d "$ROOT/.bench/routes-$(date +%Y%m%d-%H%M%S)-XXXX")
chmod 755 "$RUN"
log "run dir: $RUN"
read -r UP_PORT < <(free_ports 1)
nginx_conf upstream 1 "  server { listen 127.0.0.1:$UP_PORT; default_type text/plain; location / { return 200 \"ok\\n\"; } }"
start upstream nginx -p "$RUN/upstream" -c "$RUN/upstream/nginx.conf"
wait_http "$RUN/upstream.log" "$LAST_PID" "http://127.0.0.1:$UP_PORT/" 15

# routes_yaml N: N ApiRoutes over one backend, mixed: a third Template
# (/svcR/items/{id}) on 1 of 100 hosts, a third Exact (/svcR/status) on a wildcard host,
# a third Prefix (/svcR/files) with no host. The route probed is R = N/2 (a template).
routes_yaml() {
  python3 - "$1" "$UP_PORT" <<'PY'
import sys
n, port = int(sys.argv[1]), sys.argv[2]
out = [f"apiVersion: switchyard.dev/v1alpha1\nkind: BackendService\nmetadata: {{name: up}}\nspec: {{http: {{urls: ['http://127.0.0.1:{port}']}}}}\n"]
for r in range(n):
    kind = r % 3
    if kind == 0:
        m, hosts = f"{{path: '/svc{r}/items/{{id}}', pathType: Template, methods: [GET]}}", f"[api{r % 100}.example.com]"
    elif kind == 1:
        m, hosts = f"{{path: /svc{r}/status, pathType: Exact}}", f"['*.w{r % 100}.example.com']"
    else:
        m, hosts = f"{{path: /svc{r}/files, pathType: Prefix}}", "[]"
    out.append(f"apiVersion: switchyard.dev/v1alpha1\nkind: ApiRoute\nmetadata: {{name: r{r}}}\nspec:\n  hosts: {hosts}\n  match: {m}\n  backendRefs: [{{name: up}}]\n")
sys.stdout.write("---\n".join(out))
PY
}

# wait_status URL HOST CODE SECONDS: poll until URL (with Host) answers CODE; prints ms taken.
wait_status() {
  python3 - "$@" <<'PY'
import http.client, sys, time
url, host, want, secs = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
hostport, path = url.split("/", 3)[2], "/" + url.split("/", 3)[3]
h, p = hostport.split(":")
start = time.monotonic()
conn = None
while time.monotonic() - start < secs:
    try:
        conn = conn or http.client.HTTPConnection(h, int(p), timeout=5)
        conn.request("GET", path, headers={"Host": host})
        r = conn.getresponse(); r.read()
        if r.status == want:
            print(f"{(time.monotonic() - start) * 1000:.1f}"); sys.exit(0)
    except Exception:
        conn = None
    time.sleep(0.002)
sys.exit(1)
PY
}

rss_mib() { awk '/^VmRSS:/ {printf "%.1f", $2 / 1024}' "/proc/$1/status"; }

# percentile P FILE: the P-th percentile (nearest rank) of the numbers in FILE.
percentile() { sort -n "$2" | awk -v p="$1" '{ a[NR] = $1 } END { i = int((p / 100) * NR + 0.999); if (i < 1) i = 1; print a[i] }'; }

# time_changes N DIR URL: rewrite the probed route's file CHANGES times, each time to a
# new path, and record how long until URL's proxy serves it (one line per change, ms).
time_changes() {
  local dir=$1 url_base=$2 out=$3 i ms
  : >"$out"
  for ((i = 1; i <= CHANGES; i++)); do
    cat >"$dir/changed.yaml" <<EOF
apiVersion: switchyard.dev/v1alpha1
kind: ApiRoute
metadata: {name: changed}
spec:
  hosts: [changed.example.com]
  match: {path: /changed/v$i, pathType: Exact}
  backendRefs: [{name: up}]
EOF
    ms=$(wait_status "$url_base/changed/v$i" changed.example.com 200 120) || die "change $i never served ($url_base)"
    echo "$ms" >>"$out"
  done
}

SUMMARY=$RUN/summary.txt
{
  echo "# routes bench $(date -u +%Y-%m-%dT%H:%M:%SZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo none)"
  echo "# $(nproc) cores, wrk -t1 -c$CONNS -d$DURATION (warm-up $WARMUP), $CHANGES changes per count"
  printf '%-8s %10s %8s %9s %9s %12s %12s %12s %12s %10s %7s\n' routes 'req/s' 'p99 ms' 'RSS MiB' 'proxy MiB' 'ready s' 'local p50' 'local p99' 'remote p50' 'remote p99' deltas
} | tee "$SUMMARY"

for n in $COUNTS; do
  conf=$RUN/config-$n
  mkdir -p "$conf"
  routes_yaml "$n" >"$conf/routes.yaml"
  printf 'bench-token-%s\n' "$RANDOM$RANDOM" >"$RUN/token"
  read -r SY_PORT SY_ADMIN SNAP_PORT PX_PORT PX_ADMIN PX_METRICS < <(free_ports 6)
  started=$(date +%s.%N)
  start "standalone-$n" "$BIN" standalone --config-dir "$conf" --access-log off \
    --listen "127.0.0.1:$SY_PORT" --admin-listen "127.0.0.1:$SY_ADMIN" \
    --snapshot-listen "127.0.0.1:$SNAP_PORT" --token-file "$RUN/token" --snapshot-insecure-http
  SY_PID=$LAST_PID
  probe=$((n / 2 / 3 * 3)) # a template route
  url="http://127.0.0.1:$SY_PORT/svc$probe/items/42"
  wait_status "$url" "api$((probe % 100)).example.com" 200 300 >/dev/null || die "standalone with $n routes never served $url"
  ready=$(awk -v s="$started" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }')
  wrk -t1 -c"$CONNS" -d"$WARMUP" -H "Host: api$((probe % 100)).example.com" "$url" >/dev/null
  wrk -t1 -c"$CONNS" -d"$DURATION" --latency -H "Host: api$((probe % 100)).example.com" "$url" >"$RUN/wrk-$n.txt"
  rps=$(awk '/^Requests\/sec:/ {printf "%.0f", $2}' "$RUN/wrk-$n.txt")
  p99=$(awk '$1 == "99%" { v = $2 + 0; u = $2; sub(/^[0-9.]+/, "", u)
    printf "%.2f", (u == "us" ? v / 1000 : u == "s" ? v * 1000 : v) }' "$RUN/wrk-$n.txt")
  non2xx=$(awk '/Non-2xx or 3xx responses:/ { n += $NF } END { print n + 0 }' "$RUN/wrk-$n.txt")
  ((non2xx == 0)) || die "$non2xx non-2xx answers with $n routes ($RUN/wrk-$n.txt)"
  rss=$(rss_mib "$SY_PID")
  lp50=- lp99=- rp50=- rp99=- prss=- deltas=-
  if ((CHANGES > 0)); then
    time_changes "$conf" "http://127.0.0.1:$SY_PORT" "$RUN/local-$n.txt"
    start "proxy-$n" "$BIN" proxy --controller "http://127.0.0.1:$SNAP_PORT" --controller-insecure-http \
      --token-file "$RUN/token" --access-log off --listen "127.0.0.1:$PX_PORT" \
      --admin-listen "127.0.0.1:$PX_ADMIN" --metrics-listen "127.0.0.1:$PX_METRICS"
    PX_PID=$LAST_PID
    wait_status "http://127.0.0.1:$PX_PORT/svc$probe/items/42" "api$((probe % 100)).example.com" 200 300 >/dev/null ||
      die "proxy with $n routes never served"
    # The proxy pod's own memory (no controller copies: resources, statuses, the publish):
    # after traffic through it.
    wrk -t1 -c"$CONNS" -d"$WARMUP" -H "Host: api$((probe % 100)).example.com" "http://127.0.0.1:$PX_PORT/svc$probe/items/42" >/dev/null
    prss=$(rss_mib "$PX_PID")
    time_changes "$conf" "http://127.0.0.1:$PX_PORT" "$RUN/remote-$n.txt"
    # How the proxy got its changes: built from deltas, or whole snapshots.
    deltas=$(curl -s -m 5 "http://127.0.0.1:$PX_METRICS/metrics" | awk '/^switchyard_proxy_snapshot_deltas_total / {print $2}')
    stop_pid "$PX_PID"
    lp50=$(percentile 50 "$RUN/local-$n.txt") lp99=$(percentile 99 "$RUN/local-$n.txt")
    rp50=$(percentile 50 "$RUN/remote-$n.txt") rp99=$(percentile 99 "$RUN/remote-$n.txt")
  fi
  stop_pid "$SY_PID"
  printf '%-8s %10s %8s %9s %9s %12s %12s %12s %12s %10s %7s\n' "$n" "$rps" "$p99" "$rss" "$prss" "$ready" "$lp50" "$lp99" "$rp50" "$rp99" "${deltas:--}" | tee -a "$SUMMARY"
done
echo "(RSS MiB: the standalone (controller and proxy in one process) after wrk; proxy MiB: a \`switchyard proxy\` pulling its snapshot from it, after ${WARMUP} of wrk through it)" | tee -a "$SUMMARY"
echo "(change times in ms: a new route written to the folder until the proxy answers it; local = standalone, remote = a proxy pulling from its snapshot listener; deltas: the snapshots that proxy built from pulled deltas rather than pulled whole)" | tee -a "$SUMMARY"
