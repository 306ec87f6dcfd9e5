#!/usr/bin/env bash
# Discovery benchmark (issues 8 and 22): the release `postern list --refresh` against
# `postern emulator` serving a generated fleet (default 50 accounts x 3 regions x 5,000
# instances) with 50 ms injected API latency on every call, each account through the role
# broker (AssumeRole included, credentials cache empty). Cold discovery with the default
# concurrency against a sequential baseline (POSTERN_DISCOVERY_CONCURRENCY=1) in the same run,
# then the warm start from the cache and a fuzzy query over it; wall time, CPU time and peak RSS
# of each postern process. Loopback only: the emulator listens on port 0 and stops at the end
# (and by itself after 15 min).
#
# It builds exactly what `cargo build --release --workspace --all-features` builds, so a target
# dir warm from the release build (or from the tests, with PROFILE=dev) is reused as it is.
#
# Usage: bench/discovery.sh
# Knobs: SHAPE (accounts=50,regions=3,instances=5000), LATENCY (50ms), CONCURRENCY (empty:
#        postern's default), SEQUENTIAL (1; 0 skips the baseline), PROFILE (release; `dev` for
#        a debug build: label its figures as such).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$here")"
profile="${PROFILE:-release}"
cd "$repo"
flags=(--quiet --locked --workspace --all-features)
if [[ "$profile" == release ]]; then
    cargo build --release "${flags[@]}"
    dir=release
else
    cargo build "${flags[@]}"
    dir=debug
fi
export POSTERN_BIN="${CARGO_TARGET_DIR:-$repo/target}/$dir/postern"
export SHAPE="${SHAPE:-accounts=50,regions=3,instances=5000}"
export LATENCY="${LATENCY:-50ms}"
export CONCURRENCY="${CONCURRENCY:-}"
export SEQUENTIAL="${SEQUENTIAL:-1}"
export PROFILE_LABEL="$profile"
exec python3 "$here/discovery_bench.py"
