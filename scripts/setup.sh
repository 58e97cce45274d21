#!/usr/bin/env bash
# Idempotent set-up for `make run` and `make test` on a fresh Debian machine.
# Installs only what is missing: system packages, the wasm target, trunk,
# wasm-bindgen-cli (same version as Cargo.lock), binaryen, Java, Maven and
# Apache Kafka's jars (kafka/pom.xml). Safe to run again and again.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TRUNK_VERSION="0.21.14"
WASM_BINDGEN_VERSION="0.2.130"
WHAT="${1:-all}" # all | run

log() { printf '\033[1;34m[setup]\033[0m %s\n' "$*" >&2; }

need_apt=()
command -v cmake >/dev/null || need_apt+=(cmake)
# librdkafka 2.12 includes <curl/curl.h> under `#ifdef WITH_OAUTHBEARER_OIDC` even when
# built without curl (the macro is defined as 0), so the header must exist.
[[ -e /usr/include/x86_64-linux-gnu/curl/curl.h || -e /usr/include/curl/curl.h ]] || need_apt+=(libcurl4-openssl-dev)
command -v npm >/dev/null || need_apt+=(nodejs npm)
command -v python3 >/dev/null || need_apt+=(python3 python3-venv)
# Apache Kafka's broker runs on Java 17 and is resolved with Maven.
command -v java >/dev/null || [[ -x "${JAVA_HOME:-/nonexistent}/bin/java" ]] || need_apt+=(openjdk-17-jre-headless)
command -v mvn >/dev/null || need_apt+=(maven)
# Brotli copies of the frontend's assets (Trunk.toml's post-build hook).
command -v brotli >/dev/null || need_apt+=(brotli)
if [[ "$WHAT" == "all" ]]; then
  command -v chromium >/dev/null || need_apt+=(chromium)
  command -v chromedriver >/dev/null || need_apt+=(chromium-driver)
  command -v wrk >/dev/null || need_apt+=(wrk)
  command -v ab >/dev/null || need_apt+=(apache2-utils)
  command -v docker-compose >/dev/null || need_apt+=(docker-compose)
