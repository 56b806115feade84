#!/usr/bin/env bash
# Memory flatness (issue 18): RSS of a `switchyard proxy` (pulling over HTTPS from a
# `switchyard standalone` with --snapshot-listen) over MEMORY_REQUESTS requests (wrk through
# the proxy to an nginx upstream, in chunks, RSS sampled after each), then RSS of both over
# MEMORY_SWAPS snapshot swaps (the folder rewritten: a mock's body and the http backend's
# timeout change each time, so routes and a backend runtime are rebuilt; each swap waited
# for on the proxy). Everything lands in .bench/memory-*/; summary in summary.txt.
#
# Env (defaults): MEMORY_REQUESTS=1000000 MEMORY_SWAPS=1000 MEMORY_CHUNK=5s (wrk run per
#   RSS sample) MEMORY_CONNECTIONS=64 MEMORY_WARMUP=5s MEMORY_SAMPLE_EVERY=100 (swaps)
#   MEMORY_MAX_GROWTH_MIB=8 (exit 1 when RSS after the run exceeds RSS after the warm-up by
#   more) SWITCHYARD_BIN=path (use this binary, skip cargo build)
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD

REQUESTS=${MEMORY_REQUESTS:-1000000}
SWAPS=${MEMORY_SWAPS:-1000}
CHUNK=${MEMORY_CHUNK:-5s}
CONNS=${MEMORY_CONNECTIONS:-64}
WARMUP=${MEMORY_WARMUP:-5s}
SAMPLE_EVERY=${MEMORY_SAMPLE_EVERY:-100}
MAX_GROWTH_MIB=${MEMORY_MAX_GROWTH_MIB:-8}
BIN=${SWITCHYARD_BIN:-$ROOT/target/release/switchyard}

LOG_PREFIX=memory
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

