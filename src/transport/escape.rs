//! ssh-style escape sequences in interactive input: after a newline (or at the start), the
//! escape character (`~` by default) followed by `.` closes the session, `?` shows help,
//! Ctrl-Z suspends postern, and a second `~` sends one `~`. Anything else passes through.
//!
//! A pure byte filter: it decides, the driver acts.

/// What a chunk of input turned into.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Escaped {
    /// Bytes to send to the remote side.
    Send(Vec<u8>),
    /// `~.`: close the session.
    Disconnect,
    /// `~?`: show the help text.
    Help,
    /// `~^Z`: suspend postern.
    Suspend,
}

/// The filter state for one session.
#[derive(Clone, Debug)]
pub struct EscapeFilter {
    escape: u8,
    at_line_start: bool,
    pending_escape: bool,
}

impl EscapeFilter {
    /// A filter for escape character `escape`.
    pub fn new(escape: u8) -> Self {
        Self {
            escape,
            at_line_start: true,
            pending_escape: false,
        }
    }

    /// Splits `input` into data to send and escape actions, in order.
    pub fn filter(&mut self, input: &[u8]) -> Vec<Escaped> {
        let mut out = Vec::new();
        let mut data = Vec::with_capacity(input.len());
        for &byte in input {
            if self.pending_escape {
                self.pending_escape = false;
                let action = match byte {
                    b'.' => Some(Escaped::Disconnect),
                    b'?' => Some(Escaped::Help),
                    CTRL_Z => Some(Escaped::Suspend),
                    _ => None,
                };
                if let Some(action) = action {
                    if !data.is_empty() {
                        out.push(Escaped::Send(std::mem::take(&mut data)));
                    }
                    out.push(action);
                    // ssh treats the line as still at its start after an escape.
                    self.at_line_start = true;
                    continue;
                }
                if byte == self.escape {
                    data.push(byte);
                    self.at_line_start = false;
                    continue;
                }
                data.push(self.escape);
            } else if self.at_line_start && byte == self.escape {
                self.pending_escape = true;
                continue;
            }
            data.push(byte);
            self.at_line_start = byte == b'\r' || byte == b'\n';
        }
        if !data.is_empty() {
            out.push(Escaped::Send(data));
        }
        out
    }
}

/// Printed for `~?`, with CR LF because the terminal is raw.
pub(crate) const HELP: &str = "\r\nSupported escape sequences:\r\n \
    ~.   - terminate the session\r\n \
    ~^Z  - suspend postern\r\n \
    ~?   - this message\r\n \
    ~~   - send the escape character by typing it twice\r\n\
    (Note that escapes are only recognized immediately after newline.)\r\n";

const CTRL_Z: u8 = 0x1a;

#[cfg(test)]
mod tests {
    use super::*;

    fn run(input: &[&[u8]]) -> Vec<Escaped> {
        let mut f = EscapeFilter::new(b'~');
        input.iter().flat_map(|chunk| f.filter(chunk)).collect()
    }

    #[test]
    fn tilde_dot_at_start_disconnects() {
        assert_eq!(run(&[b"~."]), vec![Escaped::Disconnect]);
    }

    #[test]
    fn tilde_dot_after_carriage_return_disconnects_after_sending_the_line() {
        assert_eq!(
            run(&[b"ls\r~."]),
            vec![Escaped::Send(b"ls\r".to_vec()), Escaped::Disconnect]
        );
    }

    #[test]
    fn tilde_inside_a_line_passes_through() {
        assert_eq!(run(&[b"a~.b"]), vec![Escaped::Send(b"a~.b".to_vec())]);
    }

    #[test]
    fn escape_split_across_reads_is_recognised() {
        assert_eq!(
            run(&[b"x\r", b"~", b"?"]),
            vec![Escaped::Send(b"x\r".to_vec()), Escaped::Help]
        );
    }

    #[test]
    fn double_tilde_sends_one() {
        assert_eq!(run(&[b"~~x"]), vec![Escaped::Send(b"~x".to_vec())]);
    }

    #[test]
    fn unknown_escape_sends_both_bytes() {
        assert_eq!(run(&[b"~x"]), vec![Escaped::Send(b"~x".to_vec())]);
    }

    #[test]
    fn control_characters_pass_through() {
        assert_eq!(
            run(&[b"\x03\x1c\x1a"]),
            vec![Escaped::Send(b"\x03\x1c\x1a".to_vec())]
        );
    }

    #[test]
    fn ctrl_z_after_tilde_suspends() {
        assert_eq!(run(&[b"~\x1a"]), vec![Escaped::Suspend]);
    }
}
