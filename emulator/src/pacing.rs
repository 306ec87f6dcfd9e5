//! Agent pacing: the real agent reads at most 1024 bytes from the PTY or TCP connection, sends
//! them as one message and sleeps 1 ms before the next read (agent
//! `agent/session/shell/shell.go` `writePump`, `agent/session/plugins/port/port_basic.go`;
//! SPEC.md §5.9). Throughput measured against the emulator is then what users see.
//!
//! This module only computes when the next read may happen; the driver does the waiting.

use std::time::Duration;

use tokio::time::Instant;

/// How outgoing stream data is paced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pacing {
    /// Pause after each chunk is sent.
    pub pause: Duration,
}

impl Pacing {
    /// The real agent: 1 ms after each chunk of at most `CHUNK_SIZE` bytes.
    pub const AGENT: Self = Self {
        pause: Duration::from_millis(1),
    };
}

/// Tracks when the plugin may next be read.
#[derive(Debug)]
pub(crate) struct Pacer {
    pacing: Option<Pacing>,
    next_read: Option<Instant>,
}

impl Pacer {
    pub(crate) fn new(pacing: Option<Pacing>) -> Self {
        Self {
            pacing,
            next_read: None,
        }
    }

    /// Records that a chunk went out at `now`.
    ///
    /// While data keeps coming the schedule advances from the previous slot, not from `now`:
    /// the runtime's timer fires up to a tick late, and counting from the late wake-up would
    /// halve the rate. The agent's `time.Sleep(1 ms)` overshoots by a few percent only.
    pub(crate) fn chunk_sent(&mut self, now: Instant) {
        if let Some(pacing) = self.pacing {
            let next = match self.next_read {
                // On schedule, at most a few pauses late: the next slot follows this one, so
                // a late timer is made up for instead of lowering the rate.
                Some(slot) if now < slot + pacing.pause * CATCH_UP_SLOTS => slot + pacing.pause,
                _ => now + pacing.pause,
            };
            self.next_read = Some(next);
        }
    }

    /// The earliest time the next chunk may be read, if it is in the future.
    pub(crate) fn wait_until(&self, now: Instant) -> Option<Instant> {
        self.next_read.filter(|at| *at > now)
    }
}

/// How many slots a late timer may make up for before the schedule restarts from now.
const CATCH_UP_SLOTS: u32 = 4;

/// Bytes read from a PTY or TCP connection per message, as the agent does
/// (agent `agent/session/config/config.go` `StreamDataPayloadSize`).
pub(crate) const CHUNK_SIZE: usize = 1024;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unpaced_never_waits() {
        let now = Instant::now();
        let mut pacer = Pacer::new(None);
        pacer.chunk_sent(now);
        assert_eq!(pacer.wait_until(now), None);
    }

    #[test]
    fn paced_waits_one_pause_after_a_chunk() {
        let now = Instant::now();
        let mut pacer = Pacer::new(Some(Pacing::AGENT));
        assert_eq!(pacer.wait_until(now), None);
        pacer.chunk_sent(now);
        assert_eq!(pacer.wait_until(now), Some(now + Duration::from_millis(1)));
        assert_eq!(pacer.wait_until(now + Duration::from_millis(1)), None);
    }

    #[test]
    fn a_late_wake_up_does_not_push_the_schedule_back() {
        let now = Instant::now();
        let ms = Duration::from_millis(1);
        let mut pacer = Pacer::new(Some(Pacing::AGENT));
        pacer.chunk_sent(now);
        // Woken 0.8 ms late for the 1 ms slot: the next slot is still at 2 ms.
        let late = now + ms + Duration::from_micros(800);
        pacer.chunk_sent(late);
        assert_eq!(pacer.wait_until(late), Some(now + 2 * ms));
        // After an idle gap the schedule restarts from the send.
        let idle = now + 10 * ms;
        pacer.chunk_sent(idle);
        assert_eq!(pacer.wait_until(idle), Some(idle + ms));
    }
}
