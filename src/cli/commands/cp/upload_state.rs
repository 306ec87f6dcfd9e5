//! `--resume` for uploads: while an upload runs, a small JSON record in postern's state
//! directory (`cp-uploads/`, written atomically, 0600 in a 0700 directory) names the remote
//! temporary file and the ranges already written and verified there (their SHA-256 read back
//! on the instance). It is updated as each range is verified, so it survives a killed postern
//! too; a success, a refusal or a signal removes it. A later `--resume` of the same local file
//! (same path, size and modification time) to the same target and path sends only the other
//! ranges; the whole file's SHA-256 is still compared before the rename.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::cli::commands::cp::ranges::Range;

/// Where one upload's record lives, and what it must match.
#[derive(Debug)]
pub(crate) struct UploadState {
    path: PathBuf,
    key: Key,
    record: Mutex<Option<Record>>,
}

/// What identifies an upload: the same local file to the same place.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Key {
    target: String,
    remote: String,
    local: PathBuf,
    size: u64,
    mtime: Option<u64>,
}

/// An upload in progress.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Record {
    key: Key,
    /// The destination on the instance.
    dest: String,
    /// The temporary file beside it holding the verified ranges.
    temp: String,
    /// Every range, as `(offset, len)`.
    ranges: Vec<(u64, u64)>,
    /// The offsets of the ranges written and verified.
    done: Vec<u64>,
}

/// A recorded upload `--resume` may continue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Resumable {
    /// The destination on the instance.
    pub(crate) dest: String,
    /// Its temporary file.
    pub(crate) temp: String,
    /// Every range.
    pub(crate) ranges: Vec<Range>,
    /// The ranges already there, verified.
    pub(crate) done: Vec<Range>,
}

impl UploadState {
    /// The record of uploading `local` (`size` bytes, modified at `mtime`) to `target`'s
    /// `remote`; `None` without a state directory.
    pub(crate) fn new(
        target: &str,
        remote: &str,
        local: &Path,
        size: u64,
        mtime: Option<u64>,
    ) -> Option<Self> {
        let dir = crate::paths::state_dir()?.join(DIR);
        Some(Self::in_dir(&dir, target, remote, local, size, mtime))
    }

    fn in_dir(
        dir: &Path,
        target: &str,
        remote: &str,
        local: &Path,
        size: u64,
        mtime: Option<u64>,
    ) -> Self {
        let local = std::path::absolute(local).unwrap_or_else(|_| local.to_path_buf());
        let key = Key {
            target: target.to_owned(),
            remote: remote.to_owned(),
            local,
            size,
            mtime,
        };
        let name = hex::encode(&Sha256::digest(serde_json::to_vec(&key).unwrap_or_default())[..16]);
        Self {
            path: dir.join(format!("{name}.json")),
            key,
            record: Mutex::new(None),
        }
    }

    /// The recorded upload of this very file to this place, if any.
    pub(crate) fn load(&self) -> Option<Resumable> {
        let bytes = crate::private_file::read_private(&self.path).ok()??;
        let record: Record = serde_json::from_slice(&bytes).ok()?;
        if record.key != self.key {
            return None;
        }
        let ranges: Vec<Range> = record
            .ranges
            .iter()
            .map(|&(offset, len)| Range { offset, len })
            .collect();
        let done = ranges
            .iter()
            .copied()
            .filter(|r| record.done.contains(&r.offset))
            .collect();
        Some(Resumable {
            dest: record.dest,
            temp: record.temp,
            ranges,
            done,
        })
    }

    /// Starts recording an upload of `ranges` into `temp` (beside `dest`), `done` of them
    /// already there.
    pub(crate) fn begin(&self, dest: &str, temp: &str, ranges: &[Range], done: &[Range]) {
        let record = Record {
            key: self.key.clone(),
            dest: dest.to_owned(),
            temp: temp.to_owned(),
            ranges: ranges.iter().map(|r| (r.offset, r.len)).collect(),
            done: done.iter().map(|r| r.offset).collect(),
        };
        self.save(&record);
        *lock(&self.record) = Some(record);
    }

    /// Notes that `range` was written and verified.
    pub(crate) fn verified(&self, range: Range) {
        let mut guard = lock(&self.record);
        if let Some(record) = guard.as_mut() {
            record.done.push(range.offset);
            self.save(record);
        }
    }

    /// Whether a record is kept for `--resume`.
    pub(crate) fn kept(&self) -> bool {
        lock(&self.record).is_some() && self.path.is_file()
    }

    /// Removes the record (the upload succeeded, or cannot be resumed).
    pub(crate) fn remove(&self) {
        *lock(&self.record) = None;
        match std::fs::remove_file(&self.path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(error = %e, "could not remove the upload's record"),
        }
    }

    fn save(&self, record: &Record) {
        let written = serde_json::to_vec(record)
            .map_err(std::io::Error::other)
            .and_then(|bytes| crate::private_file::write_private(&self.path, &bytes));
        if let Err(e) = written {
            // Best effort: the upload goes on; only --resume would miss the record.
            tracing::warn!(error = %e, path = %self.path.display(), "could not record the upload's progress");
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A poisoned lock only means another holder panicked; the record is still usable.
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// The records' directory inside the state directory.
const DIR: &str = "cp-uploads";

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    #[test]
    fn a_record_matches_only_the_same_file_to_the_same_place() {
        let dir = tempfile::tempdir().unwrap();
        let states = dir.path().join("cp-uploads");
        let state = UploadState::in_dir(&states, "i-1", "/dst", Path::new("/src"), 10, Some(5));
        assert_eq!(state.load(), None);
        let ranges = [Range { offset: 0, len: 6 }, Range { offset: 6, len: 4 }];
        state.begin("/dst", "/.dst.postern-1", &ranges, &[]);
        state.verified(ranges[1]);
        assert!(state.kept());
        let mode = std::fs::metadata(&state.path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);

        let again = UploadState::in_dir(&states, "i-1", "/dst", Path::new("/src"), 10, Some(5));
        let resumable = again.load().unwrap();
        assert_eq!(resumable.temp, "/.dst.postern-1");
        assert_eq!(resumable.ranges, ranges);
        assert_eq!(resumable.done, vec![ranges[1]]);
        // Another modification time, target or path: not this upload.
        for other in [
            UploadState::in_dir(&states, "i-1", "/dst", Path::new("/src"), 10, Some(6)),
            UploadState::in_dir(&states, "i-2", "/dst", Path::new("/src"), 10, Some(5)),
            UploadState::in_dir(&states, "i-1", "/other", Path::new("/src"), 10, Some(5)),
        ] {
            assert_eq!(other.load(), None);
        }
        again.remove();
        assert_eq!(state.load(), None);
    }
}
