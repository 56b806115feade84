#!/usr/bin/env bash
# Cost of Signature auth: the same route shape with `auth: Signature` and with Anonymous,
# in one run, against one nginx upstream on loopback.
#
# 1. req/s: wrk (-t1) sends pre-signed requests (every one with its own nonce and a fresh
#    timestamp, signed by tests/support/sign.py's scheme, HmacSHA256 over the four X-Ca-
#    headers) to /signed/orders, and the same bytes (same headers) to /anon/orders, which
#    ignores them; runs alternate anon, signed, anon, signed.
# 2. instructions per request: `switchyard standalone --workers 1` under callgrind, one
#    process, counters zeroed and dumped around exactly COST_REQUESTS keep-alive requests to
#    each route (a Python http.client loop, as bench/cost.sh; every answer must be 200).
#
# Env (defaults): SIG_DURATION=10s SIG_CONNECTIONS=16 SIG_REQUESTS=400000 (pre-signed for
#   wrk; more than a run sends) COST_REQUESTS=5000 COST_WARMUP=1000 SWITCHYARD_BIN=path
#   SIG_RPS=1 (0: callgrind only, for quick iterations; the summary then has no req/s)
# Per function, where the extra instructions go (self cost per request, sign minus anon):
#   python3 bench/callgrind-functions.py 5000 RUN/callgrind.out.1 RUN/callgrind.out.2
# Output in .bench/signature-*/; the summary also in .bench/signature-last.txt.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
DURATION=${SIG_DURATION:-10s}
CONNS=${SIG_CONNECTIONS:-16}
SIGNED=${SIG_REQUESTS:-400000}
REQUESTS=${COST_REQUESTS:-5000}
WARMUP=${COST_WARMUP:-1000}
BIN=${SWITCHYARD_BIN:-$ROOT/target/release/switchyard}
LOG_PREFIX=signature
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
for tool in wrk nginx valgrind callgrind_control python3 curl; do
  command -v "$tool" >/dev/null || die "$tool is required (bench/run.sh installs nginx-light and wrk; valgrind from Debian)"
done
if [[ -z ${SWITCHYARD_BIN:-} ]]; then
  log "cargo build --release -p switchyard"
  cargo build --release -p switchyard
fi

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

mkdir -p .bench
RUN=$(mktemp -d "$ROOT/.bench/signature-$(date +%Y%m%d-%H%M%S)-XXXX")
chmod 755 "$RUN"
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
  client_body_temp_path $RUN/upstream/client_body;
  proxy_temp_path $RUN/upstream/proxy;
  fastcgi_temp_path $RUN/upstream/fastcgi;
  uwsgi_temp_path $RUN/upstream/uwsgi;
  scgi_temp_path $RUN/upstream/scgi;
  server { listen 127.0.0.1:$UP; location / { return 200 "ok\\n"; } }
}
EOF
nginx -p "$RUN/upstream" -c "$RUN/upstream/nginx.conf" >"$RUN/upstream.log" 2>&1 &
PIDS+=("$!")
wait_http "$RUN/upstream.log" "$!" "http://127.0.0.1:$UP/" 15

# Two routes, same backend, same path length; only the auth differs.
API="apiVersion: switchyard.dev/v1alpha1"
mkdir -p "$RUN/config"
cat >"$RUN/config/bench.yaml" <<EOF
$API
kind: BackendService
metadata: {name: upstream}
spec: {http: {urls: ['http://127.0.0.1:$UP']}}
---
$API
kind: ApiRoute
metadata: {name: anon}
spec: {match: {path: /anon, pathType: Prefix}, backendRefs: [{name: upstream}]}
---
$API
kind: ApiRoute
metadata: {name: signed}
spec: {match: {path: /sign, pathType: Prefix}, backendRefs: [{name: upstream}], auth: {type: Signature, apps: [bench]}}
---
apiVersion: v1
kind: Secret
metadata: {name: bench, labels: {switchyard.dev/app: "true"}}
stringData: {appKey: "204000001", appSecret: "bench-secret", appCode: ""}
EOF

# presign N FILE: one line per request, "timestamp nonce signature" for GET /sign/orders.
presign() {
  PYTHONPATH="$ROOT/crates/switchyard/tests/support" python3 - "$1" "$2" <<'PY'
import sys, time, uuid
from sign import sign
n, out = int(sys.argv[1]), sys.argv[2]
now = int(time.time() * 1000)
with open(out, "w") as f:
    for i in range(n):
        h = sign({"method": "GET", "path": "/sign/orders", "key": "204000001", "secret": "bench-secret",
                  "timestamp": now, "nonce": uuid.uuid4().hex})["headers"]
        f.write(f'{h["X-Ca-Timestamp"]} {h["X-Ca-Nonce"]} {h["X-Ca-Signature"]}\n')
PY
}

