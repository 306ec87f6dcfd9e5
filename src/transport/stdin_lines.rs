//! Input piped to `postern exec` on the agent's terminal, sent as base64 lines that the remote
//! wrapper decodes ([`ExitMarker::wrap_with_piped_input`]): a terminal acts on control bytes
//! (Ctrl-C kills the command, Ctrl-D ends a read, CR becomes NL), so raw bytes arrive altered,
//! while lines of base64 text pass its line discipline untouched. The end of the input is a
//! line base64 never produces, after which the command sees end of file.
//!
//! [`ExitMarker::wrap_with_piped_input`]: crate::transport::ExitMarker::wrap_with_piped_input

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

/// The line that ends the input: no base64 text is a lone `.`.
pub(crate) const END_LINE: &str = ".";
/// [`END_LINE`] as a `sed` basic regular expression.
pub(crate) const END_LINE_PATTERN: &str = r"\.";

/// Input bytes per line: 57 bytes make 76 characters, the MIME line length, well inside a
/// terminal's line limit (4095 bytes in Linux's n_tty).
const BYTES_PER_LINE: usize = 57;

/// Encodes a stream of input into base64 lines; bytes short of a whole line wait for more.
#[derive(Debug, Default)]
pub struct Base64Lines {
    held: Vec<u8>,
}

impl Base64Lines {
    /// Appends the whole lines `data` completes to `out`.
    pub fn encode(&mut self, data: &[u8], out: &mut Vec<u8>) {
        self.held.extend_from_slice(data);
        let whole = self.held.len() / BYTES_PER_LINE * BYTES_PER_LINE;
        for line in self.held[..whole].chunks(BYTES_PER_LINE) {
            push_line(line, out);
        }
        self.held.drain(..whole);
    }

    /// Appends the last, shorter line (if any) and the end line to `out`.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if !self.held.is_empty() {
            push_line(&self.held, out);
            self.held.clear();
        }
        out.extend_from_slice(END_LINE.as_bytes());
        out.push(b'\n');
    }
}

fn push_line(bytes: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(STANDARD.encode(bytes).as_bytes());
    out.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(lines: &[u8]) -> Vec<u8> {
        let text = std::str::from_utf8(lines).unwrap();
        let mut out = Vec::new();
        let mut ended = false;
        for line in text.lines() {
            assert!(!ended, "a line after the end line");
            assert!(line.len() <= 76, "{line}");
            if line == END_LINE {
                ended = true;
                continue;
            }
            out.extend(STANDARD.decode(line).unwrap());
        }
        assert!(ended, "no end line");
        out
    }

    #[test]
    fn every_byte_survives_however_the_input_is_split() {
        let data: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        for split in [1, 3, 56, 57, 58, 200, 1000] {
            let mut encoder = Base64Lines::default();
            let mut out = Vec::new();
            for chunk in data.chunks(split) {
                encoder.encode(chunk, &mut out);
            }
            encoder.finish(&mut out);
            // Only base64 text, newlines and the end line's dot: nothing a terminal acts on.
            assert!(
                out.iter()
                    .all(|b| b.is_ascii_alphanumeric() || b"+/=\n.".contains(b)),
                "split {split}"
            );
            assert_eq!(decode(&out), data, "split {split}");
        }
    }

    #[test]
    fn empty_input_is_the_end_line_alone() {
        let mut out = Vec::new();
        Base64Lines::default().finish(&mut out);
        assert_eq!(out, b".\n");
    }
}
