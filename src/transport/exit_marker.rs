//! The in-band exit status of `postern exec` over AWS-StartInteractiveCommand, which has no
//! exit-status message (SPEC.md §8.4). Documented in `docs/design/exec-exit-status.md`.
//!
//! The command is wrapped in a small POSIX sh script. Once the terminal is set up (echo off) it
//! prints the public ready record `postern-exit-r;`; postern answers with the session's secret
//! on a line of its own, which the script reads into a shell variable. The secret therefore
//! never appears in a command line, where any local user of the instance could read it in
//! `/proc` and forge an exit status. The script then prints the unguessable marker `<M>` (the
//! fixed prefix and the secret) twice: `<M>s;` (postern then sends the window size and one
//! newline that the script's `read` consumes, so the command starts with the right size and
//! with any piped input after it), and `<M>x<status>;` when the command has ended, with
//! `printf`, a shell builtin. The scanner removes exactly those three records from the output
//! stream and nothing else; the ready record counts only once, before the start record.

use std::fmt::Write as _;

/// A per-session marker. `Debug` shows nothing of the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct ExitMarker {
    /// The 128 random bits, hex encoded.
    secret: String,
}

impl std::fmt::Debug for ExitMarker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ExitMarker(<redacted>)")
    }
}

/// What a chunk of output turned into, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Marked {
    /// Command output, unchanged.
    Data(Vec<u8>),
    /// The wrapper's terminal is set up: it waits for the secret line ([`MarkerScanner::secret_line`]).
    Ready,
    /// The wrapper is ready for the size and the start newline.
    Started,
    /// The command ended with this status.
    Exited(i32),
}

/// Finds and removes the marker records in an output stream split at arbitrary points.
/// `Debug` shows nothing of the marker.
#[derive(Clone)]
pub struct MarkerScanner {
    marker: Vec<u8>,
    held: Vec<u8>,
    /// The ready record was seen (or the start record: the ready record is over).
    ready_seen: bool,
}

impl std::fmt::Debug for MarkerScanner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MarkerScanner")
            .field("held", &self.held.len())
            .field("ready_seen", &self.ready_seen)
            .finish_non_exhaustive()
    }
}

impl ExitMarker {
    /// A marker from 16 random bytes (the caller supplies OS randomness).
    pub fn new(random: [u8; 16]) -> Self {
        let mut secret = String::with_capacity(32);
        for byte in random {
            // Writing to a String cannot fail.
            let _ = write!(secret, "{byte:02x}");
        }
        Self { secret }
    }

    /// The remote command line for `command` (a shell command line, run by `sh -c` as ssh
    /// runs its command). `tty`: keep the terminal's echo and output processing for an
    /// interactive user; otherwise turn echo and output processing off so output is byte-exact.
    pub fn wrap(&self, command: &str, tty: bool) -> String {
        self.wrap_with(command, tty, false)
    }

    /// [`ExitMarker::wrap`] without a terminal, for input piped to `postern exec`: the command
    /// reads it from a decoder (`sed` up to the end line, `base64 -d`) fed with the
    /// [`Base64Lines`](crate::transport::Base64Lines) postern sends, not from the terminal,
    /// which would act on its control bytes (Ctrl-C kills the command, Ctrl-D ends a read, CR
    /// becomes NL). The command sees end of file after the last byte, as through ssh.
    pub fn wrap_with_piped_input(&self, command: &str) -> String {
        self.wrap_with(command, false, true)
    }

    fn wrap_with(&self, command: &str, tty: bool, piped_input: bool) -> String {
        let quoted = shell_quote(command);
        let prefix = PREFIX;
        let setup = if tty {
            "__postern_tty=$(stty -g 2>/dev/null); stty -echo 2>/dev/null; "
        } else {
            "stty -echo -opost 2>/dev/null; "
        };
        let restore = if tty {
            "[ -n \"$__postern_tty\" ] && stty \"$__postern_tty\" 2>/dev/null; "
        } else {
            ""
        };
        let run =
            format!("sh -c {quoted}; printf '%s%s%s%d;' '{prefix}' \"$__postern_m\" 'x' \"$?\"");
        // With piped input the command and its exit record are the pipeline's right-hand
        // side: the record follows the command's end, not the decoder's, which waits for input
        // that may never come (`sleep 600 | postern exec … -- true`).
        let run = if piped_input {
            format!(
                "{{ sed -n '/^{}$/q;p' | base64 -d; }} | {{ {run}; }}",
                crate::transport::stdin_lines::END_LINE_PATTERN
            )
        } else {
            run
        };
        format!(
            "{setup}printf '%s%s' '{prefix}' '{READY}'; IFS= read -r __postern_m; \
             printf '%s%s%s' '{prefix}' \"$__postern_m\" 's;'; IFS= read -r _; {restore}{run}"
        )
    }

