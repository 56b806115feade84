# Switchyard developer targets. `make test` is what CI runs (via .ci/run).
CARGO ?= cargo

.PHONY: fuzz build run test bench bench-memory bench-https bench-streaming bench-event-bus bench-data-service bench-cost bench-discovery bench-signature bench-access-log bench-tracing bench-grpc bench-routes bench-peers crds packaging check-packaging fmt fmt-check lint

build:
	$(CARGO) build --release -p switchyard

run: build
	bash examples/quickstart/run.sh

test:
	bash scripts/test.sh

# Every fuzz target in fuzz/ for FUZZ_SECONDS (default 60) each; FUZZ_TARGETS picks some,
# FUZZ_JOBS runs several at once (scripts/fuzz.sh, docs/reliability.md). Not part of CI.
fuzz:
	bash scripts/fuzz.sh

bench:
	bash bench/run.sh
	bash bench/peers-callgrind.sh
	bash bench/https.sh
	bash bench/streaming.sh
	bash bench/event-bus.sh
	bash bench/access-log.sh
	bash bench/tracing.sh
	bash bench/data-service.sh
	bash bench/grpc.sh
	bash bench/routes.sh
	bash bench/memory.sh

# Instructions per proxied request (callgrind) of Switchyard, nginx and HAProxy, one worker
# each in front of the same upstream, in one run; prints Switchyard/nginx and
# Switchyard/HAProxy (bench/peers-callgrind.sh, docs/benchmarks.md).
bench-peers:
	bash bench/peers-callgrind.sh

# RSS of a proxy over MEMORY_REQUESTS (default 1,000,000) requests and of it and its
# controller over MEMORY_SWAPS (default 1,000) snapshot swaps; exits 1 when RSS grows more
# than MEMORY_MAX_GROWTH_MIB (bench/memory.sh, docs/reliability.md).
bench-memory:
	bash bench/memory.sh

# req/s, p99 and RSS with 100, 10,000 and 100,000 routes (hosts and templates mixed) and the
# time from a changed file to the proxy serving it, standalone and through the snapshot
# server, in one run (bench/routes.sh: ROUTES_COUNTS, ROUTES_CHANGES; docs/benchmarks.md).
bench-routes:
	bash bench/routes.sh

# gRPC unary calls per second through an H2C backend against the server directly, in one
# run (bench/grpc.sh, docs/benchmarks.md).
bench-grpc:
	bash bench/grpc.sh

# HTTPS requests per second through switchyard against nginx terminating TLS with the same
# certificate, keep-alive and new connections with resumption, in one run (bench/https.sh,
# docs/benchmarks.md).
bench-https:
	bash bench/https.sh

# Events per second into NATS JetStream through an eventBus backend against publishing
# directly with async-nats, in one run (bench/event-bus.sh, docs/benchmarks.md).
bench-event-bus:
	bash bench/event-bus.sh

# Rows per second of 100-row pages through a PostgreSQL dataService against the same
# query run directly with sqlx, in one run (bench/data-service.sh, docs/benchmarks.md).
bench-data-service:
	bash bench/data-service.sh

# SSE through a model backend against the upstream directly: chunks/s and the latency added
# per chunk, in one run (bench/streaming.sh, docs/benchmarks.md).
bench-streaming:
	bash bench/streaming.sh

# Instructions per request under callgrind, this checkout against the baseline commit
# (bench/cost.sh: BASELINE_REV, COST_REQUESTS, COST_CONFIGS, COST_STRICT=1 to fail above 3%).
bench-cost:
	bash bench/cost.sh

# Registry change to traffic latency (ZooKeeper, Nacos) next to the registry's own push
# latency, and a full re-sync of 1,000 instances (bench/discovery.sh, docs/benchmarks.md).
bench-discovery:
	bash bench/discovery.sh

# A Signature route against the same route with Anonymous: req/s and callgrind
# instructions per request in one run (bench/signature.sh, docs/benchmarks.md).
bench-signature:
	bash bench/signature.sh

# Instructions per request (callgrind) of one binary with the access log off, json and text,
# in one run; goal: json costs under 5% (bench/access-log.sh, docs/benchmarks.md).
bench-access-log:
	bash bench/access-log.sh

# Instructions per request with tracing off (propagation only) and OTLP export at 1% and
# 100% sampling, under callgrind, in one run (bench/tracing.sh, TRACE_STRICT=1 to fail
# above 3% at 1%; docs/benchmarks.md).
bench-tracing:
	bash bench/tracing.sh

# Regenerates crds/ from the Rust types, then the copies in the chart and deploy/.
crds:
	UPDATE_GOLDEN=1 $(CARGO) test -q -p switchyard-api --test crds
	bash scripts/sync-chart-crds.sh
	bash scripts/render-deploy.sh

# Regenerate what is derived from the chart: the values table and schema, and deploy/.
packaging:
	bash scripts/sync-chart-crds.sh
	"$$(bash scripts/packaging-venv.sh)" scripts/chart_values.py --write
	bash scripts/render-deploy.sh

check-packaging:
	bash scripts/check-packaging.sh

fmt:
	$(CARGO) fmt --all

fmt-check:
	$(CARGO) fmt --all -- --check

lint:
	$(CARGO) clippy --workspace --all-targets -- -D warnings
