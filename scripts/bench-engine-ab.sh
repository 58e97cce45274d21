#!/usr/bin/env bash
# Two engine settings side by side, end to end: the same `loadgen play` load
# (answer -> WebSocket update, P2) against a release `nation` started with
# setting A, then B, then A, then B, on one warm broker (a warm-up run with
# B first: a fresh broker's JVM compiles its hot paths in its first minute).
# Each run has its own topics and group. Prints loadgen's 202 -> update row
# per run, and the 202 and the update from each action's intended start
# (what a player waits for in all); asserts nothing.
#
#   scripts/bench-engine-ab.sh ENGINE_TXN_PRODUCERS=1 ENGINE_TXN_PRODUCERS=2
#   RATE=2000 SECS=60 ROUNDS=3 PLAYERS=20 scripts/bench-engine-ab.sh A_ENV B_ENV
#
# A and B are one `NAME=value` each (several with commas:
# `ENGINE_COMMIT_INTERVAL_MS=0,ENGINE_EAGER_FLUSH=true`); `NATION_BIN=path`
# runs another build of `nation` (two builds side by side:
# `scripts/bench-engine-ab.sh NATION_BIN=/tmp/nation.old NATION_BIN=/tmp/nation.new`). Without
# KAFKA_BROKERS a local Apache Kafka is started for the comparison.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
A=${1:?usage: bench-engine-ab.sh A_ENV B_ENV}
B=${2:?usage: bench-engine-ab.sh A_ENV B_ENV}
RATE=${RATE:-500}
SECS=${SECS:-30}
ROUNDS=${ROUNDS:-2}
# 20 games; 200 players is 10 per game (each update goes to 10 sockets),
# 20 is the P2 bench's one per game.
PLAYERS=${PLAYERS:-200}
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}

if [[ -z "${KAFKA_BROKERS:-}" ]]; then
  cargo build -q -p localkafka
  exec "$TARGET/debug/localkafka" run -- "$0" "$@"
fi
if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
  cargo build -q --release -p nation -p loadgen
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# run LABEL SECS SETTING: one nation with SETTING under one loadgen run.
run() {
  local label=$1 secs=$2 setting=$3 tag port pid
  tag="ab$(date +%s%N)"
  port=$((20000 + RANDOM % 20000))
  local -a envs=()
  IFS=',' read -r -a envs <<< "$setting"
  local bin="$TARGET/release/nation" e
  for e in "${envs[@]}"; do
    [[ $e == NATION_BIN=* ]] && bin=${e#NATION_BIN=}
  done
  env "${envs[@]}" BIND="127.0.0.1:$port" ACTIONS_TOPIC="actions-$tag" GAMES_TOPIC="games-$tag" \
    ENGINE_GROUP_ID="engine-$tag" ENGINE_TRANSACTIONAL_ID="engine-$tag" \
    NATION_DATA="$work/$tag" LAKE_DIR="$work/$tag/lake" STATIC_DIR=/nonexistent RUST_LOG=warn \
    "$bin" > "$work/nation-$tag.log" 2>&1 &
  pid=$!
  for _ in $(seq 1 240); do
    curl -sf "http://127.0.0.1:$port/readyz" > /dev/null && break
    sleep 0.5
  done
  "$TARGET/release/loadgen" play --url "http://127.0.0.1:$port" --rate "$RATE" --duration "$secs" \
    --warmup 3 --games 20 --players "$PLAYERS" --quiet --json > "$work/play-$tag.json"
  kill "$pid"
  wait "$pid" 2> /dev/null || true
  python3 - "$work/play-$tag.json" "$label" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
u = r["answer_to_update"]
a, e = r["ack"], r["update"]
print(f"{sys.argv[2]:<48} 202 -> update p50 {u['p50_ms']:.2f}  p90 {u['p90_ms']:.2f}  "
      f"p99 {u['p99_ms']:.2f}  max {u['max_ms']:.2f} ms  ({r['matched']} of {r['accepted']} matched); "
      f"from intended start: 202 p50 {a['p50_ms']:.2f} p99 {a['p99_ms']:.2f}, "
      f"update p50 {e['p50_ms']:.2f} p99 {e['p99_ms']:.2f} ms")
PY
}

echo "loadgen play --rate $RATE --duration $SECS --games 20 --players $PLAYERS; broker $KAFKA_BROKERS"
run "warm-up ($B)" 40 "$B" > /dev/null
for round in $(seq 1 "$ROUNDS"); do
  run "A $A" "$SECS" "$A"
  run "B $B" "$SECS" "$B"
done