    /// A scanner for this marker.
    pub fn scanner(&self) -> MarkerScanner {
        MarkerScanner {
            marker: format!("{PREFIX}{}", self.secret).into_bytes(),
            held: Vec::new(),
            ready_seen: false,
        }
    }
}

impl MarkerScanner {
    /// The line answering the ready record: the secret and a newline, for the wrapper's `read`.
    pub fn secret_line(&self) -> Vec<u8> {
        let mut line = self.marker[PREFIX.len()..].to_vec();
        line.push(b'\n');
        line
    }

    /// Feeds output; returns data with the records removed, and the records found.
    pub fn feed(&mut self, data: &[u8]) -> Vec<Marked> {
        self.held.extend_from_slice(data);
        let mut out = Vec::new();
        let mut emit = Vec::new();
        if !self.ready_seen {
            let ready = format!("{PREFIX}{READY}").into_bytes();
            match find(&self.held, &ready) {
                Some(at) => {
                    emit.extend(self.held.drain(..at));
                    self.held.drain(..ready.len());
                    self.ready_seen = true;
                    if !emit.is_empty() {
                        out.push(Marked::Data(std::mem::take(&mut emit)));
                    }
                    out.push(Marked::Ready);
                }
                None => {
                    // Nothing precedes the ready record but what the shell's setup printed;
                    // hold what could still begin it.
                    let keep = partial_suffix(&self.held, &ready);
                    let cut = self.held.len() - keep;
                    if cut > 0 {
                        out.push(Marked::Data(self.held.drain(..cut).collect()));
                    }
                    return out;
                }
            }
        }
        loop {
            let Some(at) = find(&self.held, &self.marker) else {
                // Keep the longest tail that could begin a marker.
                let keep = partial_suffix(&self.held, &self.marker);
                let cut = self.held.len() - keep;
                emit.extend(self.held.drain(..cut));
                break;
            };
            emit.extend(self.held.drain(..at));
            match parse_record(&self.held[self.marker.len()..]) {
                Record::Incomplete => break,
                Record::Malformed => {
                    // Not one of ours after all: pass the marker bytes through.
                    emit.extend(self.held.drain(..self.marker.len()));
                }
                Record::Found(marked, len) => {
                    self.held.drain(..self.marker.len() + len);
                    if !emit.is_empty() {
                        out.push(Marked::Data(std::mem::take(&mut emit)));
                    }
                    out.push(marked);
                }
            }
        }
        if !emit.is_empty() {
            out.push(Marked::Data(emit));
        }
        out
    }

    /// Output held back because it might have begun a marker; call when the stream ends.
    pub fn finish(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.held)
    }
}

/// Single-quotes `s` for POSIX sh.
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

enum Record {
    Incomplete,
    Malformed,
    Found(Marked, usize),
}

