//! Websocket keepalive and dead-connection detection (SPEC.md §2.4): a Ping every `interval`,
//! and a connection that sent nothing at all (no Pong, no frame) for a whole interval after a
//! Ping is dead. Pure: the driver sends the Ping, tells it what arrived, and sleeps until
//! [`Keepalive::poll_timeout`].
//!
//! The official client pings every 5 minutes and never declares a connection dead; the agent
//! pings every 54 s and gives up 60 s after the last Pong (agent
//! `agent/session/config/config.go`). Pings keep NATs, proxies and the service's idle
//! detection from closing an idle websocket; the deadline turns a laptop sleep or a silently
//! dropped route into a reconnection within two intervals. Pings are not data-channel
//! messages: they never count as session activity. It must not touch sockets or clocks.

use std::time::{Duration, Instant};

/// What the driver must do now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeepaliveAction {
    /// Send a websocket Ping.
    SendPing,
    /// Nothing arrived for this long since a Ping: treat the websocket as broken.
    Dead(Duration),
}

/// Keepalive state of one websocket.
#[derive(Clone, Debug)]
pub struct Keepalive {
    interval: Option<Duration>,
    next_check: Option<Instant>,
    ping_sent: Option<Instant>,
    last_heard: Instant,
}

impl Keepalive {
    /// Keepalive pinging every `interval` (`None` or zero: off) on a websocket opened at `now`.
    pub fn new(interval: Option<Duration>, now: Instant) -> Self {
        let interval = interval.filter(|i| !i.is_zero());
        Self {
            interval,
            next_check: interval.map(|i| now + i),
            ping_sent: None,
            last_heard: now,
        }
    }

    /// A new websocket replaced the old one at `now`.
    pub fn reset(&mut self, now: Instant) {
        *self = Self::new(self.interval, now);
    }

    /// Something arrived on the websocket (a Pong, a Ping, a data frame).
    pub fn handle_received(&mut self, now: Instant) {
        self.last_heard = now;
    }

    /// When [`Keepalive::handle_timeout`] next has work.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.next_check
    }

    /// Lets time pass; spurious calls return `None`.
    pub fn handle_timeout(&mut self, now: Instant) -> Option<KeepaliveAction> {
        let interval = self.interval?;
        let check = self.next_check?;
        if now < check {
            return None;
        }
        if let Some(sent) = self.ping_sent
            && self.last_heard < sent
        {
            self.next_check = None;
            return Some(KeepaliveAction::Dead(now.saturating_duration_since(sent)));
        }
        self.ping_sent = Some(now);
        self.next_check = Some(now + interval);
        Some(KeepaliveAction::SendPing)
    }

    /// The ping interval, if on.
    pub fn interval(&self) -> Option<Duration> {
        self.interval
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn pings_every_interval_while_pongs_come_back() {
        let start = Instant::now();
        let mut keepalive = Keepalive::new(Some(30 * SECOND), start);
        let mut now = start;
        for _ in 0..120 {
            now = keepalive.poll_timeout().expect("armed");
            assert_eq!(
                keepalive.handle_timeout(now),
                Some(KeepaliveAction::SendPing)
            );
            keepalive.handle_received(now + Duration::from_millis(20));
        }
        assert_eq!(now - start, 3600 * SECOND);
    }

    #[test]
    fn silence_after_a_ping_is_death_within_two_intervals() {
        let start = Instant::now();
        let mut keepalive = Keepalive::new(Some(10 * SECOND), start);
        let first = keepalive.poll_timeout().unwrap();
        assert_eq!(
            keepalive.handle_timeout(first),
            Some(KeepaliveAction::SendPing)
        );
        let second = keepalive.poll_timeout().unwrap();
        assert_eq!(
            keepalive.handle_timeout(second),
            Some(KeepaliveAction::Dead(10 * SECOND))
        );
        assert!(second - start <= 20 * SECOND);
        assert_eq!(keepalive.poll_timeout(), None);
        keepalive.reset(second);
        assert_eq!(keepalive.poll_timeout(), Some(second + 10 * SECOND));
    }

    #[test]
    fn spurious_timeouts_do_nothing_and_off_means_off() {
        let start = Instant::now();
        let mut keepalive = Keepalive::new(Some(SECOND), start);
        assert_eq!(keepalive.handle_timeout(start), None);
        let mut off = Keepalive::new(Some(Duration::ZERO), start);
        assert_eq!(off.poll_timeout(), None);
        assert_eq!(off.handle_timeout(start + 3600 * SECOND), None);
    }
}
