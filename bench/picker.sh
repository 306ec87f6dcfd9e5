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
cd "$repo"
command -v tmux >/dev/null || { echo "bench/picker.sh needs tmux (apt-get install tmux)" >&2; exit 1; }
source "$here/build_postern.sh"
exec python3 "$here/picker_bench.py" "$POSTERN_BIN"
