//! Where the instances' output goes. One printer thread owns stdout and stderr, so lines of
//! different instances never interleave mid-line and a slow reader of stdout slows the
//! sessions (through a bounded queue) instead of filling memory. Each running instance's
//! output arrives through a small pipe and is either split into lines with the instance's name
//! in front (`NAME │ line`), or collected, up to a cap, for one block or one JSON object when
//! the instance ends.
//!
//! Names came from AWS and are escaped. On a terminal the output itself is escaped too: lines
//! of many instances share the screen, and one instance's control sequences must not repaint
//! another's lines. Piped, output stays byte for byte.

use std::io::{self, Write as _};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::Serialize;
use tokio::io::{AsyncRead, AsyncReadExt as _};
use tokio::sync::mpsc;

use crate::cli::commands::exec_many::summary::Outcome;
use crate::discovery::Instance;
use crate::picker::fit_cell;
use crate::term::{escape, escape_text, paint_nth};

/// Owns the standard streams while instances run.
pub(crate) struct Printer {
    tx: mpsc::Sender<Print>,
    thread: std::thread::JoinHandle<()>,
    stdout_closed: Arc<AtomicBool>,
}

/// A cheap handle to queue output for the printer.
#[derive(Clone, Debug)]
pub(crate) struct PrintHandle {
    tx: mpsc::Sender<Print>,
}

#[derive(Debug)]
enum Print {
    Out(Vec<u8>),
    Err(Vec<u8>),
}

impl Printer {
    /// Starts the printer thread.
    pub(crate) fn start() -> io::Result<Self> {
        let (tx, mut rx) = mpsc::channel::<Print>(PRINT_QUEUE);
        let stdout_closed = Arc::new(AtomicBool::new(false));
        let closed = Arc::clone(&stdout_closed);
        let thread = std::thread::Builder::new()
            .name("postern-printer".to_owned())
            .spawn(move || {
                while let Some(print) = rx.blocking_recv() {
                    match print {
                        Print::Out(bytes) => {
                            if closed.load(Ordering::Relaxed) {
                                continue;
                            }
                            let mut out = io::stdout().lock();
                            if let Err(e) = out.write_all(&bytes).and_then(|()| out.flush()) {
                                if e.kind() == io::ErrorKind::BrokenPipe {
                                    closed.store(true, Ordering::Relaxed);
                                } else {
                                    tracing::warn!(error = %e, "could not write to stdout");
                                }
                            }
                        }
                        Print::Err(bytes) => {
                            let mut err = io::stderr().lock();
                            // If stderr itself is gone there is nobody left to tell.
                            let _ = err.write_all(&bytes).and_then(|()| err.flush());
                        }
                    }
                }
            })?;
        Ok(Self {
            tx,
            thread,
            stdout_closed,
        })
    }

    /// A handle for the instances' tasks.
    pub(crate) fn handle(&self) -> PrintHandle {
        PrintHandle {
            tx: self.tx.clone(),
        }
    }

    /// Waits until everything queued is written (every handle must be gone); whether stdout
    /// was closed on the way (a pipe into `head`).
    pub(crate) async fn finish(self) -> bool {
        drop(self.tx);
        let thread = self.thread;
        // The thread ends once the last handle is dropped and the queue is drained.
        let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        self.stdout_closed.load(Ordering::Relaxed)
    }
}

impl PrintHandle {
    /// Queues bytes for stdout, waiting while the queue is full.
    pub(crate) async fn out(&self, bytes: Vec<u8>) {
        let _ = self.tx.send(Print::Out(bytes)).await;
    }

    /// Queues bytes for stderr, waiting while the queue is full.
    pub(crate) async fn err(&self, bytes: Vec<u8>) {
        let _ = self.tx.send(Print::Err(bytes)).await;
    }
}

/// How output is shown on this run's stdout.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Look {
    /// stdout is a terminal: escape instance output.
    pub(crate) tty: bool,
    /// Colour each instance's name.
    pub(crate) colour: bool,
    /// Width names are padded (or cut) to.
    pub(crate) width: usize,
}

