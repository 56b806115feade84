#!/usr/bin/env bash
# Switchyard benchmark: wrk against a fast nginx upstream three ways (direct,
# through switchyard, through nginx as reverse proxy), then the compile bench.
# Everything lands in .bench/run-*/; the summary also goes to .bench/last.txt.
#
# Env (defaults): BENCH_DURATION=10s BENCH_CONNECTIONS=64 BENCH_THREADS=1
#   BENCH_WARMUP=2s BENCH_ROUTES=10000 (compile bench size)
#   BENCH_TARGETS="direct switchyard nginx"   BENCH_COMPILE=1 (0 skips it)
#   SWITCHYARD_BIN=path (use this binary, skip cargo build)
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD

DURATION=${BENCH_DURATION:-10s}
CONNS=${BENCH_CONNECTIONS:-64}
THREADS=${BENCH_THREADS:-1}
WARMUP=${BENCH_WARMUP:-2s}
ROUTES=${BENCH_ROUTES:-10000}
TARGETS=${BENCH_TARGETS:-direct switchyard nginx}
COMPILE=${BENCH_COMPILE:-1}
BIN=${SWITCHYARD_BIN:-$ROOT/target/release/switchyard}

LOG_PREFIX=bench
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
has_target() { [[ " $TARGETS " == *" $1 "* ]]; }
for t in $TARGETS; do
  [[ $t =~ ^(direct|switchyard|nginx)$ ]] || die "unknown target '$t' in BENCH_TARGETS (known: direct switchyard nginx)"
done

