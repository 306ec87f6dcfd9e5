//! `--resume` for downloads: when a download fails after some ranges arrived, the partial file
//! is kept beside the destination (`.NAME.postern-partial`, 0600) with a small JSON record of
//! the remote file (path, size, SHA-256) and the ranges that arrived whole; a later run with
//! `--resume` against the same unchanged remote file fetches only the others. The end-to-end
//! SHA-256 still checks every byte before the rename.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::cli::commands::cp::ranges::Range;
use crate::cli::commands::cp::script::RemoteFile;

/// What a kept partial download holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Partial {
    remote: String,
    size: u64,
    sha256: String,
    /// Every range of the download, as `(offset, len)`.
    ranges: Vec<(u64, u64)>,
    /// The offsets of the ranges that arrived whole.
    done: Vec<u64>,
}

/// The partial file and its record for a download to `dir/name`.
pub(crate) fn paths(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    (
        dir.join(format!(".{name}.postern-partial")),
        dir.join(format!(".{name}.postern-partial.json")),
    )
}

/// `path`'s metadata when it is a regular file of this user, not a link: in a directory others
/// may write to (a shared download directory), a planted link or someone else's file is never
/// resumed, read or written through.
pub(crate) fn ours(path: &Path) -> Option<std::fs::Metadata> {
    std::fs::symlink_metadata(path)
        .ok()
        .filter(own_regular_file)
}

/// Opens a kept partial file for writing the missing ranges: never through a link, and only
/// while it is still a regular file of this user.
pub(crate) fn open_partial(path: &Path) -> std::io::Result<std::fs::File> {
    open_ours(path, true)
}

/// `path` opened without following a link, checked on the opened file itself (so it cannot
/// be swapped between the check and the use).
fn open_ours(path: &Path, write: bool) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(write)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?;
    if !own_regular_file(&file.metadata()?) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            "not a regular file of this user",
        ));
    }
    Ok(file)
}

fn own_regular_file(meta: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt as _;
    meta.file_type().is_file() && meta.uid() == crate::private_file::effective_uid()
}

impl Partial {
    /// A record of `ranges` of `file` at `remote`, `done` of them whole.
    pub(crate) fn new(remote: &str, file: &RemoteFile, ranges: &[Range], done: &[Range]) -> Self {
        Self {
            remote: remote.to_owned(),
            size: file.size,
            sha256: file.sha256.clone(),
            ranges: ranges.iter().map(|r| (r.offset, r.len)).collect(),
            done: done.iter().map(|r| r.offset).collect(),
        }
    }

    /// The record at `path` when it describes this very remote file and is ours; `None`
    /// otherwise.
    pub(crate) fn load(path: &Path, remote: &str, file: &RemoteFile) -> Option<Self> {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut open_ours(path, false).ok()?, &mut text).ok()?;
        let partial: Self = serde_json::from_str(&text).ok()?;
        (partial.remote == remote && partial.size == file.size && partial.sha256 == file.sha256)
            .then_some(partial)
    }

    /// Writes the record to `path` atomically (a 0600 temporary file beside it, synced and
    /// renamed), readable by its owner only, as the partial file.
    pub(crate) fn save(&self, path: &Path) -> std::io::Result<()> {
        use std::io::Write as _;
        use std::os::unix::fs::PermissionsExt as _;
        let text = serde_json::to_string(self).map_err(std::io::Error::other)?;
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let mut file = tempfile::Builder::new()
            .prefix(".postern-partial-")
            .permissions(std::fs::Permissions::from_mode(0o600))
            .tempfile_in(dir)?;
        file.write_all(text.as_bytes())?;
        file.as_file().sync_all()?;
        file.persist(path).map_err(|e| e.error)?;
        Ok(())
    }

    /// Every range.
    pub(crate) fn ranges(&self) -> Vec<Range> {
        self.ranges
            .iter()
            .map(|&(offset, len)| Range { offset, len })
            .collect()
    }

    /// Whether `range` arrived whole.
    pub(crate) fn has(&self, range: Range) -> bool {
        self.done.contains(&range.offset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_matches_only_the_same_remote_file() {
        let file = RemoteFile {
            size: 10,
            mode: 0o644,
            mtime: 0,
            sha256: "a".repeat(64),
        };
        let ranges = [Range { offset: 0, len: 6 }, Range { offset: 6, len: 4 }];
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        Partial::new("/f", &file, &ranges, &ranges[1..])
            .save(&path)
            .unwrap();
        let loaded = Partial::load(&path, "/f", &file).unwrap();
        assert_eq!(loaded.ranges(), ranges);
        assert!(!loaded.has(ranges[0]) && loaded.has(ranges[1]));
        assert!(Partial::load(&path, "/g", &file).is_none());
        let changed = RemoteFile {
            sha256: "b".repeat(64),
            ..file
        };
        assert!(Partial::load(&path, "/f", &changed).is_none());
    }

    #[test]
    fn links_are_never_resumed_or_written_through() {
        let file = RemoteFile {
            size: 10,
            mode: 0o644,
            mtime: 0,
            sha256: "a".repeat(64),
        };
        let ranges = [Range { offset: 0, len: 10 }];
        let dir = tempfile::tempdir().unwrap();
        let record = dir.path().join("real.json");
        Partial::new("/f", &file, &ranges, &[])
            .save(&record)
            .unwrap();
        let linked_record = dir.path().join("linked.json");
        std::os::unix::fs::symlink(&record, &linked_record).unwrap();
        assert!(Partial::load(&record, "/f", &file).is_some());
        assert!(Partial::load(&linked_record, "/f", &file).is_none());

        // Someone else's file behind a planted link keeps its bytes.
        let victim = dir.path().join("victim");
        std::fs::write(&victim, b"0123456789").unwrap();
        let partial = dir.path().join(".f.postern-partial");
        std::os::unix::fs::symlink(&victim, &partial).unwrap();
        assert!(ours(&partial).is_none());
        assert!(open_partial(&partial).is_err());
        assert!(ours(&victim).is_some());
        assert!(open_partial(&victim).is_ok());
        assert_eq!(std::fs::read(&victim).unwrap(), b"0123456789");
    }
}
