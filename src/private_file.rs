//! The one way postern writes a file: private, atomic, and never through someone else's path.
//!
//! Every file postern writes (credentials cache, last-success times, index cache, frecency,
//! accounts file, the demo's configuration) goes through [`write_private`], and every
//! read-modify-write through [`update_private`]:
//! - the directory is created 0700, and refused when it is a symlink or owned by another user
//!   (someone who controls the directory controls what postern reads back);
//! - an existing target that is a symlink or owned by another user is refused too;
//! - the bytes go to a new 0600 temporary file beside the target (`tempfile`: a random name
//!   opened with `O_CREAT|O_EXCL`, so never an existing file or link), which is synced and
//!   renamed over the target: a reader sees the old file or the new one, never half of either;
//! - [`update_private`] holds an exclusive lock (`flock` on a `.lock` sibling) across the read
//!   and the write, so two postern processes (or two tasks) cannot lose each other's updates.
//!
//! The append-only files (the session history, log files) cannot be renamed into place; they
//! are opened with [`open_private_append`]: the same directory checks, `O_NOFOLLOW`, 0600.
//! What postern reads back (cached credentials and index) goes through [`read_private`] (the
//! index through [`map_private`], which maps it instead of copying it),
//! which trusts only a file and directory that are still private.

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Writes `bytes` to `path` atomically, readable by its owner only, creating its directory
/// (0700) when missing.
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = parent(path);
    create_private_dir(&dir)?;
    check_target(path)?;
    replace(&dir, path, bytes)
}

/// Writes `bytes` to a new 0600 temporary file in `dir`, syncs it and renames it over `path`
/// (the directory and target already checked).
fn replace(dir: &Path, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut file = tempfile::Builder::new()
        .prefix(&temporary_prefix(std::process::id()))
        .suffix(TEMPORARY_SUFFIX)
        .permissions(std::fs::Permissions::from_mode(0o600))
        .tempfile_in(dir)?;
    file.write_all(bytes)?;
    file.as_file().sync_all()?;
    file.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// Removes the temporary files that writers which died before their rename (SIGKILL, a crash)
/// left in `dir`: each names its writer's pid, and only those of processes that no longer
/// exist, and that are ours, are removed. Returns how many.
pub fn remove_dead_writers_temporaries(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(temporary_writer) else {
            continue;
        };
        let alive = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None)
            .map_or_else(|e| e != nix::errno::Errno::ESRCH, |()| true);
        let ours = entry
            .metadata()
            .is_ok_and(|meta| meta.is_file() && meta.uid() == effective_uid());
        if !alive && ours && std::fs::remove_file(entry.path()).is_ok() {
            removed += 1;
        }
    }
    removed
}

/// `.postern-PID-`: a temporary file's name says which process writes it.
fn temporary_prefix(pid: u32) -> String {
    format!(".postern-{pid}-")
}

/// The writer's pid of a temporary file's name, if it is one.
fn temporary_writer(name: &str) -> Option<i32> {
    let rest = name
        .strip_prefix(".postern-")?
        .strip_suffix(TEMPORARY_SUFFIX)?;
    let (pid, _random) = rest.split_once('-')?;
    pid.parse().ok().filter(|pid| *pid > 0)
}

const TEMPORARY_SUFFIX: &str = ".tmp";

/// Reads `path` (`None` when missing), lets `update` compute the new content, and writes it
/// with [`write_private`], all under an exclusive lock that other postern processes share.
pub fn update_private(
    path: &Path,
    update: impl FnOnce(Option<Vec<u8>>) -> Vec<u8>,
) -> std::io::Result<()> {
    let dir = parent(path);
    create_private_dir(&dir)?;
    let lock = lock_file(path)?;
    lock.lock()?;
    check_target(path)?;
    let current = match std::fs::read(path) {
        Ok(bytes) => Some(bytes),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e),
    };
    let result = replace(&dir, path, &update(current));
    // Dropping the file releases the lock; unlock first to say so.
    let _ = lock.unlock();
    result
}

