//! Access to the golden vectors in `protocol/tests/vectors/` (STYLE.md §6 item 2).
//!
//! The vectors are produced by the official client and agent. The repository carries
//! byte-identical copies of `../shared/protocol/vectors/` (the test `vectors_match_shared`
//! compares them when `../shared` is present) so a fresh clone runs its tests. They are never
//! silently skipped: a missing folder or file panics with the path that was tried. This is test support behind the `testkit` feature and the only place
//! in this crate that reads files; the shipped protocol code must not use it.

use std::path::{Path, PathBuf};

use serde_json::Value;

/// Environment variable that overrides where the vectors are looked for.
pub const VECTORS_DIR_ENV: &str = "POSTERN_VECTORS_DIR";

/// The repository's copy, found from the running test's package (cargo sets
/// `CARGO_MANIFEST_DIR` when it runs a test: this crate's, or the workspace root's for tests
/// of the root package). The path compiled in comes last: a shared target directory may hold
/// this crate built from another checkout, one that may be gone.
fn repository_copy() -> PathBuf {
    let compiled = Path::new(env!("CARGO_MANIFEST_DIR")).join(DEFAULT_RELATIVE_DIR);
    let Some(running) = std::env::var_os("CARGO_MANIFEST_DIR").map(PathBuf::from) else {
        return compiled;
    };
    [
        running.join(DEFAULT_RELATIVE_DIR),
        running.join("protocol").join(DEFAULT_RELATIVE_DIR),
    ]
    .into_iter()
    .find(|dir| dir.is_dir())
    .unwrap_or(compiled)
}

/// The vectors folder: `$POSTERN_VECTORS_DIR` when set, else the repository's copy
/// (`protocol/tests/vectors`).
///
/// # Panics
///
/// When the folder does not exist, naming the path tried and [`VECTORS_DIR_ENV`].
pub fn vectors_dir() -> PathBuf {
    let (dir, origin) = match std::env::var_os(VECTORS_DIR_ENV) {
        Some(dir) if !dir.is_empty() => (PathBuf::from(dir), "from $POSTERN_VECTORS_DIR"),
        _ => (repository_copy(), "the repository's copy"),
    };
    assert!(
        dir.is_dir(),
        "\n\n*** golden vectors not found ***\n\
         tried: {} ({origin})\n\
         The repository carries them in protocol/tests/vectors; restore that folder \
         (git checkout -- protocol/tests/vectors) or set {VECTORS_DIR_ENV} to a vectors folder. \
         Vector tests are never skipped.\n",
        dir.display(),
    );
    dir
}

/// The full path of one vector file, e.g. `vector_path("malformed.json")`.
///
/// # Panics
///
/// When the folder or the file is missing, naming the path tried.
pub fn vector_path(name: &str) -> PathBuf {
    let path = vectors_dir().join(name);
    assert!(
        path.is_file(),
        "\n\n*** golden vector file not found ***\ntried: {}\n(folder chosen by {VECTORS_DIR_ENV} \
         or the repository's copy)\n",
        path.display(),
    );
    path
}

/// Reads and parses one JSON vector file.
///
/// # Panics
///
/// When the file is missing, unreadable or not JSON, naming the path.
pub fn load_json(name: &str) -> Value {
    let path = vector_path(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|err| panic!("cannot read vector file {}: {err}", path.display()));
    serde_json::from_str(&text)
        .unwrap_or_else(|err| panic!("vector file {} is not JSON: {err}", path.display()))
}

/// The `cases` array of a vector file, checked to hold exactly `expected` entries so that a
/// shrinking file fails instead of silently testing less.
///
/// # Panics
///
/// When the file or its `cases` array is missing, or the count differs.
pub fn load_cases(name: &str, expected: usize) -> Vec<Value> {
    let file = load_json(name);
    let cases = file
        .get("cases")
        .and_then(Value::as_array)
        .unwrap_or_else(|| panic!("{name}: no \"cases\" array"))
        .clone();
    assert_eq!(
        cases.len(),
        expected,
        "{name}: expected {expected} cases, found {}",
        cases.len()
    );
    cases
}

/// Decodes lowercase or uppercase hex without separators.
///
/// # Panics
///
/// On an odd length or a non-hex character: vectors are trusted input, a bad one is a bug in
/// the test data.
pub fn hex(text: &str) -> Vec<u8> {
    assert!(
        text.len().is_multiple_of(2),
        "hex string of odd length {}",
        text.len()
    );
    text.as_bytes()
        .chunks_exact(2)
        .map(|pair| (nibble(pair[0]) << 4) | nibble(pair[1]))
        .collect()
}

/// Encodes bytes as lowercase hex, the vectors' convention.
pub fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for &byte in bytes {
        out.push(char::from(DIGITS[usize::from(byte >> 4)]));
        out.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    out
}

/// The string at `key` of a vector object.
///
/// # Panics
///
/// When the key is missing or not a string, naming both.
pub fn str_field<'a>(value: &'a Value, key: &str) -> &'a str {
    value
        .get(key)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("vector entry has no string {key:?}: {value}"))
}

/// The hex string at `key` of a vector object, decoded.
///
/// # Panics
///
/// When the key is missing, not a string or not hex.
pub fn hex_field(value: &Value, key: &str) -> Vec<u8> {
    hex(str_field(value, key))
}

fn nibble(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        b'A'..=b'F' => c - b'A' + 10,
        _ => panic!("not a hex digit: {:?}", char::from(c)),
    }
}

/// From `protocol/` (this crate's manifest dir): the repository's copy of the vectors.
const DEFAULT_RELATIVE_DIR: &str = "tests/vectors";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips_every_byte() {
        let all: Vec<u8> = (0..=255).collect();
        assert_eq!(hex(&to_hex(&all)), all);
        assert_eq!(to_hex(&[0x00, 0xab, 0xff]), "00abff");
        assert_eq!(hex("00ABff"), vec![0x00, 0xab, 0xff]);
    }

    #[test]
    #[should_panic(expected = "odd length")]
    fn hex_rejects_odd_length() {
        hex("abc");
    }

    #[test]
    #[should_panic(expected = "not a hex digit")]
    fn hex_rejects_non_hex() {
        hex("zz");
    }
}
