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
  PATH="$ROOT/.tools/node_modules/.bin:$PATH" trunk build frontend/extra.html --release --dist dist/extra --public-url /extra/
fi

# The game page's files only: the arena, analytics and operator pages are a
# second build in dist/extra/ that the game page never loads (issue 19).
wasm=$(ls dist/*.wasm)
js=$(ls dist/*.js)
# The bridge serves the .gz copies the build writes beside them.
size() { stat -c %s "$1"; }
gz() { gzip -9 -c "$1" | wc -c; }
kib() { awk -v b="$1" 'BEGIN { printf "%.1f KiB", b / 1024 }'; }
w=$(size "$wasm"); wg=$(gz "$wasm"); j=$(size "$js"); jg=$(gz "$js")
echo "wasm  raw $(kib "$w")  gzip $(kib "$wg")   ($wasm)"
echo "js    raw $(kib "$j")  gzip $(kib "$jg")   ($js)"
css=$(ls dist/*.css 2>/dev/null || true)
c=0; cg=0
if [[ -n "$css" ]]; then c=$(size "$css"); cg=$(gz "$css"); echo "css   raw $(kib "$c")  gzip $(kib "$cg")   ($css)"; fi
h=$(size dist/index.html); hg=$(gz dist/index.html)
echo "html  raw $(kib "$h")  gzip $(kib "$hg")   (dist/index.html; the CSS is inlined here when no .css is listed)"
echo "total raw $(kib $((w + j + c + h)))  gzip $(kib $((wg + jg + cg + hg)))   (goal: <= 250 KiB gzipped)"
if ls dist/extra/*.wasm >/dev/null 2>&1; then
  xw=$(ls dist/extra/*.wasm); xj=$(ls dist/extra/*.js)
  echo "extra wasm gzip $(kib "$(gz "$xw")")  js gzip $(kib "$(gz "$xj")")   (arena/analytics/admin pages only, not loaded by the game page)"
fi

# Interactive time and click latency, measured in the browser by the page
# itself (performance.now()) and printed by the ignored bench test.
BENCH_CLICKS="${BENCH_CLICKS:-200}" cargo test -q -p tests --test browser -- \
  --ignored bench_frontend --nocapture 2>&1 | grep -E '^(interactive|click_to|phone_profile)|panicked|error'
