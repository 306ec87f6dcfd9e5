//! Upload pacing: how many bytes a link may have handed to the session and not yet seen
//! acknowledged. Pure state, fed with the session's smoothed RTT (delay-based, in the spirit
//! of TCP Vegas and LEDBAT).
//!
//! Why: the agent copies data-channel input into an smux session whose receive budget is
//! 4 MiB for all streams together (smux `MaxReceiveBuffer`, SPEC.md §6.7). When a destination
//! reads slowly that budget fills, the agent stops reading its smux pipe, its input handler
//! blocks, acknowledgements slow down and every stream of the session stalls behind the one
//! slow reader. The session's own send window (10 000 messages, about 10 MB) is far above the
//! budget, so it cannot protect the agent. The window here starts small, grows while the RTT
//! stays under twice the smallest RTT seen (less than a bandwidth-delay product is queued),
//! holds between that and 5 ms of queueing (jitter on a fast path), shrinks when the RTT
//! rises beyond both (data is piling up at the agent), and never exceeds [`MAX_WINDOW`], half
//! the agent's budget, so acknowledged-but-unconsumed bytes plus bytes in flight stay inside
//! it.
//!
//! A window-limited sender moves `window / srtt` bytes a second, and the RTT only exceeds
//! twice its minimum once the window holds more than two bandwidth-delay products: growing
//! then buys no speed, only memory (on loopback it would climb to [`MAX_WINDOW`] while the
//! queueing stays under the slack).
//!
//! It must not read clocks or sockets: the link passes `now` and the RTT.

use std::time::{Duration, Instant};

/// The adaptive limit on unacknowledged upload bytes of one session.
#[derive(Clone, Debug)]
pub struct UploadWindow {
    window: usize,
    min_rtt: Option<Duration>,
    next_adjust: Option<Instant>,
}

impl UploadWindow {
    /// A window of [`INITIAL_WINDOW`] bytes.
    pub fn new() -> Self {
        Self {
            window: INITIAL_WINDOW,
            min_rtt: None,
            next_adjust: None,
        }
    }

    /// The current window in bytes.
    pub fn window(&self) -> usize {
        self.window
    }

    /// How many more bytes may be handed to the session with `outstanding` bytes unacked.
    pub fn available(&self, outstanding: usize) -> usize {
        self.window.saturating_sub(outstanding)
    }

    /// Adjusts the window at most once per RTT from the smoothed RTT `srtt`; `outstanding`
    /// says whether the window is what limits the sender (only then does growing help).
    pub fn handle_rtt(&mut self, now: Instant, srtt: Duration, outstanding: usize) {
        if srtt.is_zero() {
            return;
        }
        let min_rtt = self.min_rtt.map_or(srtt, |m| m.min(srtt));
        self.min_rtt = Some(min_rtt);
        if self.next_adjust.is_some_and(|t| now < t) {
            return;
        }
        self.next_adjust = Some(now + srtt.max(MIN_ADJUST_INTERVAL));
        let queueing = srtt.saturating_sub(min_rtt);
        if queueing > min_rtt.max(QUEUEING_SLACK) {
            // The RTT more than doubled: bytes are waiting at the agent. Back off.
            self.window = (self.window * 3 / 4).max(MIN_WINDOW);
            tracing::debug!(
                window = self.window,
                ?srtt,
                ?min_rtt,
                "upload window shrinks"
            );
        } else if queueing <= min_rtt && outstanding * 2 >= self.window && self.window < MAX_WINDOW
        {
            // Less than the path's own RTT is queued: the window is under twice the
            // bandwidth-delay product, so a larger one can still raise the rate. Beyond that
            // it would only add queued bytes (and memory), not speed.
            self.window = (self.window * 2).min(MAX_WINDOW);
            tracing::trace!(window = self.window, ?srtt, "upload window grows");
        }
    }
}

impl Default for UploadWindow {
    fn default() -> Self {
        Self::new()
    }
}

/// The first window: a quarter of the largest, enough for a fast start on short RTTs.
pub const INITIAL_WINDOW: usize = 256 * 1024;
/// The smallest window: 64 messages keep a trickle going even when the agent is slow.
pub const MIN_WINDOW: usize = 64 * 1024;
/// Half the agent's smux receive budget (smux `MaxReceiveBuffer`, 4 MiB).
pub const MAX_WINDOW: usize = 2 * 1024 * 1024;
/// Queueing delay below this is noise (timer and scheduling jitter on a fast path).
const QUEUEING_SLACK: Duration = Duration::from_millis(5);
/// Adjust no more often than this even when the RTT is tiny.
const MIN_ADJUST_INTERVAL: Duration = Duration::from_millis(10);

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn grows_to_the_cap_while_the_rtt_is_flat_and_the_window_is_used() {
        let t0 = Instant::now();
        let mut w = UploadWindow::new();
        for i in 0..20 {
            let outstanding = w.window();
            w.handle_rtt(t0 + MS * 100 * i, MS * 40, outstanding);
        }
        assert_eq!(w.window(), MAX_WINDOW);
    }

    #[test]
    fn does_not_grow_when_the_sender_is_not_window_limited() {
        let t0 = Instant::now();
        let mut w = UploadWindow::new();
        for i in 0..20 {
            w.handle_rtt(t0 + MS * 100 * i, MS * 40, 1024);
        }
        assert_eq!(w.window(), INITIAL_WINDOW);
    }

    #[test]
    fn shrinks_when_the_rtt_rises_but_never_below_the_floor() {
        let t0 = Instant::now();
        let mut w = UploadWindow::new();
        w.handle_rtt(t0, MS * 40, 0);
        for i in 1..40 {
            let outstanding = w.window();
            w.handle_rtt(t0 + MS * 500 * i, MS * 400, outstanding);
        }
        assert_eq!(w.window(), MIN_WINDOW);
        assert_eq!(w.available(MIN_WINDOW + 1), 0);
    }

    #[test]
    fn adjusts_at_most_once_per_rtt() {
        let t0 = Instant::now();
        let mut w = UploadWindow::new();
        w.handle_rtt(t0, MS * 50, INITIAL_WINDOW);
        let after_first = w.window();
        w.handle_rtt(t0 + MS * 10, MS * 50, after_first);
        assert_eq!(w.window(), after_first);
        w.handle_rtt(t0 + MS * 60, MS * 50, after_first);
        assert_eq!(w.window(), after_first * 2);
    }

    #[test]
    fn small_jitter_on_a_fast_path_is_not_congestion() {
        let t0 = Instant::now();
        let mut w = UploadWindow::new();
        w.handle_rtt(t0, MS / 2, 0);
        let before = w.window();
        w.handle_rtt(t0 + MS * 20, MS * 3, before);
        assert!(w.window() >= before);
    }

    #[test]
    fn stops_growing_once_the_rtt_has_doubled_even_under_the_slack() {
        let t0 = Instant::now();
        let mut w = UploadWindow::new();
        w.handle_rtt(t0, MS / 4, 0);
        for i in 1..40 {
            let outstanding = w.window();
            // 1.5 ms of queueing: below the slack, so no back-off, but six times the path.
            w.handle_rtt(t0 + MS * 20 * i, MS * 7 / 4, outstanding);
        }
        assert_eq!(w.window(), INITIAL_WINDOW);
    }

    #[test]
    fn the_cap_is_half_the_agents_smux_budget() {
        assert_eq!(MAX_WINDOW * 2, postern_protocol::mux::MAX_RECEIVE_BUFFER);
    }
}
