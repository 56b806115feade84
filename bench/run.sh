#!/usr/bin/env bash
# Switchyard benchmark: wrk against a fast nginx upstream five ways (direct; through
# switchyard with the access log off; through switchyard with its default access log
# (json, to a file); through nginx and through HAProxy as reverse proxies, two workers
# each like switchyard, access logs off), in BENCH_ROUNDS rounds that alternate the
# targets; the table shows each target's median over the rounds. Then the compile bench.
# Everything lands in .bench/run-*/; the summary also goes to .bench/last.txt.
#
# Env (defaults): BENCH_DURATION=10s BENCH_CONNECTIONS=64 BENCH_THREADS=1
#   BENCH_WARMUP=2s BENCH_ROUNDS=5 BENCH_ROUTES=10000 (compile bench size)
#   BENCH_TARGETS="direct switchyard switchyard-log nginx haproxy"   BENCH_COMPILE=1 (0 skips it)
#   SWITCHYARD_BIN=path (use this binary, skip cargo build)
#   BENCH_PACE_MS=N (each connection waits N ms between its requests, bench/paced.lua: the
#   same paced load on every target, for latency below saturation; unset: as fast as it goes)
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD

DURATION=${BENCH_DURATION:-10s}
CONNS=${BENCH_CONNECTIONS:-64}
THREADS=${BENCH_THREADS:-1}
WARMUP=${BENCH_WARMUP:-2s}
ROUTES=${BENCH_ROUTES:-10000}
ROUNDS=${BENCH_ROUNDS:-5}
TARGETS=${BENCH_TARGETS:-direct switchyard switchyard-log nginx haproxy}
COMPILE=${BENCH_COMPILE:-1}
BIN=${SWITCHYARD_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/switchyard}
PACE=()
[[ -n ${BENCH_PACE_MS:-} ]] && PACE=(-s "$ROOT/bench/paced.lua")

LOG_PREFIX=bench
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
has_target() { [[ " $TARGETS " == *" $1 "* ]]; }
for t in $TARGETS; do
  [[ $t =~ ^(direct|switchyard|switchyard-log|nginx|haproxy)$ ]] ||
    die "unknown target '$t' in BENCH_TARGETS (known: direct switchyard switchyard-log nginx haproxy)"
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
install_peers
has_switchyard() { has_target switchyard || has_target switchyard-log; }
if has_switchyard && [[ -z ${SWITCHYARD_BIN:-} ]]; then
  log "cargo build --release -p switchyard"
  cargo build --release -p switchyard
fi
has_switchyard && { [[ -x $BIN ]] || die "switchyard binary $BIN not found"; }

mkdir -p .bench
RUN=$(mktemp -d "$ROOT/.bench/run-$(date +%Y%m%d-%H%M%S)-XXXX")
chmod 755 "$RUN" # nginx workers run as nobody when started by root
log "run dir: $RUN"

read -r UP_PORT SY_PORT SY_ADMIN SL_PORT SL_ADMIN NG_PORT HA_PORT < <(free_ports 7)

nginx_conf upstream 1 "  server {
    listen 127.0.0.1:$UP_PORT;
    default_type text/plain;
    location / { return 200 \"ok\\n\"; }
  }"
start upstream nginx -p "$RUN/upstream" -c "$RUN/upstream/nginx.conf"
wait_http "$RUN/upstream.log" "$LAST_PID" "http://127.0.0.1:$UP_PORT/" 15

declare -A URL=([direct]="http://127.0.0.1:$UP_PORT/")

if has_switchyard; then
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
fi
if has_target switchyard; then
  start switchyard "$BIN" standalone --config-dir "$RUN/config" --access-log off \
    --listen "127.0.0.1:$SY_PORT" --admin-listen "127.0.0.1:$SY_ADMIN"
  wait_http "$RUN/switchyard.log" "$LAST_PID" "http://127.0.0.1:$SY_ADMIN/readyz" 15
  wait_http "$RUN/switchyard.log" "$LAST_PID" "http://127.0.0.1:$SY_PORT/" 15
  URL[switchyard]="http://127.0.0.1:$SY_PORT/"
fi
if has_target switchyard-log; then
  # The default access log (json lines on stdout), stdout to a file as a container runtime
  # would take it.
  start switchyard-log "$BIN" standalone --config-dir "$RUN/config" \
    --listen "127.0.0.1:$SL_PORT" --admin-listen "127.0.0.1:$SL_ADMIN"
  wait_http "$RUN/switchyard-log.log" "$LAST_PID" "http://127.0.0.1:$SL_ADMIN/readyz" 15
  wait_http "$RUN/switchyard-log.log" "$LAST_PID" "http://127.0.0.1:$SL_PORT/" 15
  URL[switchyard-log]="http://127.0.0.1:$SL_PORT/"
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