/// Opens `path` for appending, creating it 0600 (and its directory 0700); refuses a symlink
/// or a file or directory owned by another user, and tightens a file left wider open.
pub fn open_private_append(path: &Path) -> std::io::Result<File> {
    create_private_dir(&parent(path))?;
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(|e| {
            if e.raw_os_error() == Some(libc::ELOOP) {
                refused(path, "is a symbolic link")
            } else {
                e
            }
        })?;
    let meta = file.metadata()?;
    if meta.uid() != effective_uid() {
        return Err(refused(path, "is owned by another user"));
    }
    if meta.mode() & 0o077 != 0 {
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(file)
}

/// Creates `dir` and its missing parents with mode 0700, then checks that `dir` itself is a
/// real directory (not a symlink) owned by this user. An existing directory keeps its mode.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    check_private_dir(dir)
}

/// Checks that the existing `dir` is a real directory (not a symlink) owned by this user that
/// no one else may write to.
pub fn check_private_dir(dir: &Path) -> std::io::Result<()> {
    let meta = std::fs::symlink_metadata(dir)?;
    if meta.file_type().is_symlink() {
        return Err(refused(dir, "is a symbolic link"));
    }
    if !meta.is_dir() {
        return Err(refused(dir, "is not a directory"));
    }
    if meta.uid() != effective_uid() {
        return Err(refused(dir, "is owned by another user"));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(refused(dir, "is writable by other users"));
    }
    Ok(())
}

/// Reads a file postern wrote, trusting it only when it is still private: `None` when it (or
/// its directory) is missing; an error when the file or its directory is a symlink, owned by
/// another user, or writable by others, since someone else could then have written it (an
/// index that places a prod instance in a dev account, planted credentials).
pub fn read_private(path: &Path) -> std::io::Result<Option<Vec<u8>>> {
    let Some((mut file, length)) = open_private(path)? else {
        return Ok(None);
    };
    let mut bytes = Vec::with_capacity(length);
    std::io::Read::read_to_end(&mut file, &mut bytes)?;
    Ok(Some(bytes))
}

/// [`read_private`] without copying: the file mapped into memory (only the pages read are
/// loaded), under the same checks. Only for files postern replaces by renaming a new one into
/// place ([`update_private`], [`write_private`]), never by writing into them.
pub fn map_private(path: &Path) -> std::io::Result<Option<memmap2::Mmap>> {
    let Some((file, _)) = open_private(path)? else {
        return Ok(None);
    };
    // SAFETY: the mapping is read-only, and postern never writes into this file: a writer
    // renames a complete new file over it, so the mapped inode keeps its contents. Only a
    // process of the same user truncating it in place could change them under us, and that
    // user can already write anything into the cache.
    let map = unsafe { memmap2::Mmap::map(&file) }?;
    Ok(Some(map))
}

/// The file at `path` opened for reading, and its length, when it and its directory are
/// private (see [`read_private`]).
fn open_private(path: &Path) -> std::io::Result<Option<(File, usize)>> {
    match check_private_dir(&parent(path)) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    }
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path);
    let file = match file {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Err(refused(path, "is a symbolic link"));
        }
        Err(e) => return Err(e),
    };
    let meta = file.metadata()?;
    if meta.uid() != effective_uid() {
        return Err(refused(path, "is owned by another user"));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(refused(path, "is writable by other users"));
    }
    if !meta.is_file() {
        return Err(refused(path, "is not a regular file"));
    }
    Ok(Some((file, usize::try_from(meta.len()).unwrap_or(0))))
}

/// An existing target must be a regular file of ours.
fn check_target(path: &Path) -> std::io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => Err(refused(path, "is a symbolic link")),
        Ok(meta) if meta.uid() != effective_uid() => Err(refused(path, "is owned by another user")),
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

