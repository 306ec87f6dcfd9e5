#!/usr/bin/env bash
# Shell benchmark (issue 5): `postern shell` against the emulator, pacing on (its default),
# compared in the same run with the same shell on a local PTY.
#
#   echo RTT      one printable byte into the terminal until its echo comes back, median and
#                 p99 over 500 keystrokes; postern and the local PTY take turns per keystroke
#   start-up      process start to the first prompt byte, median of 10 runs each
#   peak RSS      VmHWM of the postern process while `yes | head -c 20M` runs in its session
#
# Usage: bench/shell.sh            builds postern in release (honours CARGO_TARGET_DIR)
#        POSTERN_BIN=path bench/shell.sh
# Knobs: KEYSTROKES (500), STARTS (10), OUTPUT_BYTES (20971520), SHELL_UNDER_TEST (/bin/sh).
#
# Loopback only (the emulator listens on 127.0.0.1, port 0), bounded (the emulator stops by
# itself after 15 min, the measurements are killed after 10), and everything started here is
# stopped on exit. Needs Linux (/proc) and python3.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$here")"
keystrokes="${KEYSTROKES:-500}"
starts="${STARTS:-10}"
output_bytes="${OUTPUT_BYTES:-20971520}"
shell_under_test="${SHELL_UNDER_TEST:-/bin/sh}"

if [[ -z "${POSTERN_BIN:-}" ]]; then
    (cd "$repo" && cargo build --release --locked -p postern --bins)  # as `cargo install` does
    POSTERN_BIN="${CARGO_TARGET_DIR:-$repo/target}/release/postern"
fi
[[ -x "$POSTERN_BIN" ]] || { echo "bench/shell.sh: no postern binary at $POSTERN_BIN" >&2; exit 1; }

work="$(mktemp -d "${TMPDIR:-/tmp}/postern-bench-shell.XXXXXX")"
emulator_pid=""
helper_pid=""
cleanup() {
    # Only the processes this script started, by their pid.
    [[ -n "$helper_pid" ]] && kill -TERM "$helper_pid" 2>/dev/null || true
    if [[ -n "$emulator_pid" ]]; then
        kill -TERM "$emulator_pid" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$emulator_pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$emulator_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# The same clean environment for the emulator (whose shells inherit it) and the baseline shell.
shell_env=(PATH=/usr/local/bin:/usr/bin:/bin HOME=/nonexistent LANG=C.UTF-8 "PS1=\$ ")
aws_env=(AWS_ACCESS_KEY_ID=AKIDPOSTERNBENCH AWS_SECRET_ACCESS_KEY=postern-bench-secret
         AWS_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true POSTERN_LOG_FILE="$work/postern.log")

# The emulator verifies SigV4: it gets the base keys the client signs with.
env -i "${shell_env[@]}" POSTERN_EMULATOR_ACCESS_KEY_ID=AKIDPOSTERNBENCH \
    POSTERN_EMULATOR_SECRET_ACCESS_KEY=postern-bench-secret \
    "$POSTERN_BIN" emulator --listen 127.0.0.1:0 --exit-after 15m \
    --shell "$shell_under_test" --violations-log "$work/violations.jsonl" \
    </dev/null >"$work/ready" 2>"$work/emulator.log" &
emulator_pid=$!

ready=""
for _ in $(seq 300); do
    if [[ "$(wc -l <"$work/ready")" -ge 1 ]]; then ready="$(head -n 1 "$work/ready")"; break; fi
    kill -0 "$emulator_pid" 2>/dev/null || break
    sleep 0.1
done
if [[ -z "$ready" ]]; then
    echo "bench/shell.sh: the emulator gave no ready line within 30 s" >&2
    cat "$work/emulator.log" >&2
    exit 1
fi
read -r endpoint instance < <(python3 -c '
import json, sys
r = json.loads(sys.argv[1])
print(r["endpoint"], r["instances"][0])' "$ready")
case "$endpoint" in
    http://127.0.0.1:*|ws://127.0.0.1:*) ;;
    *) echo "bench/shell.sh: emulator endpoint is not loopback: $endpoint" >&2; exit 1 ;;
esac

echo "postern shell benchmark: $("$POSTERN_BIN" --version 2>/dev/null || echo postern)," \
     "$(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo unknown)," \
     "$(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)," \
     "load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "emulator $endpoint (pacing on), instance $instance, shell $shell_under_test"
echo

helper_args=(--postern "$POSTERN_BIN" --endpoint "$endpoint" --instance "$instance"
             --shell "$shell_under_test" --keystrokes "$keystrokes" --starts "$starts"
             --output-bytes "$output_bytes" --json "$work/figures.json")
for kv in "${shell_env[@]}"; do helper_args+=(--env "$kv"); done
for kv in "${aws_env[@]}"; do helper_args+=(--postern-env "$kv"); done

timeout --kill-after=10 600 python3 "$here/shell_pty.py" "${helper_args[@]}" &
helper_pid=$!
status=0
wait "$helper_pid" || status=$?
helper_pid=""
if [[ $status -ne 0 ]]; then
    echo "bench/shell.sh: measurements failed (status $status); emulator log tail:" >&2
    tail -n 20 "$work/emulator.log" >&2
    exit 1
fi

if [[ -s "$work/violations.jsonl" ]]; then
    echo "bench/shell.sh: the emulator logged protocol violations:" >&2
    head -n 5 "$work/violations.jsonl" >&2
    exit 1
fi
echo
echo "no protocol violations"