if has_target haproxy; then
  haproxy_conf haproxy 2 "$HA_PORT" "$UP_PORT"
  start haproxy haproxy -db -f "$RUN/haproxy/haproxy.cfg"
  wait_http "$RUN/haproxy.log" "$LAST_PID" "http://127.0.0.1:$HA_PORT/" 15
  URL[haproxy]="http://127.0.0.1:$HA_PORT/"
fi

# -------------------------------------------------------------------- wrk ---
# wrk_once TARGET ROUND: one warm-up and one measured wrk run; appends req/s, p99 (ms) and
# errors to the target's per-round lists.
declare -A RPS_RUNS P99_RUNS ERR_RUNS
wrk_once() {
  local t=$1 round=$2 out rps p99 errs
  out=$RUN/wrk-$t-$round.txt
  log "round $round, $t: warm-up $WARMUP, then -t$THREADS -c$CONNS -d$DURATION ${URL[$t]}"
  wrk -t"$THREADS" -c"$CONNS" -d"$WARMUP" "${PACE[@]}" "${URL[$t]}" >"$RUN/wrk-$t-$round-warmup.txt"
  wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency "${PACE[@]}" "${URL[$t]}" >"$out"
  rps=$(awk '/^Requests\/sec:/ {printf "%.0f", $2}' "$out")
  [[ -n $rps ]] || die "could not parse wrk output for $t ($out)"
  # p99 normalised to ms (wrk prints us, ms or s)
  p99=$(awk '$1 == "99%" { v = $2 + 0; u = $2; sub(/^[0-9.]+/, "", u)
    printf "%.2f", (u == "us" ? v / 1000 : u == "s" ? v * 1000 : u == "m" ? v * 60000 : v) }' "$out")
  errs=$(awk '/Socket errors:/ { gsub(/,/, ""); n += $4 + $6 + $8 + $10 }
    /Non-2xx or 3xx responses:/ { n += $NF } END { print n + 0 }' "$out")
  log "round $round, $t: $rps req/s, p99 $p99 ms, $errs errors"
  RPS_RUNS[$t]+="$rps " P99_RUNS[$t]+="$p99 " ERR_RUNS[$t]=$((${ERR_RUNS[$t]:-0} + errs))
}

# Rounds alternate the targets, so a change in the machine's load (other sessions share
# the cores) falls on all of them rather than on one.
for ((round = 1; round <= ROUNDS; round++)); do
  for t in $TARGETS; do wrk_once "$t" "$round"; done
done

# median FORMAT VALUES...: the median (the mean of the middle two for an even count).
median() {
  local fmt=$1
  shift
  printf '%s\n' "$@" | sort -g | awk -v f="$fmt" '{ a[NR] = $1 }
    END { printf f, (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}
declare -A RPS P99 ERRS
for t in $TARGETS; do
  # shellcheck disable=SC2086 # one word per round
  RPS[$t]=$(median %.0f ${RPS_RUNS[$t]})
  # shellcheck disable=SC2086
  P99[$t]=$(median %.2f ${P99_RUNS[$t]})
  ERRS[$t]=${ERR_RUNS[$t]}
done

ratio() { [[ -n ${RPS[$1]:-} && -n ${RPS[$2]:-} ]] && awk -v a="${RPS[$1]}" -v b="${RPS[$2]}" 'BEGIN { printf "%.2f", a / b }'; }

{
  echo "# Switchyard bench $(date -u +%Y-%m-%dT%H:%M:%SZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo none), load average $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "# $(nproc) cores, $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo), $(nginx -v 2>&1 | sed 's/.*: //'), $(haproxy -v 2>/dev/null | awk 'NR == 1 {print "haproxy " $3}'), wrk -t$THREADS -c$CONNS -d$DURATION (warm-up $WARMUP), median of $ROUNDS alternated rounds${BENCH_PACE_MS:+, each connection paced $BENCH_PACE_MS ms between requests}"
  printf '%-15s %12s %10s %8s   %s\n' target 'req/s' 'p99 ms' errors 'req/s per round'
  for t in $TARGETS; do printf '%-15s %12s %10s %8s   %s\n' "$t" "${RPS[$t]}" "${P99[$t]}" "${ERRS[$t]}" "${RPS_RUNS[$t]}"; done
  if r=$(ratio switchyard nginx); then echo "throughput switchyard/nginx:    $r"; fi
  if r=$(ratio switchyard haproxy); then echo "throughput switchyard/haproxy:  $r"; fi
  if r=$(ratio switchyard-log nginx); then echo "throughput switchyard with its default access log/nginx:   $r"; fi
  if r=$(ratio switchyard-log haproxy); then echo "throughput switchyard with its default access log/haproxy: $r"; fi
  if r=$(ratio switchyard direct); then echo "throughput switchyard/direct:   $r"; fi
} | tee "$RUN/summary.txt"

for t in $TARGETS; do
  ((${ERRS[$t]} == 0)) || log "WARNING: $t had ${ERRS[$t]} errors/non-2xx responses; see $RUN/wrk-$t-*.txt"
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