fn lock_file(path: &Path) -> std::io::Result<File> {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".lock");
    let lock_path = parent(path).join(name);
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&lock_path)
}

fn parent(path: &Path) -> PathBuf {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
        _ => PathBuf::from("."),
    }
}

fn refused(path: &Path, why: &str) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::PermissionDenied,
        format!(
            "{} {why}: postern keeps its files private and will not use it; remove it or point \
             postern elsewhere (POSTERN_CACHE_DIR, POSTERN_STATE_DIR)",
            path.display()
        ),
    )
}

/// The user postern runs as (its effective uid): whose files it trusts.
pub fn effective_uid() -> u32 {
    nix::unistd::geteuid().as_raw()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn writes_private_files_in_private_directories() {
        let root = tempfile::tempdir().unwrap();
        let path = root.path().join("a/b/file.json");
        write_private(&path, b"one").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"one");
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(&root.path().join("a/b")), 0o700);
        assert_eq!(mode(&root.path().join("a")), 0o700);
    }

    #[test]
    fn replaces_a_file_whole_and_leaves_no_temporary_behind() {
        let root = tempfile::tempdir().unwrap();
        let path = root.path().join("file");
        std::fs::write(&path, b"an older, longer, world-readable file").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        write_private(&path, b"new").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        assert_eq!(mode(&path), 0o600);
        let names: Vec<_> = std::fs::read_dir(root.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["file"]);
    }

    #[test]
    fn refuses_a_symlinked_directory_or_file() {
        let root = tempfile::tempdir().unwrap();
        let elsewhere = root.path().join("elsewhere");
        std::fs::create_dir(&elsewhere).unwrap();
        let link = root.path().join("cache");
        std::os::unix::fs::symlink(&elsewhere, &link).unwrap();
        let err = write_private(&link.join("f"), b"x").unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::PermissionDenied);
        assert!(err.to_string().contains("symbolic link"), "{err}");
        assert!(!elsewhere.join("f").exists());

        let target = root.path().join("target");
        std::fs::write(&target, b"keep").unwrap();
        let file_link = root.path().join("f");
        std::os::unix::fs::symlink(&target, &file_link).unwrap();
        assert!(write_private(&file_link, b"x").is_err());
        assert!(open_private_append(&file_link).is_err());
        assert_eq!(std::fs::read(&target).unwrap(), b"keep");
    }

    #[test]
    fn refuses_a_directory_or_file_owned_by_another_user() {
        let root = tempfile::tempdir().unwrap();
        let theirs = root.path().join("theirs");
        std::fs::create_dir(&theirs).unwrap();
        let file = root.path().join("their-file");
        std::fs::write(&file, b"keep").unwrap();
        // As root, hand them to `nobody`; as anyone else, `/` is already someone else's.
        let (dir, file) = if effective_uid() == 0 {
            let nobody = Some(nix::unistd::Uid::from_raw(65534));
            nix::unistd::chown(&theirs, nobody, None).unwrap();
            nix::unistd::chown(&file, nobody, None).unwrap();
            (theirs, file)
        } else {
            (PathBuf::from("/"), PathBuf::from("/etc/hostname"))
        };
        let err = write_private(&dir.join("postern-test-file"), b"x").unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::PermissionDenied);
        assert!(err.to_string().contains("owned by another user"), "{err}");
        assert!(!dir.join("postern-test-file").exists());
        let err = open_private_append(&file).unwrap_err();
        assert!(err.to_string().contains("owned by another user"), "{err}");
        assert!(write_private(&file, b"x").is_err());
    }

    #[test]
    fn reads_only_files_that_are_still_private() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("cache");
        let path = dir.join("index");
        assert_eq!(read_private(&path).unwrap(), None, "missing directory");
        write_private(&path, b"ours").unwrap();
        assert_eq!(read_private(&path).unwrap().as_deref(), Some(&b"ours"[..]));

        // Writable by others: anyone could have written it.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
        let err = read_private(&path).unwrap_err();
        assert!(err.to_string().contains("writable by other users"), "{err}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        assert!(read_private(&path).is_err());
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();

        // Reached through a symlink, the directory or the file.
        let link = root.path().join("link");
        std::os::unix::fs::symlink(&dir, &link).unwrap();
        let err = read_private(&link.join("index")).unwrap_err();
        assert!(err.to_string().contains("symbolic link"), "{err}");
        let file_link = dir.join("file-link");
        std::os::unix::fs::symlink(&path, &file_link).unwrap();
        let err = read_private(&file_link).unwrap_err();
        assert!(err.to_string().contains("symbolic link"), "{err}");
    }

    #[test]
    fn maps_only_files_that_are_still_private_and_regular() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("cache");
        let path = dir.join("index");
        assert!(map_private(&path).unwrap().is_none(), "missing directory");
        write_private(&path, b"ours").unwrap();
        assert_eq!(&map_private(&path).unwrap().unwrap()[..], b"ours");
        // A mapping keeps the file it was made of: a rewrite renames a new one into place.
        let before = map_private(&path).unwrap().unwrap();
        write_private(&path, b"theirs").unwrap();
        assert_eq!(&before[..], b"ours");
        assert_eq!(&map_private(&path).unwrap().unwrap()[..], b"theirs");

        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
        let err = map_private(&path).unwrap_err();
        assert!(err.to_string().contains("writable by other users"), "{err}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let file_link = dir.join("file-link");
        std::os::unix::fs::symlink(&path, &file_link).unwrap();
        let err = map_private(&file_link).unwrap_err();
        assert!(err.to_string().contains("symbolic link"), "{err}");
        let subdir = dir.join("subdir");
        std::fs::create_dir(&subdir).unwrap();
        let err = map_private(&subdir).unwrap_err();
        assert!(err.to_string().contains("not a regular file"), "{err}");
    }

    #[test]
    fn temporaries_of_dead_writers_are_removed_and_live_ones_kept() {
        let root = tempfile::tempdir().unwrap();
        // A child that exits at once: its pid names a process that is gone.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        let dead_file = root.path().join(format!(
            "{}abc123{TEMPORARY_SUFFIX}",
            temporary_prefix(dead)
        ));
        let live_file = root.path().join(format!(
            "{}def456{TEMPORARY_SUFFIX}",
            temporary_prefix(std::process::id())
        ));
        let other = root.path().join("state.json");
        for path in [&dead_file, &live_file, &other] {
            std::fs::write(path, b"x").unwrap();
        }
        assert_eq!(remove_dead_writers_temporaries(root.path()), 1);
        assert!(!dead_file.exists());
        assert!(live_file.exists() && other.exists());
        assert_eq!(temporary_writer(".postern-12-x.tmp"), Some(12));
        assert_eq!(temporary_writer(".postern-x.tmp"), None);
        assert_eq!(temporary_writer("state.json"), None);
    }

    #[test]
    fn concurrent_updates_are_never_lost() {
        let root = tempfile::tempdir().unwrap();
        let path = root.path().join("counter");
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let path = path.clone();
                std::thread::spawn(move || {
                    for _ in 0..25 {
                        update_private(&path, |old| {
                            let n: u32 = old
                                .map(|b| String::from_utf8(b).unwrap().parse().unwrap())
                                .unwrap_or(0);
                            (n + 1).to_string().into_bytes()
                        })
                        .unwrap();
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "200");
    }

    #[test]
    fn appends_privately_and_tightens_a_wide_open_file() {
        let root = tempfile::tempdir().unwrap();
        let path = root.path().join("state/log");
        let mut file = open_private_append(&path).unwrap();
        file.write_all(b"a\n").unwrap();
        drop(file);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let mut file = open_private_append(&path).unwrap();
        file.write_all(b"b\n").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"a\nb\n");
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(&root.path().join("state")), 0o700);
    }
}
