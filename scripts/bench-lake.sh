#!/usr/bin/env bash
# The lake's benchmark (BENCHMARKS.md, "Lake"): export throughput on one core
# against a same-run baseline that only consumes and decodes the same records,
# bytes per event on disk, and `lake report` time; and the floor: the least
# any writer of the lake's tables must add to the baseline, row by row.
#   bash scripts/bench-lake.sh [events, default 1000000] [partitions, default 12]
#   CODECS="zstd snappy lz4 none" bash scripts/bench-lake.sh   (one export each)
#   ROUNDS=5 bash scripts/bench-lake.sh   (rounds of baseline, floor, export; default 3)
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

# The broker on the other core(s), so that neither side of the comparison
# shares its core with it (measured: with the broker free to run on core 0
# too, the same export took 2.2 to 3.3 s from run to run).
port="${KAFKA_BROKERS##*:}"
broker_pid=$(ss -Hltnp "sport = :$port" 2>/dev/null | grep -o 'pid=[0-9]*' | head -1 | cut -d= -f2 || true)
if [[ -n "$broker_pid" && "$(nproc)" -ge 2 ]]; then
  taskset -a -c -p "1-$(($(nproc) - 1))" "$broker_pid" >/dev/null && echo "broker (pid $broker_pid) pinned to cores 1-$(($(nproc) - 1))"
else
  echo "broker not pinned (its pid was not found, or one core only): expect noisier figures"
fi

echo "== producing $N actions to $TOPIC ($PARTITIONS partitions)"
"$BENCH" produce --topic "$TOPIC" --partitions "$PARTITIONS" --n "$N"

# The baseline at its best: one message at a time, and in runs of up to
# 64 decoded together as the export takes them (LAKE_BENCH_RUN); the export
# is compared with the faster of the two.
# ROUNDS (default 3) rounds, each the baseline (both ways, the faster
# counted), the floor and the export, one after the other: the machine's
# noise moves whole stretches of seconds, so each round's ratio is of
# neighbours, and the summary gives the median round and best against best.
ROUNDS="${ROUNDS:-3}"
CODECS=(${CODECS:-zstd})
timed() { # runs "$@"; its wall time in ns is then in $ns
  local start end
  start=$(date +%s%N)
  "$@"
  end=$(date +%s%N)
  ns=$((end - start))
}
ratios=()
best_base=
best_export=
for round in $(seq 1 "$ROUNDS"); do
  echo "==== round $round of $ROUNDS"
  base_ns=
  for run in 1 64; do
    echo "== baseline: consume + decode only (one core), runs of $run"
    timed env LAKE_BENCH_RUN=$run "${ONE_CORE[@]}" "$BENCH" consume --topic "$TOPIC"
    awk -v ns=$ns -v n="$N" -v r=$run 'BEGIN { s = ns / 1e9; printf "baseline (runs of %d) wall time %.2f s (%.0f events/s, process start included)\n", r, s, n / s }'
    if [[ -z "$base_ns" || $ns -lt $base_ns ]]; then base_ns=$ns; fi
  done
  awk -v ns=$base_ns 'BEGIN { printf "baseline: the faster, %.2f s\n", ns / 1e9 }'
  if [[ -z "$best_base" || $base_ns -lt $best_base ]]; then best_base=$base_ns; fi

  echo "== floor: consume + decode + every value into compressed column buffers (one core)"
  timed env LAKE_BENCH_RUN=64 "${ONE_CORE[@]}" "$BENCH" floor --topic "$TOPIC" --to "$OUT/floor"
  awk -v ns=$ns -v b=$base_ns -v n="$N" 'BEGIN { s = ns / 1e9; printf "floor wall time %.2f s (%.0f events/s, process start included): %.2fx the baseline\n", s, n / s, ns / b }'
  rm -rf "$OUT/floor"

  codec=${CODECS[0]}
  lake="$OUT/lake-1-$codec"
  rm -rf "$lake"
  echo "== lake export --once --compression $codec (one core)"
  timed "${ONE_CORE[@]}" "$LAKE" export --once --no-outcomes --compression "$codec" --actions-topic "$TOPIC" --to "$lake" --progress-secs 60
  awk -v ns=$ns -v b=$base_ns -v n="$N" -v c="$codec" 'BEGIN { s = ns / 1e9; printf "export (%s) wall time %.2f s (%.0f events/s, process start included): %.2fx the baseline\n", c, s, n / s, ns / b }'
  ratios+=("$(awk -v ns=$ns -v b=$base_ns 'BEGIN { printf "%.3f", ns / b }')")
  if [[ -z "$best_export" || $ns -lt $best_export ]]; then best_export=$ns; fi
done
median=$(printf '%s\n' "${ratios[@]}" | sort -n | awk '{ r[NR] = $1 } END { print r[int((NR + 1) / 2)] }')
echo "== summary over $ROUNDS rounds: export / baseline by round: ${ratios[*]}; median ${median}x; best export against best baseline $(awk -v e=$best_export -v b=$best_base 'BEGIN { printf "%.2f s / %.2f s = %.2fx", e / 1e9, b / 1e9, e / b }')"

# Other CODECS: one export each, against the last round's baseline.
i=0
for codec in "${CODECS[@]}"; do
  i=$((i + 1))
  lake="$OUT/lake-$i-$codec"
  if [[ $i -gt 1 ]]; then
    echo "== lake export --once --compression $codec (one core)"
    timed "${ONE_CORE[@]}" "$LAKE" export --once --no-outcomes --compression "$codec" --actions-topic "$TOPIC" --to "$lake" --progress-secs 60
    awk -v ns=$ns -v b=$base_ns -v n="$N" -v c="$codec" 'BEGIN { s = ns / 1e9; printf "export (%s) wall time %.2f s (%.0f events/s, process start included): %.2fx the baseline\n", c, s, n / s, ns / b }'
  fi
  events=$(du -sb "$lake/events" | cut -f1)
  all=$(du -sb "$lake" | cut -f1)
  awk -v e="$events" -v a="$all" -v n="$N" -v c="$codec" 'BEGIN { printf "bytes on disk (%s): events table %d bytes, %.1f bytes/event; whole lake (events, purchases, buffer_meta, etl_meta, log): %d bytes, %.1f bytes/event\n", c, e, e / n, a, a / n }'
done

echo "== lake report"
start=$(date +%s%N)
"$LAKE" report --from "$OUT/lake-1-${CODECS[0]}" >"$OUT/report.txt"
end=$(date +%s%N)
head -1 "$OUT/report.txt"
awk -v ns=$((end - start)) -v n="$N" 'BEGIN { printf "lake report over %d events: %.2f s\n", n, ns / 1e9 }'
