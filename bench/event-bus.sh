#!/usr/bin/env bash
# Event bus benchmark: events per second accepted into NATS JetStream through an `eventBus`
# backend (HTTP POST, 202 after the publish ack) against publishing the same events directly
# with the same client library (async-nats), same server, same concurrency, one run. The
# work is the ignored test `event_bus_bench` in crates/switchyard/tests/event_bus.rs
# (release build; it starts its own nats-server -js); method and numbers: docs/benchmarks.md.
#
# Env (defaults): EVENT_BENCH_EVENTS=20000 EVENT_BENCH_CONCURRENCY=32
# The report is also written to .bench/event-bus-last.txt.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD

LOG_PREFIX=event-bus
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

command -v cargo >/dev/null || die "cargo is required"
[[ -x /usr/sbin/nats-server ]] || command -v nats-server >/dev/null || die "nats-server is required (apt-get install nats-server)"
log "cargo test --release -p switchyard --test event_bus --no-run"
cargo test --release -p switchyard --test event_bus --no-run

mkdir -p .bench
out=.bench/event-bus-last.txt
log "event_bus_bench (JetStream directly and through switchyard)"
cargo test -q --release -p switchyard --test event_bus -- --ignored --exact event_bus_bench --nocapture --test-threads 1 \
  | grep -E '^(#|round|direct|switchyard|event bus)' | tee "$out"
log "report written to $out"
