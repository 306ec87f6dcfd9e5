//! The copy's bytes on the wire: base64, because the agent's separate-stream reader decodes
//! UTF-8 and loses bytes (agent `agent/session/shell/shell.go` `ReadRune`: a real U+FFFD comes
//! back as one byte, up to 3 undecodable bytes at EOF are never sent), and a PTY's line
//! discipline must not see raw bytes. Encoding for uploads in newline-ended lines
//! ([`encode_lines`]); an incremental decoder for downloads that ignores line breaks
//! ([`Decoder`]), and [`Framed`], which finds a range's base64 between its begin and end lines
//! (whatever a PTY or a login script printed around them) and checks the SHA-256 the end line
//! carries. No IO here.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use sha2::{Digest as _, Sha256};

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

/// A range's output: noise, the begin line [`BEGIN`], base64 lines, then the end line
/// [`END`] with the SHA-256 the instance computed of the range. Decodes the base64 as it
/// arrives and hashes what it decoded.
#[derive(Debug, Default)]
pub(crate) struct Framed {
    state: FrameState,
    /// The current line, while it may still be the begin or end line.
    line: Vec<u8>,
    decoder: Decoder,
    hasher: Sha256,
    /// The SHA-256 the end line carried, hex.
    remote_sha256: Option<String>,
}

#[derive(Debug, Default, PartialEq, Eq)]
enum FrameState {
    /// Before the begin line: anything is noise.
    #[default]
    Before,
    /// Between the begin and end lines.
    Data,
    /// After the end line: anything is noise.
    Done,
}

/// How a range's framed output ended.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum FrameError {
    /// The begin line never came.
    #[error("the range's output never began (no begin line)")]
    NoBegin,
    /// The end line never came.
    #[error("the range's output ended early (no end line)")]
    NoEnd,
    /// The end line's SHA-256 is not the decoded bytes'.
    #[error(
        "the range's SHA-256 on the instance is {remote}, the bytes that arrived hash to {local}"
    )]
    Mismatch {
        /// The instance's.
        remote: String,
        /// Ours.
        local: String,
    },
}

impl Framed {
    /// Takes output split anywhere, appending decoded bytes to `out`.
    pub(crate) fn feed(&mut self, mut text: &[u8], out: &mut Vec<u8>) -> Result<(), DecodeError> {
        while self.state == FrameState::Before && !text.is_empty() {
            let (segment, ended) = match text.iter().position(|&b| b == b'\n') {
                Some(at) => (&text[..at], true),
                None => (text, false),
            };
            text = &text[segment.len() + usize::from(ended)..];
            self.before(segment, ended);
        }
        if self.state == FrameState::Data && !text.is_empty() {
            self.data(text, out)?;
        }
        Ok(())
    }

    /// Checks that the frame ended and that its SHA-256 is the decoded bytes'.
    pub(crate) fn finish(self) -> Result<(), FrameError> {
        match self.state {
            FrameState::Before => return Err(FrameError::NoBegin),
            FrameState::Data => return Err(FrameError::NoEnd),
            FrameState::Done => {}
        }
        let local = hex::encode(self.hasher.finalize());
        match self.remote_sha256 {
            Some(remote) if remote.eq_ignore_ascii_case(&local) => Ok(()),
            Some(remote) => Err(FrameError::Mismatch { remote, local }),
            None => Err(FrameError::NoEnd),
        }
    }

    /// Whether the base64 ended on a whole quantum (call after the end line).
    pub(crate) fn decoder_finish(&self) -> Result<(), DecodeError> {
        self.decoder.finish()
    }

    fn before(&mut self, segment: &[u8], ended: bool) {
        if self.line.len() < LINE_CAP {
            self.line.extend_from_slice(segment);
        }
        if ended {
            if trim_cr(&self.line) == BEGIN {
                self.state = FrameState::Data;
            }
            self.line.clear();
        }
    }

