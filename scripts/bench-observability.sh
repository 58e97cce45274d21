#!/usr/bin/env bash
# Observability benchmarks (issue 15), against Apache Kafka (one local KRaft
# node started with `localkafka serve`), release builds:
#
# 1. The cost of metrics and log shipping on P1 ingest: two bridges of the
#    same build (`nation` with WITH_ENGINE=false: the bridge, and the topics
#    created as the engine would), same run, same broker, own topics each:
#      (on)  METRICS_ENABLED=true,  LOG_TOPIC set (every INFO line and every
#            refusal shipped to Kafka)
#      (off) METRICS_ENABLED=false, no LOG_TOPIC
#    wrk -t1 -c256 on `GET /purchase_a_sword` and on `POST /api/games/1/actions`,
#    the runs alternating off, on, off, on, ... (ROUNDS times each); the ratio
#    is the mean of (on) over the mean of (off). Goal: >= 0.95.
# 2. Abuse table freshness: 1,000 forged-token requests from one address
#    (ab -c 50) at the (on) bridge, then `GET /api/admin/abuse` polled every
#    20 ms until the address shows 1,000 refusals; printed from the end of the
#    burst and from its start. Goal: <= 2 s. (BAN_AFTER is raised above the
#    burst for this bridge so that every request is refused and logged; the
#    ban's check is on the path of every request all the same.)
#
# Usage: scripts/bench-observability.sh [seconds per run, default 10] [rounds, default 3]
#        (SKIP_ABUSE=1 skips part 2)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
SECS="${1:-10}"
ROUNDS="${2:-3}"
T="${CARGO_TARGET_DIR:-target}"
cargo build --release -q -p localkafka -p nation --bin localkafka --bin nation

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 1 400); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.05; done; echo "port $1 never opened" >&2; return 1; }
stop() {
  kill -TERM "$1" 2>/dev/null || true
  for _ in $(seq 1 200); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.05; done
  kill -KILL "$1" 2>/dev/null || true
}

WORK=$(mktemp -d)
PIDS=()
KAFKA_PID=""
cleanup() {
  for p in "${PIDS[@]}"; do stop "$p"; done
  [[ -n "$KAFKA_PID" ]] && stop "$KAFKA_PID"
  rm -rf "$WORK"
}
trap cleanup EXIT

mkfifo "$WORK/kafka.out"
"$T"/release/localkafka serve --port 0 >"$WORK/kafka.out" 2>"$WORK/kafka.err" &
KAFKA_PID=$!
exec 4<"$WORK/kafka.out"
BROKER=""
while read -r -t 120 line <&4; do
  if [[ "$line" == broker:* ]]; then BROKER="${line#broker: }"; break; fi
done
[[ -n "$BROKER" ]] || { echo "localkafka did not start:" >&2; cat "$WORK/kafka.err" >&2; exit 1; }
export KAFKA_BROKERS="$BROKER"
ADMIN=bench-admin

start_bridge() { # name extra-env... -> sets PORT_<name>, PID_<name>
  local name="$1"; shift
  local port; port=$(free_port)
  env BIND="127.0.0.1:$port" TOKEN_SECRET=bench PARTITIONS=12 ADMIN_TOKEN="$ADMIN" \
    ACTIONS_TOPIC="actions-$name" GAMES_TOPIC="games-$name" RUST_LOG=warn \
    WITH_ENGINE=false WITH_LEADERBOARDS=false "$@" \
    "$T"/release/nation >"$WORK/bridge-$name.log" 2>&1 &
  local pid=$!
  PIDS+=("$pid")
  wait_port "$port" || { echo "bridge $name did not start:" >&2; cat "$WORK/bridge-$name.log" >&2; exit 1; }
  eval "PORT_$name=$port PID_$name=$pid"
}
# ON_ENV / OFF_ENV replace what each bridge turns on (e.g. ON_ENV="METRICS_ENABLED=true
# BAN_AFTER=100000" to weigh metrics alone); part 2 needs LOG_TOPIC on the (on) bridge.
# shellcheck disable=SC2086 # word splitting wanted
start_bridge on ${ON_ENV:-METRICS_ENABLED=true LOG_TOPIC=logs-bench BAN_AFTER=100000}
# shellcheck disable=SC2086
start_bridge off ${OFF_ENV:-METRICS_ENABLED=false}
echo "broker $BROKER; bridges: on :$PORT_on (metrics + logs to logs-bench), off :$PORT_off (neither)" >&2

token_of() {
  curl -sf -X POST -H 'Content-Type: application/json' "http://127.0.0.1:$1/api/games/1/join" -d '{"name":"bench"}' |
    python3 -c 'import sys,json; print(json.load(sys.stdin)["token"])'
}
for n in on off; do
  port_var="PORT_$n"
  for _ in $(seq 1 100); do
    tok=$(token_of "${!port_var}" 2>/dev/null) && break
    sleep 0.2
  done
  [[ -n "$tok" ]] || { echo "bridge $n: no token from POST /api/games/1/join" >&2; exit 1; }
  probe=$(curl -s -o "$WORK/probe.json" -w '%{http_code}' -X POST -H 'Content-Type: application/json' \
    -H "Authorization: Bearer $tok" -d '{"type":"purchase_sword"}' "http://127.0.0.1:${!port_var}/api/games/1/actions")
  [[ "$probe" == 202 ]] || { echo "bridge $n answers a player's action with $probe, not 202: $(cat "$WORK/probe.json") (token $tok)" >&2; exit 1; }
  cat >"$WORK/act-$n.lua" <<LUAEOF