impl Look {
    /// The `NAME │ ` in front of each line of the `n`th instance: padded, escaped, coloured
    /// on a terminal.
    pub(crate) fn prefix(&self, label: &str, n: usize) -> Vec<u8> {
        let name = fit_cell(&escape(label), self.width);
        let name = if self.colour {
            paint_nth(&name, n)
        } else {
            name
        };
        format!("{name} {SEPARATOR} ").into_bytes()
    }

    /// One line of output after `prefix`, ending in a newline: escaped on a terminal (a
    /// trailing carriage return dropped), else as it came.
    pub(crate) fn line(&self, prefix: &[u8], line: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(prefix.len() + line.len() + 1);
        out.extend_from_slice(prefix);
        if self.tty {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            out.extend_from_slice(escape(&String::from_utf8_lossy(line)).as_bytes());
        } else {
            out.extend_from_slice(line);
        }
        out.push(b'\n');
        out
    }

    /// The block `--group` prints for an instance that ended: a header line, then its output
    /// (stdout, then stderr), ending in a newline.
    pub(crate) fn block(&self, header: &str, n: usize, captured: &Captured) -> Vec<u8> {
        let header = escape(header);
        let header = if self.colour {
            paint_nth(&format!("{BLOCK_MARK} {header}"), n)
        } else {
            format!("{BLOCK_MARK} {header}")
        };
        let mut out = header.into_bytes();
        out.push(b'\n');
        for stream in [&captured.stdout, &captured.stderr] {
            if stream.is_empty() {
                continue;
            }
            if self.tty {
                let text = String::from_utf8_lossy(stream).replace("\r\n", "\n");
                out.extend_from_slice(escape_text(&text).as_bytes());
            } else {
                out.extend_from_slice(stream);
            }
            if !out.ends_with(b"\n") {
                out.push(b'\n');
            }
        }
        if captured.truncated {
            out.extend_from_slice(TRUNCATED_NOTE.as_bytes());
        }
        out
    }
}

/// The names shown for `instances`: the Name tag, `NAME@ALIAS` when two accounts have the
/// same name, the instance id when there is no name or it is still ambiguous. Unescaped.
pub(crate) fn labels(instances: &[Instance]) -> Vec<String> {
    use std::collections::HashMap;
    let mut names: HashMap<&str, usize> = HashMap::new();
    for i in instances {
        *names.entry(i.name.as_str()).or_default() += 1;
    }
    let qualified: Vec<String> = instances
        .iter()
        .map(|i| match names.get(i.name.as_str()) {
            _ if i.name.is_empty() => i.id.clone(),
            Some(1) => i.name.clone(),
            _ => format!("{}@{}", i.name, i.alias),
        })
        .collect();
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for q in &qualified {
        *counts.entry(q.as_str()).or_default() += 1;
    }
    qualified
        .iter()
        .zip(instances)
        .map(|(q, i)| {
            if counts.get(q.as_str()).copied().unwrap_or(0) > 1 {
                i.id.clone()
            } else {
                q.clone()
            }
        })
        .collect()
}

/// The width names are padded to: the longest (as shown, escaped), at most [`MAX_LABEL`].
pub(crate) fn label_width(labels: &[String]) -> usize {
    labels
        .iter()
        .map(|l| escape(l).chars().count())
        .max()
        .unwrap_or(0)
        .min(MAX_LABEL)
}

/// An instance's output kept for `--group` and `--json`.
#[derive(Debug, Default)]
pub(crate) struct Captured {
    /// Remote stdout (with an interactive command, stdout and stderr merged).
    pub(crate) stdout: Vec<u8>,
    /// Remote stderr (documents with separate streams).
    pub(crate) stderr: Vec<u8>,
    /// Output beyond [`CAPTURE_LIMIT`] per stream was dropped.
    pub(crate) truncated: bool,
}

/// What becomes of an instance's output as it arrives.
#[derive(Debug)]
pub(crate) enum Sink {
    /// Lines to the printer as they complete.
    Lines {
        /// The printer.
        printer: PrintHandle,
        /// The instance's `NAME │ `.
        prefix: Vec<u8>,
        /// How lines look.
        look: Look,
    },
    /// Kept (up to the cap) until the instance ends.
    Capture,
}

