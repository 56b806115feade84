#!/usr/bin/env bash
# Cost of tracing: instructions per request of one binary with tracing off (no
# --otlp-endpoint: the trace context is still parsed and propagated, no span is recorded),
# and with spans exported over OTLP/HTTP at the sampling ratios in TRACE_MODES, in one run,
# counted by valgrind's callgrind as bench/cost.sh and bench/access-log.sh count them:
# `switchyard standalone --workers 1 --access-log off` under callgrind against one nginx
# upstream on loopback (an `http` backend, one IP URL, a Prefix route on /), 2,000 warm-up
# requests, counters zeroed (callgrind_control -z), exactly COST_REQUESTS keep-alive GETs
# without a traceparent over 4 connections (every answer must be 200), a dump
# (callgrind_control -d), its total Ir divided by the requests. Every thread of the proxy
# process counts: the workers and the OTLP export thread (protobuf encoding, the HTTP
# client). The collector is the same nginx (`POST /v1/traces` answered 200, body dropped);
# the client and nginx are not under valgrind.
#
# Env (defaults): COST_REQUESTS=20000 COST_WARMUP=2000 COST_CONCURRENCY=4 COST_REPEAT=1
#   SWITCHYARD_BIN=path (skip the build; default: cargo build --release, target/release)
#   TRACE_MODES="off 0.01 1" (off, or a --trace-sampling ratio with an endpoint)
#   TRACE_STRICT=1: exit 1 when 0.01/off is above 1.03.
# Output in .bench/tracing-*/ (callgrind dumps kept); the table also in
# .bench/tracing-last.txt.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
REQUESTS=${COST_REQUESTS:-20000}
WARMUP=${COST_WARMUP:-2000}
CONC=${COST_CONCURRENCY:-4}
REPEAT=${COST_REPEAT:-1}
MODES=${TRACE_MODES:-off 0.01 1}
STRICT=${TRACE_STRICT:-0}
LIMIT=1.03
LOG_PREFIX=tracing
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
for tool in valgrind callgrind_control python3 curl nginx; do
  command -v "$tool" >/dev/null || die "$tool is required"
done
for mode in $MODES; do
  [[ $mode == off || $mode =~ ^(0(\.[0-9]+)?|1(\.0+)?)$ ]] || die "TRACE_MODES: '$mode' is neither off nor a ratio from 0 to 1"
done
BIN=${SWITCHYARD_BIN:-}
if [[ -z $BIN ]]; then
  log "cargo build --release -p switchyard"
  cargo build --release -p switchyard
  BIN=$ROOT/target/release/switchyard
fi
[[ -x $BIN ]] || die "switchyard binary $BIN not found"
"$BIN" standalone --help | grep -q -- '--otlp-endpoint' || die "$BIN has no --otlp-endpoint"

