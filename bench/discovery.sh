#!/usr/bin/env bash
# Discovery benchmark (issue 8): an in-process emulator serving a generated fleet (default 50
# accounts x 3 regions x 5,000 instances) with 50 ms injected API latency; cold discovery with
# bounded concurrency and a sequential baseline in the same run, warm start from the cache,
# fuzzy query latency over the rows, and peak RSS. Loopback only (port 0); the emulator stops
# with the process (and by itself after 15 min).
#
# Usage: bench/discovery.sh     (release build of examples/discovery_bench.rs)
# Knobs: SHAPE (50,3,5000), LATENCY_MS (50), CONCURRENCY (16), SEQUENTIAL (1; 0 skips it),
#        PROFILE (release; `dev` for a quick debug run).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$here")"
profile="${PROFILE:-release}"
cd "$repo"
# The workspace's own feature set (as the tests build it), so a warm target dir is reused
# rather than every AWS SDK crate rebuilt with other features.
flags=(--quiet --locked --workspace --all-features --examples)
if [[ "$profile" == release ]]; then
    cargo build --release "${flags[@]}"
    dir=release
else
    cargo build "${flags[@]}"
    dir=debug
fi
exec "${CARGO_TARGET_DIR:-$repo/target}/$dir/examples/discovery_bench"