/// Reads an instance's stdout and stderr pipes to their end into `sink`; the captured output
/// (empty for [`Sink::Lines`]).
pub(crate) async fn drain(
    mut stdout: impl AsyncRead + Unpin,
    mut stderr: impl AsyncRead + Unpin,
    sink: Sink,
) -> Captured {
    let mut captured = Captured::default();
    let mut lines = [LineSplitter::default(), LineSplitter::default()];
    let mut open = [true, true];
    let mut buf = [vec![0u8; READ_CHUNK], vec![0u8; READ_CHUNK]];
    while open[0] || open[1] {
        let [out_buf, err_buf] = &mut buf;
        let (which, read) = tokio::select! {
            n = stdout.read(out_buf), if open[0] => (0, n),
            n = stderr.read(err_buf), if open[1] => (1, n),
        };
        let n = match read {
            Ok(0) | Err(_) => {
                open[which] = false;
                0
            }
            Ok(n) => n,
        };
        let data = &buf[which][..n];
        match &sink {
            Sink::Lines {
                printer,
                prefix,
                look,
            } => {
                let mut complete = lines[which].push(data);
                if !open[which] {
                    complete.extend(lines[which].finish());
                }
                for line in complete {
                    let bytes = look.line(prefix, &line);
                    if which == 0 {
                        printer.out(bytes).await;
                    } else {
                        printer.err(bytes).await;
                    }
                }
            }
            Sink::Capture => {
                let kept = if which == 0 {
                    &mut captured.stdout
                } else {
                    &mut captured.stderr
                };
                let room = CAPTURE_LIMIT.saturating_sub(kept.len());
                if data.len() > room {
                    captured.truncated = true;
                }
                kept.extend_from_slice(&data[..data.len().min(room)]);
            }
        }
    }
    captured
}

/// Splits a byte stream into lines (without their newline); a line longer than
/// [`MAX_LINE`] is cut into pieces, so that nothing grows without bound.
#[derive(Debug, Default)]
struct LineSplitter {
    partial: Vec<u8>,
}

impl LineSplitter {
    /// The lines `data` completes.
    fn push(&mut self, mut data: &[u8]) -> Vec<Vec<u8>> {
        let mut lines = Vec::new();
        while let Some(end) = data.iter().position(|&b| b == b'\n') {
            self.partial.extend_from_slice(&data[..end]);
            lines.push(std::mem::take(&mut self.partial));
            data = &data[end + 1..];
        }
        self.partial.extend_from_slice(data);
        while self.partial.len() >= MAX_LINE {
            let rest = self.partial.split_off(MAX_LINE);
            lines.push(std::mem::replace(&mut self.partial, rest));
        }
        lines
    }

    /// The last line, when the stream did not end with a newline.
    fn finish(&mut self) -> Option<Vec<u8>> {
        (!self.partial.is_empty()).then(|| std::mem::take(&mut self.partial))
    }
}

/// One line of `--json`.
#[derive(Debug, Serialize)]
struct JsonRecord<'a> {
    instance: &'a str,
    name: &'a str,
    account: &'a str,
    alias: &'a str,
    region: &'a str,
    status: &'a str,
    exit_status: Option<i32>,
    duration_ms: u64,
    stdout: String,
    stderr: String,
    error: Option<&'a str>,
    truncated: bool,
}

/// The `--json` line of an instance that ended (output as UTF-8, invalid bytes replaced).
pub(crate) fn json_line(outcome: &Outcome, captured: &Captured) -> Vec<u8> {
    use crate::cli::commands::exec_many::summary::Status;
    let record = JsonRecord {
        instance: &outcome.id,
        name: &outcome.name,
        account: &outcome.account,
        alias: &outcome.alias,
        region: &outcome.region,
        status: outcome.status.word(),
        exit_status: match outcome.status {
            Status::Exited(s) => Some(s),
            _ => None,
        },
        duration_ms: crate::audit_trail::millis(outcome.duration),
        stdout: String::from_utf8_lossy(&captured.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&captured.stderr).into_owned(),
        error: outcome.status.error(),
        truncated: captured.truncated,
    };
    // Strings, numbers and options always serialize.
    let mut line = serde_json::to_vec(&record).expect("a record serializes to JSON");
    line.push(b'\n');
    line
}

