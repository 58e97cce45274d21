#!/usr/bin/env bash
# Where P2's tail sits (BENCHMARKS.md, P2, ninth session): one `nation`
# release binary (its own broker, bridge and engine), `loadgen play` at RATE
# actions/s, and beside it, in the same run, two plain consumers of
# `actions` (confluent-kafka, `read_committed`, one assigned, one a group
# member with the engine's group settings) and one of `games` that print the
# age of each record when it reaches them (now minus its Kafka timestamp).
# From the game's own `/metrics`, the deltas over the run of:
# - `engine_record_age_seconds`: the same age when the engine handles an
#   action;
# - `engine_commit_seconds` and `engine_apply_seconds`;
# and the CPU of the game and of the broker. Asserts nothing.
#
#   RATE=2000 GAMES=20 PLAYERS=200 SECS=15 scripts/bench-engine-pickup.sh
#
# With KAFKA_BROKERS set, the game and the probes use that broker (e.g.
# `localkafka run -X num.io.threads=2 -- scripts/bench-engine-pickup.sh` to
# try a broker setting); otherwise the game starts its own.
# Needs the release `nation` and `loadgen` (built here unless SKIP_BUILD=1)
# and the registry's Python venv (`scripts/registry/registry.sh` makes it).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
RATE=${RATE:-2000}
GAMES=${GAMES:-20}
PLAYERS=${PLAYERS:-200}
SECS=${SECS:-15}
PORT=${PORT:-18290}
PY="$ROOT/.tools/registry-venv/bin/python"
[[ -x "$PY" ]] || { echo "no $PY: run scripts/registry/registry.sh once to make the venv"; exit 1; }
if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
  cargo build -q --release -p nation -p loadgen
fi

work=$(mktemp -d)
NATION_DATA="$work" BIND="127.0.0.1:$PORT" KAFKA_PORT=$((PORT + 1000)) STATIC_DIR=/nonexistent \
  RUST_LOG=warn "$TARGET/release/nation" >"$work/nation.log" 2>&1 &
nation=$!
trap 'kill $nation 2>/dev/null || true; wait $nation 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 1 120); do
  curl -fs "http://127.0.0.1:$PORT/readyz" >/dev/null 2>&1 && break
  sleep 1
done
curl -fs "http://127.0.0.1:$PORT/readyz" >/dev/null || { echo "nation did not get ready"; tail -20 "$work/nation.log"; exit 1; }
brokers="${KAFKA_BROKERS:-127.0.0.1:$((PORT + 1000))}"
broker_pid=$(ss -Hltnp "sport = :${brokers##*:}" | grep -o 'pid=[0-9]*' | head -1 | cut -d= -f2)

