#!/usr/bin/env bash
# The reliability figures of RELIABILITY.md: each fault injected for real on
# Apache Kafka, N times (default 5), printing what each run measured.
#   bash scripts/reliability.sh [N]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
N="${1:-5}"
bash scripts/setup.sh all >/dev/null
cargo build -q -p localkafka
cargo test -q -p engine --test process --no-run 2>/dev/null
LK="${CARGO_TARGET_DIR:-target}/debug/localkafka"
echo "== kill -9 of a streaming engine process, restarted at once: time until a read_committed reader sees a new update"
for i in $(seq "$N"); do
  "$LK" run -- cargo test -q -p engine --test process kill_9 -- --nocapture 2>/dev/null \
    | grep -E "^kill -9" || echo "run $i: FAILED"
done
echo "== a restore that cannot finish: what /readyz says"
"$LK" run -- cargo test -q -p engine --test process a_restore -- --nocapture 2>/dev/null \
  | grep -E "^not ready" || echo "FAILED"
echo "== a partition added under a following lake export (make run's settings): action acked -> its row in the lake, on an old partition and on the new one"
cargo build -q --release -p lake --no-default-features --examples
"$LK" run -- "${CARGO_TARGET_DIR:-target}/release/examples/lake_bench" grow --topic "lake-grow-$$" --rounds "$N" 2>/dev/null \
  | grep -E "^(round|lake export)" || echo "FAILED"
