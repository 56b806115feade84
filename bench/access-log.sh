#!/usr/bin/env bash
# Cost of the access log: instructions per request of one binary with `--access-log off`,
# `json` and `text`, in one run, counted by valgrind's callgrind as bench/cost.sh counts
# them: `switchyard standalone --workers 1` under callgrind against one nginx upstream on
# loopback (an `http` backend, one IP URL, a Prefix route on /), 2,000 warm-up requests,
# counters zeroed (callgrind_control -z), exactly COST_REQUESTS keep-alive GETs over 4
# connections (a Python http.client loop; every answer must be 200), a dump
# (callgrind_control -d), its total Ir divided by the requests. Every thread of the proxy
# process counts (workers, the flush task, the stdout writes in user space); the client
# and nginx are not under valgrind, and neither is the kernel. The access log goes to a
# file, as stdout redirected by a container runtime would.
#
# Env (defaults): COST_REQUESTS=20000 COST_WARMUP=2000 COST_CONCURRENCY=4 COST_REPEAT=1
#   SWITCHYARD_BIN=path (skip the build; default: cargo build --release, target/release)
#   ACCESS_MODES="off json text"  ACCESS_STRICT=1: exit 1 when json/off is above 1.05.
# Output in .bench/access-log-*/ (callgrind dumps kept); the table also in
# .bench/access-log-last.txt.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
REQUESTS=${COST_REQUESTS:-20000}
WARMUP=${COST_WARMUP:-2000}
CONC=${COST_CONCURRENCY:-4}
REPEAT=${COST_REPEAT:-1}
MODES=${ACCESS_MODES:-off json text}
STRICT=${ACCESS_STRICT:-0}
LIMIT=1.05
LOG_PREFIX=access-log
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
# shellcheck source=bench/standalone-callgrind.sh
source "$ROOT/bench/standalone-callgrind.sh"
standalone_bench_setup access-log
start_upstream

# measure MODE REP: sets MEASURED to the instructions per request.
measure() {
  local mode=$1 rep=$2 tag="$1-$2" lines
  start_counted "$tag" "$RUN/$tag.access.log" --access-log "$mode"
  count_requests "$tag"
  stop "$CG_PID"
  lines=$(wc -l <"$RUN/$tag.access.log")
  log "$tag: $lines access log lines"
  if [[ $mode == off ]]; then
    ((lines == 0)) || die "$tag: --access-log off wrote $lines lines"
  else
    # Every request (readiness probe, warm-up, measured) has its line.
    ((lines >= REQUESTS + WARMUP)) || die "$tag: $lines access log lines for $((REQUESTS + WARMUP)) requests"
  fi
}

declare -A IPR RUNS
for mode in $MODES; do
  vals=()
  for ((rep = 1; rep <= REPEAT; rep++)); do
    measure "$mode" "$rep"
    log "$mode run $rep: $MEASURED instructions/request"
    vals+=("$MEASURED")
  done
  RUNS[$mode]="${vals[*]}"
  IPR[$mode]=$(mean "${vals[@]}")
done

FAILED=0
{
  echo "# Switchyard access log cost $(date -u +%Y-%m-%dT%H:%M:%SZ): $BIN"
  echo "# callgrind Ir per request, whole proxy process (user space), --workers 1, $REQUESTS keep-alive requests over $CONC connections after $WARMUP warm-up; $REPEAT run(s) each"
  printf '%-6s %12s   %s\n' mode 'Ir/request' runs
  for mode in $MODES; do printf '%-6s %12s   %s\n' "$mode" "${IPR[$mode]}" "${RUNS[$mode]}"; done
  echo
  for mode in json text; do
    [[ -n ${IPR[$mode]:-} && -n ${IPR[off]:-} ]] || continue
    r=$(awk -v a="${IPR[$mode]}" -v b="${IPR[off]}" 'BEGIN { printf "%.4f", a / b }')
    printf '%s/off %s\n' "$mode" "$r"
    [[ $mode == json ]] && awk -v r="$r" -v l="$LIMIT" 'BEGIN { exit !(r > l) }' && FAILED=1
  done
} >"$RUN/summary.txt"
cat "$RUN/summary.txt"
cp "$RUN/summary.txt" .bench/access-log-last.txt
if ((FAILED)); then
  log "json/off is above $LIMIT"
  [[ $STRICT == 1 ]] && die "ACCESS_STRICT=1 and the access log costs more than 5%"
fi
exit 0
