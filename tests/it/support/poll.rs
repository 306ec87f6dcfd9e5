//! Bounded waits on a condition: the one way these tests wait for something to happen. A
//! condition that never comes true fails the test after its limit, never hangs it.

use std::time::{Duration, Instant};

/// Checks `check` until it yields a value and returns it; panics, naming the caller's line,
/// once `limit` has passed.
#[track_caller]
pub(crate) fn poll<T>(limit: Duration, check: impl FnMut() -> Option<T>) -> T {
    match try_poll(limit, check) {
        Some(value) => value,
        None => panic!("the awaited condition did not hold within {limit:?}"),
    }
}

/// Checks `check` until it yields a value or `limit` passes; for a caller that explains the
/// failure itself (a terminal's screen, a process's log) or tries again.
pub(crate) fn try_poll<T>(limit: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = check() {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        // Between two checks of a condition that other processes change: not a wait for them.
        std::thread::sleep(INTERVAL);
    }
}

const INTERVAL: Duration = Duration::from_millis(20);
