#!/usr/bin/env bash
# Instructions per proxied request of Switchyard, nginx and HAProxy, counted the same way
# in one run (valgrind's callgrind, as bench/cost.sh counts Switchyard): each proxy, one
# worker, under callgrind in front of the same nginx upstream on loopback (`return 200
# "ok\n"`, not under valgrind), 2,000 warm-up requests, counters zeroed
# (callgrind_control -z), exactly COST_REQUESTS keep-alive GETs over 4 connections (a
# Python http.client loop; every answer must be 200), a dump (callgrind_control -d), its
# total Ir (every thread, user space) divided by the requests. Access logs off on all.
#
#   switchyard      `switchyard standalone --workers 1 --access-log off`, a Prefix route on /
#   nginx           `master_process off; daemon off; worker_processes 1;`, proxy_pass to an
#                   upstream {} with `keepalive 64`, HTTP/1.1
#   haproxy         `nbthread 1`, `http-reuse always`, `haproxy -db`
#   switchyard-log  Switchyard again with its default access log (json, to a file), for
#                   the second line; not in the ratios
#
# Env (defaults): COST_REQUESTS=20000 COST_WARMUP=2000 COST_CONCURRENCY=4 COST_REPEAT=1
#   PEERS_TARGETS="switchyard nginx haproxy switchyard-log"
#   SWITCHYARD_BIN=path (skip the build; default: cargo build --release)
# Output in .bench/peers-callgrind-*/ (callgrind dumps kept); the table also in
# .bench/peers-callgrind-last.txt.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
REQUESTS=${COST_REQUESTS:-20000}
WARMUP=${COST_WARMUP:-2000}
CONC=${COST_CONCURRENCY:-4}
REPEAT=${COST_REPEAT:-1}
TARGETS=${PEERS_TARGETS:-switchyard nginx haproxy switchyard-log}
LOG_PREFIX=peers-callgrind
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
for t in $TARGETS; do
  [[ $t =~ ^(switchyard|nginx|haproxy|switchyard-log)$ ]] || die "unknown target '$t' in PEERS_TARGETS"
done
install_peers
if [[ -z ${SWITCHYARD_BIN:-} ]]; then
  log "cargo build --release -p switchyard"
  cargo build --release -p switchyard
  SWITCHYARD_BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release/switchyard
fi
# shellcheck source=bench/standalone-callgrind.sh
source "$ROOT/bench/standalone-callgrind.sh"
standalone_bench_setup peers-callgrind
start_upstream
# Every proxy listens on $SY_PORT in turn (count_requests drives that port).

# start_peer_counted TAG CMD...: CMD under callgrind, serving 200 on $SY_PORT; sets
# CG_PID and CG_OUT as start_counted does.
start_peer_counted() {
  local tag=$1
  shift
  CG_OUT=$RUN/callgrind.$tag.out
  valgrind --tool=callgrind --callgrind-out-file="$CG_OUT" "$@" >"$RUN/$tag.log" 2>&1 &
  CG_PID=$!
  PIDS+=("$CG_PID")
  log "$tag: started under callgrind (pid $CG_PID)"
  wait_http "$RUN/$tag.log" "$CG_PID" "http://127.0.0.1:$SY_PORT/" 120
}

nginx_conf nginx 1 "  upstream up {
    server 127.0.0.1:$UP;
    keepalive 64;
    keepalive_requests 1000000;
  }
  server {
    listen 127.0.0.1:$SY_PORT;
    location / {
      proxy_pass http://up;
      proxy_http_version 1.1;
      proxy_set_header Connection \"\";
    }
  }" "master_process off;"
haproxy_conf haproxy 1 "$SY_PORT" "$UP"

# measure TARGET REP: sets MEASURED to the instructions per request.
measure() {
  local target=$1 tag="$1-$2"
  case $target in
    switchyard) start_counted "$tag" /dev/null --access-log off ;;
    switchyard-log) start_counted "$tag" "$RUN/$tag.access.log" ;;
    nginx) start_peer_counted "$tag" nginx -p "$RUN/nginx" -c "$RUN/nginx/nginx.conf" ;;
    haproxy) start_peer_counted "$tag" haproxy -db -f "$RUN/haproxy/haproxy.cfg" ;;
  esac
  count_requests "$tag"
  stop "$CG_PID"
}

# Rounds alternate the targets, so a change in the machine's load hits all of them.
declare -A VALS IPR
for ((rep = 1; rep <= REPEAT; rep++)); do
  for t in $TARGETS; do
    measure "$t" "$rep"
    log "$t run $rep: $MEASURED instructions/request"
    VALS[$t]+="$MEASURED "
  done
done
for t in $TARGETS; do
  # shellcheck disable=SC2086 # one word per run
  IPR[$t]=$(mean ${VALS[$t]})
done

ratio() { [[ -n ${IPR[$1]:-} && -n ${IPR[$2]:-} ]] && awk -v a="${IPR[$1]}" -v b="${IPR[$2]}" 'BEGIN { printf "%.3f", a / b }'; }
{
  echo "# Switchyard against nginx and HAProxy, $(date -u +%Y-%m-%dT%H:%M:%SZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo none), load average $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "# callgrind Ir per request, whole proxy process (user space), one worker each, $REQUESTS keep-alive GETs over $CONC connections after $WARMUP warm-up; $REPEAT run(s) each"
  echo "# $(nginx -v 2>&1 | sed 's/.*: //'), $(haproxy -v | awk 'NR == 1 {print "haproxy " $3}'), $(valgrind --version)"
  printf '%-16s %12s   %s\n' target 'Ir/request' runs
  for t in $TARGETS; do printf '%-16s %12s   %s\n' "$t" "${IPR[$t]}" "${VALS[$t]}"; done
  echo
  if r=$(ratio switchyard nginx); then echo "Ir/request switchyard/nginx:   $r"; fi
  if r=$(ratio switchyard haproxy); then echo "Ir/request switchyard/haproxy: $r"; fi
  if r=$(ratio switchyard-log switchyard); then echo "Ir/request switchyard with its default access log / without: $r"; fi
} >"$RUN/summary.txt"
cat "$RUN/summary.txt"
cp "$RUN/summary.txt" "$ROOT/.bench/peers-callgrind-last.txt"
log "summary in .bench/peers-callgrind-last.txt; callgrind dumps in $RUN"
