#!/usr/bin/env bash
# Data service benchmark: rows per second of 100-row pages through a PostgreSQL
# `dataService` backend (HTTP GET -> JSON page) against the same page query run directly
# with the same driver (sqlx), same server, same concurrency, one run; also directly with
# everything the gateway runs per page (read-only transaction, statement timeout, page and
# count). The work is the ignored test `data_service_bench` in
# crates/switchyard/tests/data_services.rs (release build; it starts its own PostgreSQL 15);
# method and numbers: docs/benchmarks.md.
#
# Env (defaults): DATA_BENCH_PAGES=2000 DATA_BENCH_CONCURRENCY=8 DATA_BENCH_ROUNDS=3
# DATA_BENCH_VACUUM=1 (0: the table as loaded, without the VACUUM autovacuum would do)
# The report is also written to .bench/data-service-last.txt.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD

LOG_PREFIX=data-service
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

command -v cargo >/dev/null || die "cargo is required"
[[ -x /usr/lib/postgresql/15/bin/postgres ]] || die "PostgreSQL 15 is required (apt-get install postgresql; scripts/test.sh installs it)"
log "cargo test --release -p switchyard --test data_services --no-run"
cargo test --release -p switchyard --test data_services --no-run

mkdir -p .bench
out=.bench/data-service-last.txt
log "data_service_bench (PostgreSQL directly with sqlx and through switchyard)"
cargo test -q --release -p switchyard --test data_services -- --ignored --exact data_service_bench --nocapture --test-threads 1 \
  | grep -E '^(#|round|direct|switchyard|data service)' | tee "$out"
log "report written to $out"
