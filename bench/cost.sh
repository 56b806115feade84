#!/usr/bin/env bash
# Per-request instruction cost of the proxy, counted by valgrind's callgrind.
#
# Builds the current checkout and a baseline commit (default bb4263c, the binary before
# load balancing, DnsRecord resolution, the egress checks, the retry budget and health
# bookkeeping), then, for each configuration below and each binary that supports it,
# runs `switchyard standalone --workers 1` under callgrind against an nginx upstream on
# loopback, warms up, zeroes the counters (callgrind_control -z), sends exactly
# COST_REQUESTS keep-alive requests, dumps (callgrind_control -d) and divides the
# instructions executed (Ir, every thread of the proxy process, user space only) by the
# request count. The client and nginx are not under valgrind, so they are not counted.
#
# Configurations (COST_CONFIGS, default all):
#   plain  http backend, one IP URL                              (both binaries)
#   rr2    http backend, two IP URLs, RoundRobin                 (both binaries)
#   lr2    the same, LeastRequest                                (new only)
#   hash2  the same, ConsistentHash on the source IP             (new only)
#   vpc    vpc backend + VpcAuthorization to 127.0.0.1           (new only; baseline: 501)
#   dns    http URL http://pool.internal:PORT, DnsRecord 127.0.0.1 (50) / 127.0.0.2 (50)
#          (new only; the baseline has no per-request DnsRecord resolution).
#          This is the one listener not on 127.0.0.1: nginx also listens on 127.0.0.2.
#
# Env (defaults): COST_REQUESTS=20000 COST_WARMUP=2000 COST_CONCURRENCY=4
#   COST_CONFIGS="plain rr2 lr2 hash2 vpc dns"  COST_REPEAT=1 (runs per config and binary)
#   BASELINE_REV=bb4263c  SWITCHYARD_BIN=path  BASELINE_BIN=path (skip the builds)
#   NEW_REV=commit: measure that commit (built like the baseline, in .tools/cost-new with
#     CARGO_TARGET_DIR=target/cost-new) instead of the working tree (built in target/).
#   COST_PATH=/ (the request path; a longer one shows the per-byte cost of path normalization)
#   COST_STRICT=1: exit 1 when a ratio that should stay below 1.03 does not.
# Output in .bench/cost-*/ (callgrind dumps kept for callgrind_annotate); the table is also
# written to .bench/cost-last.txt.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD

REQUESTS=${COST_REQUESTS:-20000}
WARMUP=${COST_WARMUP:-2000}
CONC=${COST_CONCURRENCY:-4}
CONFIGS=${COST_CONFIGS:-plain rr2 lr2 hash2 vpc dns}
REPEAT=${COST_REPEAT:-1}
COST_PATH=${COST_PATH:-/}
STRICT=${COST_STRICT:-0}
BASELINE_REV=${BASELINE_REV:-bb4263c}
LIMIT=1.03

LOG_PREFIX=cost
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
for c in $CONFIGS; do
  [[ $c =~ ^(plain|rr2|lr2|hash2|vpc|dns)$ ]] || die "unknown config '$c' in COST_CONFIGS"
done
for tool in valgrind callgrind_control python3 curl nginx git cargo; do
  command -v "$tool" >/dev/null || die "$tool is required"
done

