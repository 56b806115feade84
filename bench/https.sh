#!/usr/bin/env bash
# HTTPS benchmark: requests per second through Switchyard terminating TLS (--https-listen)
# against nginx terminating TLS with the same certificate and key, both in front of the same
# fast nginx upstream, in one run. Two client shapes, each against both gateways:
#   keep-alive   wrk -t1 -c$CONNS over HTTPS (one handshake per connection, then requests)
#   resumed      openssl s_time -reuse: a new TCP connection and a resumed TLS session for
#                every request (tickets on both sides), one client, one request each
#   full         openssl s_time -new: a new connection and a full handshake each time
# Method and numbers: docs/benchmarks.md.
#
# Env (defaults): BENCH_DURATION=10s BENCH_CONNECTIONS=64 BENCH_WARMUP=2s
#   SWITCHYARD_BIN=path (use this binary, skip cargo build)
# The report is also written to .bench/https-last.txt.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD

DURATION=${BENCH_DURATION:-10s}
CONNS=${BENCH_CONNECTIONS:-64}
WARMUP=${BENCH_WARMUP:-2s}
BIN=${SWITCHYARD_BIN:-$ROOT/target/release/switchyard}
SECONDS_OF=${DURATION%s}

LOG_PREFIX=https
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
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

start() {
  local name=$1; shift
  "$@" >"$RUN/$name.log" 2>&1 &
  PIDS+=("$!")
  LAST_PID=$!
  log "started $name (pid $LAST_PID)"
}

command -v openssl >/dev/null || die "openssl is required"
if ! command -v nginx >/dev/null || ! command -v wrk >/dev/null; then
  SUDO=; ((EUID == 0)) || SUDO=sudo
  log "installing nginx-light and wrk"
  $SUDO apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nginx-light wrk >/dev/null
fi
if [[ -z ${SWITCHYARD_BIN:-} ]]; then
  log "cargo build --release -p switchyard"
  cargo build --release -p switchyard
fi
[[ -x $BIN ]] || die "switchyard binary $BIN not found"

mkdir -p .bench
RUN=$(mktemp -d "$ROOT/.bench/https-$(date +%Y%m%d-%H%M%S)-XXXX")
chmod 755 "$RUN"
log "run dir: $RUN"
read -r UP_PORT SY_PORT SY_HTTPS SY_ADMIN NG_PORT < <(free_ports 5)

# One ECDSA P-256 certificate for bench.test (what both gateways serve).
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=bench.test \
  -addext subjectAltName=DNS:bench.test -keyout "$RUN/tls.key" -out "$RUN/tls.crt" 2>/dev/null

nginx_conf upstream 1 "  server { listen 127.0.0.1:$UP_PORT; default_type text/plain; location / { return 200 \"ok\\n\"; } }"
start upstream nginx -p "$RUN/upstream" -c "$RUN/upstream/nginx.conf"
wait_http "$RUN/upstream.log" "$LAST_PID" "http://127.0.0.1:$UP_PORT/" 15

