#!/usr/bin/env bash
# postern cp benchmark against `postern emulator` on loopback, pacing ON (the agent's 1 KiB/1 ms
# schedule on port and PTY output), all in one run: one SSM port session's paced download rate
# (postern forward --sessions 1) as the baseline; 64 MiB of random data downloaded without
# `postern setup` (every session an AWS-StartInteractiveCommand PTY, paced) at --sessions 1 and
# 8; then, after `postern setup`, downloaded through Postern-Command and uploaded through
# AWS-StartInteractiveCommand at several --sessions; each SHA-256 checked, with wall time,
# rate, ratio to the port session and peak RSS.
# Usage: bench/cp.sh [--release] [--quick]   (debug build unless --release; figures say which)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/cache/postern/target}"
profile=debug
args=()
for arg in "$@"; do
  case "$arg" in
    --release) profile=release ;;
    *) args+=("$arg") ;;
  esac
done
if [ "$profile" = release ]; then
  # As `cargo install` builds it (its function order applies; only our crates differ).
  cargo build --release --locked -p postern --bins >&2
else
  cargo build --workspace --all-features >&2
fi
POSTERN="$CARGO_TARGET_DIR/$profile/postern"
"$POSTERN" cp --help >/dev/null || { echo "$POSTERN has no cp command" >&2; exit 1; }
exec python3 bench/cp_bench.py "$POSTERN" "$profile" "${args[@]}"