/// Between the name and the line.
const SEPARATOR: &str = "│";
/// In front of a `--group` block's header.
const BLOCK_MARK: &str = "──";
/// After a block whose output was cut.
const TRUNCATED_NOTE: &str = "[postern: output cut: more than 1 MiB]\n";
/// Output kept per stream and instance for `--group` and `--json`.
pub(crate) const CAPTURE_LIMIT: usize = 1024 * 1024;
/// The longest line kept whole; longer ones are shown in pieces.
const MAX_LINE: usize = 64 * 1024;
/// The longest name shown in front of lines; longer ones are cut with `…`.
const MAX_LABEL: usize = 40;
/// Writes queued for the printer (each a line or a block).
const PRINT_QUEUE: usize = 256;
/// Bytes read from an instance's pipe at once.
const READ_CHUNK: usize = 8 * 1024;

#[cfg(test)]
mod tests {
    use super::*;

    fn instance(id: &str, name: &str, alias: &str) -> Instance {
        Instance {
            id: id.into(),
            name: name.into(),
            alias: alias.into(),
            ..Instance::default()
        }
    }

    #[test]
    fn labels_are_names_qualified_only_when_they_collide() {
        let instances = [
            instance("i-1", "web-1", "acme-dev"),
            instance("i-2", "web-1", "acme-prod"),
            instance("i-3", "", "acme-dev"),
            instance("i-4", "api", "acme-dev"),
            instance("i-5", "dup", "acme-dev"),
            instance("i-6", "dup", "acme-dev"),
        ];
        assert_eq!(
            labels(&instances),
            [
                "web-1@acme-dev",
                "web-1@acme-prod",
                "i-3",
                "api",
                "i-5",
                "i-6"
            ]
        );
    }

    #[test]
    fn lines_get_the_padded_escaped_name_and_only_a_terminal_escapes_the_output() {
        let look = Look {
            tty: false,
            colour: false,
            width: 8,
        };
        let prefix = look.prefix("web\x1b[2J", 0);
        assert_eq!(prefix, "web\\x1b… │ ".as_bytes());
        let prefix = look.prefix("web-1", 0);
        assert_eq!(
            look.line(&prefix, b"a\x07b\r"),
            b"web-1    \xe2\x94\x82 a\x07b\r\n"
        );
        let tty = Look { tty: true, ..look };
        assert_eq!(
            String::from_utf8(tty.line(&prefix, b"a\x1b[31mb\r")).unwrap(),
            "web-1    │ a\\x1b[31mb\n"
        );
        let coloured = Look {
            colour: true,
            ..tty
        };
        assert_ne!(coloured.prefix("web-1", 0), coloured.prefix("web-1", 1));
    }

    #[test]
    fn splits_lines_across_chunks_and_cuts_endless_ones() {
        let mut lines = LineSplitter::default();
        assert_eq!(lines.push(b"ab"), Vec::<Vec<u8>>::new());
        assert_eq!(
            lines.push(b"c\nd\n\ne"),
            vec![b"abc".to_vec(), b"d".to_vec(), vec![]]
        );
        assert_eq!(lines.finish(), Some(b"e".to_vec()));
        assert_eq!(lines.finish(), None);
        let long = vec![b'x'; MAX_LINE * 2 + 3];
        let pieces = lines.push(&long);
        assert_eq!(pieces.len(), 2);
        assert!(pieces.iter().all(|p| p.len() == MAX_LINE));
        assert_eq!(lines.finish(), Some(b"xxx".to_vec()));
    }

    #[tokio::test]
    async fn capture_keeps_at_most_the_limit_per_stream() {
        let big = vec![b'y'; CAPTURE_LIMIT + 10];
        let captured = drain(&big[..], &b"err"[..], Sink::Capture).await;
        assert_eq!(captured.stdout.len(), CAPTURE_LIMIT);
        assert_eq!(captured.stderr, b"err");
        assert!(captured.truncated);
    }

    #[test]
    fn blocks_have_a_header_and_end_in_a_newline() {
        let look = Look {
            tty: false,
            colour: false,
            width: 5,
        };
        let captured = Captured {
            stdout: b"one\ntwo".to_vec(),
            ..Captured::default()
        };
        assert_eq!(
            String::from_utf8(look.block(
                "web-1 (acme-dev, eu-west-1): exit status 0",
                0,
                &captured
            ))
            .unwrap(),
            "── web-1 (acme-dev, eu-west-1): exit status 0\none\ntwo\n"
        );
    }
}
