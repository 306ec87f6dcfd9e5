//! The index: cached scopes when fresh, discovery for the rest, the cache updated with what was
//! listed, and a stale cache entry kept (with a warning) when its scope fails.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::discovery::cache::Cache;
use crate::discovery::discover::{Progress, RetryPolicy, ScopeFailure, discover};
use crate::discovery::instance::{Instance, Scope};
use crate::discovery::source::InstanceSource;

/// How the index is built.
#[derive(Clone, Copy, Debug)]
pub struct IndexOptions {
    /// Listings in flight at once.
    pub concurrency: usize,
    /// Retry of throttled calls.
    pub retry: RetryPolicy,
    /// Cached listings younger than this are used as they are.
    pub max_age: Duration,
    /// Ignore the cache (`--refresh`); it is still written.
    pub refresh: bool,
}

/// The instances of every scope, and what went wrong.
#[derive(Debug, Default)]
pub struct Index {
    /// Every instance, scope by scope in the order asked.
    pub instances: Vec<Instance>,
    /// Scopes that could not be listed (possibly served from a stale cache: see `stale`).
    pub failures: Vec<ScopeFailure>,
    /// Scopes served from a stale cache entry because listing them failed.
    pub stale: Vec<Scope>,
    /// Scopes served from the cache.
    pub cached: usize,
    /// Scopes listed now.
    pub listed: usize,
}

/// Builds the index of `scopes`.
pub async fn build_index<S: InstanceSource>(
    source: Arc<S>,
    scopes: &[Scope],
    cache: Option<&Cache>,
    options: IndexOptions,
    progress: impl FnMut(Progress),
) -> Index {
    let now = SystemTime::now();
    let mut slots: Vec<Option<Vec<Instance>>> = vec![None; scopes.len()];
    let mut stale_entries = Vec::new();
    let mut to_list = Vec::new();
    let mut index = Index::default();
    // The cache file is read once, and only the scopes asked for are decoded.
    let cached = match cache {
        Some(cache) => cache.read().entries(scopes),
        None => vec![None; scopes.len()],
    };
    for ((slot, scope), entry) in slots.iter_mut().zip(scopes).zip(cached) {
        match entry {
            Some(entry) if !options.refresh && entry.age(now) <= options.max_age => {
                *slot = Some(entry.instances);
                index.cached += 1;
            }
            other => {
                stale_entries.push(other);
                to_list.push(scope.clone());
            }
        }
    }
    let listed = discover(
        source,
        to_list.clone(),
        options.concurrency,
        options.retry,
        progress,
    )
    .await;
    index.listed = listed.scopes.len();
    if let Some(cache) = cache
        && !listed.scopes.is_empty()
        && let Err(e) = cache.store_all(&listed.scopes, now)
    {
        tracing::warn!(path = %cache.path().display(), error = %e, "could not write the index cache");
    }
    for (scope, rows) in listed.scopes {
        if let Some(position) = scopes.iter().position(|s| *s == scope) {
            slots[position] = Some(rows);
        }
    }
    for failure in listed.failures {
        let scope = &failure.error.scope;
        let stale = to_list
            .iter()
            .position(|s| s == scope)
            .and_then(|i| stale_entries[i].take());
        if let (Some(entry), Some(position)) = (stale, scopes.iter().position(|s| s == scope)) {
            slots[position] = Some(entry.instances);
            index.stale.push(scope.clone());
        }
        index.failures.push(failure);
    }
    index.instances = slots.into_iter().flatten().flatten().collect();
    index
}

impl Default for IndexOptions {
    fn default() -> Self {
        Self {
            concurrency: DEFAULT_CONCURRENCY,
            retry: RetryPolicy::default(),
            max_age: DEFAULT_MAX_AGE,
            refresh: false,
        }
    }
}

/// Listings in flight at once by default: every scope of an organisation of 50 accounts in 3
/// regions, so that cold discovery takes a few round trips whatever the fleet. AWS throttles
/// EC2 and SSM calls per account and region, that is per scope, so scopes listed together do
/// not share a budget; each scope makes one call per service at a time (pages follow each
/// other), and throttled calls back off ([`RetryPolicy`](crate::discovery::RetryPolicy)).
/// (EC2: "Request throttling for the Amazon EC2 API", EC2 developer guide,
/// `ec2/latest/devguide/ec2-api-throttling.html`: per account, per Region, per API.)
pub const DEFAULT_CONCURRENCY: usize = 160;
/// Cached listings are used without asking AWS for this long.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(15 * 60);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discovery::FakeSource;

    fn scope(account: &str) -> Scope {
        Scope {
            account: account.into(),
            alias: account.into(),
            env: None,
            region: "r1".into(),
        }
    }

    fn row(id: &str) -> Instance {
        Instance {
            id: id.into(),
            ..Instance::default()
        }
    }

    #[tokio::test]
    async fn uses_a_fresh_cache_and_refreshes_on_demand() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(dir.path());
        let fake = Arc::new(FakeSource::new().with(scope("a"), vec![row("i-1")]));
        let opts = IndexOptions::default();
        let first = build_index(Arc::clone(&fake), &[scope("a")], Some(&cache), opts, |_| {}).await;
        assert_eq!((first.cached, first.listed), (0, 1));
        let second =
            build_index(Arc::clone(&fake), &[scope("a")], Some(&cache), opts, |_| {}).await;
        assert_eq!((second.cached, second.listed), (1, 0));
        assert_eq!(second.instances, first.instances);
        assert_eq!(fake.total_calls(), 1);
        let refresh = IndexOptions {
            refresh: true,
            ..opts
        };
        let third = build_index(
            Arc::clone(&fake),
            &[scope("a")],
            Some(&cache),
            refresh,
            |_| {},
        )
        .await;
        assert_eq!((third.cached, third.listed), (0, 1));
        assert_eq!(fake.total_calls(), 2);
    }

    #[tokio::test]
    async fn a_failing_scope_falls_back_to_its_stale_cache() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(dir.path());
        cache
            .store(&scope("b"), &[row("i-old")], SystemTime::UNIX_EPOCH)
            .unwrap();
        let fake = Arc::new(
            FakeSource::new()
                .with(scope("a"), vec![row("i-1")])
                .fail(scope("b"), "AuthFailure")
                .fail(scope("c"), "AuthFailure"),
        );
        let index = build_index(
            fake,
            &[scope("a"), scope("b"), scope("c")],
            Some(&cache),
            IndexOptions::default(),
            |_| {},
        )
        .await;
        let ids: Vec<_> = index.instances.iter().map(|i| i.id.as_str()).collect();
        assert_eq!(ids, ["i-1", "i-old"]);
        assert_eq!(index.failures.len(), 2);
        assert_eq!(index.stale, [scope("b")]);
    }
}
