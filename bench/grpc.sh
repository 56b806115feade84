#!/usr/bin/env bash
# gRPC benchmark: unary calls per second through an `H2C` backend against the same server
# directly, in one run, with the same client: a hyper HTTP/2 client sending gRPC-framed
# unary calls (POST, content-type application/grpc, te: trailers; a call counts when its
# trailers say grpc-status 0) to a minimal hyper gRPC server. Real grpcio peers are in the
# correctness tests; their Python server tops out near 4,000 calls/s here and would
# measure itself. The work is the ignored test `grpc_bench` in crates/switchyard/tests/grpc.rs
# (release build); numbers: docs/benchmarks.md.
#
# Env (defaults): GRPC_BENCH_SECONDS=5 GRPC_BENCH_ROUNDS=3 GRPC_BENCH_CONNECTIONS=4
#   GRPC_BENCH_CONCURRENCY=64
# The report is also written to .bench/grpc-last.txt.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD

LOG_PREFIX=grpc
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

command -v cargo >/dev/null || die "cargo is required"
log "cargo test --release -p switchyard --test grpc --no-run"
cargo test --release -p switchyard --test grpc --no-run

mkdir -p .bench
out=.bench/grpc-last.txt
log "grpc_bench (unary calls direct and through switchyard)"
cargo test -q --release -p switchyard --test grpc -- --ignored --exact grpc_bench --nocapture --test-threads 1 \
  | grep -E '^(#|grpc)' | tee "$out"
log "report written to $out"