# ---------------------------------------------------------------- cleanup ---
PIDS=()
cleanup() {
  local rc=$? pid i
  trap - EXIT INT TERM
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do
    for ((i = 0; i < 100; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  ((${#PIDS[@]})) && log "stopped: ${PIDS[*]}"
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

# ----------------------------------------------------------------- builds ---
# build_rev REV NAME: build commit REV in the worktree .tools/cost-NAME with its own
# CARGO_TARGET_DIR target/cost-NAME (the main target dir is left alone); reuse the binary
# when it was built from REV. Sets BUILT to the binary.
build_rev() {
  local rev wt target
  rev=$(git rev-parse --verify "$1^{commit}") || die "unknown revision $1"
  wt=$ROOT/.tools/cost-$2
  target=$ROOT/target/cost-$2
  BUILT=$target/release/switchyard
  if [[ -x $BUILT && $(cat "$target/rev" 2>/dev/null) == "$rev" ]]; then
    log "reusing the build of ${rev:0:7} ($BUILT)"
    return
  fi
  if [[ -d $wt ]]; then
    git -C "$wt" checkout -q --detach "$rev"
  else
    git worktree add -q --detach "$wt" "$rev"
  fi
  log "building ${rev:0:7} in $wt (CARGO_TARGET_DIR=$target; takes minutes)"
  rm -f "$target/rev"
  (cd "$wt" && CARGO_TARGET_DIR=$target cargo build --release -p switchyard)
  echo "$rev" >"$target/rev"
}

NEW_BIN=${SWITCHYARD_BIN:-}
NEW_DESC=
if [[ -n $NEW_BIN ]]; then
  NEW_DESC=$NEW_BIN
elif [[ -n ${NEW_REV:-} ]]; then
  build_rev "$NEW_REV" new
  NEW_BIN=$BUILT
  NEW_DESC="$(git rev-parse --short "$NEW_REV")"
else
  log "cargo build --release -p switchyard (current checkout)"
  cargo build --release -p switchyard
  NEW_BIN=$ROOT/target/release/switchyard
  NEW_DESC="working tree at $(git rev-parse --short HEAD)"
  [[ -n $(git status --porcelain -- crates Cargo.toml Cargo.lock) ]] && NEW_DESC+=" + uncommitted changes"
fi
[[ -x $NEW_BIN ]] || die "switchyard binary $NEW_BIN not found"

OLD_BIN=${BASELINE_BIN:-}
if [[ -z $OLD_BIN ]]; then
  build_rev "$BASELINE_REV" baseline
  OLD_BIN=$BUILT
fi
[[ -x $OLD_BIN ]] || die "baseline binary $OLD_BIN not found"

mkdir -p .bench
RUN=$(mktemp -d "$ROOT/.bench/cost-$(date +%Y%m%d-%H%M%S)-XXXX")
chmod 755 "$RUN" # nginx workers run as nobody when started by root
log "run dir: $RUN"

# ------------------------------------------------------------------ helpers ---
# Deterministic keep-alive client: exactly N requests over C connections, all must be 200.
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
            if r.will_close:
                c.close()
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
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

# ----------------------------------------------------------------- upstream ---
read -r UP1 UP2 SY_PORT SY_ADMIN < <(free_ports 4)
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
  client_body_temp_path $RUN/upstream/client_body;
  proxy_temp_path $RUN/upstream/proxy;
  fastcgi_temp_path $RUN/upstream/fastcgi;
  uwsgi_temp_path $RUN/upstream/uwsgi;
  scgi_temp_path $RUN/upstream/scgi;
  server {
    listen 127.0.0.1:$UP1;
    listen 127.0.0.1:$UP2;
    listen 127.0.0.2:$UP1;
    default_type text/plain;
    location / { return 200 "ok\\n"; }
  }
}
EOF
nginx -p "$RUN/upstream" -c "$RUN/upstream/nginx.conf" >"$RUN/upstream.log" 2>&1 &
PIDS+=("$!")
UP_PID=$!
wait_http "$RUN/upstream.log" "$UP_PID" "http://127.0.0.1:$UP1/" 15
wait_http "$RUN/upstream.log" "$UP_PID" "http://127.0.0.1:$UP2/" 15
wait_http "$RUN/upstream.log" "$UP_PID" "http://127.0.0.2:$UP1/" 15
log "nginx upstream on 127.0.0.1:$UP1, 127.0.0.1:$UP2, 127.0.0.2:$UP1 (pid $UP_PID)"

# ------------------------------------------------------------------ configs ---
API="apiVersion: switchyard.dev/v1alpha1"
route() {
  printf '%s\nkind: ApiRoute\nmetadata: {name: bench}\nspec:\n  match: {path: /, pathType: Prefix}\n  backendRefs: [{name: upstream}]\n' "$API"
}
backend() { # backend SPEC_LINES...
  printf '%s\nkind: BackendService\nmetadata: {name: upstream}\nspec:\n' "$API"
  printf '  %s\n' "$@"
}
write_config() { # write_config NAME DIR
  local dir=$2
  mkdir -p "$dir"
  case $1 in
    plain) backend "http: {urls: ['http://127.0.0.1:$UP1']}" ;;
    rr2) backend "http: {urls: ['http://127.0.0.1:$UP1', 'http://127.0.0.1:$UP2']}" ;;
    lr2) backend "http: {urls: ['http://127.0.0.1:$UP1', 'http://127.0.0.1:$UP2']}" \
      "loadBalancing: {policy: LeastRequest}" ;;
    hash2) backend "http: {urls: ['http://127.0.0.1:$UP1', 'http://127.0.0.1:$UP2']}" \
      "loadBalancing: {policy: ConsistentHash, hashOn: {sourceIp: true}}" ;;
    vpc)
      backend "vpc: {authorizationRef: upstream, port: $UP1}"
      printf -- '---\n%s\nkind: VpcAuthorization\nmetadata: {name: upstream}\nspec: {target: {address: 127.0.0.1}, ports: [%s]}\n' "$API" "$UP1"
      ;;
    dns)
      backend "http: {urls: ['http://pool.internal:$UP1']}"
      printf -- '---\n%s\nkind: DnsRecord\nmetadata: {name: pool-internal}\n' "$API"
      printf 'spec: {domain: pool.internal, type: A, records: [{address: 127.0.0.1, weight: 50}, {address: 127.0.0.2, weight: 50}]}\n'
      ;;
  esac >"$dir/backend.yaml"
  printf -- '---\n' >>"$dir/backend.yaml"
  route >>"$dir/backend.yaml"
}
# Which configurations the baseline can serve (it answers 501 for vpc, and has no
# per-request DnsRecord resolution nor balancing policies).
baseline_has() { [[ $1 == plain || $1 == rr2 ]]; }

