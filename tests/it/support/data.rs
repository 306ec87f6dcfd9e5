//! Test data and its checks: seeded pseudo-random bytes, SHA-256, byte search, and the output
//! of `seq`.

use sha2::{Digest, Sha256};

/// `len` pseudo-random bytes (xorshift), the same for the same `seed` and distinct between
/// seeds: a failure replays, and two streams given different seeds cannot be mistaken for
/// each other.
pub(crate) fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut state = 0x9E37_79B9_7F4A_7C15u64 ^ (seed + 1).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Hex SHA-256, for comparing large payloads with a readable failure.
pub(crate) fn sha256(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Whether `haystack` contains `needle`.
pub(crate) fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// `seq 1 n` as the remote shell prints it.
pub(crate) fn numbered(n: u32) -> String {
    (1..=n).map(|i| format!("{i}\n")).collect()
}