cat >"$work/age.py" <<'PY'
import sys, time
from confluent_kafka import Consumer, TopicPartition
brokers, secs, iso, topic, mode = sys.argv[1], float(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
conf = {"bootstrap.servers": brokers, "group.id": f"age-{topic}-{mode}-{time.time()}",
        "enable.auto.commit": False, "enable.auto.offset.store": False, "auto.offset.reset": "latest",
        "isolation.level": iso, "fetch.wait.max.ms": 100, "fetch.queue.backoff.ms": 5,
        "fetch.error.backoff.ms": 10}
if mode == "group":
    conf.update({"session.timeout.ms": 10000, "heartbeat.interval.ms": 1000,
                 "max.poll.interval.ms": 30000, "group.instance.id": f"age-{time.time()}"})
c = Consumer(conf)
if mode == "group":
    c.subscribe([topic])
else:
    md = c.list_topics(topic, timeout=10)
    tps = []
    for p in md.topics[topic].partitions:
        _, hi = c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
        tps.append(TopicPartition(topic, p, hi))
    c.assign(tps)
ages, end = [], time.time() + secs
while time.time() < end:
    m = c.poll(0.1)
    if m is None or m.error():
        continue
    ages.append(time.time() * 1000 - m.timestamp()[1])
ages.sort()
q = lambda x: ages[min(len(ages) - 1, int(x * len(ages)))] if ages else float("nan")
print(f"  plain consumer of {topic} ({iso}, {mode}): n={len(ages)} age p50 {q(.5):.1f} p90 {q(.9):.1f} p99 {q(.99):.1f} ms")
PY

metrics() { curl -s "http://127.0.0.1:$PORT/metrics"; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

echo "== warm-up: $RATE actions/s for 10 s (a fresh broker's JVM compiles its hot paths first)"
"$TARGET/release/loadgen" play --url "http://127.0.0.1:$PORT" --games "$GAMES" --players "$PLAYERS" \
  --rate "$RATE" --duration 10 --warmup 2 --quiet >/dev/null
echo "== measured: $RATE actions/s for $SECS s, $GAMES games, $PLAYERS players"
metrics >"$work/before"
n0=$(cpu_ticks $nation); b0=$(cpu_ticks "$broker_pid"); t0=$(date +%s%N)
"$PY" "$work/age.py" "$brokers" "$((SECS + 2))" read_committed actions assign >"$work/age1" &
p1=$!
"$PY" "$work/age.py" "$brokers" "$((SECS + 2))" read_committed actions group >"$work/age2" &
p2=$!
"$PY" "$work/age.py" "$brokers" "$((SECS + 2))" read_uncommitted games assign >"$work/age3" &
p3=$!
sleep 2
"$TARGET/release/loadgen" play --url "http://127.0.0.1:$PORT" --games "$GAMES" --players "$PLAYERS" \
  --rate "$RATE" --duration "$SECS" --warmup 1 --quiet --json >"$work/play.json"
wait $p1 $p2 $p3
metrics >"$work/after"
n1=$(cpu_ticks $nation); b1=$(cpu_ticks "$broker_pid"); t1=$(date +%s%N)
python3 - "$work" "$(( (n1 - n0) ))" "$(( (b1 - b0) ))" "$(( (t1 - t0) / 1000000 ))" <<'PY'
import json, re, sys
work, nation_ticks, broker_ticks, ms = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
r = json.load(open(f"{work}/play.json"))
u, a, x = r["update"], r["ack"], r["answer_to_update"]
print(f"  loadgen: update p50 {u['p50_ms']:.1f} p99 {u['p99_ms']:.1f} ms; 202 p50 {a['p50_ms']:.1f} p99 {a['p99_ms']:.1f} ms; "
      f"202 -> update p50 {x['p50_ms']:.1f} p99 {x['p99_ms']:.1f} ms; {r['matched']} matched, {r['unmatched']} unmatched")
def buckets(path, name):
    out = {}
    for line in open(path):
        m = re.match(name + r'_bucket\{le="([^"]+)"\} (\S+)', line)
        if m:
            out[float("inf") if m.group(1) == "+Inf" else float(m.group(1))] = float(m.group(2))
    return out
for name in ("engine_record_age_seconds", "engine_commit_seconds", "engine_apply_seconds"):
    b, c = buckets(f"{work}/before", name), buckets(f"{work}/after", name)
    d = sorted((le, c[le] - b.get(le, 0)) for le in c)
    if not d or d[-1][1] == 0:
        print(f"  {name}: nothing observed")
        continue
    total, qs = d[-1][1], []
    for q in (0.5, 0.9, 0.99):
        le = next(le for le, n in d if n >= q * total)
        qs.append(f"p{int(q * 100)} <= {le * 1000:.1f} ms")
    print(f"  {name} (histogram bucket bounds): n={total:.0f} " + ", ".join(qs))
hz = 100
print(f"  CPU: game process {nation_ticks / hz / (ms / 1000):.2f} cores, broker {broker_ticks / hz / (ms / 1000):.2f} cores over {ms / 1000:.1f} s")
PY
cat "$work/age1" "$work/age2" "$work/age3"
