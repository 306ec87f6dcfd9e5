#!/usr/bin/env bash
# Regenerates profile-data/symbol-order.txt, the link-time function order release builds use
# (issue 22, build.rs): builds postern without an order, profiles a shell, an exec and a
# forward under callgrind (scripts/symbol_order.py), writes the functions sessions run, then
# those only start-up runs (grouped by step of start-up), and relinks with the new order. Needs
# valgrind and nm; the order needs LLD (Rust's default linker on x86_64-unknown-linux-gnu) or
# mold. The names carry the hashes of this lockfile and toolchain: run this after updating
# either (new functions of our own code keep their place in no order until then; stale names are
# skipped, never an error).
# Edits to our own crates rename nothing: they build in one codegen unit each (Cargo.toml), so
# their names carry no per-unit `.llvm.<hash>`; bench/compare.sh notes a binary that lacks
# more than 5% of the order.
#
# Usage: scripts/symbol-order.sh [OUT]    (default OUT: profile-data/symbol-order.txt; prints
#                                          the ordered binary's path)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
order="$(realpath -m "${1:-profile-data/symbol-order.txt}")"
# The binary as `cargo install --path . --locked` builds it (the postern package's own features:
# symbol names carry a hash of them, so the order must come from this build).
build() { cargo build --release --locked -p postern --bins >&2; }

# Profile a build without an order (the same symbol names, laid out as rustc emitted them).
POSTERN_SYMBOL_ORDER='' build
python3 scripts/symbol_order.py --postern "$CARGO_TARGET_DIR/release/postern" --out "$order"
POSTERN_SYMBOL_ORDER="$order" build
echo "$CARGO_TARGET_DIR/release/postern"
