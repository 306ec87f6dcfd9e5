//! Sequencing pieces: the RTT/RTO estimator, the incoming reorder buffer and the outgoing
//! resend buffer. Small pure types; the session composes them.
//!
//! Constants and formulas: SPEC.md §5.5 and §5.9 (plugin `src/config/config.go`,
//! `src/datachannel/streaming.go` `CalculateRetransmissionTimeout`; agent
//! `agent/session/config/config.go`, `agent/session/datachannel/datachannel.go`).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::codec::SequenceNumber;

/// Round-trip estimator with the upstream constants (RFC 6298 shape, 1 s cap).
#[derive(Clone, Debug, PartialEq)]
pub struct RttEstimator {
    rtt: Duration,
    rttvar: Duration,
    rto: Duration,
}

impl Default for RttEstimator {
    fn default() -> Self {
        Self {
            rtt: INITIAL_RTT,
            rttvar: Duration::ZERO,
            rto: INITIAL_RTO,
        }
    }
}

impl RttEstimator {
    /// Feeds one round-trip sample: RTTVAR first (using the old RTT), then RTT, then RTO.
    pub fn update(&mut self, sample: Duration) {
        let rtt = self.rtt.as_secs_f64();
        let r = sample.as_secs_f64();
        let rttvar = (1.0 - BETA) * self.rttvar.as_secs_f64() + BETA * (rtt - r).abs();
        let rtt = (1.0 - ALPHA) * rtt + ALPHA * r;
        let rto =
            (rtt + CLOCK_GRANULARITY.as_secs_f64().max(4.0 * rttvar)).min(MAX_RTO.as_secs_f64());
        self.rttvar = Duration::from_secs_f64(rttvar);
        self.rtt = Duration::from_secs_f64(rtt);
        self.rto = Duration::from_secs_f64(rto);
    }

    /// Smoothed round-trip time.
    pub fn rtt(&self) -> Duration {
        self.rtt
    }

    /// Round-trip variation.
    pub fn rttvar(&self) -> Duration {
        self.rttvar
    }

    /// Current retransmission timeout.
    pub fn rto(&self) -> Duration {
        self.rto
    }
}

/// Where an incoming sequence number falls relative to the next expected one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arrival {
    /// The next expected message.
    InOrder,
    /// Ahead of the expected one and within the buffer's reach.
    Early,
    /// Already delivered: re-ack, do not deliver.
    Duplicate,
    /// Too far ahead (or the buffer is full): drop without ack.
    OutOfWindow,
}

/// Holds messages that arrived ahead of the expected sequence number, up to a capacity.
#[derive(Clone, Debug)]
pub struct ReorderBuffer<T> {
    expected: SequenceNumber,
    /// Early messages with their sizes.
    early: BTreeMap<i64, (usize, T)>,
    capacity: usize,
    max_bytes: usize,
    bytes: usize,
}

impl<T> ReorderBuffer<T> {
    /// An empty buffer expecting sequence 0, holding at most `capacity` early messages.
    pub fn new(capacity: usize) -> Self {
        Self::with_max_bytes(capacity, usize::MAX)
    }

    /// The same, also holding at most `max_bytes` of early payload: a peer flooding reordered
    /// messages cannot make us hold more.
    pub fn with_max_bytes(capacity: usize, max_bytes: usize) -> Self {
        Self {
            expected: SequenceNumber(0),
            early: BTreeMap::new(),
            capacity,
            max_bytes,
            bytes: 0,
        }
    }

    /// The next sequence number to deliver.
    pub fn expected(&self) -> SequenceNumber {
        self.expected
    }

    /// Classifies `seq` without changing anything.
    pub fn classify(&self, seq: SequenceNumber) -> Arrival {
        self.classify_sized(seq, 0)
    }

    /// Classifies `seq`, a message of `size` bytes, without changing anything: out of the
    /// window also when holding it would exceed the byte limit.
    pub fn classify_sized(&self, seq: SequenceNumber, size: usize) -> Arrival {
        if seq == self.expected {
            Arrival::InOrder
        } else if seq < self.expected {
            Arrival::Duplicate
        } else if self.early.contains_key(&seq.0) {
            // Already buffered and acked once: treat like a duplicate (re-ack).
            Arrival::Duplicate
        } else if self.early.len() >= self.capacity
            || (seq.0 - self.expected.0) as u64 > self.capacity as u64
            || self.bytes.saturating_add(size) > self.max_bytes
        {
            Arrival::OutOfWindow
        } else {
            Arrival::Early
        }
    }

    /// Stores an early message; the caller checked [`Arrival::Early`].
    pub fn insert_early(&mut self, seq: SequenceNumber, item: T) {
        self.insert_early_sized(seq, item, 0);
    }

    /// Buffers `item`, `size` bytes, as the early message `seq`.
    pub fn insert_early_sized(&mut self, seq: SequenceNumber, item: T, size: usize) {
        self.bytes += size;
        if let Some((old, _)) = self.early.insert(seq.0, (size, item)) {
            self.bytes -= old;
        }
    }

    /// Marks the expected message delivered and advances.
    pub fn advance(&mut self) {
        self.expected = self.expected.next();
    }

