//! The tunnels directory (`tunnels/` in the private state directory): per tunnel a state file
//! (`NAME.json`, [`TunnelRecord`]), a lock file (`NAME.lock`) and, while another process asks
//! the supervisor to stop just that tunnel, a stop request (`NAME.stop`).
//!
//! A supervisor holds each of its tunnels' lock files with `flock` for as long as it serves
//! them ([`Registry::hold`]). The kernel releases a lock when its process dies, however it
//! dies: a state file whose lock is free belongs to a dead supervisor, whatever became of its
//! pid (a pid can be reused; a lock cannot outlive its holder). Lock files are removed only by
//! a process that holds them, and [`Registry::hold`] checks after locking that the file it
//! locked is still the one on disk, so a removal never lets two supervisors hold one name.
//!
//! Every file is written through [`crate::private_file`]: 0600 in a 0700 directory, atomic.

use std::fs::{File, OpenOptions, TryLockError};
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::private_file::{create_private_dir, write_private};
use crate::tunnel::TunnelRecord;

/// The tunnels directory.
#[derive(Clone, Debug)]
pub struct Registry {
    dir: PathBuf,
}

/// A tunnel's lock, held: proof that this process serves the tunnel. Dropping it releases the
/// lock (so does the process's death).
#[derive(Debug)]
pub struct Hold {
    name: String,
    /// The open lock file: the lock lasts as long as it stays open.
    _file: File,
}

impl Registry {
    /// The tunnels directory under `state_dir`.
    pub fn new(state_dir: &Path) -> Self {
        Self {
            dir: state_dir.join("tunnels"),
        }
    }

    /// The tunnels directory of this user ([`crate::paths::state_dir`]).
    pub fn default_location() -> Option<Self> {
        crate::paths::state_dir().map(|dir| Self::new(&dir))
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The log file of a supervisor whose first tunnel is `name`.
    pub fn log_path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.log"))
    }

    /// Takes `name`'s lock for this process; `None` when a live process holds it.
    pub fn hold(&self, name: &str) -> io::Result<Option<Hold>> {
        create_private_dir(&self.dir)?;
        let path = self.lock_path(name);
        loop {
            let file = OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&path)?;
            match file.try_lock() {
                Ok(()) => {}
                Err(TryLockError::WouldBlock) => return Ok(None),
                Err(TryLockError::Error(e)) => return Err(e),
            }
            // The holder before us may have removed the file between our open and our lock:
            // then we locked a file nobody else will ever open; take the one on disk.
            let ours = file.metadata()?;
            match std::fs::symlink_metadata(&path) {
                Ok(now) if now.ino() == ours.ino() && now.dev() == ours.dev() => {
                    return Ok(Some(Hold {
                        name: name.to_owned(),
                        _file: file,
                    }));
                }
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Whether a live process holds `name`'s lock.
    pub fn is_held(&self, name: &str) -> bool {
        let Ok(file) = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(self.lock_path(name))
        else {
            return false;
        };
        matches!(file.try_lock_shared(), Err(TryLockError::WouldBlock))
    }

    /// The state file of `name`, if there is a readable one.
    pub fn read(&self, name: &str) -> Option<TunnelRecord> {
        let bytes = std::fs::read(self.state_path(name)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Writes `record` as its tunnel's state file (atomically, 0600).
    pub fn write(&self, record: &TunnelRecord) -> io::Result<()> {
        // Serialising plain data cannot fail.
        let bytes = serde_json::to_vec_pretty(record).unwrap_or_default();
        write_private(&self.state_path(&record.name), &bytes)
    }

    /// The names of every tunnel with a state file, sorted.
    pub fn names(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut names: Vec<String> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                let stem = name.strip_suffix(".json")?;
                (!stem.starts_with('.')).then(|| stem.to_owned())
            })
            .collect();
        names.sort();
        names
    }

    /// Asks `name`'s supervisor to stop just that tunnel (it looks when signalled).
    pub fn request_stop(&self, name: &str) -> io::Result<()> {
        write_private(&self.stop_path(name), b"")
    }

    /// Whether someone asked for `name` to stop.
    pub fn stop_requested(&self, name: &str) -> bool {
        self.stop_path(name).exists()
    }

    /// Removes `name`'s files, its lock held by `hold`, then releases it.
    pub fn remove_held(&self, hold: Hold) {
        let name = hold.name.clone();
        self.remove_files(&name);
        drop(hold);
    }

    /// Removes the files of `name`, whose supervisor is gone; `false` (and nothing removed)
    /// when a live process holds its lock after all.
    pub fn remove_stale(&self, name: &str) -> bool {
        match self.hold(name) {
            Ok(Some(hold)) => {
                self.remove_held(hold);
                true
            }
            Ok(None) => false,
            // No lock file can be made: remove what is there.
            Err(_) => {
                self.remove_files(name);
                true
            }
        }
    }

    fn remove_files(&self, name: &str) {
        for path in [
            self.state_path(name),
            self.stop_path(name),
            self.lock_path(name),
        ] {
            let _ = std::fs::remove_file(path);
        }
        // A supervisor killed while rewriting its state leaves its temporary file behind.
        crate::private_file::remove_dead_writers_temporaries(&self.dir);
    }

    fn state_path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.json"))
    }

    fn lock_path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.lock"))
    }

    fn stop_path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.stop"))
    }
}

impl Hold {
    /// The tunnel.
    pub fn name(&self) -> &str {
        &self.name
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tunnel::TunnelState;

    fn record(name: &str) -> TunnelRecord {
        TunnelRecord {
            name: name.to_owned(),
            pid: std::process::id(),
            siblings: vec![name.to_owned()],
            target: "i-0123456789abcdef0".to_owned(),
            target_given: "web-1".to_owned(),
            account: None,
            region: None,
            listeners: Vec::new(),
            state: TunnelState::Ready,
            sessions: 1,
            connections: 0,
            bytes_up: 0,
            bytes_down: 0,
            since: 0,
            reconnects: 0,
            last_error: None,
            updated: 0,
            log: None,
        }
    }

    #[test]
    fn a_held_name_cannot_be_held_twice_and_is_free_once_dropped() {
        let root = tempfile::tempdir().unwrap();
        let registry = Registry::new(root.path());
        let hold = registry.hold("db").unwrap().expect("free");
        assert!(registry.is_held("db"));
        assert!(registry.hold("db").unwrap().is_none());
        assert!(
            !registry.remove_stale("db"),
            "a live holder keeps its files"
        );
        drop(hold);
        assert!(!registry.is_held("db"));
        assert!(registry.hold("db").unwrap().is_some());
    }

    #[test]
    fn state_files_are_private_and_stale_ones_are_removed() {
        use std::os::unix::fs::PermissionsExt;
        let root = tempfile::tempdir().unwrap();
        let registry = Registry::new(root.path());
        let hold = registry.hold("db").unwrap().unwrap();
        registry.write(&record("db")).unwrap();
        let mode = std::fs::metadata(registry.state_path("db"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(registry.read("db"), Some(record("db")));
        assert_eq!(registry.names(), ["db"]);
        drop(hold);
        assert!(registry.remove_stale("db"));
        assert_eq!(registry.names(), Vec::<String>::new());
        assert!(!registry.lock_path("db").exists());
    }
}