# ---------------------------------------------------------------- measure ---
# measure CONFIG LABEL BIN REP: sets MEASURED to the instructions per request.
# (Not run in $(...): the servers it starts must stay visible to the cleanup trap.)
measure() {
  local cfg=$1 label=$2 bin=$3 rep=$4 tag="$1-$2-$4" dir out pid total i t0 workers=()
  dir=$RUN/config-$tag
  write_config "$cfg" "$dir"
  out=$RUN/callgrind.$tag.out
  "$bin" standalone --help | grep -q -- '--workers' && workers=(--workers 1)
  valgrind --tool=callgrind --callgrind-out-file="$out" \
    "$bin" standalone --config-dir "$dir" --listen "127.0.0.1:$SY_PORT" \
    --admin-listen "127.0.0.1:$SY_ADMIN" "${workers[@]}" >"$RUN/$tag.log" 2>&1 &
  pid=$!
  PIDS+=("$pid")
  log "$tag: started under callgrind (pid $pid)"
  wait_http "$RUN/$tag.log" "$pid" "http://127.0.0.1:$SY_ADMIN/readyz" 300
  wait_http "$RUN/$tag.log" "$pid" "http://127.0.0.1:$SY_PORT/" 120
  python3 "$RUN/client.py" "$SY_PORT" "$COST_PATH" "$WARMUP" "$CONC" || die "$tag: warm-up failed"
  callgrind_control -z "$pid" >>"$RUN/$tag.log" 2>&1 || die "$tag: callgrind_control -z failed"
  t0=$SECONDS
  python3 "$RUN/client.py" "$SY_PORT" "$COST_PATH" "$REQUESTS" "$CONC" || die "$tag: measured run failed"
  callgrind_control -d "$pid" >>"$RUN/$tag.log" 2>&1 || die "$tag: callgrind_control -d failed"
  log "$tag: $REQUESTS requests in $((SECONDS - t0))s"
  # The dump triggered above is $out.1 (the file written at exit is $out itself).
  for ((i = 0; i < 50; i++)); do [[ -s $out.1 ]] && grep -q '^totals:' "$out.1" && break; sleep 0.2; done
  total=$(awk '/^totals:/ {print $2; exit}' "$out.1")
  [[ -n $total ]] || die "$tag: no totals line in $out.1"
  stop "$pid"
  MEASURED=$(awk -v t="$total" -v n="$REQUESTS" 'BEGIN { printf "%.0f", t / n }')
}

