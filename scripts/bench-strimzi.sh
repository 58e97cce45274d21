#!/usr/bin/env bash
# Peer row for "P1 ingest": the Strimzi HTTP bridge (Java, Vert.x) producing one
# record per request with acks=all, idempotent, and answering after the ack
# (`POST /topics/{topic}` with `Content-Type: application/vnd.kafka.json.v2+json`,
# not `?async=true`), under the same load as scripts/bench-bridge.sh:
# wrk -t1 -c256 on loopback, a payload of the same size, one partition.
#
# Where the Strimzi bridge comes from: `io.strimzi:kafka-bridge` is NOT on Maven
# Central (its maven-metadata.xml is a 404; only other io.strimzi artifacts such
# as `api` and `kafka-oauth-*` are there), and the release archives live on
# GitHub, which this project's machines do not reach. Build the distribution
# from a source checkout of strimzi/strimzi-kafka-bridge instead: tag 0.33.1 is
# the last one that compiles with Java 17 (1.x needs Java 21); its
# dependencies all resolve from Maven Central:
#   (cd <checkout> && mvn -B -DskipTests -Dcheckstyle.skip -Dspotbugs.skip \
#      -Dmaven.javadoc.skip -Dmaven.source.skip package)
# then point STRIMZI_BRIDGE_HOME at <checkout>/target/kafka-bridge-0.33.1/kafka-bridge-0.33.1
# (or set STRIMZI_SRC=<checkout> and this script builds it). Never commit it.
#
# Usage: STRIMZI_BRIDGE_HOME=... scripts/bench-strimzi.sh [seconds]
#   KAFKA_BROKERS: the broker (unset: a fresh `localkafka serve`)
#   TOPIC / PARTITION: where to produce (default strimzi-bench / 0, auto-created)
#   STRIMZI_LINGERS="0 1 5": the producer's linger.ms values tried (the Java
#     client's default is 5); one row each. Prints the best req/s on stdout.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
SECS="${1:-10}"
TOPIC="${TOPIC:-strimzi-bench}"
PARTITION="${PARTITION:-0}"
STRIMZI_LINGERS="${STRIMZI_LINGERS:-0 1 5}"
WARMUP="${STRIMZI_WARMUP:-20}" # seconds of load before measuring: the JIT, 256 producers

if [[ -z "${STRIMZI_BRIDGE_HOME:-}" && -n "${STRIMZI_SRC:-}" ]]; then
  version=$(cat "$STRIMZI_SRC/release.version")
  STRIMZI_BRIDGE_HOME="$STRIMZI_SRC/target/kafka-bridge-$version/kafka-bridge-$version"
  if [[ ! -d "$STRIMZI_BRIDGE_HOME/libs" ]]; then
    echo "building the Strimzi HTTP bridge $version from $STRIMZI_SRC" >&2
    (cd "$STRIMZI_SRC" && mvn -q -B -DskipTests -Dcheckstyle.skip -Dspotbugs.skip \
      -Dmaven.javadoc.skip -Dmaven.source.skip package) >&2
  fi
fi
if [[ -z "${STRIMZI_BRIDGE_HOME:-}" || ! -d "${STRIMZI_BRIDGE_HOME}/libs" ]]; then
  code=$(curl -s -o /dev/null -w '%{http_code}' -m 20 \
    https://repo.maven.apache.org/maven2/io/strimzi/kafka-bridge/maven-metadata.xml || echo none)
  echo "Strimzi HTTP bridge: no distribution (STRIMZI_BRIDGE_HOME or STRIMZI_SRC unset);" \
    "Maven Central answers $code for io/strimzi/kafka-bridge/maven-metadata.xml. See this script's header." >&2
  exit 1
fi
VERSION=$(ls "$STRIMZI_BRIDGE_HOME/libs" | sed -n 's/^io\.strimzi\.kafka-bridge-\([0-9][0-9.]*\)\.jar$/\1/p;s/^kafka-bridge-\([0-9][0-9.]*\)\.jar$/\1/p' | head -1)

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 1 600); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.05; done; echo "port $1 never opened" >&2; return 1; }
stop() {
  kill -TERM "$1" 2>/dev/null || true
  for _ in $(seq 1 200); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.05; done
  kill -KILL "$1" 2>/dev/null || true
}

WORK=$(mktemp -d)
STRIMZI_PID=""
KAFKA_PID=""
cleanup() {
  [[ -n "$STRIMZI_PID" ]] && stop "$STRIMZI_PID"
  [[ -n "$KAFKA_PID" ]] && stop "$KAFKA_PID"
  rm -rf "$WORK"
}
trap cleanup EXIT

if [[ -z "${KAFKA_BROKERS:-}" ]]; then
  cargo build --release -q -p localkafka --bin localkafka
  mkfifo "$WORK/kafka.out"
  target/release/localkafka serve --port 0 >"$WORK/kafka.out" 2>"$WORK/kafka.err" &
  KAFKA_PID=$!
  exec 4<"$WORK/kafka.out"
  while read -r -t 120 line <&4; do
    if [[ "$line" == broker:* ]]; then KAFKA_BROKERS="${line#broker: }"; break; fi
  done
  [[ -n "${KAFKA_BROKERS:-}" ]] || { cat "$WORK/kafka.err" >&2; exit 1; }
  echo "broker: Apache Kafka (localkafka) at $KAFKA_BROKERS" >&2
