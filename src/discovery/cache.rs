//! The local index cache: every scope's listing with the time it was listed, in one file
//! (`index.snapshot` in the user's cache directory, format in [`crate::discovery::snapshot`]),
//! read once per command and decoded on every core; rewritten atomically under a lock, so two
//! postern processes listing different scopes keep both.

use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::discovery::instance::{Instance, Scope};
use crate::discovery::snapshot::Snapshot;

/// The cache under one directory.
#[derive(Clone, Debug)]
pub struct Cache {
    root: PathBuf,
}

/// One scope's cached listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CacheEntry {
    /// When the scope was listed, seconds since the Unix epoch.
    pub fetched_at: u64,
    /// The scope.
    pub scope: Scope,
    /// Its instances.
    pub instances: Vec<Instance>,
}

/// The cache file as read once: which scopes it holds and when each was listed; their
/// instances are decoded when asked for.
#[derive(Debug, Default)]
pub struct CachedIndex {
    snapshot: Snapshot,
}

impl Cache {
    /// A cache under `root` (created on first write).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// Reads the cache file; a missing, unreadable, corrupt or other-version file is an
    /// empty cache (its scopes are listed again).
    pub fn read(&self) -> CachedIndex {
        let path = self.path();
        // Trusted only while private: an index someone else wrote could place a prod instance
        // in a dev account.
        let bytes = match crate::private_file::read_private(&path) {
            Ok(Some(bytes)) => bytes,
            Ok(None) => return CachedIndex::default(),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "could not read the index cache");
                return CachedIndex::default();
            }
        };
        match Snapshot::parse(bytes) {
            Ok(snapshot) => CachedIndex { snapshot },
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "ignoring the index cache");
                CachedIndex::default()
            }
        }
    }

    /// The cached listing of `scope`, if any and readable.
    pub fn load(&self, scope: &Scope) -> Option<CacheEntry> {
        self.read().entries(std::slice::from_ref(scope)).pop()?
    }

    /// Stores the listing of `scope`, taken at `fetched_at`.
    pub fn store(
        &self,
        scope: &Scope,
        instances: &[Instance],
        fetched_at: SystemTime,
    ) -> io::Result<()> {
        self.store_all(&[(scope.clone(), instances.to_vec())], fetched_at)
    }

    /// Stores the listings of several scopes, taken at `fetched_at`, in one rewrite of the
    /// file (the other scopes' listings are kept as they are).
    pub fn store_all(
        &self,
        listings: &[(Scope, Vec<Instance>)],
        fetched_at: SystemTime,
    ) -> io::Result<()> {
        let replaced: Vec<(&Scope, &[Instance])> = listings
            .iter()
            .map(|(scope, rows)| (scope, rows.as_slice()))
            .collect();
        let path = self.path();
        crate::private_file::update_private(&path, |current| {
            let current = current
                .and_then(|bytes| Snapshot::parse(bytes).ok())
                .unwrap_or_default();
            current.with(&replaced, unix_seconds(fetched_at))
        })
    }

    /// Every readable cached listing, whatever its scope and age (for shell completion).
    pub fn all(&self) -> Vec<CacheEntry> {
        let cached = self.read();
        let scopes: Vec<Scope> = cached.snapshot.scopes().map(|(s, _)| s.clone()).collect();
        let mut entries: Vec<CacheEntry> = cached.entries(&scopes).into_iter().flatten().collect();
        entries.sort_by(|a, b| a.scope.cmp(&b.scope));
        entries
    }

    /// The cache file.
    pub fn path(&self) -> PathBuf {
        self.root.join(FILE)
    }

    /// The directory.
    pub fn root(&self) -> &Path {
        &self.root
    }
}

impl CachedIndex {
    /// The cached listing of each of `scopes` (`None`: not cached, or its block is corrupt),
    /// decoded on every core when there are several.
    pub fn entries(&self, scopes: &[Scope]) -> Vec<Option<CacheEntry>> {
        let decode = |scope: &Scope| {
            let position = self.snapshot.position(scope)?;
            let fetched_at = self.snapshot.scopes().nth(position)?.1;
            match self.snapshot.instances(position) {
                Ok(instances) => Some(CacheEntry {
                    fetched_at,
                    scope: scope.clone(),
                    instances,
                }),
                Err(e) => {
                    tracing::warn!(%scope, error = %e, "ignoring a corrupt cached listing");
                    None
                }
            }
        };
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        if threads < 2 || scopes.len() < 2 {
            return scopes.iter().map(decode).collect();
        }
        // Contiguous chunks keep the order; scopes are about the same size.
        let chunk = scopes.len().div_ceil(threads);
        std::thread::scope(|s| {
            let parts: Vec<_> = scopes
                .chunks(chunk)
                .map(|part| s.spawn(move || part.iter().map(decode).collect::<Vec<_>>()))
                .collect();
            parts
                .into_iter()
                .flat_map(|part| part.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                .collect()
        })
    }

    /// The instances of each of `scopes` whose listing is at most `max_age` old at `now`
    /// (`None`: missing or too old), decoded on every core.
    pub fn fresh(
        &self,
        scopes: &[Scope],
        now: SystemTime,
        max_age: Duration,
    ) -> Vec<Option<Vec<Instance>>> {
        let now = unix_seconds(now);
        let young: Vec<Scope> = scopes
            .iter()
            .filter(|scope| {
                self.snapshot
                    .scopes()
                    .any(|(s, at)| s == *scope && now.saturating_sub(at) <= max_age.as_secs())
            })
            .cloned()
            .collect();
        let mut decoded = young.iter().zip(self.entries(&young));
        let mut next = decoded.next();
        scopes
            .iter()
            .map(|scope| match &mut next {
                Some((young, entry)) if *young == scope => {
                    let instances = entry.take().map(|e| e.instances);
                    next = decoded.next();
                    instances
                }
                _ => None,
            })
            .collect()
    }
}

impl CacheEntry {
    /// How long ago the listing was taken (zero if the clock went back).
    pub fn age(&self, now: SystemTime) -> Duration {
        Duration::from_secs(unix_seconds(now).saturating_sub(self.fetched_at))
    }
}

fn unix_seconds(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// The cache file's name in the cache directory (the per-scope JSON files of earlier
/// versions, under `index/`, are no longer read).
const FILE: &str = "index.snapshot";

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
        assert_eq!(cache.path(), dir.path().join("index.snapshot"));
    }

    #[test]
    fn a_corrupt_file_counts_as_absent_and_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(dir.path());
        std::fs::write(cache.path(), b"{not a snapshot").unwrap();
        assert!(cache.load(&scope()).is_none());
        cache.store(&scope(), &[], SystemTime::now()).unwrap();
        assert_eq!(cache.load(&scope()).unwrap().instances, []);
    }

    #[test]
    fn storing_scopes_keeps_the_others_and_fresh_skips_old_ones() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(dir.path());
        let other = Scope {
            region: "us-east-1".into(),
            ..scope()
        };
        let row = |id: &str| Instance {
            id: id.into(),
            ..Instance::default()
        };
        let now = UNIX_EPOCH + Duration::from_secs(10_000);
        cache
            .store(&other, &[row("i-old")], now - Duration::from_secs(3_600))
            .unwrap();
        cache.store(&scope(), &[row("i-new")], now).unwrap();
        let listed: Vec<_> = cache.all().into_iter().map(|e| e.scope).collect();
        assert_eq!(listed, [scope(), other.clone()]);
        let fresh = cache
            .read()
            .fresh(&[other, scope()], now, Duration::from_secs(60));
        assert_eq!(fresh, [None, Some(vec![row("i-new")])]);
    }
}
