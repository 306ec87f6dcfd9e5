#!/usr/bin/env bash
# Picker benchmark (issue 17): a generated fleet of 50,000 instances (50 accounts x 3 regions),
# cached; process start to picker drawn, keystroke to filtered list, `postern list QUERY` end
# to end, and peak RSS, against the goals (< 100 ms, < 16 ms, < 100 ms). tmux drives the
# picker; loopback only (port 0); the emulator stops with the script.
#
# Usage: bench/picker.sh     (release build; PROFILE=dev for a quick debug run)
# Knobs: SHAPE (accounts=50,regions=3,instances=50000), RUNS (7).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$here")"
profile="${PROFILE:-release}"
cd "$repo"
command -v tmux >/dev/null || { echo "bench/picker.sh needs tmux (apt-get install tmux)" >&2; exit 1; }
# The workspace's own feature set (as the tests build it), so a warm target dir is reused.
flags=(--quiet --locked --workspace --all-features --bins)
if [[ "$profile" == release ]]; then
    cargo build --release "${flags[@]}"
    dir=release
else
    cargo build "${flags[@]}"
    dir=debug
fi
exec python3 "$here/picker_bench.py" "${CARGO_TARGET_DIR:-$repo/target}/$dir/postern"
