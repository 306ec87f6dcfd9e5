//! How a copy is cut into byte ranges, one session each, and the exact size of a range's base64
//! text on the wire. Pure arithmetic: no IO.

/// One byte range of the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Range {
    /// Where it starts, a multiple of [`BLOCK`].
    pub(crate) offset: u64,
    /// How many bytes.
    pub(crate) len: u64,
}

impl Range {
    /// The first block of the range, for `dd`'s `skip=`/`seek=` in [`BLOCK`] units.
    pub(crate) fn first_block(self) -> u64 {
        self.offset / BLOCK
    }

    /// How many [`BLOCK`]s cover the range (the last one may be partial).
    pub(crate) fn blocks(self) -> u64 {
        self.len.div_ceil(BLOCK)
    }
}

/// Cuts `size` bytes into at most `sessions` ranges of whole [`BLOCK`]s (but the last), none
/// smaller than [`MIN_RANGE`] unless the file is. An empty file is one empty range, so every
/// copy runs at least one session and creates the file.
pub(crate) fn split(size: u64, sessions: usize) -> Vec<Range> {
    let sessions = u64::try_from(sessions.max(1)).unwrap_or(u64::MAX);
    let wanted = size.div_ceil(sessions).max(MIN_RANGE);
    let step = wanted.div_ceil(BLOCK) * BLOCK;
    let mut ranges = Vec::new();
    let mut offset = 0;
    while offset < size || ranges.is_empty() {
        let len = step.min(size - offset);
        ranges.push(Range { offset, len });
        offset += len;
    }
    ranges
}

/// The bytes of `len` input bytes as postern sends them for `base64 -d`: lines of
/// [`LINE_BYTES`] input bytes, each encoded (76 characters) and ended by a newline, the last
/// line shorter. The remote's `head -c` reads exactly this many bytes.
pub(crate) fn wire_len(len: u64) -> u64 {
    let full = len / LINE_BYTES;
    let rest = len % LINE_BYTES;
    let last = if rest == 0 {
        0
    } else {
        rest.div_ceil(3) * 4 + 1
    };
    full * (LINE_BYTES / 3 * 4 + 1) + last
}

/// `dd`'s block size: ranges start at multiples of it so that `skip=`/`seek=` (POSIX, in
/// blocks) address them without GNU's `iflag=skip_bytes`.
pub(crate) const BLOCK: u64 = 64 * 1024;
/// The smallest range worth its own session (a StartSession and a handshake).
pub(crate) const MIN_RANGE: u64 = 1024 * 1024;
/// Input bytes per base64 line on the wire (76 characters, as `base64` itself wraps); a line
/// stays far below a terminal's canonical-mode line limit (4095 on Linux) should the PTY still
/// be in canonical mode when the first line arrives.
pub(crate) const LINE_BYTES: u64 = 57;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_file_is_one_empty_range() {
        assert_eq!(split(0, 4), vec![Range { offset: 0, len: 0 }]);
    }

    #[test]
    fn small_files_take_one_session() {
        assert_eq!(split(1, 8), vec![Range { offset: 0, len: 1 }]);
        assert_eq!(split(MIN_RANGE, 8).len(), 1);
    }

    #[test]
    fn ranges_cover_the_file_in_whole_blocks() {
        let size = 64 * 1024 * 1024 + 12345;
        let ranges = split(size, 4);
        assert_eq!(ranges.len(), 4);
        let mut next = 0;
        for r in &ranges {
            assert_eq!(r.offset, next);
            assert_eq!(r.offset % BLOCK, 0);
            next += r.len;
        }
        assert_eq!(next, size);
        assert!(ranges[..3].iter().all(|r| r.len % BLOCK == 0));
        assert_eq!(ranges[1].first_block(), ranges[0].len / BLOCK);
    }

    #[test]
    fn wire_len_matches_the_encoder() {
        for len in [0u64, 1, 2, 3, 56, 57, 58, 114, 1000, 65536] {
            let data = vec![7u8; usize::try_from(len).unwrap()];
            let lines = crate::cli::commands::cp::wire::encode_lines(&data);
            assert_eq!(wire_len(len), lines.len() as u64, "{len}");
        }
    }
}
