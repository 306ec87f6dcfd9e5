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
    /// The real agent: 1 ms after each chunk of at most [`CHUNK_SIZE`] bytes.
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
    pub(crate) fn chunk_sent(&mut self, now: Instant) {
        if let Some(pacing) = self.pacing {
            self.next_read = Some(now + pacing.pause);
        }
    }

    /// The earliest time the next chunk may be read, if it is in the future.
    pub(crate) fn wait_until(&self, now: Instant) -> Option<Instant> {
        self.next_read.filter(|at| *at > now)
    }
}

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
}
