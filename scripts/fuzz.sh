#!/usr/bin/env bash
# Fuzzes every decoder that takes outside bytes (fuzz/fuzz_targets/): the
# action request (through the bridge's router), the `actions` envelope
# (engine::handle::decode), the WebSocket client message (frames and JSON),
# and the player token. libFuzzer via cargo-fuzz, on the stable toolchain
# with RUSTC_BOOTSTRAP=1 (cargo-fuzz needs -Z flags; no nightly here).
#
# Usage: scripts/fuzz.sh [seconds per target (default 5)] [target ...]
#   `make test` runs 5 s per target; RELIABILITY.md records 600 s runs.
# A crash stops the script non-zero; its input is in fuzz/artifacts/<target>/.
# New inputs found go to fuzz/corpus/<target>/ (not in git); the seeds in
# fuzz/seeds/<target>/ are.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
SECS="${1:-5}"
shift || true
TARGETS=("$@")
((${#TARGETS[@]})) || TARGETS=(action_request actions_envelope ws_client_message token)
CARGO_FUZZ_VERSION="0.13.2"
if [[ "$(cargo fuzz --version 2>/dev/null)" != "cargo-fuzz $CARGO_FUZZ_VERSION" ]]; then
  cargo install cargo-fuzz --locked --version "$CARGO_FUZZ_VERSION"
fi
export RUSTC_BOOTSTRAP=1
# cargo-fuzz builds with an explicit --target, so its instrumented artefacts
# sit apart from the normal ones in the same target dir.
for target in "${TARGETS[@]}"; do
  mkdir -p "fuzz/corpus/$target" "fuzz/artifacts/$target"
  echo "fuzz: $target for ${SECS}s"
  log="fuzz/artifacts/$target/last-run.log"
  # -O: release with debug assertions; ASan on (cargo-fuzz's default).
  if ! cargo fuzz run -O "$target" "fuzz/corpus/$target" "fuzz/seeds/$target" -- \
    -max_total_time="$SECS" -rss_limit_mb=2048 -max_len=4096 -timeout=10 \
    -print_final_stats=1 >"$log" 2>&1; then
    tail -n 60 "$log" >&2
    echo "fuzz: $target FAILED; the input is in fuzz/artifacts/$target/, the log in $log" >&2
    exit 1
  fi
  grep -E '^(Done [0-9]+ runs|stat::number_of_executed_units|stat::peak_rss_mb)' "$log" | tr '\n' ' '
  echo
done
echo "fuzz: ${#TARGETS[@]} targets, ${SECS}s each, no crash"
echo "fuzz: ${#TARGETS[@]} passed, 0 failed"