# nginx terminating TLS: 2 workers (switchyard runs one worker per core: 2 here), session
# tickets on (its default) plus a shared session cache, TLS 1.2 and 1.3, HTTP/1.1.
nginx_conf nginx 2 "  upstream up { server 127.0.0.1:$UP_PORT; keepalive 64; keepalive_requests 1000000; }
  server {
    listen 127.0.0.1:$NG_PORT ssl;
    server_name bench.test;
    ssl_certificate $RUN/tls.crt;
    ssl_certificate_key $RUN/tls.key;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_session_cache shared:SSL:10m;
    ssl_session_tickets on;
    location / { proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection \"\"; }
  }"
start nginx nginx -p "$RUN/nginx" -c "$RUN/nginx/nginx.conf"

mkdir -p "$RUN/config"
{
  cat <<EOF
apiVersion: switchyard.dev/v1alpha1
kind: BackendService
metadata: {name: upstream}
spec: {http: {urls: ["http://127.0.0.1:$UP_PORT"]}}
---
apiVersion: switchyard.dev/v1alpha1
kind: ApiRoute
metadata: {name: bench}
spec: {match: {path: /, pathType: Prefix}, backendRefs: [{name: upstream}]}
---
apiVersion: v1
kind: Secret
type: kubernetes.io/tls
metadata: {name: bench, labels: {switchyard.dev/certificate: "true"}}
stringData:
  tls.crt: |
EOF
  sed 's/^/    /' "$RUN/tls.crt"
  echo "  tls.key: |"
  sed 's/^/    /' "$RUN/tls.key"
} >"$RUN/config/bench.yaml"
start switchyard "$BIN" standalone --config-dir "$RUN/config" --access-log off \
  --listen "127.0.0.1:$SY_PORT" --https-listen "127.0.0.1:$SY_HTTPS" --admin-listen "127.0.0.1:$SY_ADMIN" \
  --default-certificate default/bench
wait_http "$RUN/switchyard.log" "$LAST_PID" "http://127.0.0.1:$SY_ADMIN/readyz" 15

declare -A PORT=([switchyard]=$SY_HTTPS [nginx]=$NG_PORT)
for t in switchyard nginx; do
  for ((i = 0; i < 75; i++)); do
    [[ $(curl -s -o /dev/null -m 5 -w '%{http_code}' --cacert "$RUN/tls.crt" --resolve "bench.test:${PORT[$t]}:127.0.0.1" \
      "https://bench.test:${PORT[$t]}/" || true) == 200 ]] && break
    sleep 0.2
  done
  ((i < 75)) || die "$t does not answer 200 over HTTPS"
done

declare -A KEEP RESUMED FULL
for t in switchyard nginx; do
  url="https://127.0.0.1:${PORT[$t]}/"
  log "wrk $t keep-alive: warm-up $WARMUP, then -t1 -c$CONNS -d$DURATION $url"
  wrk -t1 -c"$CONNS" -d"$WARMUP" "$url" >"$RUN/wrk-$t-warmup.txt"
  wrk -t1 -c"$CONNS" -d"$DURATION" "$url" | tee "$RUN/wrk-$t.txt" >&2
  KEEP[$t]=$(awk '/^Requests\/sec:/ {print $2}' "$RUN/wrk-$t.txt")
  for mode in reuse new; do
    log "openssl s_time -$mode $t for $DURATION"
    openssl s_time -connect "127.0.0.1:${PORT[$t]}" -"$mode" -time "$SECONDS_OF" -www / \
      >"$RUN/s_time-$t-$mode.txt" 2>&1 || true
    rate=$(awk '/connections\/user sec/ { for (i = 1; i <= NF; i++) if ($i ~ /connections\/user/) print $(i - 1) }' \
      "$RUN/s_time-$t-$mode.txt" | head -1)
    # Wall-clock rate: connections over real seconds (s_time's own figure counts user CPU only).
    wall=$(awk '/connections in [0-9.]+ real seconds/ { print $1 / $4 }' "$RUN/s_time-$t-$mode.txt" | head -1)
    [[ -n $wall ]] || die "could not parse s_time output ($RUN/s_time-$t-$mode.txt)"
    if [[ $mode == reuse ]]; then RESUMED[$t]=$wall; else FULL[$t]=$wall; fi
    log "$t $mode: $wall connections/s (wall), ${rate:-?}/user s"
  done
done

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
out=.bench/https-last.txt
{
  echo "# Switchyard HTTPS bench $(date -u +%Y-%m-%dT%H:%M:%SZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo none)"
  echo "# $(nproc) cores, $(nginx -v 2>&1 | sed 's/.*: //'), $(openssl version | cut -d' ' -f1-2), ECDSA P-256, wrk -t1 -c$CONNS -d$DURATION; s_time $DURATION"
  printf '%-10s %18s %26s %22s\n' target 'keep-alive req/s' 'new conn+resumed req/s' 'new conn+full req/s'
  for t in switchyard nginx; do printf '%-10s %18s %26.0f %22.0f\n' "$t" "${KEEP[$t]}" "${RESUMED[$t]}" "${FULL[$t]}"; done
  echo "https switchyard/nginx: keep-alive $(ratio "${KEEP[switchyard]}" "${KEEP[nginx]}"), resumed $(ratio "${RESUMED[switchyard]}" "${RESUMED[nginx]}"), full $(ratio "${FULL[switchyard]}" "${FULL[nginx]}")"
} | tee "$RUN/summary.txt" "$out"
log "report written to $out (logs in $RUN)"
