#!/usr/bin/env bash
# Property-based tests of the HTTP surface from its own description:
# schemathesis generates requests from the served /openapi.json (generated from the types) and fails on
# any 5xx, undocumented status code, answer that breaks its schema, or
# schema-valid request that is refused. Runs a `nation` (bridge + engine)
# against $KAFKA_BROKERS (make test: inside `localkafka run`), with the
# leaderboards role on (its routes are in the same document).
#
# Usage: scripts/schemathesis.sh [examples per operation (default 25)]
# The WebSocket route is left out: a WebSocket handshake is not an HTTP
# request/response schemathesis can check (tests/tests/ws.rs and the
# hostile-input corpus cover it).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
: "${KAFKA_BROKERS:?needs a broker: run it inside localkafka run}"
EXAMPLES="${1:-25}"
ST="$ROOT/.tools/test-venv/bin/schemathesis"
[[ -x "$ST" ]] || { echo "schemathesis missing: run scripts/setup.sh all" >&2; exit 1; }
TARGET="${CARGO_TARGET_DIR:-target}"
cargo build -q -p nation
PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
RUN="st-$(date +%s)-$$"
LOG="$(mktemp)"
BIND="127.0.0.1:$PORT" TOKEN_SECRET=schemathesis ACTIONS_TOPIC="$RUN-actions" GAMES_TOPIC="$RUN-games" \
  ENGINE_GROUP_ID="$RUN-engine" WITH_LEADERBOARDS="${WITH_LEADERBOARDS:-true}" ADMIN_TOKEN="${ADMIN_TOKEN:-}" RUST_LOG=warn BAN_AFTER=0 \
  "$TARGET/debug/nation" >"$LOG" 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null; wait $PID 2>/dev/null; rm -f "$LOG"' EXIT
for _ in $(seq 300); do
  curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null && break
  kill -0 $PID 2>/dev/null || { cat "$LOG" >&2; exit 1; }
  sleep 0.1
done
# A player of the default game, so the action route is exercised past 401.
TOKEN="$(curl -sf -X POST -H 'Content-Type: application/json' -d '{"name":"Schemathesis"}' \
  "http://127.0.0.1:$PORT/api/games/1/join" | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')"
"$ST" run "http://127.0.0.1:$PORT/openapi.json" \
  --checks all \
  --max-examples "$EXAMPLES" \
  --exclude-path '/ws/games/{game_id}' \
  --exclude-path '/ws/leaderboards/{board}' \
  --header "Authorization: Bearer $TOKEN" \
  --seed 20261201 \
  --no-color
echo "schemathesis: the bridge stayed up: $(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/healthz")"
