//! When to try the next reconnection of a broken data channel: exponential backoff with
//! jitter and an attempt limit (SPEC.md §2.6). Pure: the caller supplies the seed and `now`.
//!
//! The official retryer waits `100 + rand(100)` ms, doubles per attempt, caps one delay at
//! 5 s and stops after 5 retries (plugin `src/retry/retryer.go`, `src/config/config.go`
//! `DataChannelRetryInitialDelayMillis`, `DataChannelNumMaxRetries`). We keep the shape but
//! draw each delay uniformly from the upper half of its step ("equal jitter"), so that many
//! clients dropped by the same event do not come back in lockstep, and let the caller choose
//! the limit. It must not sleep, dial or decide what counts as a failure.

use std::time::Duration;

use crate::rng::SeededRng;

/// The backoff's shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BackoffConfig {
    /// The first step; the first delay lies in `[initial / 2, initial)`.
    pub initial: Duration,
    /// The largest step; later delays lie in `[max / 2, max)`.
    pub max: Duration,
    /// Attempts before giving up (0: never reconnect).
    pub max_attempts: u32,
}

impl Default for BackoffConfig {
    fn default() -> Self {
        Self {
            initial: INITIAL_STEP,
            max: MAX_STEP,
            max_attempts: DEFAULT_ATTEMPTS,
        }
    }
}

/// Delays between reconnection attempts of one outage.
#[derive(Clone, Debug)]
pub struct Backoff {
    config: BackoffConfig,
    rng: SeededRng,
    attempts: u32,
}

impl Backoff {
    /// A backoff drawing its jitter from `seed`.
    pub fn new(config: BackoffConfig, seed: u64) -> Self {
        Self {
            config,
            rng: SeededRng::new(seed),
            attempts: 0,
        }
    }

    /// The delay before the next attempt, or `None` once `max_attempts` were made.
    pub fn next_delay(&mut self) -> Option<Duration> {
        if self.attempts >= self.config.max_attempts {
            return None;
        }
        let shift = self.attempts.min(MAX_DOUBLINGS);
        let step = self
            .config
            .initial
            .saturating_mul(1 << shift)
            .min(self.config.max)
            .max(Duration::from_millis(1));
        self.attempts += 1;
        let half = step / 2;
        let spread = (step - half).as_nanos().max(1) as u64;
        Some(half + Duration::from_nanos(self.rng.next_u64() % spread))
    }

    /// Attempts made in this outage.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// The channel is up again: the next outage starts from the first step.
    pub fn reset(&mut self) {
        self.attempts = 0;
    }

    /// The configuration.
    pub fn config(&self) -> BackoffConfig {
        self.config
    }
}

/// First step (the official client's initial delay is 100-199 ms).
const INITIAL_STEP: Duration = Duration::from_millis(200);
/// Largest step: an outage longer than a few seconds (a laptop waking up, a VPN coming back)
/// is retried every 5-10 s.
const MAX_STEP: Duration = Duration::from_secs(10);
/// Attempts per outage: about a minute and a half of trying with the default steps.
const DEFAULT_ATTEMPTS: u32 = 12;
/// Beyond this many doublings the step is capped anyway; keeps the shift in range.
const MAX_DOUBLINGS: u32 = 20;

#[cfg(test)]
mod tests {
    use super::*;

    fn config(max_attempts: u32) -> BackoffConfig {
        BackoffConfig {
            max_attempts,
            ..BackoffConfig::default()
        }
    }

    #[test]
    fn delays_grow_stay_in_their_band_and_stop_at_the_limit() {
        let mut backoff = Backoff::new(config(8), 7);
        let mut step = INITIAL_STEP;
        for _ in 0..8 {
            let delay = backoff.next_delay().expect("within the limit");
            assert!(
                delay >= step / 2 && delay < step,
                "{delay:?} outside [{step:?}/2, {step:?})"
            );
            step = (step * 2).min(MAX_STEP);
        }
        assert_eq!(backoff.next_delay(), None);
        assert_eq!(backoff.attempts(), 8);
    }

    #[test]
    fn reset_starts_a_new_outage_from_the_first_step() {
        let mut backoff = Backoff::new(config(3), 1);
        while backoff.next_delay().is_some() {}
        backoff.reset();
        let delay = backoff.next_delay().expect("fresh outage");
        assert!(delay < INITIAL_STEP);
    }

    #[test]
    fn jitter_comes_from_the_seed() {
        let draw = |seed| {
            let mut b = Backoff::new(config(6), seed);
            std::iter::from_fn(|| b.next_delay()).collect::<Vec<_>>()
        };
        assert_eq!(draw(5), draw(5));
        assert_ne!(draw(5), draw(6));
    }

    #[test]
    fn zero_attempts_never_reconnects() {
        assert_eq!(Backoff::new(config(0), 1).next_delay(), None);
    }

    #[test]
    fn default_limit_tries_for_about_a_minute() {
        let mut backoff = Backoff::new(BackoffConfig::default(), 3);
        let total: Duration = std::iter::from_fn(|| backoff.next_delay()).sum();
        assert!(
            total > Duration::from_secs(30) && total < Duration::from_secs(120),
            "{total:?}"
        );
    }
}