PIDS=()
cleanup() {
  local rc=$? pid i
  trap - EXIT INT TERM
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do
    for ((i = 0; i < 50; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  ((${#PIDS[@]})) && log "stopped servers: ${PIDS[*]}"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# start NAME CMD...: start a server in the background, record its PID.
start() {
  local name=$1; shift
  "$@" >"$RUN/$name.log" 2>&1 &
  PIDS+=("$!")
  LAST_PID=$!
  log "started $name (pid $LAST_PID)"
}

# rss_kib PID: the resident set size in KiB.
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }

for tool in wrk nginx curl openssl python3; do command -v "$tool" >/dev/null || die "$tool is required"; done
if [[ -z ${SWITCHYARD_BIN:-} ]]; then
  log "cargo build --release -p switchyard"
  cargo build --release -p switchyard
fi
[[ -x $BIN ]] || die "switchyard binary $BIN not found"

mkdir -p .bench
RUN=$(mktemp -d "$ROOT/.bench/memory-$(date +%Y%m%d-%H%M%S)-XXXX")
chmod 755 "$RUN" # nginx workers run as nobody when started by root
log "run dir: $RUN"
read -r UP_PORT SA_PORT SA_ADMIN SNAP_PORT PX_PORT PX_ADMIN PX_METRICS < <(free_ports 7)

# A CA and the snapshot listener's certificate for 127.0.0.1 (rustls refuses a CA as the leaf).
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=memory-bench-ca \
  -keyout "$RUN/ca.key" -out "$RUN/ca.crt" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=127.0.0.1 \
  -keyout "$RUN/tls.key" -out "$RUN/tls.csr" 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1\nbasicConstraints=critical,CA:FALSE\n' >"$RUN/tls.ext"
openssl x509 -req -in "$RUN/tls.csr" -CA "$RUN/ca.crt" -CAkey "$RUN/ca.key" -CAcreateserial -days 2 \
  -extfile "$RUN/tls.ext" -out "$RUN/tls.crt" 2>/dev/null
echo "memory-bench-token" >"$RUN/token"

nginx_conf upstream 1 "  server { listen 127.0.0.1:$UP_PORT; default_type text/plain; location / { return 200 \"ok\\n\"; } }"
start upstream nginx -p "$RUN/upstream" -c "$RUN/upstream/nginx.conf"
wait_http "$RUN/upstream.log" "$LAST_PID" "http://127.0.0.1:$UP_PORT/" 15

# write_config N: the folder's one file for version N (atomically: temp file, rename).
write_config() {
  cat >"$RUN/config/.api.yaml.tmp" <<EOF
apiVersion: switchyard.dev/v1alpha1
kind: BackendService
metadata: {name: upstream}
spec:
  http: {urls: ["http://127.0.0.1:$UP_PORT"]}
  timeout: $((5000 + $1))ms
---
apiVersion: switchyard.dev/v1alpha1
kind: ApiRoute
metadata: {name: bench}
spec: {match: {path: /, pathType: Prefix}, backendRefs: [{name: upstream}]}
---
apiVersion: switchyard.dev/v1alpha1
kind: BackendService
metadata: {name: version}
spec: {mock: {statusCode: 200, body: "v$1"}}
---
apiVersion: switchyard.dev/v1alpha1
kind: ApiRoute
metadata: {name: version}
spec: {match: {path: /version}, backendRefs: [{name: version}]}
EOF
  mv "$RUN/config/.api.yaml.tmp" "$RUN/config/api.yaml"
}
mkdir -p "$RUN/config" "$RUN/cache"
write_config 0

start standalone "$BIN" standalone --config-dir "$RUN/config" --listen "127.0.0.1:$SA_PORT" \
  --admin-listen "127.0.0.1:$SA_ADMIN" --snapshot-listen "127.0.0.1:$SNAP_PORT" --token-file "$RUN/token" \
  --snapshot-tls-cert "$RUN/tls.crt" --snapshot-tls-key "$RUN/tls.key"
SA_PID=$LAST_PID
wait_http "$RUN/standalone.log" "$SA_PID" "http://127.0.0.1:$SA_ADMIN/readyz" 15
start proxy "$BIN" proxy --controller "https://127.0.0.1:$SNAP_PORT" --controller-ca "$RUN/ca.crt" \
  --token-file "$RUN/token" --cache-dir "$RUN/cache" --listen "127.0.0.1:$PX_PORT" \
  --admin-listen "127.0.0.1:$PX_ADMIN" --metrics-listen "127.0.0.1:$PX_METRICS"
PX_PID=$LAST_PID
wait_http "$RUN/proxy.log" "$PX_PID" "http://127.0.0.1:$PX_ADMIN/readyz" 15
wait_http "$RUN/proxy.log" "$PX_PID" "http://127.0.0.1:$PX_PORT/" 15

# ------------------------------------------------------------- requests ---
# wrk_chunk DURATION FILE: one wrk run through the proxy; prints "requests errors".
wrk_chunk() {
  wrk -t1 -c"$CONNS" -d"$1" "http://127.0.0.1:$PX_PORT/" >"$2"
  awk '/requests in/ { r = $1 }
    /Socket errors:/ { gsub(/,/, ""); e += $4 + $6 + $8 + $10 }
    /Non-2xx or 3xx responses:/ { e += $NF } END { print r + 0, e + 0 }' "$2"
}

log "requests: warm-up $WARMUP, then wrk -t1 -c$CONNS in $CHUNK runs until $REQUESTS requests"
read -r WARM_REQ WARM_ERR < <(wrk_chunk "$WARMUP" "$RUN/wrk-warmup.txt")
RSS_START=$(rss_kib "$PX_PID")
{
  echo "# requests through the proxy: warm-up $WARM_REQ requests ($WARM_ERR errors), then:"
  printf '%12s %10s %12s\n' requests errors 'proxy RSS MiB'
  printf '%12s %10s %12s\n' 0 0 "$(mib "$RSS_START")"
} >"$RUN/requests.txt"
TOTAL=0 ERRORS=0 i=0
while ((TOTAL < REQUESTS)); do
  read -r n e < <(wrk_chunk "$CHUNK" "$RUN/wrk-$i.txt")
  ((n > 0)) || die "wrk made no requests ($RUN/wrk-$i.txt)"
  TOTAL=$((TOTAL + n)) ERRORS=$((ERRORS + e)) i=$((i + 1))
  printf '%12s %10s %12s\n' "$TOTAL" "$ERRORS" "$(mib "$(rss_kib "$PX_PID")")" >>"$RUN/requests.txt"
done
RSS_END=$(rss_kib "$PX_PID")
cat "$RUN/requests.txt" >&2

# ---------------------------------------------------------------- swaps ---
swaps_total() {
  curl -s "http://127.0.0.1:$PX_METRICS/metrics" | awk '/^switchyard_proxy_snapshot_swaps_total / {print $2}'
}
# wait_version N: until the proxy serves v<N> (at most 20 s).
wait_version() {
  local j
  for ((j = 0; j < 2000; j++)); do
    [[ $(curl -s -m 2 "http://127.0.0.1:$PX_PORT/version" || true) == "v$1" ]] && return 0
    sleep 0.01
  done
  die "the proxy did not serve v$1 within 20 s (logs in $RUN)"
}

log "swaps: $SWAPS folder changes, each waited for on the proxy"
SWAPS_BEFORE=$(swaps_total)
SA_SWAP_START=$(rss_kib "$SA_PID") PX_SWAP_START=$(rss_kib "$PX_PID")
{
  printf '%8s %16s %12s\n' swaps 'standalone MiB' 'proxy MiB'
  printf '%8s %16s %12s\n' 0 "$(mib "$SA_SWAP_START")" "$(mib "$PX_SWAP_START")"
} >"$RUN/swaps.txt"
STARTED=$(date +%s)
for ((n = 1; n <= SWAPS; n++)); do
  write_config "$n"
  wait_version "$n"
  if ((n % SAMPLE_EVERY == 0)); then
    printf '%8s %16s %12s\n' "$n" "$(mib "$(rss_kib "$SA_PID")")" "$(mib "$(rss_kib "$PX_PID")")" >>"$RUN/swaps.txt"
  fi
done
SWAP_SECONDS=$(($(date +%s) - STARTED))
SWAPS_DONE=$(awk -v a="$(swaps_total)" -v b="$SWAPS_BEFORE" 'BEGIN { print a - b }')
SA_SWAP_END=$(rss_kib "$SA_PID") PX_SWAP_END=$(rss_kib "$PX_PID")
cat "$RUN/swaps.txt" >&2

grew() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%+.1f", (b - a) / 1024 }'; }
over() { awk -v a="$1" -v b="$2" -v m="$MAX_GROWTH_MIB" 'BEGIN { exit !((b - a) / 1024 > m) }'; }
{
  echo "# Switchyard memory $(date -u +%Y-%m-%dT%H:%M:%SZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo none), $(nproc) cores"
  echo "requests: $TOTAL through the proxy after a $WARM_REQ-request warm-up, $ERRORS errors/non-2xx;" \
    "proxy RSS $(mib "$RSS_START") -> $(mib "$RSS_END") MiB ($(grew "$RSS_START" "$RSS_END") MiB)"
  echo "swaps: $SWAPS_DONE swapped in on the proxy (switchyard_proxy_snapshot_swaps_total) in ${SWAP_SECONDS}s;" \
    "standalone RSS $(mib "$SA_SWAP_START") -> $(mib "$SA_SWAP_END") MiB ($(grew "$SA_SWAP_START" "$SA_SWAP_END")), " \
    "proxy RSS $(mib "$PX_SWAP_START") -> $(mib "$PX_SWAP_END") MiB ($(grew "$PX_SWAP_START" "$PX_SWAP_END"))"
  echo
  cat "$RUN/requests.txt"
  echo
  cat "$RUN/swaps.txt"
} | tee "$RUN/summary.txt"

FAILED=0
if over "$RSS_START" "$RSS_END"; then log "FAIL: the proxy grew over ${MAX_GROWTH_MIB} MiB over the requests"; FAILED=1; fi
if over "$PX_SWAP_START" "$PX_SWAP_END"; then log "FAIL: the proxy grew over ${MAX_GROWTH_MIB} MiB over the swaps"; FAILED=1; fi
if over "$SA_SWAP_START" "$SA_SWAP_END"; then log "FAIL: the standalone grew over ${MAX_GROWTH_MIB} MiB over the swaps"; FAILED=1; fi
((ERRORS == 0)) || { log "FAIL: $ERRORS requests failed"; FAILED=1; }
((SWAPS_DONE >= SWAPS)) || { log "FAIL: only $SWAPS_DONE swaps counted"; FAILED=1; }
log "summary in $RUN/summary.txt"
exit "$FAILED"
