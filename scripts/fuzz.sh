#!/usr/bin/env bash
# `make fuzz`: builds the fuzz targets in fuzz/ (cargo-fuzz, nightly) and runs each for
# FUZZ_SECONDS (default 60) from its committed seeds (fuzz/corpus/<target>), growing a
# working corpus in fuzz/runs/<target> (not committed). FUZZ_TARGETS picks targets
# (default: all); FUZZ_JOBS runs that many targets at once (default 1). Prints one line
# per target: executions, and whether a crash was found (its input is then in
# fuzz/artifacts/<target>/). Needs `cargo install cargo-fuzz` and a nightly toolchain.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds=${FUZZ_SECONDS:-60}
jobs=${FUZZ_JOBS:-1}
targets=${FUZZ_TARGETS:-$(cargo +nightly fuzz list)}
for target in $targets; do cargo +nightly fuzz build --debug-assertions "$target"; done
mkdir -p logs
run_one() {
  local target=$1
  mkdir -p "runs/$target"
  local status=0
  # The in-process gateway of http_request lives as long as the process, on purpose.
  local extra=()
  [ "$target" = http_request ] && extra=(-detect_leaks=0)
  cargo +nightly fuzz run --debug-assertions "$target" "runs/$target" "corpus/$target" -- \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 "${extra[@]}" >"logs/$target.log" 2>&1 || status=$?
  local runs
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "logs/$target.log" | grep -o '[0-9]*$' || echo '?')
  if [ "$status" = 0 ]; then
    echo "$target: $runs executions in ${seconds}s, no crash"
  else
    echo "$target: CRASH after $runs executions (exit $status): see fuzz/logs/$target.log and fuzz/artifacts/$target/"
  fi
  return "$status"
}
failed=0
running=0
for target in $targets; do
  run_one "$target" || failed=1 &
  running=$((running + 1))
  if [ "$running" -ge "$jobs" ]; then
    wait -n || failed=1
    running=$((running - 1))
  fi
done
while [ "$running" -gt 0 ]; do
  wait -n || failed=1
  running=$((running - 1))
done
exit "$failed"
