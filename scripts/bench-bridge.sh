#!/usr/bin/env bash
# Bridge ingest benchmark (issue 3): wrk -t1 -c256 on loopback, tansu beside.
#   (a) baseline: minimal axum handler producing a fixed payload, same producer settings
#   (b) POST /api/games/{id}/actions   (c) GET /purchase_a_sword
# Prints req/s, p99 and the ratios (b)/(a), (c)/(a). Usage:
#   scripts/bench-bridge.sh [seconds]        (default 10 s per run)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
SECS="${1:-10}"
bash scripts/setup.sh all >/dev/null
cargo build --release -q -p bridge --bin bridge --example baseline

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 1 200); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.05; done; echo "port $1 never opened" >&2; return 1; }

PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

KPORT=$(free_port)
.venv/bin/tansu broker --listener-url "tcp://127.0.0.1:$KPORT" --advertised-listener-url "tcp://127.0.0.1:$KPORT" --storage-engine memory://tansu/ >/dev/null 2>&1 &
PIDS+=($!)
wait_port "$KPORT"
export KAFKA_BROKERS="127.0.0.1:$KPORT"

APORT=$(free_port); BPORT=$(free_port)
BIND="127.0.0.1:$BPORT" WITH_ENGINE=false TOKEN_SECRET=bench PARTITIONS=12 RUST_LOG=warn target/release/bridge >/dev/null 2>&1 &
PIDS+=($!)
wait_port "$BPORT"
# The bridge has created the topics; the baseline produces to the same one.
BIND="127.0.0.1:$APORT" TOPIC=actions target/release/examples/baseline >/dev/null 2>&1 &
PIDS+=($!)
wait_port "$APORT"
curl -sf -o /dev/null -X POST "http://127.0.0.1:$BPORT/api/games/1/join" -d '{"name":"warmup"}' || true
TOKEN=$(curl -sf -X POST "http://127.0.0.1:$BPORT/api/games/1/join" -d '{"name":"bench"}' | python3 -c 'import sys,json; print(json.load(sys.stdin)["token"])')
LUA=$(mktemp --suffix .lua)
cat > "$LUA" <<LUAEOF
wrk.method = "POST"
wrk.body = '{"type":"purchase_sword"}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer $TOKEN"
LUAEOF

run() { # name url [wrk args...]
  local name="$1" url="$2"; shift 2
  wrk -t1 -c256 -d2s "$@" "$url" >/dev/null 2>&1 || true   # warm-up (idempotent producer init)
  local out; out=$(wrk -t1 -c256 -d"${SECS}s" --latency "$@" "$url")
  local rps p99 non2xx
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  p99=$(awk '$1=="99%" {print $2}' <<<"$out")
  non2xx=$(awk '/Non-2xx/ {print $NF}' <<<"$out")
  printf '%-34s %12s req/s   p99 %-9s non-2xx %s\n' "$name" "$rps" "$p99" "${non2xx:-0}" >&2
  echo "$rps"
}
echo "wrk -t1 -c256 -d${SECS}s against tansu on 127.0.0.1 ($(nproc) cores)" >&2
A=$(run "(a) baseline produce+ack" "http://127.0.0.1:$APORT/produce" -s /dev/null)
B=$(run "(b) POST /api/games/1/actions" "http://127.0.0.1:$BPORT/api/games/1/actions" -s "$LUA")
C=$(run "(c) GET /purchase_a_sword" "http://127.0.0.1:$BPORT/purchase_a_sword" -H "Host: user1.comcast.com")
python3 -c "a,b,c=$A,$B,$C; print(f'ratio (b)/(a) = {b/a:.2f}   ratio (c)/(a) = {c/a:.2f}   (goal >= 0.80)')"
