#!/usr/bin/env bash
# Port-forwarding benchmark: builds postern (release) into the shared target dir, then measures
# against `postern emulator` on loopback, all in one run:
#   pacing ON (the agent's 1 KiB/1 ms schedule): single-connection throughput each way,
#     8-connection aggregate with --sessions 1, 8 and auto, time from process start to the
#     forward being ready, time to first byte of a new connection on an open forward;
#   pacing OFF: postern's own ceiling each way with peak RSS and CPU seconds per 100 MB, and a
#     direct loopback TCP copy as the physical baseline.
# Prints every figure and its ratio to its baseline. Usage: bench/forward.sh [--quick]
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/cache/postern/target}"
cargo build --release --locked -p postern --bins >&2  # as `cargo install` builds it
POSTERN="$CARGO_TARGET_DIR/release/postern"
"$POSTERN" forward --help >/dev/null || { echo "$POSTERN has no forward command" >&2; exit 1; }
exec python3 bench/forward_bench.py "$POSTERN" "$@"
