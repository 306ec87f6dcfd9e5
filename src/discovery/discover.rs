//! Lists many scopes in parallel with bounded concurrency, retrying throttled calls with
//! exponential backoff; a failing scope becomes a [`ScopeFailure`], never the whole result.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::discovery::instance::{Instance, Scope};
use crate::discovery::open_files;
use crate::discovery::source::{InstanceSource, SourceError};

/// How throttled calls are retried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts per scope, the first included.
    pub max_attempts: u32,
    /// Pause before the first retry; doubled for each further one.
    pub initial_backoff: Duration,
    /// Longest pause.
    pub max_backoff: Duration,
}

/// What one discovery run found.
#[derive(Debug, Default)]
pub struct Discovery {
    /// Instances per scope that answered, in the order of the scopes given.
    pub scopes: Vec<(Scope, Vec<Instance>)>,
    /// Scopes that failed, with the last error.
    pub failures: Vec<ScopeFailure>,
}

/// A scope that could not be listed.
#[derive(Debug, Clone)]
pub struct ScopeFailure {
    /// The last error.
    pub error: SourceError,
    /// Attempts made.
    pub attempts: u32,
}

/// Progress of a run, after each scope finishes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Progress {
    /// Scopes finished (listed or failed).
    pub done: usize,
    /// Scopes in the run.
    pub total: usize,
    /// Instances found so far.
    pub instances: usize,
}

/// Lists every scope with at most `concurrency` listings in flight (fewer when the open-files
/// limit cannot make room for their connections), calling `progress` after each scope
/// finishes.
pub async fn discover<S: InstanceSource>(
    source: Arc<S>,
    scopes: Vec<Scope>,
    concurrency: usize,
    retry: RetryPolicy,
    mut progress: impl FnMut(Progress),
) -> Discovery {
    let total = scopes.len();
    let concurrency = open_files::fit_concurrency(concurrency.max(1).min(total.max(1)));
    let permits = Arc::new(Semaphore::new(concurrency));
    let mut tasks = JoinSet::new();
    for (index, scope) in scopes.into_iter().enumerate() {
        let source = Arc::clone(&source);
        let permits = Arc::clone(&permits);
        tasks.spawn(async move {
            // The semaphore is never closed, so acquiring cannot fail.
            let _permit = permits
                .acquire_owned()
                .await
                .expect("semaphore is never closed");
            let outcome = list_with_retry(&*source, &scope, retry).await;
            (index, scope, outcome)
        });
    }
    let mut done = Vec::with_capacity(total);
    let mut found = 0;
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(result) => {
                if let (_, _, Ok(rows)) = &result {
                    found += rows.len();
                }
                done.push(result);
            }
            Err(e) => tracing::warn!(error = %e, "a discovery task failed"),
        }
        progress(Progress {
            done: done.len(),
            total,
            instances: found,
        });
    }
    done.sort_by_key(|(index, _, _)| *index);
    let mut discovery = Discovery::default();
    for (_, scope, outcome) in done {
        match outcome {
            Ok(rows) => discovery.scopes.push((scope, rows)),
            Err(failure) => discovery.failures.push(failure),
        }
    }
    discovery
}

impl Discovery {
    /// Every instance found, scope by scope.
    pub fn instances(&self) -> impl Iterator<Item = &Instance> {
        self.scopes.iter().flat_map(|(_, rows)| rows)
    }
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 6,
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(5),
        }
    }
}

impl RetryPolicy {
    /// The pause before retry number `retry` (1-based), with up to 50% random jitter removed so
    /// that throttled scopes do not retry in lockstep.
    fn backoff(&self, retry: u32) -> Duration {
        let exp = self
            .initial_backoff
            .saturating_mul(1 << (retry - 1).min(16))
            .min(self.max_backoff);
        let jitter = rand::random::<f64>() * 0.5;
        exp.mul_f64(1.0 - jitter)
    }
}