    /// Takes the buffered message that is now expected, if any (the caller then delivers it
    /// through the in-order path and calls [`ReorderBuffer::advance`]).
    pub fn take_expected(&mut self) -> Option<T> {
        let (size, item) = self.early.remove(&self.expected.0)?;
        self.bytes -= size;
        Some(item)
    }

    /// Payload bytes held in early messages.
    pub fn buffered_bytes(&self) -> usize {
        self.bytes
    }

    /// Messages waiting for a gap to fill.
    pub fn buffered(&self) -> usize {
        self.early.len()
    }

    /// Sequence numbers of the buffered early messages, ascending.
    pub fn buffered_sequence_numbers(&self) -> Vec<i64> {
        self.early.keys().copied().collect()
    }
}

/// One outgoing stream message kept until acknowledged.
#[derive(Clone, Debug)]
pub struct Outgoing {
    /// The encoded frame, resent unchanged.
    pub frame: Vec<u8>,
    /// Canonical message id, to check acks.
    pub message_id: String,
    /// First transmission, if any.
    pub first_sent: Option<Instant>,
    /// Latest (re)transmission, if any.
    pub last_sent: Option<Instant>,
    /// How many times it was retransmitted.
    pub retransmissions: u32,
}

/// Outgoing stream messages by sequence number: queued (never sent) and in flight (unacked).
#[derive(Clone, Debug, Default)]
pub struct ResendBuffer {
    messages: BTreeMap<i64, Outgoing>,
    next_seq: SequenceNumber,
    /// Lowest sequence number never transmitted (everything below was sent at least once).
    next_unsent: SequenceNumber,
}

impl ResendBuffer {
    /// Assigns the next sequence number to `build(seq)`'s message and queues it.
    pub fn push(&mut self, build: impl FnOnce(SequenceNumber) -> (Vec<u8>, String)) {
        let seq = self.next_seq;
        let (frame, message_id) = build(seq);
        self.messages.insert(
            seq.0,
            Outgoing {
                frame,
                message_id,
                first_sent: None,
                last_sent: None,
                retransmissions: 0,
            },
        );
        self.next_seq = seq.next();
    }

    /// Sequence number the next pushed message gets.
    pub fn next_seq(&self) -> SequenceNumber {
        self.next_seq
    }

    /// Removes an acked message; `None` when unknown (already acked or never sent).
    pub fn ack(&mut self, seq: SequenceNumber) -> Option<Outgoing> {
        self.messages.remove(&seq.0)
    }

    /// Looks up an unacked message.
    pub fn get(&self, seq: SequenceNumber) -> Option<&Outgoing> {
        self.messages.get(&seq.0)
    }

    /// The oldest message not yet transmitted.
    pub fn next_unsent(&mut self) -> Option<(SequenceNumber, &mut Outgoing)> {
        // Skip numbers acked before they were sent (cannot happen with honest peers, but an ack
        // for a queued message must not wedge the queue).
        while self.next_unsent < self.next_seq && !self.messages.contains_key(&self.next_unsent.0) {
            self.next_unsent = self.next_unsent.next();
        }
        let seq = self.next_unsent;
        self.messages.get_mut(&seq.0).map(|m| (seq, m))
    }

    /// Marks the message returned by [`ResendBuffer::next_unsent`] as transmitted.
    pub fn mark_sent(&mut self, seq: SequenceNumber, now: Instant) {
        if let Some(m) = self.messages.get_mut(&seq.0) {
            m.first_sent = Some(now);
            m.last_sent = Some(now);
        }
        if seq == self.next_unsent {
            self.next_unsent = seq.next();
        }
    }

    /// The oldest transmitted, unacked message (the only one the scheduler retransmits).
    pub fn head_in_flight(&mut self) -> Option<(SequenceNumber, &mut Outgoing)> {
        let (&seq, msg) = self.messages.iter_mut().next()?;
        msg.last_sent?;
        Some((SequenceNumber(seq), msg))
    }

    /// When the head must be retransmitted, given the RTO.
    pub fn head_deadline(&self, rto: Duration) -> Option<Instant> {
        let msg = self.messages.values().next()?;
        msg.last_sent.map(|t| t + rto)
    }

    /// Makes every transmitted message eligible for immediate retransmission (after a reconnect).
    pub fn expire_all(&mut self, now: Instant, rto: Duration) {
        for msg in self.messages.values_mut() {
            if let Some(last) = msg.last_sent.as_mut() {
                *last = now.checked_sub(rto).unwrap_or(*last).min(*last);
            }
        }
    }

    /// The first message at or after `from` that was transmitted and is still unacked.
    pub fn in_flight_from(
        &mut self,
        from: SequenceNumber,
    ) -> Option<(SequenceNumber, &mut Outgoing)> {
        self.messages
            .range_mut(from.0..self.next_unsent.0)
            .find(|(_, msg)| msg.last_sent.is_some())
            .map(|(&seq, msg)| (SequenceNumber(seq), msg))
    }

    /// Messages transmitted but not acknowledged.
    pub fn in_flight(&self) -> usize {
        let unsent = (self.next_seq.0 - self.next_unsent.0).max(0) as usize;
        self.messages.len().saturating_sub(unsent)
    }