wrk.method = "POST"
wrk.body = '{"type":"purchase_sword"}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer $tok"
LUAEOF
done

run() { # url [wrk args] -> req/s
  local url="$1"; shift
  wrk -t1 -c256 -d"${SECS}s" "$@" "$url" >"$WORK/wrk.out" 2>&1 || true
  # A refused request is cheap: a run with any is no measure of the path.
  if grep -q "Non-2xx" "$WORK/wrk.out"; then
    echo "wrk $url: $(grep 'Non-2xx' "$WORK/wrk.out")" >&2
  fi
  awk '/Requests\/sec/ {print $2}' "$WORK/wrk.out"
}
declare -A SUM
for kind in get post; do for n in on off; do SUM[$kind-$n]=""; done; done
for n in on off; do # warm-up
  port_var="PORT_$n"
  wrk -t1 -c256 -d2s -H "Host: user1.comcast.com" "http://127.0.0.1:${!port_var}/purchase_a_sword" >/dev/null 2>&1 || true
done
for round in $(seq 1 "$ROUNDS"); do
  for n in off on; do
    port_var="PORT_$n"
    g=$(run "http://127.0.0.1:${!port_var}/purchase_a_sword" -H "Host: user1.comcast.com")
    p=$(run "http://127.0.0.1:${!port_var}/api/games/1/actions" -s "$WORK/act-$n.lua")
    printf 'round %d %-3s GET /purchase_a_sword %8.0f req/s   POST /api/games/1/actions %8.0f req/s\n' "$round" "$n" "$g" "$p" >&2
    SUM[get-$n]+=" $g"; SUM[post-$n]+=" $p"
  done
done
[[ "$ROUNDS" -gt 0 ]] && python3 - "${SUM[get-on]}" "${SUM[get-off]}" "${SUM[post-on]}" "${SUM[post-off]}" <<'PY' >&2
import sys, statistics as st
go, gf, po, pf = ([float(x) for x in a.split()] for a in sys.argv[1:])
for name, on, off in (("GET /purchase_a_sword", go, gf), ("POST /api/games/1/actions", po, pf)):
    print(f"{name}: on {st.mean(on):.0f} req/s, off {st.mean(off):.0f} req/s, on/off = {st.mean(on)/st.mean(off):.3f} (goal >= 0.95)")
PY
curl -s "http://127.0.0.1:$PORT_on/metrics" | grep -E '^logs_(shipped|dropped)' >&2 || true

[[ -n "${SKIP_ABUSE:-}" ]] && exit 0
# 2. Abuse table freshness.
echo '{"type":"default"}' >"$WORK/body.json"
URL="http://127.0.0.1:$PORT_on/api/games/1/actions"
abuse_count() { # refusals of 127.0.0.1 in the abuse table (retried while the bridge is busy)
  local body
  for _ in $(seq 1 50); do
    body=$(curl -sf -H "Authorization: Bearer $ADMIN" "http://127.0.0.1:$PORT_on/api/admin/abuse?limit=50") && break
    sleep 0.1
  done
  [[ -n "$body" ]] || { echo "abuse table unreadable; bridge log:" >&2; tail -5 "$WORK/bridge-on.log" >&2; exit 1; }
  python3 -c 'import sys,json; r=json.load(sys.stdin); print(sum(c["refused"] for c in r["clients"] if c["source"]=="127.0.0.1"))' <<<"$body"
}
before=$(abuse_count)
t0=$(date +%s.%N)
ab -q -n 1000 -c 50 -p "$WORK/body.json" -T application/json -H "Authorization: Bearer v2.forged.1.p.9999999999.eA" "$URL" >"$WORK/ab.out" 2>&1 || true
t1=$(date +%s.%N)
want=$((before + 1000))
while :; do
  got=$(abuse_count)
  t2=$(date +%s.%N)
  if ((got >= want)); then break; fi
  if python3 -c "import sys; sys.exit(0 if $t2 - $t1 > 30 else 1)"; then echo "abuse table: only $((got - before)) of 1000 after 30 s" >&2; exit 1; fi
  sleep 0.02
done
non401=$(awk '/Non-2xx responses/ {print $3}' "$WORK/ab.out")
python3 -c "print(f'abuse table freshness: 1000 forged tokens (ab -c 50, {($t1-$t0):.2f} s) all in GET /api/admin/abuse {($t2-$t1):.2f} s after the burst ended, {($t2-$t0):.2f} s after it began (goal <= 2 s); non-2xx answers: ${non401:-?}')" >&2
