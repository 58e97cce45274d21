# Build a Nation: two commands.
#   make run   - builds what is needed and starts the whole game on $(BIND)
#   make test  - every check CI runs
# Both install what is missing first (scripts/setup.sh, idempotent).

BIND ?= 127.0.0.1:8080
export BIND
CARGO ?= cargo

.PHONY: run test setup setup-run frontend build lint check-compose bench clean

## Start the whole game. KAFKA_BROKERS unset: embedded in-memory broker + engine
## in one process. KAFKA_BROKERS set: bridge and engine against that cluster.
run: setup-run frontend
	$(CARGO) build --release -p bridge
	@BIN="$${CARGO_TARGET_DIR:-target}/release/bridge"; \
	if [ -n "$$KAFKA_BROKERS" ]; then \
	  exec "$$BIN" --with-engine true; \
	else \
	  exec "$$BIN"; \
	fi

## Every test, as CI runs it.
test: setup lint frontend
	$(CARGO) build -p shared --target wasm32-unknown-unknown
	$(CARGO) test --workspace

setup:
	@bash scripts/setup.sh all

setup-run:
	@bash scripts/setup.sh run

## The browser game, built offline by trunk into dist/.
frontend:
	$(CARGO) fetch
	PATH="$(CURDIR)/.tools/node_modules/.bin:$$PATH" trunk build --release

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) clippy -p frontend --target wasm32-unknown-unknown -- -D warnings

## Benchmarks (figures in BENCHMARKS.md).
bench:
	bash scripts/bench.sh

clean:
	$(CARGO) clean
	rm -rf dist artifacts
