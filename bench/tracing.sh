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
# shellcheck source=bench/standalone-callgrind.sh
source "$ROOT/bench/standalone-callgrind.sh"
for mode in $MODES; do
  [[ $mode == off || $mode =~ ^(0(\.[0-9]+)?|1(\.0+)?)$ ]] || die "TRACE_MODES: '$mode' is neither off nor a ratio from 0 to 1"
done
standalone_bench_setup tracing
"$BIN" standalone --help | grep -q -- '--otlp-endpoint' || die "$BIN has no --otlp-endpoint"
# The OTLP collector too: an empty 200 is a full success for OTLP/HTTP.
start_upstream 'client_max_body_size 16m;' "location = /v1/traces { access_log $RUN/upstream/logs/traces.log; return 200; }"

# exported: the proxy's exported-spans counter (0 when it has none).
exported() {
  curl -s "http://127.0.0.1:$SY_ADMIN/metrics" | awk '/^switchyard_proxy_trace_spans_exported_total / { print $2; found = 1 } END { if (!found) print 0 }'
}

# measure MODE REP: sets MEASURED to the instructions per request.
measure() {
  local mode=$1 rep=$2 tag="$1-$2" spans flags=()
  [[ $mode == off ]] || flags=(--otlp-endpoint "http://127.0.0.1:$UP" --trace-sampling "$mode")
  start_counted "$tag" "$RUN/$tag.stdout" --access-log off "${flags[@]}"
  # Two seconds before the dump: the last batch goes out (every second) and is counted too.
  count_requests "$tag" 2
  spans=$(exported)
  stop "$CG_PID"
  log "$tag: $spans spans exported"
  if [[ $mode == off ]]; then
    ((spans == 0)) || die "$tag: tracing off exported $spans spans"
  else
    # About mode x every request (probes, warm-up, measured); at least one when sampling.
    awk -v m="$mode" -v s="$spans" 'BEGIN { exit !(m == 0 || s > 0) }' || die "$tag: no span exported at ratio $mode"
  fi
  SPANS[$tag]=$spans
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
  IPR[$mode]=$(mean "${vals[@]}")
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
