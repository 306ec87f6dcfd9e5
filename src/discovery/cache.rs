//! The local index cache: one JSON file per scope (`index/ACCOUNT/REGION.json` in the user's
//! cache directory) with the time it was listed, written atomically.

use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::discovery::instance::{Instance, Scope};

/// The cache under one directory.
#[derive(Clone, Debug)]
pub struct Cache {
    root: PathBuf,
}

/// One scope's cached listing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheEntry {
    /// Format version; other versions are ignored.
    pub version: u32,
    /// When the scope was listed, seconds since the Unix epoch.
    pub fetched_at: u64,
    /// The scope.
    pub scope: Scope,
    /// Its instances.
    pub instances: Vec<Instance>,
}

impl Cache {
    /// A cache under `root` (created on first write).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The cached listing of `scope`, if any and readable; a corrupt file counts as absent.
    pub fn load(&self, scope: &Scope) -> Option<CacheEntry> {
        let text = std::fs::read(self.path(scope)).ok()?;
        match serde_json::from_slice::<CacheEntry>(&text) {
            Ok(entry) if entry.version == FORMAT_VERSION && entry.scope == *scope => Some(entry),
            Ok(_) => None,
            Err(e) => {
                tracing::warn!(path = %self.path(scope).display(), error = %e, "ignoring a corrupt cache file");
                None
            }
        }
    }

    /// Stores the listing of `scope`, taken at `fetched_at`.
    pub fn store(
        &self,
        scope: &Scope,
        instances: &[Instance],
        fetched_at: SystemTime,
    ) -> io::Result<()> {
        let path = self.path(scope);
        let entry = CacheEntryRef {
            version: FORMAT_VERSION,
            fetched_at: unix_seconds(fetched_at),
            scope,
            instances,
        };
        let text = serde_json::to_vec(&entry).map_err(io::Error::other)?;
        crate::private_file::write_private(&path, &text)
    }

    /// Every readable cached listing, whatever its scope and age (for shell completion).
    pub fn all(&self) -> Vec<CacheEntry> {
        let Ok(accounts) = std::fs::read_dir(self.root.join("index")) else {
            return Vec::new();
        };
        let mut entries = Vec::new();
        for account in accounts.flatten() {
            let Ok(files) = std::fs::read_dir(account.path()) else {
                continue;
            };
            for file in files.flatten() {
                let path = file.path();
                if path.extension().is_none_or(|e| e != "json") {
                    continue;
                }
                let entry = std::fs::read(&path)
                    .ok()
                    .and_then(|text| serde_json::from_slice::<CacheEntry>(&text).ok())
                    .filter(|entry| entry.version == FORMAT_VERSION);
                entries.extend(entry);
            }
        }
        entries.sort_by(|a, b| a.scope.cmp(&b.scope));
        entries
    }

    /// The file of `scope`.
    pub fn path(&self, scope: &Scope) -> PathBuf {
        self.root
            .join("index")
            .join(sanitize(&scope.account))
            .join(format!("{}.json", sanitize(&scope.region)))
    }

    /// The directory.
    pub fn root(&self) -> &Path {
        &self.root
    }
}

impl CacheEntry {
    /// How long ago the listing was taken (zero if the clock went back).
    pub fn age(&self, now: SystemTime) -> Duration {
        Duration::from_secs(unix_seconds(now).saturating_sub(self.fetched_at))
    }
}

#[derive(Serialize)]
struct CacheEntryRef<'a> {
    version: u32,
    fetched_at: u64,
    scope: &'a Scope,
    instances: &'a [Instance],
}

fn unix_seconds(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Keeps file names to `[A-Za-z0-9._-]`, so a profile name cannot leave the cache directory.
fn sanitize(raw: &str) -> String {
    let clean: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if clean.is_empty() {
        "_".to_owned()
    } else {
        clean
    }
}

const FORMAT_VERSION: u32 = 1;

#[cfg(test)]
mod tests {
    use super::*;

    fn scope() -> Scope {
        Scope {
            account: "../evil profile".into(),
            alias: "dev".into(),
            env: None,
            region: "eu-west-1".into(),
        }
    }

    #[test]
    fn round_trips_with_its_timestamp() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(dir.path());
        assert!(cache.load(&scope()).is_none());
        let rows = vec![Instance {
            id: "i-1".into(),
            name: "web".into(),
            ..Instance::default()
        }];
        let at = UNIX_EPOCH + Duration::from_secs(1_000);
        cache.store(&scope(), &rows, at).unwrap();
        let entry = cache.load(&scope()).unwrap();
        assert_eq!(entry.instances, rows);
        assert_eq!(entry.fetched_at, 1_000);
        assert_eq!(
            entry.age(at + Duration::from_secs(90)),
            Duration::from_secs(90)
        );
        assert!(cache.path(&scope()).starts_with(dir.path().join("index")));
        assert_eq!(cache.path(&scope()).file_name().unwrap(), "eu-west-1.json");
    }

    #[test]
    fn a_corrupt_file_counts_as_absent() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(dir.path());
        let path = cache.path(&scope());
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, b"{not json").unwrap();
        assert!(cache.load(&scope()).is_none());
    }
}
