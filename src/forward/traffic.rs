//! Counters of what the forwards of one `postern forward` (or one background tunnel) carry:
//! open local connections, open sessions, bytes each way, and the health of forwards that keep
//! a session open (sessions being restarted, restarts, why a forward can never work). Links,
//! pools and connection tasks update them; the live status line and the tunnel supervisor
//! read them ([`Traffic::snapshot`]) and derive rates from two snapshots ([`Rate::between`]).
//!
//! It must not print or read a clock: `cli` renders and times.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

/// Live counters, shared by every link and connection of a forwarder.
#[derive(Debug, Default)]
pub struct Traffic {
    connections: AtomicUsize,
    sessions: AtomicUsize,
    up: AtomicU64,
    down: AtomicU64,
    restarting: AtomicUsize,
    restarts: AtomicU64,
    failure: Mutex<Option<String>>,
}

/// The counters at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TrafficSnapshot {
    /// Local connections open now.
    pub connections: usize,
    /// SSM sessions open now.
    pub sessions: usize,
    /// Bytes read from local connections (towards the instance), ever.
    pub up: u64,
    /// Bytes written to local connections (from the instance), ever.
    pub down: u64,
    /// Forwards whose sessions all ended and that are starting another (tunnels only).
    pub restarting: usize,
    /// Sessions started to replace one that ended (tunnels only), ever.
    pub restarts: u64,
}

/// Bytes per second each way between two snapshots.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Rate {
    /// Towards the instance.
    pub up: f64,
    /// From the instance.
    pub down: f64,
}

impl Traffic {
    /// The counters now.
    pub fn snapshot(&self) -> TrafficSnapshot {
        TrafficSnapshot {
            connections: self.connections.load(Ordering::Relaxed),
            sessions: self.sessions.load(Ordering::Relaxed),
            up: self.up.load(Ordering::Relaxed),
            down: self.down.load(Ordering::Relaxed),
            restarting: self.restarting.load(Ordering::Relaxed),
            restarts: self.restarts.load(Ordering::Relaxed),
        }
    }

    /// Why a forward can never work (access denied, the instance gone), once a pool gave up.
    pub fn failure(&self) -> Option<String> {
        // A poisoned lock means a panic elsewhere; the text is still whole.
        self.failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub(crate) fn failed(&self, reason: String) {
        let mut failure = self.failure.lock().unwrap_or_else(|p| p.into_inner());
        failure.get_or_insert(reason);
    }

    pub(crate) fn restart_begins(&self) {
        self.restarting.fetch_add(1, Ordering::Relaxed);
    }

    /// A restart ended: `succeeded` when a new session is up.
    pub(crate) fn restart_ends(&self, succeeded: bool) {
        let _ = self
            .restarting
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
        if succeeded {
            self.restarts.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn connection_opened(&self) {
        self.connections.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn connection_closed(&self) {
        let _ = self
            .connections
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
    }

    pub(crate) fn session_opened(&self) {
        self.sessions.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn session_closed(&self) {
        let _ = self
            .sessions
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
    }

    pub(crate) fn sent(&self, bytes: usize) {
        self.up.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    pub(crate) fn received(&self, bytes: usize) {
        self.down.fetch_add(bytes as u64, Ordering::Relaxed);
    }
}

impl Rate {
    /// The rate from `before` to `after`, `elapsed` apart (zero when no time passed).
    pub fn between(before: &TrafficSnapshot, after: &TrafficSnapshot, elapsed: Duration) -> Self {
        let secs = elapsed.as_secs_f64();
        if secs <= 0.0 {
            return Self::default();
        }
        Self {
            up: after.up.saturating_sub(before.up) as f64 / secs,
            down: after.down.saturating_sub(before.down) as f64 / secs,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_never_go_below_zero_and_rates_follow_bytes() {
        let t = Traffic::default();
        t.connection_closed();
        t.session_closed();
        assert_eq!(t.snapshot(), TrafficSnapshot::default());
        t.connection_opened();
        t.session_opened();
        let before = t.snapshot();
        t.sent(1000);
        t.received(4000);
        let after = t.snapshot();
        assert_eq!((after.connections, after.sessions), (1, 1));
        let rate = Rate::between(&before, &after, Duration::from_millis(500));
        assert_eq!(
            rate,
            Rate {
                up: 2000.0,
                down: 8000.0
            }
        );
        assert_eq!(
            Rate::between(&before, &after, Duration::ZERO),
            Rate::default()
        );
    }
}