# The wrk script: the next pre-signed line's headers on every request, to PATH.
cat >"$RUN/signed.lua" <<'EOF'
local lines, i = {}, 0
function init(args)
  for line in io.lines(args[1]) do lines[#lines + 1] = line end
  path = args[2]
end
function request()
  i = i + 1
  local ts, nonce, sig = lines[(i - 1) % #lines + 1]:match("(%S+) (%S+) (%S+)")
  return wrk.format("GET", path, {
    ["X-Ca-Key"] = "204000001", ["X-Ca-Timestamp"] = ts, ["X-Ca-Nonce"] = nonce,
    ["X-Ca-Signature-Method"] = "HmacSHA256",
    ["X-Ca-Signature-Headers"] = "X-Ca-Key,X-Ca-Nonce,X-Ca-Signature-Method,X-Ca-Timestamp",
    ["X-Ca-Signature"] = sig })
end
EOF

# --------------------------------------------------------------------- req/s ---
"$BIN" standalone --config-dir "$RUN/config" --listen "127.0.0.1:$SY_PORT" --admin-listen "127.0.0.1:$SY_ADMIN" \
  >"$RUN/switchyard.log" 2>&1 &
SY=$!
PIDS+=("$SY")
wait_http "$RUN/switchyard.log" "$SY" "http://127.0.0.1:$SY_ADMIN/readyz" 30
wait_http "$RUN/switchyard.log" "$SY" "http://127.0.0.1:$SY_PORT/anon/orders" 30
# CPU ticks (user + system) the proxy process has used so far.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
declare -A RPS CPU
ROUNDS="1 2"
[[ ${SIG_RPS:-1} == 1 ]] || { ROUNDS=""; RPS=([anon]=0 [sign]=0); CPU=([anon]=0 [sign]=0); }
for round in $ROUNDS; do
  for route in anon sign; do
    presign "$SIGNED" "$RUN/signed-$route-$round.txt"
    t0=$(cpu_ticks "$SY")
    wrk -t1 -c"$CONNS" -d"$DURATION" -s "$RUN/signed.lua" "http://127.0.0.1:$SY_PORT" -- "$RUN/signed-$route-$round.txt" "/$route/orders" \
      >"$RUN/wrk-$route-$round.txt"
    t1=$(cpu_ticks "$SY")
    rps=$(awk '/^Requests\/sec:/ {print $2}' "$RUN/wrk-$route-$round.txt")
    n=$(awk '/requests in/ {print $1; exit}' "$RUN/wrk-$route-$round.txt")
    # Native CPU time per request (µs; SHA-NI and all), from the kernel's accounting.
    CPU[$route]="${CPU[$route]:-} $(awk -v t=$((t1 - t0)) -v n="$n" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.2f", t / hz * 1e6 / n }')"
    bad=$(awk '/Non-2xx or 3xx responses:/ {print $NF}' "$RUN/wrk-$route-$round.txt")
    [[ -z $bad ]] || die "$route round $round: $bad non-2xx answers ($RUN/wrk-$route-$round.txt)"
    log "$route round $round: $rps req/s"
    RPS[$route]="${RPS[$route]:-} $rps"
  done
done
kill -TERM "$SY"
wait "$SY" 2>/dev/null || true

# --------------------------------------------------------------- callgrind ---
cat >"$RUN/client.py" <<'EOF'
import http.client, sys, threading
port, path, lines_file, total, conc = int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
lines = open(lines_file).read().split("\n")[:total]
errors = []
def worker(mine):
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
        for line in mine:
            ts, nonce, sig = line.split(" ")
            c.request("GET", path, headers={"X-Ca-Key": "204000001", "X-Ca-Timestamp": ts, "X-Ca-Nonce": nonce,
                "X-Ca-Signature-Method": "HmacSHA256",
                "X-Ca-Signature-Headers": "X-Ca-Key,X-Ca-Nonce,X-Ca-Signature-Method,X-Ca-Timestamp",
                "X-Ca-Signature": sig})
            r = c.getresponse()
            r.read()
            if r.status != 200:
                raise RuntimeError(f"status {r.status} {r.getheader('x-ca-error-code')}")
    except Exception as e:
        errors.append(repr(e))
threads = [threading.Thread(target=worker, args=(lines[i::conc],)) for i in range(conc)]
for t in threads: t.start()
for t in threads: t.join()
if errors:
    sys.exit(f"client: {errors[0]}")
EOF
out=$RUN/callgrind.out
valgrind --tool=callgrind --callgrind-out-file="$out" "$BIN" standalone --config-dir "$RUN/config" \
  --listen "127.0.0.1:$SY_PORT" --admin-listen "127.0.0.1:$SY_ADMIN" --workers 1 >"$RUN/callgrind.log" 2>&1 &
SY=$!
PIDS+=("$SY")
wait_http "$RUN/callgrind.log" "$SY" "http://127.0.0.1:$SY_ADMIN/readyz" 300
declare -A IPR
dump=0
for route in anon sign anon sign; do
  presign $((WARMUP + REQUESTS)) "$RUN/cost-$route.txt"
  tail -n "$REQUESTS" "$RUN/cost-$route.txt" >"$RUN/cost-$route-measured.txt"
  head -n "$WARMUP" "$RUN/cost-$route.txt" >"$RUN/cost-$route-warmup.txt"
  python3 "$RUN/client.py" "$SY_PORT" "/$route/orders" "$RUN/cost-$route-warmup.txt" "$WARMUP" 4 || die "$route warm-up failed"
  callgrind_control -z "$SY" >>"$RUN/callgrind.log" 2>&1
  python3 "$RUN/client.py" "$SY_PORT" "/$route/orders" "$RUN/cost-$route-measured.txt" "$REQUESTS" 4 || die "$route run failed"
  callgrind_control -d "$SY" >>"$RUN/callgrind.log" 2>&1
  dump=$((dump + 1))
  for ((i = 0; i < 50; i++)); do [[ -s $out.$dump ]] && grep -q '^totals:' "$out.$dump" && break; sleep 0.2; done
  total=$(awk '/^totals:/ {print $2; exit}' "$out.$dump")
  ipr=$(awk -v t="$total" -v n="$REQUESTS" 'BEGIN { printf "%.0f", t / n }')
  log "$route: $ipr instructions/request"
  IPR[$route]="${IPR[$route]:-} $ipr"
done

mean() { awk '{ s = 0; for (i = 1; i <= NF; i++) s += $i; printf "%.0f", s / NF }' <<<"$1"; }
{
  echo "# Signature vs Anonymous, $(date -u +%Y-%m-%dT%H:%M:%SZ), $(git rev-parse --short HEAD), $(nproc) cores"
  echo "# req/s: wrk -t1 -c$CONNS -d$DURATION, pre-signed requests, two rounds each; Ir: callgrind, --workers 1, $REQUESTS requests after $WARMUP, two runs each"
  printf '%-10s %12s %-24s %12s %-16s %10s %s\n' route 'req/s' '(runs)' 'Ir/request' '(runs)' 'CPU us/req' '(runs)'
  for route in anon sign; do
    printf '%-10s %12s %-24s %12s %-16s %10s %s\n' "$route" "$(mean "${RPS[$route]}")" "(${RPS[$route]# })" \
      "$(mean "${IPR[$route]}")" "(${IPR[$route]# })" "$(awk '{ s = 0; for (i = 1; i <= NF; i++) s += $i; printf "%.2f", s / NF }' <<<"${CPU[$route]}")" "(${CPU[$route]# })"
  done
  awk -v a="$(mean "${RPS[anon]}")" -v s="$(mean "${RPS[sign]}")" -v ia="$(mean "${IPR[anon]}")" -v is="$(mean "${IPR[sign]}")" \
    'BEGIN { printf "signature/anonymous: req/s %.4f, Ir/request %.4f (+%.2f%%)\n", a ? s / a : 0, is / ia, (is / ia - 1) * 100 }'
  awk -v a="${CPU[anon]}" -v s="${CPU[sign]}" 'BEGIN { na = split(a, x, " "); ns = split(s, y, " ");
    for (i = 1; i <= na; i++) sa += x[i]; for (i = 1; i <= ns; i++) ss += y[i];
    printf "signature/anonymous: native CPU per request %.4f\n", sa ? (ss / ns) / (sa / na) : 0 }'
} | tee "$RUN/summary.txt"
cp "$RUN/summary.txt" .bench/signature-last.txt
