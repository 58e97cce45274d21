#!/usr/bin/env bash
# The lake's benchmark (BENCHMARKS.md, "Lake"): export throughput on one core
# against a same-run baseline that only consumes and decodes the same records,
# bytes per event on disk, and `lake report` time.
#   bash scripts/bench-lake.sh [events, default 1000000] [partitions, default 12]
# Starts its own Apache Kafka (localkafka) unless KAFKA_BROKERS is set.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
N="${1:-1000000}"
PARTITIONS="${2:-12}"
TARGET="${CARGO_TARGET_DIR:-target}"

if [[ -z "${KAFKA_BROKERS:-}" ]]; then
  cargo build -q -p localkafka
  exec "$TARGET/debug/localkafka" run -- bash "$0" "$@"
fi

# Without `lake query` (DataFusion): the export and report paths do not use
# it, and a release DataFusion build takes a long time on a small machine.
cargo build -q --release -p lake --no-default-features --bins --examples
LAKE="$TARGET/release/lake"
BENCH="$TARGET/release/examples/lake_bench"
TOPIC="lake-bench-$(date +%s)-$$"
OUT="$(mktemp -d)"
trap 'rm -rf "$OUT"' EXIT
# One core for the consumer/exporter and librdkafka's threads alike; with
# GNU time, CPU time (user + sys) and page faults too: steadier than wall
# time on a shared machine.
ONE_CORE=(taskset -c 0)
if [[ -x /usr/bin/time ]]; then
  ONE_CORE=(/usr/bin/time -f "cpu: %U s user, %S s sys, %R page faults, %M KiB peak" taskset -c 0)
fi

echo "== producing $N actions to $TOPIC ($PARTITIONS partitions)"
"$BENCH" produce --topic "$TOPIC" --partitions "$PARTITIONS" --n "$N"

echo "== baseline: consume + decode only (one core)"
"${ONE_CORE[@]}" "$BENCH" consume --topic "$TOPIC"

echo "== lake export --once (one core)"
start=$(date +%s%N)
"${ONE_CORE[@]}" "$LAKE" export --once --no-outcomes --actions-topic "$TOPIC" --to "$OUT/lake" --progress-secs 60
end=$(date +%s%N)
awk -v ns=$((end - start)) -v n="$N" 'BEGIN { s = ns / 1e9; printf "export wall time %.2f s (%.0f events/s, process start included)\n", s, n / s }'

echo "== bytes on disk"
events=$(du -sb "$OUT/lake/events" | cut -f1)
all=$(du -sb "$OUT/lake" | cut -f1)
awk -v e="$events" -v a="$all" -v n="$N" 'BEGIN { printf "events table: %d bytes, %.1f bytes/event; whole lake (events, purchases, buffer_meta, etl_meta, log): %d bytes, %.1f bytes/event\n", e, e / n, a, a / n }'

echo "== lake report"
start=$(date +%s%N)
"$LAKE" report --from "$OUT/lake" >"$OUT/report.txt"
end=$(date +%s%N)
head -1 "$OUT/report.txt"
awk -v ns=$((end - start)) -v n="$N" 'BEGIN { printf "lake report over %d events: %.2f s\n", n, ns / 1e9 }'
