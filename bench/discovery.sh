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
if [[ "$profile" == release ]]; then
    cargo run --quiet --release --locked --example discovery_bench
else
    cargo run --quiet --locked --example discovery_bench
fi
