#!/usr/bin/env bash
# Frontend figures for BENCHMARKS.md: wasm + JS size (raw and gzipped) of the
# release build, time until the page is interactive, and click-to-confirmed
# latency end to end (headless Chromium -> bridge -> broker -> engine ->
# broker -> bridge -> WebSocket -> page). Prints figures; asserts nothing.
#   BENCH_CLICKS=200 scripts/bench-frontend.sh      # SKIP_BUILD=1 to reuse dist/
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
  cargo fetch -q
  PATH="$ROOT/.tools/node_modules/.bin:$PATH" trunk build --release
fi

wasm=$(ls dist/*.wasm)
js=$(ls dist/*.js)
size() { stat -c %s "$1"; }
gz() { gzip -9 -c "$1" | wc -c; }
kib() { awk -v b="$1" 'BEGIN { printf "%.1f KiB", b / 1024 }'; }
w=$(size "$wasm"); wg=$(gz "$wasm"); j=$(size "$js"); jg=$(gz "$js")
echo "wasm  raw $(kib "$w")  gzip $(kib "$wg")   ($wasm)"
echo "js    raw $(kib "$j")  gzip $(kib "$jg")   ($js)"
echo "total raw $(kib $((w + j)))  gzip $(kib $((wg + jg)))   (goal: <= 250 KiB gzipped)"

# Interactive time and click latency, measured in the browser by the page
# itself (performance.now()) and printed by the ignored bench test.
BENCH_CLICKS="${BENCH_CLICKS:-200}" cargo test -q -p tests --test browser -- \
  --ignored bench_frontend --nocapture 2>&1 | grep -E '^(interactive|click_to)|panicked|error'