fi

# Logging at WARN: the bridge at its best, not printing a line per request.
cat >"$WORK/log4j2.properties" <<'EOF'
name = BenchConfig
appender.console.type = Console
appender.console.name = STDOUT
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = %d %-5p [%t] %c{1} - %m%n
rootLogger.level = WARN
rootLogger.appenderRef.console.ref = STDOUT
EOF
# The same envelope as bridge/examples/baseline.rs, as the record's JSON value.
cat >"$WORK/produce.lua" <<EOF
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/vnd.kafka.json.v2+json"
wrk.body = '{"records":[{"key":"1","partition":$PARTITION,"value":{"event_id":"01a203bb-9ac4-7120-9e55-cd104cb4d421","game_id":1,"player_id":"52609bc175714bec9a53bbf8fea1e334","event_type":"purchase_sword","Host":"127.0.0.1:8080","User-Agent":"wrk","Accept":"*/*","client_addr":"127.0.0.1","received_at_ms":1763800000000,"schema_version":1}}]}'
EOF
BODY=$(sed -n "s/^wrk.body = '\(.*\)'$/\1/p" "$WORK/produce.lua")

best=0
for linger in $STRIMZI_LINGERS; do
  PORT=$(free_port)
  cat >"$WORK/application.properties" <<EOF
bridge.id=bench
kafka.bootstrap.servers=$KAFKA_BROKERS
kafka.producer.acks=all
kafka.producer.enable.idempotence=true
kafka.producer.linger.ms=$linger
kafka.producer.compression.type=none
http.host=127.0.0.1
http.port=$PORT
http.cors.enabled=false
http.consumer.enabled=false
http.producer.enabled=true
EOF
  # CompletableFuture's *Async methods run on the common ForkJoinPool, whose
  # parallelism is cores - 1; below 2 the JDK starts a new thread per task
  # (two per request here). At least 2 keeps the bridge at its best on 2 cores.
  java -Xms1g -Xmx1g -Djava.util.concurrent.ForkJoinPool.common.parallelism="$(( $(nproc) > 2 ? $(nproc) : 2 ))" \
    -Dvertx.cacheDirBase="$WORK/vertx-cache" \
    -Dlog4j2.configurationFile="file:$WORK/log4j2.properties" \
    -cp "$STRIMZI_BRIDGE_HOME/libs/*" io.strimzi.kafka.bridge.Application \
    --config-file="$WORK/application.properties" >"$WORK/strimzi.log" 2>&1 &
  STRIMZI_PID=$!
  wait_port "$PORT"
  # One request by hand: it must answer 200 with an offset (the ack).
  answer=$(curl -s -m 30 -w ' %{http_code}' -X POST -H 'Content-Type: application/vnd.kafka.json.v2+json' \
    -d "$BODY" "http://127.0.0.1:$PORT/topics/$TOPIC")
  if [[ "$answer" != *'"offset"'*' 200' ]]; then
    echo "Strimzi HTTP bridge: unexpected answer: $answer" >&2
    tail -20 "$WORK/strimzi.log" >&2
    exit 1
  fi
  # One wrk run of WARMUP + SECS seconds on the same 256 connections: the bridge
  # makes one Kafka producer per HTTP connection, so a fresh wrk run would spend
  # its first seconds creating 256 producers. The rate is measured over the last
  # SECS seconds from the offsets the bridge answers with (every record of the
  # partition in that window came from this load); p99 is wrk's, over the run.
  offset() {
    curl -s -m 30 -X POST -H 'Content-Type: application/vnd.kafka.json.v2+json' -d "$BODY" \
      "http://127.0.0.1:$PORT/topics/$TOPIC" | python3 -c 'import sys,json; print(json.load(sys.stdin)["offsets"][0]["offset"])'
  }
  wrk -t1 -c256 -d"$((WARMUP + SECS + 1))s" --latency -s "$WORK/produce.lua" \
    "http://127.0.0.1:$PORT/topics/$TOPIC" >"$WORK/wrk.out" &
  WRK=$!
  sleep "$WARMUP"
  t0=$(date +%s.%N); o0=$(offset)
  sleep "$SECS"
  t1=$(date +%s.%N); o1=$(offset)
  wait "$WRK"
  rps=$(python3 -c "print(($o1 - $o0 - 1) / ($t1 - $t0))")
  p99=$(awk '$1=="99%" {print $2}' "$WORK/wrk.out")
  non2xx=$(awk '/Non-2xx/ {print $NF}' "$WORK/wrk.out")
  printf '%-44s %8.0f req/s  p99 %-8s non-2xx %s\n' "(s) Strimzi ${VERSION:-?} POST /topics linger=$linger" \
    "$rps" "$p99" "${non2xx:-0}" >&2
  best=$(python3 -c "print(max($best, $rps))")
  stop "$STRIMZI_PID"
  STRIMZI_PID=""
done
echo "$best"