# ---------------------------------------------------------------- servers ---
PIDS=()
cleanup() {
  local rc=$? pid kids=() i
  trap - EXIT INT TERM
  for pid in "${PIDS[@]}"; do
    kill -0 "$pid" 2>/dev/null || continue
    mapfile -t -O "${#kids[@]}" kids < <(pgrep -P "$pid" || true)
    kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "${PIDS[@]}"; do
    for ((i = 0; i < 50; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  for pid in "${kids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
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

# ------------------------------------------------------------------ setup ---
command -v python3 >/dev/null || die "python3 is required (free-port helper)"
command -v curl >/dev/null || die "curl is required"
if ! command -v nginx >/dev/null || ! command -v wrk >/dev/null; then
  SUDO=; ((EUID == 0)) || SUDO=sudo
  log "installing nginx-light and wrk"
  $SUDO apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nginx-light wrk >/dev/null
fi

if has_target switchyard && [[ -z ${SWITCHYARD_BIN:-} ]]; then
  log "cargo build --release -p switchyard"
  cargo build --release -p switchyard
fi
has_target switchyard && { [[ -x $BIN ]] || die "switchyard binary $BIN not found"; }

mkdir -p .bench
RUN=$(mktemp -d "$ROOT/.bench/run-$(date +%Y%m%d-%H%M%S)-XXXX")
chmod 755 "$RUN" # nginx workers run as nobody when started by root
log "run dir: $RUN"

read -r UP_PORT SY_PORT SY_ADMIN NG_PORT < <(free_ports 4)

nginx_conf upstream 1 "  server {
    listen 127.0.0.1:$UP_PORT;
    default_type text/plain;
    location / { return 200 \"ok\\n\"; }
  }"
start upstream nginx -p "$RUN/upstream" -c "$RUN/upstream/nginx.conf"
wait_http "$RUN/upstream.log" "$LAST_PID" "http://127.0.0.1:$UP_PORT/" 15

declare -A URL=([direct]="http://127.0.0.1:$UP_PORT/")

if has_target switchyard; then
  mkdir -p "$RUN/config"
  cat >"$RUN/config/bench.yaml" <<EOF
apiVersion: switchyard.dev/v1alpha1
kind: BackendService
metadata: {name: upstream}
spec:
  http:
    urls: ["http://127.0.0.1:$UP_PORT"]
---
apiVersion: switchyard.dev/v1alpha1
kind: ApiRoute
metadata: {name: bench}
spec:
  match: {path: /, pathType: Prefix}
  backendRefs: [{name: upstream}]
EOF
  start switchyard "$BIN" standalone --config-dir "$RUN/config" \
    --listen "127.0.0.1:$SY_PORT" --admin-listen "127.0.0.1:$SY_ADMIN"
  wait_http "$RUN/switchyard.log" "$LAST_PID" "http://127.0.0.1:$SY_ADMIN/readyz" 15
  wait_http "$RUN/switchyard.log" "$LAST_PID" "http://127.0.0.1:$SY_PORT/" 15
  URL[switchyard]="http://127.0.0.1:$SY_PORT/"
fi

if has_target nginx; then
  nginx_conf nginx 2 "  upstream up {
    server 127.0.0.1:$UP_PORT;
    keepalive 64;
    keepalive_requests 1000000;
  }
  server {
    listen 127.0.0.1:$NG_PORT;
    location / {
      proxy_pass http://up;
      proxy_http_version 1.1;
      proxy_set_header Connection \"\";
    }
  }"
  start nginx nginx -p "$RUN/nginx" -c "$RUN/nginx/nginx.conf"
  wait_http "$RUN/nginx.log" "$LAST_PID" "http://127.0.0.1:$NG_PORT/" 15
  URL[nginx]="http://127.0.0.1:$NG_PORT/"
fi

# -------------------------------------------------------------------- wrk ---
declare -A RPS P99 ERRS
for t in $TARGETS; do
  log "wrk $t: warm-up $WARMUP, then -t$THREADS -c$CONNS -d$DURATION ${URL[$t]}"
  wrk -t"$THREADS" -c"$CONNS" -d"$WARMUP" "${URL[$t]}" >"$RUN/wrk-$t-warmup.txt"
  wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency "${URL[$t]}" | tee "$RUN/wrk-$t.txt" >&2
  RPS[$t]=$(awk '/^Requests\/sec:/ {print $2}' "$RUN/wrk-$t.txt")
  # p99 normalised to ms (wrk prints us, ms or s)
  P99[$t]=$(awk '$1 == "99%" { v = $2 + 0; u = $2; sub(/^[0-9.]+/, "", u)
    printf "%.2f", (u == "us" ? v / 1000 : u == "s" ? v * 1000 : u == "m" ? v * 60000 : v) }' "$RUN/wrk-$t.txt")
  ERRS[$t]=$(awk '/Socket errors:/ { gsub(/,/, ""); n += $4 + $6 + $8 + $10 }
    /Non-2xx or 3xx responses:/ { n += $NF } END { print n + 0 }' "$RUN/wrk-$t.txt")
  [[ -n ${RPS[$t]} ]] || die "could not parse wrk output for $t ($RUN/wrk-$t.txt)"
done

ratio() { [[ -n ${RPS[$1]:-} && -n ${RPS[$2]:-} ]] && awk -v a="${RPS[$1]}" -v b="${RPS[$2]}" 'BEGIN { printf "%.2f", a / b }'; }

{
  echo "# Switchyard bench $(date -u +%Y-%m-%dT%H:%M:%SZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo none)"
  echo "# $(nproc) cores, $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo), $(nginx -v 2>&1 | sed 's/.*: //'), wrk -t$THREADS -c$CONNS -d$DURATION (warm-up $WARMUP)"
  printf '%-12s %12s %10s %8s\n' target 'req/s' 'p99 ms' errors
  for t in $TARGETS; do printf '%-12s %12s %10s %8s\n' "$t" "${RPS[$t]}" "${P99[$t]}" "${ERRS[$t]}"; done
  if r=$(ratio switchyard nginx); then echo "throughput switchyard/nginx:  $r"; fi
  if r=$(ratio switchyard direct); then echo "throughput switchyard/direct: $r"; fi
} | tee "$RUN/summary.txt"

for t in $TARGETS; do
  ((${ERRS[$t]} == 0)) || log "WARNING: $t had ${ERRS[$t]} errors/non-2xx responses; see $RUN/wrk-$t.txt"
done

# ---------------------------------------------------------- compile bench ---
if [[ $COMPILE == 1 ]]; then
  log "compile bench: $ROUTES routes"
  { echo; echo "## compile_bench $ROUTES"
    cargo run -q --release -p switchyard-compile --example compile_bench -- "$ROUTES"
  } | tee -a "$RUN/summary.txt"
fi

cp "$RUN/summary.txt" .bench/last.txt
log "summary written to .bench/last.txt (logs in $RUN)"