fn parse_record(rest: &[u8]) -> Record {
    match rest.first() {
        None => Record::Incomplete,
        Some(b's') => match rest.get(1) {
            None => Record::Incomplete,
            Some(b';') => Record::Found(Marked::Started, 2),
            Some(_) => Record::Malformed,
        },
        Some(b'x') => {
            let digits = &rest[1..];
            for (i, &b) in digits.iter().enumerate() {
                if b == b';' {
                    let text = std::str::from_utf8(&digits[..i]).unwrap_or_default();
                    return match text.parse::<i32>() {
                        Ok(code) => Record::Found(Marked::Exited(code), i + 2),
                        Err(_) => Record::Malformed,
                    };
                }
                if !(b.is_ascii_digit() || (i == 0 && b == b'-')) || i >= MAX_STATUS_DIGITS {
                    return Record::Malformed;
                }
            }
            Record::Incomplete
        }
        Some(_) => Record::Malformed,
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Length of the longest suffix of `data` that is a proper prefix of `marker`.
fn partial_suffix(data: &[u8], marker: &[u8]) -> usize {
    let max = (marker.len() - 1).min(data.len());
    (1..=max)
        .rev()
        .find(|&n| data[data.len() - n..] == marker[..n])
        .unwrap_or(0)
}

/// The marker's fixed half; the other half is 32 random hex digits.
const PREFIX: &str = "postern-exit-";
/// The ready record's tail (after [`PREFIX`]): public, carries no secret.
const READY: &str = "r;";
const MAX_STATUS_DIGITS: usize = 11;

#[cfg(test)]
mod tests {
    use super::*;

    fn marker() -> ExitMarker {
        ExitMarker::new([0xab; 16])
    }

    fn collect(chunks: &[&[u8]]) -> (Vec<u8>, Vec<Marked>) {
        let mut scanner = marker().scanner();
        let mut data = Vec::new();
        let mut records = Vec::new();
        for chunk in chunks {
            for m in scanner.feed(chunk) {
                match m {
                    Marked::Data(d) => data.extend(d),
                    other => records.push(other),
                }
            }
        }
        data.extend(scanner.finish());
        (data, records)
    }

    fn record(kind: &str) -> Vec<u8> {
        format!("{PREFIX}{}{kind}", "ab".repeat(16)).into_bytes()
    }

    #[test]
    fn the_secret_is_never_in_the_command_line_nor_in_debug_output() {
        let marker = marker();
        let secret = "ab".repeat(16);
        let wrapped = marker.wrap("uptime", false);
        assert!(!wrapped.contains(&secret), "{wrapped}");
        assert!(!format!("{marker:?}").contains(&secret));
        let scanner = marker.scanner();
        assert!(!format!("{scanner:?}").contains(&secret));
        assert_eq!(scanner.secret_line(), format!("{secret}\n").into_bytes());
    }

    #[test]
    fn piped_input_is_decoded_for_the_command_alone() {
        let marker = marker();
        let wrapped = marker.wrap_with_piped_input("wc -c");
        assert!(!wrapped.contains(&"ab".repeat(16)), "{wrapped}");
        // The secret and start lines are read by the wrapper first; the decoder feeds only the
        // command, whose status is the pipeline's.
        let decoder =
            wrapped.find("{ sed -n '/^\\.$/q;p' | base64 -d; } | { sh -c 'wc -c'; printf ");
        assert!(
            decoder.is_some_and(|at| at > wrapped.rfind("IFS= read -r _;").unwrap()),
            "{wrapped}"
        );
        assert!(wrapped.starts_with("stty -echo -opost"), "{wrapped}");
    }

    #[test]
    fn the_ready_record_counts_once_and_only_before_the_start() {
        let mut stream = format!("{PREFIX}{READY}").into_bytes();
        stream.extend(record("s;"));
        // The command prints the public ready record: plain output now.
        stream.extend(format!("out {PREFIX}{READY} put").as_bytes());
        stream.extend(record("x0;"));
        let (data, records) = collect(&[&stream]);
        assert_eq!(data, format!("out {PREFIX}{READY} put").into_bytes());
        assert_eq!(
            records,
            vec![Marked::Ready, Marked::Started, Marked::Exited(0)]
        );
    }

    #[test]
    fn strips_start_and_exit_records_exactly() {
        let mut stream = format!("{PREFIX}{READY}").into_bytes();
        stream.extend(record("s;"));
        stream.extend(b"hello\r\nno newline");
        stream.extend(record("x42;"));
        let (data, records) = collect(&[&stream]);
        assert_eq!(data, b"hello\r\nno newline");
        assert_eq!(
            records,
            vec![Marked::Ready, Marked::Started, Marked::Exited(42)]
        );
    }

    #[test]
    fn finds_records_split_at_every_byte() {
        let mut stream = b"ab".to_vec();
        stream.extend(format!("{PREFIX}{READY}").as_bytes());
        stream.extend(record("s;"));
        stream.extend(b"\x00\x01binary\xff");
        stream.extend(record("x0;"));
        stream.extend(b"tail");
        let chunks: Vec<&[u8]> = stream.chunks(1).collect();
        let (data, records) = collect(&chunks);
        assert_eq!(data, b"ab\x00\x01binary\xfftail");
        assert_eq!(
            records,
            vec![Marked::Ready, Marked::Started, Marked::Exited(0)]
        );
    }

    #[test]
    fn a_partial_marker_at_the_end_is_flushed_unchanged() {
        let mut stream = b"x".to_vec();
        stream.extend(&record("")[..10]);
        let (data, records) = collect(&[&stream]);
        assert_eq!(data, stream);
        assert!(records.is_empty());
    }

    #[test]
    fn a_malformed_record_passes_through() {
        let mut stream = record("q;");
        stream.extend(b"z");
        let (data, records) = collect(&[&stream]);
        assert_eq!(data, stream);
        assert!(records.is_empty());
    }

    #[test]
    fn another_sessions_marker_is_not_ours() {
        let other = ExitMarker::new([0xcd; 16]);
        let mut scanner = marker().scanner();
        let text = format!("{PREFIX}{}x1;", other.secret);
        let out = scanner.feed(text.as_bytes());
        let mut data: Vec<u8> = out
            .into_iter()
            .flat_map(|m| match m {
                Marked::Data(d) => d,
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        data.extend(scanner.finish());
        assert_eq!(data, text.as_bytes());
    }

    #[test]
    fn wrapper_never_contains_the_marker_contiguously() {
        let m = marker();
        let wrapped = m.wrap("echo hi", false);
        let contiguous = format!("{PREFIX}{}", m.secret);
        assert!(!wrapped.contains(&contiguous));
        assert!(wrapped.contains("sh -c 'echo hi'"));
    }

    #[test]
    fn quotes_single_quotes() {
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
    }
}