PIDS=()
cleanup() {
  local rc=$? pid
  trap - EXIT INT TERM
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# stop PID: end one process we started and forget it.
stop() {
  local pid=$1 i keep=()
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 300; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  for i in "${PIDS[@]}"; do [[ $i == "$pid" ]] || keep+=("$i"); done
  PIDS=("${keep[@]}")
}

mkdir -p .bench
RUN=$(mktemp -d "$ROOT/.bench/tracing-$(date +%Y%m%d-%H%M%S)-XXXX")
chmod 755 "$RUN" # nginx workers run as nobody when started by root
log "run dir: $RUN"

cat >"$RUN/client.py" <<'EOF'
import http.client, sys, threading
port, path, total, conc = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
errors = []
def worker(n):
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        for _ in range(n):
            c.request("GET", path)
            r = c.getresponse()
            r.read()
            if r.status != 200:
                raise RuntimeError(f"status {r.status}")
        c.close()
    except Exception as e:
        errors.append(repr(e))
share = [total // conc + (1 if i < total % conc else 0) for i in range(conc)]
threads = [threading.Thread(target=worker, args=(n,)) for n in share]
for t in threads: t.start()
for t in threads: t.join()
if errors:
    sys.exit(f"client: {len(errors)} connection(s) failed: {errors[0]}")
EOF

read -r UP SY_PORT SY_ADMIN < <(free_ports 3)
mkdir -p "$RUN/upstream/logs"
cat >"$RUN/upstream/nginx.conf" <<EOF
daemon off;
worker_processes 1;
pid $RUN/upstream/nginx.pid;
error_log $RUN/upstream/logs/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  keepalive_timeout 600s;
  client_max_body_size 16m;
  client_body_temp_path $RUN/upstream/client_body;
  proxy_temp_path $RUN/upstream/proxy;
  fastcgi_temp_path $RUN/upstream/fastcgi;
  uwsgi_temp_path $RUN/upstream/uwsgi;
  scgi_temp_path $RUN/upstream/scgi;
  server {
    listen 127.0.0.1:$UP;
    default_type text/plain;
    # The OTLP collector: an empty 200 is a full success for OTLP/HTTP.
    location = /v1/traces { access_log $RUN/upstream/logs/traces.log; return 200; }
    location / { return 200 "ok\\n"; }
  }
}
EOF
nginx -p "$RUN/upstream" -c "$RUN/upstream/nginx.conf" >"$RUN/upstream.log" 2>&1 &
PIDS+=("$!")
wait_http "$RUN/upstream.log" "$!" "http://127.0.0.1:$UP/" 15

API="apiVersion: switchyard.dev/v1alpha1"
mkdir -p "$RUN/config"
cat >"$RUN/config/bench.yaml" <<EOF
$API
kind: BackendService
metadata: {name: upstream}
spec:
  http: {urls: ['http://127.0.0.1:$UP']}
---
$API
kind: ApiRoute
metadata: {name: bench}
spec:
  match: {path: /, pathType: Prefix}
  backendRefs: [{name: upstream}]
EOF

# exported: the proxy's exported-spans counter (0 when it has none).
exported() {
  curl -s "http://127.0.0.1:$SY_ADMIN/metrics" | awk '/^switchyard_proxy_trace_spans_exported_total / { print $2; found = 1 } END { if (!found) print 0 }'
}

# measure MODE REP: sets MEASURED to the instructions per request.
measure() {
  local mode=$1 rep=$2 tag="$1-$2" out pid total i spans flags=()
  [[ $mode == off ]] || flags=(--otlp-endpoint "http://127.0.0.1:$UP" --trace-sampling "$mode")
  out=$RUN/callgrind.$tag.out
  valgrind --tool=callgrind --callgrind-out-file="$out" \
    "$BIN" standalone --config-dir "$RUN/config" --listen "127.0.0.1:$SY_PORT" \
    --admin-listen "127.0.0.1:$SY_ADMIN" --workers 1 --access-log off "${flags[@]}" \
    >"$RUN/$tag.stdout" 2>"$RUN/$tag.log" &
  pid=$!
  PIDS+=("$pid")
  log "$tag: started under callgrind (pid $pid)"
  wait_http "$RUN/$tag.log" "$pid" "http://127.0.0.1:$SY_ADMIN/readyz" 300
  wait_http "$RUN/$tag.log" "$pid" "http://127.0.0.1:$SY_PORT/" 120
  python3 "$RUN/client.py" "$SY_PORT" / "$WARMUP" "$CONC" || die "$tag: warm-up failed"
  callgrind_control -z "$pid" >>"$RUN/$tag.log" 2>&1 || die "$tag: callgrind_control -z failed"
  python3 "$RUN/client.py" "$SY_PORT" / "$REQUESTS" "$CONC" || die "$tag: measured run failed"
  # Let the last batch go out (every second) so its export is counted too.
  sleep 2
  callgrind_control -d "$pid" >>"$RUN/$tag.log" 2>&1 || die "$tag: callgrind_control -d failed"
  for ((i = 0; i < 50; i++)); do [[ -s $out.1 ]] && grep -q '^totals:' "$out.1" && break; sleep 0.2; done
  total=$(awk '/^totals:/ {print $2; exit}' "$out.1")
  [[ -n $total ]] || die "$tag: no totals line in $out.1"
  spans=$(exported)
  stop "$pid"
  log "$tag: $spans spans exported"
  if [[ $mode == off ]]; then
    ((spans == 0)) || die "$tag: tracing off exported $spans spans"
  else
    # About mode x every request (probes, warm-up, measured); at least one when sampling.
    awk -v m="$mode" -v s="$spans" 'BEGIN { exit !(m == 0 || s > 0) }' || die "$tag: no span exported at ratio $mode"
  fi
  SPANS[$tag]=$spans
  MEASURED=$(awk -v t="$total" -v n="$REQUESTS" 'BEGIN { printf "%.0f", t / n }')
}

declare -A IPR RUNS SPANS
for mode in $MODES; do
  vals=()
  for ((rep = 1; rep <= REPEAT; rep++)); do
    measure "$mode" "$rep"
    log "$mode run $rep: $MEASURED instructions/request"
    vals+=("$MEASURED")
  done
  RUNS[$mode]="${vals[*]}"
  IPR[$mode]=$(printf '%s\n' "${vals[@]}" | awk '{ s += $1 } END { printf "%.0f", s / NR }')
done

FAILED=0
{
  echo "# Switchyard tracing cost $(date -u +%Y-%m-%dT%H:%M:%SZ): $BIN"
  echo "# callgrind Ir per request, whole proxy process (user space, export thread included), --workers 1 --access-log off, $REQUESTS keep-alive requests over $CONC connections after $WARMUP warm-up; $REPEAT run(s) each"
  printf '%-6s %12s %16s   %s\n' mode 'Ir/request' 'spans (run 1)' runs
  for mode in $MODES; do printf '%-6s %12s %16s   %s\n' "$mode" "${IPR[$mode]}" "${SPANS[$mode-1]}" "${RUNS[$mode]}"; done
  echo
  for mode in $MODES; do
    [[ $mode != off && -n ${IPR[off]:-} ]] || continue
    r=$(awk -v a="${IPR[$mode]}" -v b="${IPR[off]}" 'BEGIN { printf "%.4f", a / b }')
    printf '%s/off %s\n' "$mode" "$r"
    [[ $mode == 0.01 ]] && awk -v r="$r" -v l="$LIMIT" 'BEGIN { exit !(r > l) }' && FAILED=1
  done
} >"$RUN/summary.txt"
cat "$RUN/summary.txt"
cp "$RUN/summary.txt" .bench/tracing-last.txt
if ((FAILED)); then
  log "0.01/off is above $LIMIT"
  [[ $STRICT == 1 ]] && die "TRACE_STRICT=1 and tracing at 1% costs more than 3%"
fi
exit 0