async fn list_with_retry<S: InstanceSource>(
    source: &S,
    scope: &Scope,
    retry: RetryPolicy,
) -> Result<Vec<Instance>, ScopeFailure> {
    let mut attempts = 0;
    loop {
        attempts += 1;
        match source.list(scope).await {
            Ok(rows) => return Ok(rows),
            Err(error) if error.throttled && attempts < retry.max_attempts => {
                let pause = retry.backoff(attempts);
                tracing::debug!(%scope, attempts, ?pause, "throttled; retrying");
                tokio::time::sleep(pause).await;
            }
            Err(error) => return Err(ScopeFailure { error, attempts }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discovery::FakeSource;

    /// Retries after a millisecond, so tests do not wait.
    const QUICK: RetryPolicy = RetryPolicy {
        max_attempts: 6,
        initial_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(2),
    };

    fn scope(account: &str, region: &str) -> Scope {
        Scope {
            account: account.into(),
            alias: account.into(),
            env: None,
            region: region.into(),
        }
    }

    fn row(id: &str, name: &str) -> Instance {
        Instance {
            id: id.into(),
            name: name.into(),
            ping_status: Some("Online".into()),
            ..Instance::default()
        }
    }

    #[tokio::test]
    async fn retries_throttled_scopes_and_reports_broken_ones() {
        let fake = FakeSource::new()
            .with(scope("a", "r1"), vec![row("i-1", "one")])
            .with(scope("b", "r1"), vec![row("i-2", "two")])
            .throttle(scope("b", "r1"), 3)
            .fail(scope("c", "r1"), "AuthFailure");
        let fake = Arc::new(fake);
        let mut seen = Vec::new();
        let result = discover(
            Arc::clone(&fake),
            vec![scope("a", "r1"), scope("b", "r1"), scope("c", "r1")],
            2,
            QUICK,
            |p| seen.push(p),
        )
        .await;
        let ids: Vec<_> = result.instances().map(|i| i.id.as_str()).collect();
        assert_eq!(ids, ["i-1", "i-2"]);
        assert_eq!(result.failures.len(), 1);
        assert_eq!(
            result.failures[0].error.code.as_deref(),
            Some("AuthFailure")
        );
        assert_eq!(result.failures[0].attempts, 1);
        assert_eq!(fake.calls(&scope("b", "r1")), 4);
        assert_eq!(
            seen.last().map(|p| (p.done, p.total, p.instances)),
            Some((3, 3, 2))
        );
    }

    #[tokio::test]
    async fn gives_up_after_the_attempt_budget() {
        let fake = Arc::new(FakeSource::new().throttle(scope("a", "r1"), 100));
        let retry = RetryPolicy {
            max_attempts: 3,
            ..QUICK
        };
        let result = discover(Arc::clone(&fake), vec![scope("a", "r1")], 1, retry, |_| {}).await;
        assert_eq!(result.failures[0].attempts, 3);
        assert!(result.failures[0].error.throttled);
        assert_eq!(fake.calls(&scope("a", "r1")), 3);
    }

    #[tokio::test]
    async fn never_exceeds_the_concurrency_bound() {
        let scopes: Vec<_> = (0..20).map(|i| scope(&format!("a{i}"), "r1")).collect();
        let mut fake = FakeSource::new();
        for s in &scopes {
            fake = fake.with(s.clone(), vec![row("i-1", "x")]);
        }
        let fake = Arc::new(fake);
        let result = discover(Arc::clone(&fake), scopes, 3, RetryPolicy::default(), |_| {}).await;
        assert_eq!(result.scopes.len(), 20);
        assert!(fake.max_in_flight() <= 3, "{}", fake.max_in_flight());
        assert!(fake.max_in_flight() >= 1);
    }

    #[tokio::test]
    async fn an_organisation_is_listed_all_at_once_by_default() {
        // 50 accounts x 3 regions: AWS throttles each scope on its own, so none waits.
        let scopes: Vec<_> = (0..150)
            .map(|i| scope(&format!("a{}", i / 3), &format!("r{}", i % 3)))
            .collect();
        let mut fake = FakeSource::new();
        for s in &scopes {
            fake = fake.with(s.clone(), vec![row("i-1", "x")]);
        }
        let fake = Arc::new(fake);
        let result = discover(
            Arc::clone(&fake),
            scopes,
            crate::discovery::DEFAULT_CONCURRENCY,
            RetryPolicy::default(),
            |_| {},
        )
        .await;
        assert_eq!(result.scopes.len(), 150);
        assert_eq!(fake.max_in_flight(), 150);
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let policy = RetryPolicy::default();
        assert!(policy.backoff(1) <= Duration::from_millis(200));
        assert!(policy.backoff(1) >= Duration::from_millis(100));
        assert!(policy.backoff(10) <= Duration::from_secs(5));
        assert!(policy.backoff(10) >= Duration::from_millis(2500));
    }
}
