//! The audit trail: one JSON line per session command (shell, exec, forward, ssh, plugin) in a
//! local history file, and reading it back for `postern history`.
//!
//! A record holds who (the caller's ARN and account, when STS told us), where (region,
//! instance), what (kind, document, reason, session ids), when and for how long, and the exit
//! status. It never holds a secret: no token, stream URL or credential is ever given to it.
//! The file is created 0600 in a 0700 directory and only appended to, one `write` per line.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Write};

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

/// One session command, as recorded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    /// When the command started, RFC 3339 UTC with seconds.
    pub time: String,
    /// `shell`, `exec`, `forward`, `ssh` or `plugin`.
    pub kind: String,
    /// The caller's ARN (STS GetCallerIdentity), when known.
    pub identity: Option<String>,
    /// The account the session ran in, when known.
    pub account: Option<String>,
    /// The region.
    pub region: Option<String>,
    /// The AWS profile, when one was named.
    pub profile: Option<String>,
    /// The instance (or other SSM target).
    pub target: String,
    /// The session document, when not the default shell.
    pub document: Option<String>,
    /// The sessions the command opened, in order (a forward may open several).
    pub session_ids: Vec<String>,
    /// The StartSession reason.
    pub reason: Option<String>,
    /// Wall-clock duration in milliseconds.
    pub duration_ms: u64,
    /// The process's exit status.
    pub exit_status: u8,
}

/// Where the history lives (see [`crate::paths::history_file`]).
pub fn default_path() -> Option<PathBuf> {
    crate::paths::history_file()
}

/// Appends `record` to the file at `path`, creating it (0600) and its directory (0700).
pub fn append(path: &Path, record: &SessionRecord) -> io::Result<()> {
    let mut line = serde_json::to_vec(record).map_err(io::Error::other)?;
    line.push(b'\n');
    // 0600 in a 0700 directory of ours, never through a symlink; a file created by an older
    // postern or by hand and left wider open is tightened.
    let mut file = crate::private_file::open_private_append(path)?;
    // One write per line: with O_APPEND concurrent postern processes never interleave lines.
    file.write_all(&line)
}

/// The last `limit` records of the file at `path`, oldest first, and how many lines were not
/// records (damaged or from an unknown format). A missing file is an empty history.
pub fn read_last(path: &Path, limit: usize) -> io::Result<(Vec<SessionRecord>, usize)> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((Vec::new(), 0)),
        Err(e) => return Err(e),
    };
    let mut records = std::collections::VecDeque::new();
    let mut skipped = 0;
    for line in BufReader::new(file).lines() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<SessionRecord>(&line) {
            Ok(record) => {
                records.push_back(record);
                if records.len() > limit {
                    records.pop_front();
                }
            }
            Err(_) => skipped += 1,
        }
    }
    Ok((records.into(), skipped))
}

/// Notes that this process opened session `session_id` (called where sessions start: the
/// shell driver, forward and ssh-proxy connectors, plugin mode). The command line reads the
/// list back with [`take_sessions`] when it writes the record.
pub fn note_session(session_id: &str) {
    let mut started = STARTED.lock().unwrap_or_else(|p| p.into_inner());
    if started.len() < MAX_NOTED && !started.iter().any(|s| s == session_id) {
        started.push(session_id.to_owned());
    }
}

/// The sessions noted so far, in order; clears the list.
pub fn take_sessions() -> Vec<String> {
    std::mem::take(&mut *STARTED.lock().unwrap_or_else(|p| p.into_inner()))
}

/// Notes that this process's session runs through `document`, not the one its command line
/// implies (`postern exec` through `Postern-Command`). Read back with [`take_document`].
pub fn note_document(document: &str) {
    *DOCUMENT.lock().unwrap_or_else(|p| p.into_inner()) = Some(document.to_owned());
}

/// The document noted by [`note_document`], if any; clears it.
pub fn take_document() -> Option<String> {
    DOCUMENT.lock().unwrap_or_else(|p| p.into_inner()).take()
}

static DOCUMENT: Mutex<Option<String>> = Mutex::new(None);

/// `time` as RFC 3339 UTC with seconds (`2026-12-01T21:30:00Z`).
pub fn format_time(time: SystemTime) -> String {
    humantime::format_rfc3339_seconds(time).to_string()
}

/// `duration` in milliseconds, saturating.
pub fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

static STARTED: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Session ids kept per record: a long-running forward reopening sessions must not grow
/// without bound.
const MAX_NOTED: usize = 64;

#[cfg(test)]
mod tests {
    use std::fs::{self, OpenOptions};
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn record(n: u8) -> SessionRecord {
        SessionRecord {
            time: "2026-12-01T21:30:00Z".to_owned(),
            kind: "shell".to_owned(),
            identity: Some("arn:aws:iam::123456789012:user/dev".to_owned()),
            account: Some("123456789012".to_owned()),
            region: Some("us-east-1".to_owned()),
            profile: None,
            target: "i-0123456789abcdef0".to_owned(),
            document: None,
            session_ids: vec![format!("dev-{n}")],
            reason: Some("ticket 7".to_owned()),
            duration_ms: 1500,
            exit_status: n,
        }
    }

    #[test]
    fn appends_private_lines_and_reads_the_last_ones_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state").join("history.jsonl");
        for n in 0..5 {
            append(&path, &record(n)).unwrap();
        }
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let dir_mode = fs::metadata(path.parent().unwrap())
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(dir_mode, 0o700);
        let (last, skipped) = read_last(&path, 2).unwrap();
        assert_eq!(skipped, 0);
        assert_eq!(last, vec![record(3), record(4)]);
    }

    #[test]
    fn damaged_lines_are_counted_not_fatal_and_a_missing_file_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("history.jsonl");
        assert_eq!(read_last(&path, 10).unwrap(), (Vec::new(), 0));
        append(&path, &record(1)).unwrap();
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(b"{not json\n\n").unwrap();
        append(&path, &record(2)).unwrap();
        let (all, skipped) = read_last(&path, 10).unwrap();
        assert_eq!(all, vec![record(1), record(2)]);
        assert_eq!(skipped, 1);
    }

    #[test]
    fn a_wider_file_is_tightened_to_0600() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("history.jsonl");
        fs::write(&path, "").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        append(&path, &record(0)).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn noted_sessions_are_unique_and_taken_once() {
        note_session("a-1");
        note_session("a-1");
        note_session("a-2");
        let ours = |list: Vec<String>| -> Vec<String> {
            list.into_iter().filter(|s| s.starts_with("a-")).collect()
        };
        assert_eq!(ours(take_sessions()), ["a-1", "a-2"]);
        note_session("a-3");
        assert_eq!(ours(take_sessions()), ["a-3"]);
    }
}