    /// Sequence numbers queued or in flight, ascending.
    pub fn sequence_numbers(&self) -> Vec<i64> {
        self.messages.keys().copied().collect()
    }

    /// Messages queued or in flight.
    pub fn len(&self) -> usize {
        self.messages.len()
    }

    /// Whether nothing is queued or in flight.
    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }
}

/// Initial RTT (plugin `config.go` `DefaultRoundTripTime`).
pub const INITIAL_RTT: Duration = Duration::from_millis(100);
/// Initial RTO (plugin `config.go` `DefaultTransmissionTimeout`).
pub const INITIAL_RTO: Duration = Duration::from_millis(200);
/// Upper bound of the RTO (plugin `config.go` `MaxTransmissionTimeout`).
pub const MAX_RTO: Duration = Duration::from_secs(1);
/// Clock granularity G (plugin `config.go` `ClockGranularity`).
pub const CLOCK_GRANULARITY: Duration = Duration::from_millis(10);
/// RTT gain α (plugin `config.go` `RTTConstant`).
const ALPHA: f64 = 1.0 / 8.0;
/// RTTVAR gain β (plugin `config.go` `RTTVConstant`).
const BETA: f64 = 1.0 / 4.0;

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: f64) -> Duration {
        Duration::from_secs_f64(v / 1000.0)
    }

    #[test]
    fn estimator_matches_spec_examples() {
        let mut e = RttEstimator::default();
        assert_eq!(e.rto(), ms(200.0));
        e.update(ms(100.0));
        assert!((e.rto().as_secs_f64() * 1000.0 - 110.0).abs() < 1e-6);
        e.update(ms(100.0));
        e.update(ms(40.0));
        assert!((e.rto().as_secs_f64() * 1000.0 - 152.5).abs() < 1e-6);
        e.update(ms(40.0));
        assert!((e.rto().as_secs_f64() * 1000.0 - 183.4375).abs() < 1e-6);
        e.update(ms(2000.0));
        assert_eq!(e.rto(), MAX_RTO);
    }

    #[test]
    fn reorder_buffer_classifies_and_drains() {
        let mut b = ReorderBuffer::new(4);
        assert_eq!(b.classify(SequenceNumber(0)), Arrival::InOrder);
        assert_eq!(b.classify(SequenceNumber(2)), Arrival::Early);
        b.insert_early(SequenceNumber(2), "two");
        assert_eq!(b.classify(SequenceNumber(2)), Arrival::Duplicate);
        assert_eq!(b.classify(SequenceNumber(9)), Arrival::OutOfWindow);
        b.advance();
        assert_eq!(b.take_expected(), None);
        b.advance();
        assert_eq!(b.take_expected(), Some("two"));
        b.advance();
        assert_eq!(b.classify(SequenceNumber(1)), Arrival::Duplicate);
        assert_eq!(b.expected(), SequenceNumber(3));
    }

    #[test]
    fn reorder_buffer_refuses_when_full() {
        let mut b = ReorderBuffer::new(2);
        b.insert_early(SequenceNumber(1), ());
        b.insert_early(SequenceNumber(2), ());
        assert_eq!(b.classify(SequenceNumber(3)), Arrival::OutOfWindow);
    }

    #[test]
    fn resend_buffer_tracks_unsent_in_flight_and_acks() {
        let now = Instant::now();
        let mut r = ResendBuffer::default();
        for _ in 0..3 {
            r.push(|seq| (vec![seq.0 as u8], format!("id{}", seq.0)));
        }
        assert_eq!(r.in_flight(), 0);
        let (seq, _) = r.next_unsent().expect("three queued");
        assert_eq!(seq, SequenceNumber(0));
        r.mark_sent(seq, now);
        assert_eq!(r.in_flight(), 1);
        assert_eq!(r.head_deadline(INITIAL_RTO), Some(now + INITIAL_RTO));
        assert!(r.ack(SequenceNumber(0)).is_some());
        assert!(r.ack(SequenceNumber(0)).is_none());
        assert_eq!(r.head_deadline(INITIAL_RTO), None, "head 1 never sent");
        assert_eq!(r.len(), 2);
    }

    #[test]
    fn early_messages_are_capped_in_bytes_too() {
        let mut b = ReorderBuffer::with_max_bytes(100, 10);
        assert_eq!(b.classify_sized(SequenceNumber(1), 6), Arrival::Early);
        b.insert_early_sized(SequenceNumber(1), "one", 6);
        assert_eq!(b.classify_sized(SequenceNumber(2), 5), Arrival::OutOfWindow);
        assert_eq!(b.classify_sized(SequenceNumber(2), 4), Arrival::Early);
        b.insert_early_sized(SequenceNumber(2), "two", 4);
        assert_eq!(b.buffered_bytes(), 10);
        assert_eq!(b.classify_sized(SequenceNumber(0), 1000), Arrival::InOrder);
        b.advance();
        assert_eq!(b.take_expected(), Some("one"));
        assert_eq!(b.buffered_bytes(), 4);
    }
}
