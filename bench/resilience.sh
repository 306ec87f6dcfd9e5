#!/usr/bin/env bash
# Resilience benchmark: builds postern (release) into the target dir, then measures against
# `postern emulator` on loopback, all in one run:
#   - bytes lost / duplicated across 100+ forced websocket drops during a forward transfer
#     (the echo must come back byte-identical: both must be 0);
#   - reconnect time: the pump's own "reconnected after" figures, and drop to data flowing
#     again seen by a 1-byte ping-pong through the forward (vs. its normal round trip);
#   - the throughput cost of KMS encryption: `postern exec` output with and without
#     --session-kms-key (ratio).
# Usage: bench/resilience.sh [--quick]
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/cache/postern/target}"
cargo build --release --locked -p postern --bins >&2  # as `cargo install` builds it
POSTERN="$CARGO_TARGET_DIR/release/postern"
"$POSTERN" forward --help | grep -q -- --keepalive || { echo "$POSTERN lacks --keepalive" >&2; exit 1; }
exec python3 bench/resilience_bench.py "$POSTERN" "$@"