declare -A IPR # "config binary" -> instructions/request (mean over repeats)
declare -A RUNS
for cfg in $CONFIGS; do
  for label in baseline new; do
    if [[ $label == baseline ]]; then baseline_has "$cfg" || continue; bin=$OLD_BIN; else bin=$NEW_BIN; fi
    vals=()
    for ((rep = 1; rep <= REPEAT; rep++)); do
      measure "$cfg" "$label" "$bin" "$rep"
      v=$MEASURED
      log "$cfg $label run $rep: $v instructions/request"
      vals+=("$v")
    done
    RUNS["$cfg $label"]="${vals[*]}"
    IPR["$cfg $label"]=$(printf '%s\n' "${vals[@]}" | awk '{ s += $1 } END { printf "%.0f", s / NR }')
  done
done

# ------------------------------------------------------------------ report ---
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.4f", a / b }'; }
FAILED=()
check() { # check NAME A B: print the ratio A/B, remember it when above LIMIT
  local name=$1 r
  [[ -n ${IPR[$2]:-} && -n ${IPR[$3]:-} ]] || return 0
  r=$(ratio "${IPR[$2]}" "${IPR[$3]}")
  printf '%-40s %8s\n' "$name" "$r"
  awk -v r="$r" -v l="$LIMIT" 'BEGIN { exit !(r > l) }' && FAILED+=("$name=$r")
  return 0
}
{
  echo "# Switchyard cost $(date -u +%Y-%m-%dT%H:%M:%SZ): new = $NEW_DESC, baseline = ${BASELINE_BIN:-$BASELINE_REV}"
  echo "# callgrind Ir per request, whole proxy process (user space), --workers 1, $REQUESTS keep-alive requests over $CONC connections after $WARMUP warm-up; $REPEAT run(s) each"
  printf '%-8s %-9s %14s   %s\n' config binary 'Ir/request' runs
  for cfg in $CONFIGS; do
    for label in baseline new; do
      [[ -n ${IPR["$cfg $label"]:-} ]] || continue
      printf '%-8s %-9s %14s   %s\n' "$cfg" "$label" "${IPR["$cfg $label"]}" "${RUNS["$cfg $label"]}"
    done
  done
  echo
  check "plain: new/baseline" "plain new" "plain baseline"
  check "rr2: new/baseline" "rr2 new" "rr2 baseline"
  for cfg in rr2 lr2 hash2 vpc dns; do check "$cfg/plain (new)" "$cfg new" "plain new"; done
} >"$RUN/summary.txt" # not a pipe: check() must set FAILED in this shell
cat "$RUN/summary.txt"
cp "$RUN/summary.txt" .bench/cost-last.txt
log "summary in .bench/cost-last.txt; callgrind dumps in $RUN (callgrind.<config>-<binary>-<run>.out.1)"

if ((${#FAILED[@]})); then
  log "above $LIMIT: ${FAILED[*]}"
  [[ $STRICT == 1 ]] && die "COST_STRICT=1 and a ratio is above $LIMIT"
fi
exit 0
