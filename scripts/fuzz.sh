#!/usr/bin/env bash
# `make fuzz`: builds the fuzz targets in fuzz/ (cargo-fuzz, libFuzzer) and runs each for
# FUZZ_SECONDS (default 60) from its committed seeds (fuzz/corpus/<target>), growing a
# working corpus in fuzz/runs/<target> (not committed). FUZZ_TARGETS picks targets
# (default: all); FUZZ_JOBS runs that many targets at once (default 1); FUZZ_RUNS stops
# each target after that many executions instead (FUZZ_SECONDS still bounds it).
# FUZZ_SANITIZER is `none` (default: the code under test is safe Rust, see
# docs/reliability.md) or `address`. Debug assertions are always on. Prints one line per
# target: executions, seconds, exec/s, and whether a crash was found (its input is then in
# fuzz/artifacts/<target>/). Needs `cargo install cargo-fuzz`; uses the `nightly`
# toolchain when rustup has one, else the default toolchain with RUSTC_BOOTSTRAP=1 (what
# cargo-fuzz needs from nightly, `-Zsanitizer`, is then accepted by a stable compiler).
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds=${FUZZ_SECONDS:-60}
jobs=${FUZZ_JOBS:-1}
sanitizer=${FUZZ_SANITIZER:-none}
runs=${FUZZ_RUNS:--1}
if cargo +nightly --version >/dev/null 2>&1; then
  cargo=(cargo +nightly)
else
  cargo=(cargo)
  export RUSTC_BOOTSTRAP=1
fi
targets=${FUZZ_TARGETS:-$("${cargo[@]}" fuzz list)}
build=(-s "$sanitizer" --debug-assertions)
for target in $targets; do "${cargo[@]}" fuzz build "${build[@]}" "$target"; done
mkdir -p logs
# libFuzzer options a target needs beyond the common ones.
options_for() {
  case $1 in
    # The in-process gateway lives as long as the process, on purpose.
    http_request) echo -detect_leaks=0 ;;
    # libFuzzer's entropic scheduling keeps per-feature counts, which took about half the
    # time of these targets' inputs (thousands of edges each): without it, twice (manifests)
    # and 1.6 times (signature) the executions, with as much coverage after the same time
    # (docs/reliability.md).
    manifest_compile | signature) echo -entropic=0 ;;
  esac
}
run_one() {
  local target=$1
  mkdir -p "runs/$target"
  local status=0
  # shellcheck disable=SC2046
  "${cargo[@]}" fuzz run "${build[@]}" "$target" "runs/$target" "corpus/$target" -- \
    -max_total_time="$seconds" -runs="$runs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    $(options_for "$target") >"logs/$target.log" 2>&1 || status=$?
  local executions took
  executions=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "logs/$target.log" | grep -o '[0-9]*$' || echo '?')
  took=$(grep -o 'Done [0-9]* runs in [0-9]* second' "logs/$target.log" | grep -o '[0-9]* second' | grep -o '[0-9]*' || echo "$seconds")
  local rate='?'
  [ "$executions" != '?' ] && [ "$took" -gt 0 ] && rate=$((executions / took))
  if [ "$status" = 0 ]; then
    echo "$target: $executions executions in ${took}s ($rate/s), no crash"
  else
    echo "$target: CRASH after $executions executions (exit $status): see fuzz/logs/$target.log and fuzz/artifacts/$target/"
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