fi
if ((${#need_apt[@]})); then
  log "installing Debian packages: ${need_apt[*]}"
  SUDO=""
  [[ $(id -u) -eq 0 ]] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

if ! rustup target list --installed | grep -q '^wasm32-unknown-unknown$'; then
  log "adding the wasm32-unknown-unknown target"
  rustup target add wasm32-unknown-unknown
fi

if [[ "$(trunk --version 2>/dev/null)" != "trunk $TRUNK_VERSION" ]]; then
  log "installing trunk $TRUNK_VERSION (about 5 minutes, once)"
  cargo install trunk --locked --version "$TRUNK_VERSION"
fi

if [[ "$(wasm-bindgen --version 2>/dev/null)" != "wasm-bindgen $WASM_BINDGEN_VERSION" ]]; then
  log "installing wasm-bindgen-cli $WASM_BINDGEN_VERSION (about 2 minutes, once)"
  # Its lock file names a webpki-roots the registry mirror may not carry:
  # fall back to resolving afresh (same wasm-bindgen-cli version either way).
  cargo install wasm-bindgen-cli --locked --version "$WASM_BINDGEN_VERSION" ||
    cargo install wasm-bindgen-cli --version "$WASM_BINDGEN_VERSION"
fi

# cargo-fuzz (scripts/fuzz.sh, run by `make test`): libFuzzer on the stable
# toolchain with RUSTC_BOOTSTRAP=1.
CARGO_FUZZ_VERSION="0.13.2"
if [[ "$WHAT" == "all" && "$(cargo fuzz --version 2>/dev/null)" != "cargo-fuzz $CARGO_FUZZ_VERSION" ]]; then
  log "installing cargo-fuzz $CARGO_FUZZ_VERSION (about 1 minute, once)"
  cargo install cargo-fuzz --locked --version "$CARGO_FUZZ_VERSION"
fi

# wasm-opt: binaryen from npm (Debian's 108 corrupts wasm-bindgen 0.2.130's
# externref table export); the Makefile puts .tools/node_modules/.bin on PATH.
BINARYEN_VERSION="132.0.0"
WASM_OPT="$ROOT/.tools/node_modules/.bin/wasm-opt"
if [[ "$("$WASM_OPT" --version 2>/dev/null)" != "wasm-opt version ${BINARYEN_VERSION%%.*} "* ]]; then
  log "installing binaryen $BINARYEN_VERSION (wasm-opt) from npm into .tools/"
  mkdir -p "$ROOT/.tools"
  npm install --silent --no-fund --no-audit --prefix "$ROOT/.tools" "binaryen@$BINARYEN_VERSION"
fi

# axe-core from npm, injected into Chromium by the browser tests (WCAG A/AA
# checks of the join and nation pages in both themes).
AXE_VERSION="4.14.1"
AXE_PKG="$ROOT/.tools/node_modules/axe-core/package.json"
if [[ "$WHAT" == "all" && "$(sed -n 's/.*"version": *"\([^"]*\)".*/\1/p' "$AXE_PKG" 2>/dev/null | head -1)" != "$AXE_VERSION" ]]; then
  log "installing axe-core $AXE_VERSION from npm into .tools/"
  mkdir -p "$ROOT/.tools"
  npm install --silent --no-fund --no-audit --prefix "$ROOT/.tools" "axe-core@$AXE_VERSION"
fi

# Apache Kafka's broker: the jars named by kafka/pom.xml (one pinned 4.x
# version), resolved from Maven Central into .tools/kafka/libs. Redone only when
# the pom changes (its checksum is kept beside the jars).
KAFKA_LIBS="$ROOT/.tools/kafka/libs"
POM_SUM="$(sha256sum "$ROOT/kafka/pom.xml" | cut -d' ' -f1)"
if [[ "$(cat "$KAFKA_LIBS/.pom.sha256" 2>/dev/null)" != "$POM_SUM" ]]; then
  log "resolving Apache Kafka's broker from Maven Central into .tools/kafka/libs"
  rm -rf "$KAFKA_LIBS"
  (cd "$ROOT/kafka" && mvn -q -B dependency:copy-dependencies -DoutputDirectory="$KAFKA_LIBS")
  echo "$POM_SUM" >"$KAFKA_LIBS/.pom.sha256"
fi

# The lake's Python side (lake/): pyarrow and DuckDB read what `lake export`
# writes (a test checks it), and moto's S3-compatible server is the real S3
# endpoint the object-store tests start on a free port. Pinned, in a venv of
# our own under .tools/; redone only when lake/requirements.txt changes.
# A pinned Python venv of our own under .tools/<name>, redone only when its
# requirements file changes.
python_venv() {
  local venv="$ROOT/.tools/$1" req="$2" what="$3" sum
  sum="$(sha256sum "$req" | cut -d' ' -f1)"
  if [[ "$(cat "$venv/.requirements.sha256" 2>/dev/null)" != "$sum" ]]; then
    log "creating $what in .tools/$1"
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check -r "$req"
    echo "$sum" >"$venv/.requirements.sha256"
  fi
}
if [[ "$WHAT" == "all" ]]; then
  python_venv lake-venv "$ROOT/lake/requirements.txt" "the lake's Python venv (pyarrow, duckdb, moto server)"
  # schemathesis: property-based tests of the served /openapi.json.
  python_venv test-venv "$ROOT/scripts/test-requirements.txt" "the test tools' Python venv (schemathesis)"
  # A real schema registry (Apicurio Registry, built from Maven Central into
  # .tools/apicurio; redone only when its pom changes) and Confluent's Python
  # client with its schema-registry deserializers: tests/tests/registry.rs.
  bash "$ROOT/scripts/registry/registry.sh" install
  python_venv registry-venv "$ROOT/scripts/registry/requirements.txt" "Confluent's Python client (schema registry deserializers)"
fi

log "ready"
