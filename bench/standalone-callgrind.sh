# shellcheck shell=bash
# Shared by the per-feature cost benches (bench/access-log.sh, bench/tracing.sh; sourced
# after bench/lib.sh): one nginx upstream on loopback, one Prefix route on / to it, and
# `switchyard standalone --workers 1` under callgrind, counted around exactly REQUESTS
# keep-alive GETs (after WARMUP) as bench/cost.sh counts them. Callers set ROOT, REQUESTS,
# WARMUP, CONC and LOG_PREFIX, then call `standalone_bench_setup NAME`.

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

standalone_bench_cleanup() {
  local rc=$? pid
  trap - EXIT INT TERM
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  exit "$rc"
}

# standalone_bench_setup NAME: tools checked, BIN built or taken from SWITCHYARD_BIN, the
# servers we start stopped on exit, RUN made (.bench/NAME-*), free ports UP SY_PORT
# SY_ADMIN, the client at $RUN/client.py, the route at $RUN/config/bench.yaml.
standalone_bench_setup() {
  local name=$1 tool
  for tool in valgrind callgrind_control python3 curl nginx; do
    command -v "$tool" >/dev/null || die "$tool is required"
  done
  BIN=${SWITCHYARD_BIN:-}
  if [[ -z $BIN ]]; then
    log "cargo build --release -p switchyard"
    cargo build --release -p switchyard
    BIN=$ROOT/target/release/switchyard
  fi
  [[ -x $BIN ]] || die "switchyard binary $BIN not found"
  PIDS=()
  trap standalone_bench_cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  mkdir -p "$ROOT/.bench"
  RUN=$(mktemp -d "$ROOT/.bench/$name-$(date +%Y%m%d-%H%M%S)-XXXX")
  chmod 755 "$RUN" # nginx workers run as nobody when started by root
  log "run dir: $RUN"
  read -r UP SY_PORT SY_ADMIN < <(free_ports 3)
  cat >"$RUN/client.py" <<'PY'
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
PY
  local api="apiVersion: switchyard.dev/v1alpha1"
  mkdir -p "$RUN/config"
  cat >"$RUN/config/bench.yaml" <<YAML
$api
kind: BackendService
metadata: {name: upstream}
spec:
  http: {urls: ['http://127.0.0.1:$UP']}
---
$api
kind: ApiRoute
metadata: {name: bench}
spec:
  match: {path: /, pathType: Prefix}
  backendRefs: [{name: upstream}]
YAML
}

# start_upstream [HTTP_LINES [SERVER_LINES]]: nginx on 127.0.0.1:$UP answering 200 "ok",
# with extra lines in its http and server blocks.
start_upstream() {
  local http_lines=${1:-} server_lines=${2:-}
  mkdir -p "$RUN/upstream/logs"
  cat >"$RUN/upstream/nginx.conf" <<CONF
daemon off;
worker_processes 1;
pid $RUN/upstream/nginx.pid;
error_log $RUN/upstream/logs/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  keepalive_timeout 600s;
  client_body_temp_path $RUN/upstream/client_body;
  proxy_temp_path $RUN/upstream/proxy;
  fastcgi_temp_path $RUN/upstream/fastcgi;
  uwsgi_temp_path $RUN/upstream/uwsgi;
  scgi_temp_path $RUN/upstream/scgi;
  $http_lines
  server {
    listen 127.0.0.1:$UP;
    default_type text/plain;
    $server_lines
    location / { return 200 "ok\\n"; }
  }
}
CONF
  nginx -p "$RUN/upstream" -c "$RUN/upstream/nginx.conf" >"$RUN/upstream.log" 2>&1 &
  PIDS+=("$!")
  wait_http "$RUN/upstream.log" "$!" "http://127.0.0.1:$UP/" 15
}

# start_counted TAG STDOUT FLAGS...: `switchyard standalone --workers 1 FLAGS` under
# callgrind, ready; sets CG_PID and CG_OUT (the dump is $CG_OUT.1).
start_counted() {
  local tag=$1 stdout=$2
  shift 2
  CG_OUT=$RUN/callgrind.$tag.out
  valgrind --tool=callgrind --callgrind-out-file="$CG_OUT" \
    "$BIN" standalone --config-dir "$RUN/config" --listen "127.0.0.1:$SY_PORT" \
    --admin-listen "127.0.0.1:$SY_ADMIN" --workers 1 "$@" >"$stdout" 2>"$RUN/$tag.log" &
  CG_PID=$!
  PIDS+=("$CG_PID")
  log "$tag: started under callgrind (pid $CG_PID)"
  wait_http "$RUN/$tag.log" "$CG_PID" "http://127.0.0.1:$SY_ADMIN/readyz" 300
  wait_http "$RUN/$tag.log" "$CG_PID" "http://127.0.0.1:$SY_PORT/" 120
}

# count_requests TAG [SETTLE_SECONDS]: WARMUP requests, counters zeroed, REQUESTS
# requests, SETTLE_SECONDS of quiet (for work that trails the requests), a dump; sets
# MEASURED to the instructions per request. The process keeps running (`stop $CG_PID`).
count_requests() {
  local tag=$1 settle=${2:-0} total i
  python3 "$RUN/client.py" "$SY_PORT" / "$WARMUP" "$CONC" || die "$tag: warm-up failed"
  callgrind_control -z "$CG_PID" >>"$RUN/$tag.log" 2>&1 || die "$tag: callgrind_control -z failed"
  python3 "$RUN/client.py" "$SY_PORT" / "$REQUESTS" "$CONC" || die "$tag: measured run failed"
  sleep "$settle"
  callgrind_control -d "$CG_PID" >>"$RUN/$tag.log" 2>&1 || die "$tag: callgrind_control -d failed"
  for ((i = 0; i < 50; i++)); do [[ -s $CG_OUT.1 ]] && grep -q '^totals:' "$CG_OUT.1" && break; sleep 0.2; done
  total=$(awk '/^totals:/ {print $2; exit}' "$CG_OUT.1")
  [[ -n $total ]] || die "$tag: no totals line in $CG_OUT.1"
  # shellcheck disable=SC2034 # the caller's result
  MEASURED=$(awk -v t="$total" -v n="$REQUESTS" 'BEGIN { printf "%.0f", t / n }')
}

# mean VALUES...: their mean, rounded.
mean() { printf '%s\n' "$@" | awk '{ s += $1 } END { printf "%.0f", s / NR }'; }
