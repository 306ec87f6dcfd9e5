# Sourced by the bench scripts: builds postern with the workspace's own feature set (as the
# tests build it, so a warm target dir is reused) in PROFILE (release, or `dev` for a quick
# debug build whose figures must be labelled as such), and sets POSTERN_BIN to the binary.
# Expects `repo` (the repository root) to be set and to be the current directory.
profile="${PROFILE:-release}"
flags=(--quiet --locked --workspace --all-features --bins)
if [[ "$profile" == release ]]; then
    cargo build --release "${flags[@]}"
    POSTERN_BIN="${CARGO_TARGET_DIR:-$repo/target}/release/postern"
else
    cargo build "${flags[@]}"
    POSTERN_BIN="${CARGO_TARGET_DIR:-$repo/target}/debug/postern"
fi
export POSTERN_BIN