    /// Base64 lines until the end line. `-` is not in base64's alphabet: the first one is in
    /// the end line (or the output is not base64). A trailing partial line that may begin the
    /// end line is held until more arrives.
    fn data(&mut self, text: &[u8], out: &mut Vec<u8>) -> Result<(), DecodeError> {
        let joined;
        let buf: &[u8] = if self.line.is_empty() {
            text
        } else {
            let mut held = std::mem::take(&mut self.line);
            held.extend_from_slice(text);
            joined = held;
            &joined
        };
        let Some(dash) = buf.iter().position(|&b| b == b'-') else {
            let tail_start = buf.iter().rposition(|&b| b == b'\n').map_or(0, |at| at + 1);
            let tail = &buf[tail_start..];
            let hold = !tail.is_empty() && tail.len() < END.len() && END.starts_with(tail);
            let fed = if hold { tail_start } else { buf.len() };
            self.decode(&buf[..fed], out)?;
            if hold {
                self.line = tail.to_vec();
            }
            return Ok(());
        };
        let start = buf[..dash]
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |at| at + 1);
        self.decode(&buf[..start], out)?;
        let rest = &buf[start..];
        match rest.iter().position(|&b| b == b'\n') {
            Some(end) => match trim_cr(&rest[..end]).strip_prefix(END) {
                Some(hash) => {
                    self.remote_sha256 = Some(String::from_utf8_lossy(hash).trim().to_owned());
                    self.state = FrameState::Done;
                    Ok(())
                }
                // A `-` in a data line: the decoder says what is wrong.
                None => self.decode(&rest[..end], out),
            },
            None if rest.len() > LINE_CAP => self.decode(rest, out),
            None => {
                self.line = rest.to_vec();
                Ok(())
            }
        }
    }

    fn decode(&mut self, text: &[u8], out: &mut Vec<u8>) -> Result<(), DecodeError> {
        let start = out.len();
        self.decoder.feed(text, out)?;
        self.hasher.update(&out[start..]);
        Ok(())
    }
}

fn trim_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// The line before a range's base64 (scripts print it in two halves, so that the command line
/// itself, should a terminal echo it, never holds it).
pub(crate) const BEGIN: &[u8] = b"postern-cp-begin";
/// The start of the line after a range's base64, followed by the range's SHA-256 in hex.
pub(crate) const END: &[u8] = b"postern-cp-end ";
/// Noise lines longer than this are not kept whole (they cannot be a frame line).
const LINE_CAP: usize = 256;

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(chunks: &[&[u8]]) -> (Vec<u8>, Result<(), FrameError>) {
        let mut framed = Framed::default();
        let mut out = Vec::new();
        for chunk in chunks {
            framed.feed(chunk, &mut out).unwrap();
        }
        framed.decoder_finish().unwrap();
        (out, framed.finish())
    }

    fn frame(data: &[u8], hash_of: &[u8]) -> Vec<u8> {
        let mut text = b"motd noise\r\npostern-cp-begin\r\n".to_vec();
        text.extend(encode_lines(data));
        text.extend(b"postern-cp-end ");
        text.extend(hex::encode(Sha256::digest(hash_of)).as_bytes());
        text.extend(b"\r\ntrailing prompt$ ");
        text
    }

    #[test]
    fn finds_the_frame_in_noise_split_anywhere() {
        let data: Vec<u8> = (0..=255u8).cycle().take(5000).collect();
        let text = frame(&data, &data);
        for split in [1, 2, 3, 14, 15, 16, 77, 5000, 100_000] {
            let chunks: Vec<&[u8]> = text.chunks(split).collect();
            let (out, end) = framed(&chunks);
            assert_eq!(out, data, "{split}");
            assert_eq!(end, Ok(()), "{split}");
        }
        let (out, end) = framed(&[&frame(b"", b"")]);
        assert!(out.is_empty());
        assert_eq!(end, Ok(()));
    }

    #[test]
    fn a_long_unwrapped_line_is_decoded_as_it_comes() {
        let data = vec![0xabu8; 3000];
        let mut text = b"postern-cp-begin\n".to_vec();
        text.extend(STANDARD.encode(&data).as_bytes());
        text.extend(b"\npostern-cp-end ");
        text.extend(hex::encode(Sha256::digest(&data)).as_bytes());
        text.extend(b"\n");
        let chunks: Vec<&[u8]> = text.chunks(100).collect();
        let (out, end) = framed(&chunks);
        assert_eq!(out, data);
        assert_eq!(end, Ok(()));
    }

    #[test]
    fn a_changed_byte_or_a_missing_end_is_caught() {
        let data = b"some bytes of the file".to_vec();
        let (_, end) = framed(&[&frame(&data, b"other bytes")]);
        assert!(matches!(end, Err(FrameError::Mismatch { .. })), "{end:?}");
        let text = frame(&data, &data);
        let cut = text.len() - 90;
        let (_, end) = framed(&[&text[..cut]]);
        assert_eq!(end, Err(FrameError::NoEnd));
        let (_, end) = framed(&[b"postern-cp-beg"]);
        assert_eq!(end, Err(FrameError::NoBegin));
    }

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
