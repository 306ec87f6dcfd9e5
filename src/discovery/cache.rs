//! The local index cache: every scope's listing with the time it was listed, in one file
//! (`index.snapshot` in the user's cache directory, format in [`crate::discovery::snapshot`]),
//! read once per command and decoded on every core; rewritten atomically under a lock, so two
//! postern processes listing different scopes keep both.

use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use std::sync::Arc;

use crate::discovery::indexed::{CachedInstance, Indexed};
use crate::discovery::instance::{Instance, Scope};
use crate::discovery::snapshot::{FormatError, Snapshot};

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
    snapshot: Arc<Snapshot>,
}

impl Cache {
    /// A cache under `root` (created on first write).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// Maps the cache file (only the pages read are loaded); a missing, unreadable, corrupt
    /// or other-version file is an empty cache (its scopes are listed again).
    pub fn read(&self) -> CachedIndex {
        let path = self.path();
        // Trusted only while private: an index someone else wrote could place a prod instance
        // in a dev account.
        let bytes = match crate::private_file::map_private(&path) {
            Ok(Some(bytes)) => bytes,
            Ok(None) => return CachedIndex::default(),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "could not read the index cache");
                return CachedIndex::default();
            }
        };
        match Snapshot::parse(bytes) {
            Ok(snapshot) => CachedIndex {
                snapshot: Arc::new(snapshot),
            },
            // Another postern version's file: expected after an upgrade, listed again.
            Err(e @ FormatError::Version { .. }) => {
                tracing::debug!(path = %path.display(), error = %e, "ignoring the index cache");
                CachedIndex::default()
            }
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
        on_every_core(scopes, |scope| {
            let position = self.snapshot.position(scope)?;
            let fetched_at = self.snapshot.scopes().nth(position)?.1;
            Some(CacheEntry {
                fetched_at,
                scope: scope.clone(),
                instances: self.decoded(scope, position)?,
            })
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
        let young = self.young(now, max_age);
        on_every_core(scopes, |scope| {
            let position = young(scope)?;
            self.decoded(scope, position)
        })
    }

    /// Like [`Self::fresh`], leaving the instances in the file: each is checked (on every
    /// core) and only the fields a row shows are read, when they are shown.
    pub fn fresh_in_place(
        &self,
        scopes: &[Scope],
        now: SystemTime,
        max_age: Duration,
    ) -> Vec<Option<Vec<Indexed>>> {
        let young = self.young(now, max_age);
        on_every_core(scopes, |scope| {
            let position = young(scope)?;
            match self.snapshot.records(position) {
                Ok(records) => Some(
                    records
                        .into_iter()
                        .map(|record| {
                            Indexed::Cached(CachedInstance::new(Arc::clone(&self.snapshot), record))
                        })
                        .collect(),
                ),
                Err(e) => {
                    tracing::warn!(%scope, error = %e, "ignoring a corrupt cached listing");
                    None
                }
            }
        })
    }

    /// Where the listing of a scope at most `max_age` old at `now` is.
    fn young(
        &self,
        now: SystemTime,
        max_age: Duration,
    ) -> impl Fn(&Scope) -> Option<usize> + Sync + '_ {
        let now = unix_seconds(now);
        move |scope| {
            let position = self.snapshot.position(scope)?;
            let (_, at) = self.snapshot.scopes().nth(position)?;
            (now.saturating_sub(at) <= max_age.as_secs()).then_some(position)
        }
    }

    fn decoded(&self, scope: &Scope, position: usize) -> Option<Vec<Instance>> {
        match self.snapshot.instances(position) {
            Ok(instances) => Some(instances),
            Err(e) => {
                tracing::warn!(%scope, error = %e, "ignoring a corrupt cached listing");
                None
            }
        }
    }
}

/// `f` of each scope, in order, on every core when there are several (scopes are about the
/// same size: contiguous chunks, one per core).
fn on_every_core<T: Send>(
    scopes: &[Scope],
    f: impl Fn(&Scope) -> Option<T> + Sync,
) -> Vec<Option<T>> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    if threads < 2 || scopes.len() < 2 {
        return scopes.iter().map(f).collect();
    }
    let chunk = scopes.len().div_ceil(threads);
    let f = &f;
    std::thread::scope(|s| {
        let parts: Vec<_> = scopes
            .chunks(chunk)
            .map(|part| s.spawn(move || part.iter().map(f).collect::<Vec<_>>()))
            .collect();
        parts
            .into_iter()
            .flat_map(|part| part.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    })
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
    fn a_file_of_another_format_version_is_listed_again_and_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(dir.path());
        cache.store(&scope(), &[], SystemTime::now()).unwrap();
        // The same file as an earlier postern wrote it (its version field changed).
        let mut bytes = std::fs::read(cache.path()).unwrap();
        let at = b"postern index\n".len();
        bytes[at..at + 4].copy_from_slice(&3u32.to_le_bytes());
        crate::private_file::write_private(&cache.path(), &bytes).unwrap();
        assert!(cache.load(&scope()).is_none());
        assert!(cache.all().is_empty());
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
