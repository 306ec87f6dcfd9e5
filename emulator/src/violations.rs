//! The violations log: one JSON line per client deviation, and counts by kind for the final
//! summary and for tests. Protocol-level deviations come from the agent-role `Session`
//! (`Event::Violation`); driver-level ones (token reuse, a bad open frame) from the emulator.
//!
//! It never records tokens or payload bytes, only what kind of mistake was made and where.

use std::collections::BTreeMap;
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::error::EmulatorError;

/// Deviations the emulator itself detects, outside the protocol core.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ViolationKind {
    /// A token was presented a second time.
    TokenReuse,
    /// A token that was never issued, or issued for another session.
    UnknownToken,
    /// The first frame was not a text frame holding a valid OpenDataChannelInput.
    BadOpenFrame,
    /// A text frame after the open frame (everything after it must be binary).
    UnexpectedTextFrame,
    /// A binary frame the codec rejected (bad digest, lengths, unknown types).
    MalformedMessage,
}

impl ViolationKind {
    /// The name used in the log and in counts.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TokenReuse => "token_reuse",
            Self::UnknownToken => "unknown_token",
            Self::BadOpenFrame => "bad_open_frame",
            Self::UnexpectedTextFrame => "unexpected_text_frame",
            Self::MalformedMessage => "malformed_message",
        }
    }
}

impl fmt::Display for ViolationKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Violation counts by kind name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ViolationCounts(BTreeMap<String, u64>);

impl ViolationCounts {
    /// Total over all kinds.
    pub fn total(&self) -> u64 {
        self.0.values().sum()
    }

    /// The count of one kind (0 when never seen).
    pub fn get(&self, kind: &str) -> u64 {
        self.0.get(kind).copied().unwrap_or(0)
    }

    /// Kinds seen, with their counts, in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, u64)> {
        self.0.iter().map(|(kind, count)| (kind.as_str(), *count))
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for ViolationCounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("no client violations");
        }
        write!(f, "{} client violations:", self.total())?;
        for (kind, count) in &self.0 {
            write!(f, " {kind}={count}")?;
        }
        Ok(())
    }
}

/// Where a violation happened.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Place<'a> {
    pub(crate) session_id: &'a str,
    pub(crate) target: &'a str,
}

/// Shared by every session of one emulator.
#[derive(Debug)]
pub(crate) struct ViolationLog {
    state: Mutex<LogState>,
}

#[derive(Debug)]
struct LogState {
    counts: ViolationCounts,
    file: Option<BufWriter<File>>,
}

#[derive(Serialize)]
struct Line<'a> {
    time_ms: u128,
    session_id: &'a str,
    target: &'a str,
    kind: &'a str,
    detail: &'a str,
}

impl ViolationLog {
    /// A log appending to `path`, or counting only.
    pub(crate) fn open(path: Option<&Path>) -> Result<Self, EmulatorError> {
        let file = path
            .map(|path| {
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map(BufWriter::new)
                    .map_err(|source| EmulatorError::ViolationsLog {
                        path: path.to_owned(),
                        source,
                    })
            })
            .transpose()?;
        Ok(Self {
            state: Mutex::new(LogState {
                counts: ViolationCounts::default(),
                file,
            }),
        })
    }

    /// Records one violation. `detail` must hold no token or payload bytes.
    pub(crate) fn record(&self, place: Place<'_>, kind: &str, detail: &str) {
        tracing::warn!(
            session_id = place.session_id,
            kind,
            detail,
            "client violation"
        );
        let time_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or_default();
        let line = Line {
            time_ms,
            session_id: place.session_id,
            target: place.target,
            kind,
            detail,
        };
        let mut state = self.lock();
        *state.counts.0.entry(kind.to_owned()).or_default() += 1;
        if let Some(file) = state.file.as_mut() {
            // A failing log write must not take a session down; the count still records it.
            let written = serde_json::to_writer(&mut *file, &line)
                .map_err(std::io::Error::from)
                .and_then(|()| file.write_all(b"\n"))
                .and_then(|()| file.flush());
            if let Err(err) = written {
                tracing::warn!(%err, "cannot write the violations log");
            }
        }
    }

    /// Records a driver-level violation.
    pub(crate) fn record_kind(&self, place: Place<'_>, kind: ViolationKind, detail: &str) {
        self.record(place, kind.as_str(), detail);
    }

    /// Counts so far.
    pub(crate) fn counts(&self) -> ViolationCounts {
        self.lock().counts.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LogState> {
        // A panic while holding the lock leaves counts valid (each update is one statement).
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PLACE: Place<'static> = Place {
        session_id: "emulator-0001",
        target: "i-0a1b2c3d4e5f60718",
    };

    #[test]
    fn counts_by_kind_and_writes_one_line_each() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("violations.jsonl");
        let log = ViolationLog::open(Some(&path)).unwrap();
        log.record(PLACE, "bad_digest", "seq 3");
        log.record(PLACE, "bad_digest", "seq 4");
        log.record_kind(PLACE, ViolationKind::TokenReuse, "second open");
        let counts = log.counts();
        assert_eq!(counts.get("bad_digest"), 2);
        assert_eq!(counts.get("token_reuse"), 1);
        assert_eq!(counts.total(), 3);
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[2]["kind"], "token_reuse");
        assert_eq!(lines[0]["session_id"], "emulator-0001");
    }

    #[test]
    fn summary_lists_kinds() {
        let log = ViolationLog::open(None).unwrap();
        assert_eq!(log.counts().to_string(), "no client violations");
        log.record(PLACE, "no_ack", "");
        assert_eq!(log.counts().to_string(), "1 client violations: no_ack=1");
    }
}
