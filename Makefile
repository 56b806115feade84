# Switchyard developer targets. `make test` is what CI runs (via .ci/run).
CARGO ?= cargo

.PHONY: build run test bench crds fmt fmt-check lint

build:
	$(CARGO) build --release -p switchyard

run: build
	bash examples/quickstart/run.sh

test:
	bash scripts/test.sh

bench:
	bash bench/run.sh

crds:
	UPDATE_GOLDEN=1 $(CARGO) test -q -p switchyard-api --test crds

fmt:
	$(CARGO) fmt --all

fmt-check:
	$(CARGO) fmt --all -- --check

lint:
	$(CARGO) clippy --workspace --all-targets -- -D warnings
