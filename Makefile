# Build a Nation: two commands.
#   make run   - builds what is needed and starts the whole game on $(BIND)
#   make test  - every check CI runs
# Both install what is missing first (scripts/setup.sh, idempotent).

BIND ?= 127.0.0.1:8080
export BIND
CARGO ?= cargo

.PHONY: run wipe test setup setup-run frontend build lint check-compose bench clean

## Start the whole game. KAFKA_BROKERS unset: a local Apache Kafka keeping its
## data in $(NATION_DATA)/kafka, then bridge + engine (+ leaderboards, lake
## exporter) in one process against it.
## KAFKA_BROKERS set: bridge and engine against that cluster.
NATION_DATA ?= .data
export NATION_DATA
## The Parquet lake make run keeps up to date beside the game (LAKE_DIR, a
## folder or s3://...; WITH_LAKE=false: serve its reports, export nothing).
## `lake report --from .data/lake`; the page: /?view=analytics.
LAKE_DIR ?= $(NATION_DATA)/lake
run: setup-run frontend
	$(CARGO) build --release -p nation
	@LAKE_DIR="$(LAKE_DIR)" exec "$${CARGO_TARGET_DIR:-target}/release/nation"

## Delete make run's local broker data, token secret and lake (every nation:
## a lake kept past its topics would resume past their new offsets).
wipe:
	rm -rf "$(NATION_DATA)"

## Every test, as CI runs it, on one Apache Kafka broker started for the run
## (localkafka run exports it as KAFKA_BROKERS; tests that stop or kill a
## broker start their own).
test: setup lint frontend
	$(CARGO) build -p shared --target wasm32-unknown-unknown
	$(CARGO) build -p localkafka
	"$${CARGO_TARGET_DIR:-target}/debug/localkafka" run -- $(CARGO) test --workspace
	"$${CARGO_TARGET_DIR:-target}/debug/localkafka" run -- bash scripts/schemathesis.sh
	bash scripts/fuzz.sh $(FUZZ_SECS)

## Seconds per fuzz target in `make test` (RELIABILITY.md records 600 s runs:
## `scripts/fuzz.sh 600 <target>`).
FUZZ_SECS ?= 5

setup:
	@bash scripts/setup.sh all

setup-run:
	@bash scripts/setup.sh run

## The browser game, built offline by trunk into dist/; then the arena,
## analytics and operator pages (a second wasm, so the game page's stays
## small) into dist/extra/, after it: trunk empties dist/ on each build.
frontend:
	$(CARGO) fetch
	PATH="$(CURDIR)/.tools/node_modules/.bin:$$PATH" trunk build --release
	PATH="$(CURDIR)/.tools/node_modules/.bin:$$PATH" trunk build frontend/extra.html --release --dist dist/extra --public-url /extra/

lint:
	$(CARGO) fmt --all -- --check
	@# The bridge knows no engine: roles are composed by the nation crate.
	@if $(CARGO) tree -p bridge -e normal --prefix none | grep -q '^engine '; then echo "bridge depends on engine"; exit 1; fi
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) clippy -p frontend --target wasm32-unknown-unknown -- -D warnings

## Benchmarks (figures in BENCHMARKS.md).
bench:
	bash scripts/bench.sh

clean:
	$(CARGO) clean
	rm -rf dist artifacts
