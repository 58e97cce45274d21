#!/usr/bin/env bash
# The arena's figures (issue 18) for BENCHMARKS.md, on Apache Kafka:
# 1. move -> every player of the arena has it on its WebSocket, p50/p99, with
#    `loadgen play --arena` against the `nation` release binary (its own
#    broker, bridge and engine in one process), at the loads given in LOADS
#    (arenas; 10 bots each at 5 actions per bot per second);
# 2. bytes of a move's WebSocket frame (the arena test prints it);
# 3. the engine's apply rate, arena vs nation, same run (cargo bench).
# Usage: bash scripts/bench-arena.sh  (LOADS="10 20 40" DURATION=20 by default)
# MOVES_ONLY=1: figure 1 only; NATION_BIN=path: another build of `nation` for
# it (two builds side by side, one series each).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
LOADS="${LOADS:-10 20 40}"
DURATION="${DURATION:-20}"
PORT="${PORT:-18090}"
cargo build --release -q -p nation -p loadgen -p localkafka
DATA="$(mktemp -d)"
NATION_DATA="$DATA" BIND="127.0.0.1:$PORT" KAFKA_PORT="$((PORT + 1000))" STATIC_DIR=/nonexistent \
  "${NATION_BIN:-$TARGET/release/nation}" >"$DATA/nation.log" 2>&1 &
NATION=$!
cleanup() { kill "$NATION" 2>/dev/null || true; wait "$NATION" 2>/dev/null || true; rm -rf "$DATA"; }
trap cleanup EXIT
for _ in $(seq 1 120); do
  curl -fs "http://127.0.0.1:$PORT/readyz" >/dev/null 2>&1 && break
  sleep 1
done
curl -fs "http://127.0.0.1:$PORT/readyz" >/dev/null || { echo "nation did not get ready"; tail -20 "$DATA/nation.log"; exit 1; }
echo "== move -> all players' WebSockets (loadgen play --arena, ${DURATION} s each)"
for arenas in $LOADS; do
  players=$((arenas * 10))
  rate=$((players * 5))
  curl -fs "http://127.0.0.1:$PORT/metrics" >"$DATA/metrics-before-$arenas" || true
  "$TARGET/release/loadgen" play --url "http://127.0.0.1:$PORT" --arena --games "$arenas" \
    --players "$players" --rate "$rate" --duration "$DURATION" --warmup 3 --quiet --json \
    --slo p99=50ms >"$DATA/play-$arenas.json" || true
  curl -fs "http://127.0.0.1:$PORT/metrics" >"$DATA/metrics-after-$arenas" || true
  python3 - "$DATA/play-$arenas.json" "$arenas" "$DATA/metrics-before-$arenas" "$DATA/metrics-after-$arenas" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
def sums(path):
    out = {}
    try:
        for line in open(path):
            parts = line.split()
            if len(parts) == 2 and parts[0].startswith(("engine_commit_seconds_", "engine_apply_seconds_")):
                out[parts[0]] = float(parts[1])
    except OSError:
        pass
    return out
before, after = sums(sys.argv[3]), sums(sys.argv[4])
def mean_ms(name):
    n = after.get(name + "_count", 0) - before.get(name + "_count", 0)
    s = after.get(name + "_sum", 0) - before.get(name + "_sum", 0)
    return n, (s / n * 1000 if n else float("nan"))
u, a = r["update"], r["ack"]
print(f"{sys.argv[2]} arenas x 10 bots, {r['rate']:.0f} actions/s intended, {r['achieved_rate']:.0f} sent/s: "
      f"all players' update p50 {u['p50_ms']:.1f} ms p99 {u['p99_ms']:.1f} ms (max {u['max_ms']:.1f}); "
      f"202 p50 {a['p50_ms']:.1f} p99 {a['p99_ms']:.1f} ms; "
      f"{r['matched']} matched ({r['applied']} applied, {r['rejected']} rejected), {r['unmatched']} unmatched, "
      f"{r['errors']} errors, {r['dropped']} dropped; {r['ws_bytes'] / max(r['ws_messages'], 1):.0f} bytes per WebSocket message; "
      f"SLO p99<=50ms {'met' if r['slo_met'] else 'missed'}")
commits, commit_ms = mean_ms("engine_commit_seconds")
batches, apply_ms = mean_ms("engine_apply_seconds")
print(f"  engine: {commits:.0f} commits, {commit_ms:.1f} ms each on average (the wait for the outputs included); "
      f"{batches:.0f} batches, {apply_ms:.2f} ms each")
PY
done
cleanup
trap - EXIT
[[ "${MOVES_ONLY:-0}" == 1 ]] && exit 0
echo "== bytes of one move's WebSocket frame"
"$TARGET/debug/localkafka" run -- cargo test -q -p tests --test arena a_match_played -- --nocapture 2>&1 | grep "WebSocket frame" || true
echo "== engine apply rate, arena vs nation (exactly once, same run)"
cargo bench -q -p engine --bench arena_rate
