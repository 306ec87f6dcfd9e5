//! An in-memory [`InstanceSource`] for tests: fixed rows per scope, scripted throttling and
//! failures, call counts and the highest number of listings in flight.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::discovery::instance::{Instance, Scope};
use crate::discovery::source::{InstanceSource, SourceError};

/// A scripted source.
#[derive(Debug, Default)]
pub(crate) struct FakeSource {
    rows: HashMap<Scope, Vec<Instance>>,
    throttles: Mutex<HashMap<Scope, u32>>,
    failures: HashMap<Scope, String>,
    calls: Mutex<HashMap<Scope, u32>>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
}

impl FakeSource {
    /// A source with no scope.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Serves `rows` for `scope`, filling in each row's alias, env, region and account.
    pub(crate) fn with(mut self, scope: Scope, rows: Vec<Instance>) -> Self {
        let rows = rows
            .into_iter()
            .map(|mut row| {
                row.alias.clone_from(&scope.alias);
                row.env.clone_from(&scope.env);
                row.region.clone_from(&scope.region);
                if row.account.is_empty() {
                    row.account.clone_from(&scope.account);
                }
                row
            })
            .collect();
        self.rows.insert(scope, rows);
        self
    }

    /// Throttles the first `times` calls for `scope`.
    pub(crate) fn throttle(self, scope: Scope, times: u32) -> Self {
        self.lock_throttles().insert(scope, times);
        self
    }

    /// Fails every call for `scope` with the error `code`.
    pub(crate) fn fail(mut self, scope: Scope, code: &str) -> Self {
        self.failures.insert(scope, code.to_owned());
        self
    }

    /// Calls made for `scope`.
    pub(crate) fn calls(&self, scope: &Scope) -> u32 {
        self.lock_calls().get(scope).copied().unwrap_or(0)
    }

    /// Calls made for every scope.
    pub(crate) fn total_calls(&self) -> u32 {
        self.lock_calls().values().sum()
    }

    /// The most listings that were in flight at once.
    pub(crate) fn max_in_flight(&self) -> usize {
        self.max_in_flight.load(Ordering::SeqCst)
    }

    fn lock_calls(&self) -> std::sync::MutexGuard<'_, HashMap<Scope, u32>> {
        // A poisoned lock means a test already panicked; its data is still usable.
        self.calls
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn lock_throttles(&self) -> std::sync::MutexGuard<'_, HashMap<Scope, u32>> {
        self.throttles
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl InstanceSource for FakeSource {
    async fn list(&self, scope: &Scope) -> Result<Vec<Instance>, SourceError> {
        *self.lock_calls().entry(scope.clone()).or_default() += 1;
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_in_flight.fetch_max(now, Ordering::SeqCst);
        // Let the other listings start, so the concurrency bound is observable.
        tokio::task::yield_now().await;
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        let throttled = {
            let mut throttles = self.lock_throttles();
            match throttles.get_mut(scope) {
                Some(left) if *left > 0 => {
                    *left -= 1;
                    true
                }
                _ => false,
            }
        };
        if throttled {
            return Err(SourceError {
                code: Some("RequestLimitExceeded".into()),
                throttled: true,
                ..SourceError::local(scope, "DescribeInstances", "Request limit exceeded.")
            });
        }
        if let Some(code) = self.failures.get(scope) {
            return Err(SourceError {
                code: Some(code.clone()),
                ..SourceError::local(scope, "DescribeInstances", "scripted failure")
            });
        }
        Ok(self.rows.get(scope).cloned().unwrap_or_default())
    }
}
