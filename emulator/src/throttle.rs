//! Request-rate limits that mimic AWS API throttling (`--throttle-rate`): one token bucket per
//! account and service, refilled at the configured rate with a burst of the same size (at least
//! one call). It decides whether a call is throttled; the service words the error.

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::time::Instant;

/// Token buckets keyed by (account, service).
#[derive(Debug)]
pub(crate) struct Throttle {
    rate: f64,
    burst: f64,
    buckets: Mutex<HashMap<(String, &'static str), Bucket>>,
}

#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

impl Throttle {
    /// Buckets allowing `rate` calls per second, in bursts of up to `max(1, rate)` calls.
    pub(crate) fn new(rate: f64) -> Self {
        Self {
            rate,
            burst: rate.ceil().max(1.0),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one call from the bucket of `account` and `service`; `false` when it is empty.
    pub(crate) fn admit(&self, account: &str, service: &'static str, now: Instant) -> bool {
        let mut buckets = self
            .buckets
            .lock()
            // Each update is a single read-modify-write: a poisoned map is still consistent.
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let bucket = buckets
            .entry((account.to_owned(), service))
            .or_insert(Bucket {
                tokens: self.burst,
                updated: now,
            });
        let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.rate).min(self.burst);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn allows_a_burst_then_refills_at_the_rate() {
        let throttle = Throttle::new(2.0);
        let start = Instant::now();
        assert!(throttle.admit("1", "ec2", start));
        assert!(throttle.admit("1", "ec2", start));
        assert!(!throttle.admit("1", "ec2", start));
        // Other accounts and services have their own buckets.
        assert!(throttle.admit("2", "ec2", start));
        assert!(throttle.admit("1", "ssm", start));
        assert!(throttle.admit("1", "ec2", start + Duration::from_millis(500)));
        assert!(!throttle.admit("1", "ec2", start + Duration::from_millis(500)));
    }

    #[test]
    fn slow_rates_still_allow_one_call() {
        let throttle = Throttle::new(0.001);
        let start = Instant::now();
        assert!(throttle.admit("1", "sts", start));
        assert!(!throttle.admit("1", "sts", start + Duration::from_secs(1)));
    }
}
