#!/usr/bin/env bash
# Every benchmark of BENCHMARKS.md, one after the other (about 10 minutes).
# Each prints its figures together with the baseline measured in the same run.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash scripts/setup.sh all >/dev/null
cargo build --release -q -p bridge -p nation
echo "== shared: pure apply vs JSON decode (criterion)"
cargo bench -q -p shared --bench apply -- --noplot 2>/dev/null | grep -E "rules/|thrpt"
echo "== bridge ingest (wrk)"
bash scripts/bench-bridge.sh 10
echo "== observability: metrics + log shipping on vs off, abuse table freshness"
bash scripts/bench-observability.sh 10 3
echo "== engine throughput (1,000,000 actions, transactions) against a Kafka Streams peer"
cargo bench -q -p engine --bench throughput
echo "== end to end: answer -> WebSocket at 2,000 actions/s"
cargo bench -q -p tests --bench latency
echo "== fan-out: idle WebSocket clients"
cargo bench -q -p tests --bench fanout
echo "== frontend"
bash scripts/bench-frontend.sh
echo "== lake: export vs consume+decode baseline on one core, bytes/event, lake report"
bash scripts/bench-lake.sh 1000000 12
