#!/usr/bin/env bash
# postern against AWS's session-manager-plugin, in one run on this machine (issue 22):
# throughput each way, CPU per 100 MB and peak RSS (agent pacing on and off), time to a ready
# forward, 8-connection scaling, keystroke echo and an interactive shell's RSS, copying a file
# each way (postern cp against scp through the plugin, to a local sshd), against
# `postern emulator` on loopback. Prints a table with postern / plugin ratios.
#
# Usage: bench/compare.sh [--quick] [--write] [--only GROUPS] [--baseline POSTERN]
#                         [--keystrokes N] [--paced-mb N] [--cp-mb N] [--rounds N]
#   --write         docs/benchmarks.md from this run
#   --only          comma-separated: unpaced, paced, ready, scaling, echo, cp (default: all)
#   --baseline      another postern binary as a column of its own (before/after a change)
#   --keystrokes    keystrokes for the echo figures (default 500; 100 with --quick)
#   --paced-mb      MB per paced transfer (default 4; 1 with --quick)
#   --cp-mb         MB of the file copied each way (default 16; 2 with --quick)
#   --rounds        transfers each way per client, clients taking turns, median (default 3;
#                   1 with --quick)
# The official plugin: $SESSION_MANAGER_PLUGIN, else `session-manager-plugin` on PATH (when it
# is not postern's own drop-in link); without one its column is skipped with a note. AWS ships
# it as a package; bench/build-official-plugin.sh builds it from a source checkout (Go, no
# network: the repository vendors its dependencies).
# The AWS CLI (runs the plugin as users do, and postern's drop-in): $AWS_CLI, else `aws` on PATH.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/cache/postern/target}"
if [[ -z "${POSTERN_BIN:-}" ]]; then
    # The binary `cargo install --path . --locked` builds (the postern package's features:
    # the committed function order names its symbols); only our own crates differ from the
    # tests' `--workspace --all-features` set, so no AWS crate is rebuilt.
    cargo build --release --locked -p postern --bins >&2
    POSTERN_BIN="$CARGO_TARGET_DIR/release/postern"
fi

plugin="${SESSION_MANAGER_PLUGIN:-$(command -v session-manager-plugin || true)}"
if [[ -n "$plugin" ]] && "$plugin" --version 2>/dev/null | grep -qi postern; then
    plugin=""  # postern's own drop-in link is not the official plugin
fi
aws="${AWS_CLI:-$(command -v aws || true)}"

args=(--postern "$POSTERN_BIN")
[[ -n "$plugin" ]] && args+=(--plugin "$(readlink -f "$plugin")")
[[ -n "$aws" ]] && args+=(--aws "$aws")
while (($#)); do
    case "$1" in
        --quick) args+=(--quick) ;;
        --write) args+=(--write docs/benchmarks.md) ;;
        --only | --baseline | --keystrokes | --paced-mb | --cp-mb | --rounds)
            if (($# < 2)); then
                echo "bench/compare.sh: $1 needs a value" >&2; exit 2
            fi
            args+=("$1" "$2"); shift ;;
        *) echo "bench/compare.sh: unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done
exec python3 bench/compare_bench.py "${args[@]}"
