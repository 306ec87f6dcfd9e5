//! Flow control of outgoing stream data: the service's pause/start publication, the agent's
//! per-chunk pacing, and the cap on messages in flight.
//!
//! Pure state; the session asks "may I transmit new data now, and if not, when?".

use std::time::{Duration, Instant};

/// Publication state as driven by `pause_publication` / `start_publication` (SPEC.md §5.7).
///
/// ```text
///  Running --pause_publication--> Paused
///  Paused --start_publication | any ack | any stream data--> Running
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Publication {
    /// Sending normally.
    #[default]
    Running,
    /// The peer is unreachable: no new data, no retransmissions.
    Paused,
}

/// Decides when the next new stream message may leave.
#[derive(Clone, Debug)]
pub struct SendGate {
    /// Pause inserted after every new data message (agent pacing: 1 ms, agent
    /// `agent/session/plugins/port/port_basic.go` / `shell_unix.go` read loops sleep 1 ms).
    pacing: Option<Duration>,
    /// Earliest instant the next new message may be transmitted.
    next_allowed: Option<Instant>,
    /// Cap on transmitted-but-unacked messages.
    max_in_flight: usize,
    publication: Publication,
}

impl SendGate {
    /// A gate with optional pacing and an in-flight cap.
    pub fn new(pacing: Option<Duration>, max_in_flight: usize) -> Self {
        Self {
            pacing,
            next_allowed: None,
            max_in_flight: max_in_flight.max(1),
            publication: Publication::Running,
        }
    }

    /// Whether a new message may be transmitted now with `in_flight` messages unacked.
    pub fn may_send(&self, now: Instant, in_flight: usize) -> bool {
        self.publication == Publication::Running
            && in_flight < self.max_in_flight
            && self.next_allowed.is_none_or(|t| now >= t)
    }

    /// Records a transmission of new data at `now`.
    pub fn on_sent(&mut self, now: Instant) {
        if let Some(p) = self.pacing {
            self.next_allowed = Some(now + p);
        }
    }

    /// When the pacing delay ends, if it is what holds sending back.
    pub fn pacing_deadline(&self, now: Instant) -> Option<Instant> {
        self.next_allowed.filter(|&t| t > now)
    }

    /// Current publication state.
    pub fn publication(&self) -> Publication {
        self.publication
    }

    /// Applies a publication change; returns whether the state changed.
    pub fn set_publication(&mut self, publication: Publication) -> bool {
        let changed = self.publication != publication;
        self.publication = publication;
        changed
    }

    /// Changes the in-flight cap (used by adaptive upload pacing).
    pub fn set_max_in_flight(&mut self, max_in_flight: usize) {
        self.max_in_flight = max_in_flight.max(1);
    }

    /// The in-flight cap.
    pub fn max_in_flight(&self) -> usize {
        self.max_in_flight
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pacing_spaces_messages() {
        let t0 = Instant::now();
        let mut g = SendGate::new(Some(Duration::from_millis(1)), 10);
        assert!(g.may_send(t0, 0));
        g.on_sent(t0);
        assert!(!g.may_send(t0, 1));
        assert_eq!(g.pacing_deadline(t0), Some(t0 + Duration::from_millis(1)));
        assert!(g.may_send(t0 + Duration::from_millis(1), 1));
    }

    #[test]
    fn pause_blocks_and_in_flight_cap_blocks() {
        let t0 = Instant::now();
        let mut g = SendGate::new(None, 2);
        assert!(g.set_publication(Publication::Paused));
        assert!(!g.may_send(t0, 0));
        assert!(g.set_publication(Publication::Running));
        assert!(!g.set_publication(Publication::Running));
        assert!(g.may_send(t0, 1));
        assert!(!g.may_send(t0, 2));
    }
}
