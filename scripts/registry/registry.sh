#!/usr/bin/env bash
# A real Confluent-compatible schema registry for local runs and CI: Apicurio Registry
# 2.4.2.Final, built from Maven Central by scripts/registry/pom.xml (see the comment there).
#
#   registry.sh install          build it into .tools/apicurio (Maven repo: .tools/m2);
#                                does nothing when already built from the same pom.xml
#   registry.sh run PORT         run it in the foreground on 127.0.0.1:PORT
#                                (in-memory storage, no auth; installs first if needed)
#   registry.sh wait PORT [SECS] poll until it answers (default 120 s); exit 1 on timeout
#   registry.sh url PORT         print the URL prefix clients use
#
# Clients (Confluent serializers, confluent-kafka's SchemaRegistryClient, plain HTTP) use
#   http://127.0.0.1:PORT/apis/ccompat/v7
# Gotcha: this version finds a JSON Schema only by its content: the schema must have a
# "$schema" naming json-schema.org, or a top-level "properties" (shared/schema/*.json have
# "$schema"). Without them, registering answers 422 "Failed to discover artifact type".
#
# Environment: JAVA_HOME (else `java` on PATH; tried on Java 17 and 25),
# REGISTRY_TOOLS_DIR (default <repo>/.tools), REGISTRY_HOST (default 127.0.0.1),
# REGISTRY_JAVA_OPTS (default: -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Xmx512m).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
TOOLS=${REGISTRY_TOOLS_DIR:-$ROOT/.tools}
M2=$TOOLS/m2
APP=$TOOLS/apicurio
BUILD=$APP/build
JAR=$BUILD/apicurio-registry-local-1.0.0-runner.jar
STAMP=$APP/installed.sha256
JAVA_OPTS_DEFAULT="-XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Xmx512m"

java_bin() {
  if [[ -n "${JAVA_HOME:-}" && -x "$JAVA_HOME/bin/java" ]]; then
    echo "$JAVA_HOME/bin/java"
  else
    command -v java || { echo "registry.sh: no java (set JAVA_HOME or put java on PATH)" >&2; exit 1; }
  fi
}

pom_hash() { sha256sum "$HERE/pom.xml" | cut -d' ' -f1; }

installed() { [[ -f "$JAR" && -d "$BUILD/lib" && -f "$STAMP" && "$(cat "$STAMP")" == "$(pom_hash)" ]]; }

install() {
  if installed; then
    echo "registry.sh: already installed ($JAR)"
    return 0
  fi
  command -v mvn >/dev/null || { echo "registry.sh: mvn not found" >&2; exit 1; }
  mkdir -p "$M2" "$APP"
  rm -rf "$BUILD" "$STAMP"
  echo "registry.sh: building Apicurio Registry into $BUILD (log: $APP/build.log)"
  local t0=$SECONDS
  if ! mvn -B -ntp -f "$HERE/pom.xml" \
      -Dmaven.repo.local="$M2" -Dapicurio.build.dir="$BUILD" \
      package >"$APP/build.log" 2>&1; then
    grep -E '^\[ERROR\]' "$APP/build.log" | head -20 >&2 || tail -40 "$APP/build.log" >&2
    echo "registry.sh: build failed, see $APP/build.log" >&2
    exit 1
  fi
  # Only the runner jar and lib/ are needed at run time.
  rm -rf "$BUILD/classes" "$BUILD/apicurio-registry-local-1.0.0.jar"
  pom_hash >"$STAMP"
  echo "registry.sh: installed in $((SECONDS - t0)) s: $JAR"
}

port_arg() {
  [[ "${1:-}" =~ ^[0-9]+$ ]] || { echo "usage: registry.sh $2 PORT" >&2; exit 2; }
}

run() {
  port_arg "${1:-}" run
  installed || install >&2
  local java; java=$(java_bin)
  # shellcheck disable=SC2086
  exec "$java" ${REGISTRY_JAVA_OPTS:-$JAVA_OPTS_DEFAULT} \
    -Dquarkus.http.host="${REGISTRY_HOST:-127.0.0.1}" \
    -Dquarkus.http.port="$1" \
    -jar "$JAR"
}

wait_ready() {
  port_arg "${1:-}" wait
  local deadline=$((SECONDS + ${2:-120}))
  until curl -sf -o /dev/null "http://${REGISTRY_HOST:-127.0.0.1}:$1/apis/ccompat/v7/subjects"; do
    if ((SECONDS >= deadline)); then
      echo "registry.sh: no answer on port $1 after ${2:-120} s" >&2
      return 1
    fi
    sleep 0.2
  done
}

case "${1:-}" in
  install) install ;;
  run) run "${2:-}" ;;
  wait) wait_ready "${2:-}" "${3:-120}" ;;
  url) port_arg "${2:-}" url; echo "http://${REGISTRY_HOST:-127.0.0.1}:$2/apis/ccompat/v7" ;;
  *) awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0" >&2; exit 2 ;;
esac
