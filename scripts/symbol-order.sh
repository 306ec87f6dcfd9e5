#!/usr/bin/env bash
# A release binary whose hot functions sit together (issue 22): builds postern, profiles a
# shell, an exec and a forward under callgrind (scripts/symbol_order.py), then relinks with
# that order (build.rs, POSTERN_SYMBOL_ORDER). Needs LLD (Rust's default linker on
# x86_64-unknown-linux-gnu) or mold, valgrind and nm. The order file names this exact build's
# symbols: regenerate it after any change to the code, the dependencies or the toolchain
# (stale names are skipped, never an error: the binary is then as without the order).
#
# Usage: scripts/symbol-order.sh          (prints the ordered binary's path)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
order="$CARGO_TARGET_DIR/postern-symbol-order.txt"
build() { cargo build --release --locked --workspace --all-features --bins >&2; }

# Profile a build without an order (the same symbol names, laid out as rustc emitted them).
POSTERN_SYMBOL_ORDER='' build
python3 scripts/symbol_order.py --postern "$CARGO_TARGET_DIR/release/postern" --out "$order"
POSTERN_SYMBOL_ORDER="$order" build
echo "$CARGO_TARGET_DIR/release/postern"
