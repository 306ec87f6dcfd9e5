//! The copy's bytes on the wire: base64, because the agent's separate-stream reader decodes
//! UTF-8 and loses bytes (agent `agent/session/shell/shell.go` `ReadRune`: a real U+FFFD comes
//! back as one byte, up to 3 undecodable bytes at EOF are never sent), and a PTY's line
//! discipline must not see raw bytes. Encoding for uploads in newline-ended lines
//! ([`encode_lines`]); an incremental decoder for downloads that ignores line breaks
//! ([`Decoder`]). No IO here.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::cli::commands::cp::ranges::LINE_BYTES;

/// `data` as base64 lines of [`LINE_BYTES`] input bytes, each ended by a newline.
pub(crate) fn encode_lines(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() / 3 * 4 + data.len() / 50 + 8);
    // LINE_BYTES is a small constant.
    let line = usize::try_from(LINE_BYTES).unwrap_or(57);
    for chunk in data.chunks(line) {
        let start = out.len();
        out.resize(start + chunk.len().div_ceil(3) * 4, 0);
        // The buffer was sized for exactly this encoding.
        let written = STANDARD
            .encode_slice(chunk, &mut out[start..])
            .unwrap_or_default();
        out.truncate(start + written);
        out.push(b'\n');
    }
    out
}

/// Decodes base64 text arriving in pieces split anywhere; line breaks are skipped.
#[derive(Debug, Default)]
pub(crate) struct Decoder {
    /// Up to 3 characters of an incomplete quantum.
    held: Vec<u8>,
    /// A quantum with padding was seen: anything after it is an error.
    ended: bool,
}

/// The remote's output was not base64.
#[derive(Debug, thiserror::Error)]
#[error("the remote output was not base64 ({0})")]
pub(crate) struct DecodeError(String);

impl Decoder {
    /// Decodes `text`, appending bytes to `out`.
    pub(crate) fn feed(&mut self, text: &[u8], out: &mut Vec<u8>) -> Result<(), DecodeError> {
        let mut clean = std::mem::take(&mut self.held);
        clean.extend(text.iter().copied().filter(|b| !b.is_ascii_whitespace()));
        if clean.is_empty() {
            return Ok(());
        }
        if self.ended {
            return Err(DecodeError("data after the final padding".to_owned()));
        }
        let whole = clean.len() / 4 * 4;
        self.held = clean[whole..].to_vec();
        if whole == 0 {
            return Ok(());
        }
        let quanta = &clean[..whole];
        if quanta[..whole - 4].contains(&b'=') {
            return Err(DecodeError("padding inside the data".to_owned()));
        }
        self.ended = quanta[whole - 1] == b'=';
        STANDARD
            .decode_vec(quanta, out)
            .map_err(|e| DecodeError(e.to_string()))
    }

    /// Checks that the text ended on a whole quantum.
    pub(crate) fn finish(&self) -> Result<(), DecodeError> {
        if self.held.is_empty() {
            Ok(())
        } else {
            Err(DecodeError(format!(
                "{} characters left over at the end",
                self.held.len()
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(data: &[u8], split: usize) -> Vec<u8> {
        let text = encode_lines(data);
        let mut decoder = Decoder::default();
        let mut out = Vec::new();
        for piece in text.chunks(split.max(1)) {
            decoder.feed(piece, &mut out).unwrap();
        }
        decoder.finish().unwrap();
        out
    }

    #[test]
    fn decodes_what_it_encodes_split_anywhere() {
        let data: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        for split in [1, 2, 3, 5, 7, 76, 77, 1000, 5000] {
            assert_eq!(roundtrip(&data, split), data, "{split}");
        }
        assert_eq!(roundtrip(b"", 3), b"");
        assert_eq!(roundtrip(b"\xef\xbf\xbd", 1), b"\xef\xbf\xbd");
    }

    #[test]
    fn lines_end_with_newlines_of_76_characters() {
        let text = encode_lines(&[0u8; 120]);
        let lines: Vec<&[u8]> = text.split(|b| *b == b'\n').collect();
        assert_eq!(lines[0].len(), 76);
        assert_eq!(lines[1].len(), 76);
        assert_eq!(lines[2].len(), 8);
        assert!(lines[3].is_empty());
    }

    #[test]
    fn rejects_text_that_is_not_base64() {
        let mut out = Vec::new();
        assert!(Decoder::default().feed(b"ab!d", &mut out).is_err());
        let mut decoder = Decoder::default();
        decoder.feed(b"YQ==", &mut out).unwrap();
        assert!(decoder.feed(b"YQ==", &mut out).is_err());
        let mut decoder = Decoder::default();
        decoder.feed(b"YWJ", &mut out).unwrap();
        assert!(decoder.finish().is_err());
    }
}
