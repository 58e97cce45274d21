#!/usr/bin/env bash
# Slow and idle clients (issue 12, item 10): real players' answer -> update
# latency without, with and again without 10,000 idle WebSockets and 1,200
# slowloris connections held against the same bridge (tests/benches/slow_clients.rs).
# Everything on loopback; the attack stops by itself after its phase.
#
# Usage: scripts/slow-clients.sh        (env: BENCH_RATE, BENCH_SECS, BENCH_GAMES,
#        ATTACK_IDLE_WS, ATTACK_SLOWLORIS, ATTACK_WS_PER_ADDR; see the bench)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# 10,000 WebSockets and 1,200 slow connections, on both ends of loopback.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
echo "ulimit -n: $(ulimit -n)"
bash scripts/setup.sh all >/dev/null
cargo build --release -q -p nation -p localkafka --bin nation --bin localkafka
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
exec "$TARGET/release/localkafka" run -- cargo bench -q -p tests --bench slow_clients
