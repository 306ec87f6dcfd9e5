# Sourced by the bench scripts: builds postern in PROFILE and sets POSTERN_BIN to the binary.
# release: as `cargo install --path . --locked` builds it (the postern package's features, so
# the committed function order applies; only our own crates differ from the tests' set, no AWS
# crate is rebuilt); `dev`: a quick debug build with the tests' feature set (a warm target dir
# is reused), whose figures must be labelled as such.
# Expects `repo` (the repository root) to be set and to be the current directory.
profile="${PROFILE:-release}"
if [[ "$profile" == release ]]; then
    cargo build --release --quiet --locked -p postern --bins
    POSTERN_BIN="${CARGO_TARGET_DIR:-$repo/target}/release/postern"
else
    cargo build --quiet --locked --workspace --all-features --bins
    POSTERN_BIN="${CARGO_TARGET_DIR:-$repo/target}/debug/postern"
fi
export POSTERN_BIN
