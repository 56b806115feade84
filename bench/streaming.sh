#!/usr/bin/env bash
# Streaming benchmark: server-sent events through a `model` backend (protocol OpenAI, so the
# token meter scans every line) against the same upstream read directly, in one run:
# chunks per second of a burst of 64-byte events, and the latency each event adds (read
# time minus send time, one clock). The work is the ignored test `streaming_bench` in
# crates/switchyard/tests/models.rs (release build); method and numbers: docs/benchmarks.md.
#
# Env (defaults): STREAM_BENCH_CHUNKS=200000 STREAM_BENCH_PACED=400
#   STREAM_BENCH_INTERVAL_MS=5 STREAM_BENCH_ROUNDS=5 (each figure: the median over rounds)
# The report is also written to .bench/streaming-last.txt.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD

LOG_PREFIX=streaming
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

command -v cargo >/dev/null || die "cargo is required"
log "cargo test --release -p switchyard --test models --no-run"
cargo test --release -p switchyard --test models --no-run

mkdir -p .bench
out=.bench/streaming-last.txt
log "streaming_bench (SSE direct and through switchyard)"
cargo test -q --release -p switchyard --test models -- --ignored --exact streaming_bench --nocapture --test-threads 1 \
  | grep -E '^(#|target|direct|switchyard|streaming)' | tee "$out"
log "report written to $out"
