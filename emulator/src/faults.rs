//! Fault injection on the path from the agent to the client: the [`Shaper`] sits between
//! `Session::poll_transmit` and the websocket and delays, duplicates, reorders or drops frames
//! and inserts publication pauses, and tampers with an Output payload, as [`Faults`] asks.
//! Websocket closes and stalls are counted here too ([`CloseCounter`]) and carried out by the
//! driver.
//!
//! Deterministic: every fault fires on a message count, never at random.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use postern_protocol::{ClientMessage, MessageType, PayloadType};
use tokio::time::Instant;

use crate::config::Faults;
use crate::gateway;

/// Shapes one session's outgoing frames.
#[derive(Debug)]
pub(crate) struct Shaper {
    faults: Faults,
    queue: VecDeque<(Instant, Vec<u8>)>,
    reorder_held: Option<(Instant, Vec<u8>)>,
    outgoing: u64,
    stream: u64,
    acks: u64,
    outputs: u64,
    pause: Option<Instant>,
    /// Sessions tampered with, across the emulator.
    tampered: Arc<AtomicU64>,
}

impl Shaper {
    pub(crate) fn new(faults: Faults) -> Self {
        Self {
            faults,
            queue: VecDeque::new(),
            reorder_held: None,
            outgoing: 0,
            stream: 0,
            acks: 0,
            outputs: 0,
            pause: None,
            tampered: Arc::default(),
        }
    }

    /// Counts tampered sessions in `tampered`, shared by every session's shaper.
    pub(crate) fn counting_tampers(mut self, tampered: Arc<AtomicU64>) -> Self {
        self.tampered = tampered;
        self
    }

    /// Takes one frame from the session.
    pub(crate) fn push(&mut self, now: Instant, frame: Vec<u8>) {
        let message_type = gateway::peek_message_type(&frame);
        let frame = if message_type == Some(MessageType::OutputStreamData) {
            self.maybe_tamper(frame)
        } else {
            frame
        };
        if message_type == Some(MessageType::Acknowledge) {
            self.acks += 1;
            if every(self.faults.drop_acks_every, self.acks) {
                tracing::debug!(ack = self.acks, "fault: dropping an ack");
                return;
            }
        }
        self.outgoing += 1;
        let due = now + self.faults.delay.unwrap_or(Duration::ZERO);
        let duplicate = message_type == Some(MessageType::OutputStreamData) && {
            self.stream += 1;
            every(self.faults.duplicate_every, self.stream)
        };
        if every(self.faults.reorder_every, self.outgoing) && self.reorder_held.is_none() {
            // Held until the next frame passes it, or briefly when none comes.
            self.reorder_held = Some((due + REORDER_HOLD_MAX, frame));
            return;
        }
        if duplicate {
            self.queue.push_back((due, frame.clone()));
        }
        self.queue.push_back((due, frame));
        if let Some((_, held)) = self.reorder_held.take() {
            self.queue.push_back((due, held));
        }
        if every(self.faults.pause_every, self.outgoing) && self.pause.is_none() {
            let until = now + self.faults.pause_for;
            tracing::debug!(?until, "fault: pausing publication");
            self.queue.push_front((now, gateway::pause_publication()));
            self.pause = Some(until);
        }
    }

    /// Flips the last payload byte of the [`Faults::tamper_output`]-th Output message and
    /// re-encodes it with a valid digest: only payload decryption can tell.
    fn maybe_tamper(&mut self, frame: Vec<u8>) -> Vec<u8> {
        let Some(n) = self.faults.tamper_output else {
            return frame;
        };
        let Ok(mut message) = ClientMessage::decode(&frame) else {
            return frame;
        };
        if message.payload_type != PayloadType::Output {
            return frame;
        }
        self.outputs += 1;
        if self.outputs != n {
            return frame;
        }
        let earlier = self.tampered.fetch_add(1, Ordering::Relaxed);
        if self
            .faults
            .tamper_sessions
            .is_some_and(|limit| earlier >= limit)
        {
            return frame;
        }
        if let Some(last) = message.payload.last_mut() {
            *last ^= 0x01;
        }
        tracing::info!(output = n, "fault: tampering with an Output payload");
        message.encode().unwrap_or(frame)
    }

    /// The next frame due at `now`, if any.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<Vec<u8>> {
        if let Some(until) = self.pause {
            // The pause frame itself goes out first; everything else waits.
            if let Some((_, frame)) = self.queue.front()
                && gateway::peek_message_type(frame) == Some(MessageType::PausePublication)
            {
                return self.queue.pop_front().map(|(_, frame)| frame);
            }
            if now < until {
                return None;
            }
            self.pause = None;
            return Some(gateway::start_publication());
        }
        if let Some((due, _)) = &self.reorder_held
            && *due <= now
        {
            return self.reorder_held.take().map(|(_, frame)| frame);
        }
        match self.queue.front() {
            Some((due, _)) if *due <= now => self.queue.pop_front().map(|(_, frame)| frame),
            _ => None,
        }
    }

    /// When the next held frame becomes due.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        if let Some(until) = self.pause {
            return Some(until);
        }
        let queued = self.queue.front().map(|(due, _)| *due);
        let held = self.reorder_held.as_ref().map(|(due, _)| *due);
        match (queued, held) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// A new websocket: frames held for the old one are dropped (the session retransmits what
    /// matters).
    pub(crate) fn reset(&mut self) {
        self.queue.clear();
        self.reorder_held = None;
        self.pause = None;
    }
}

/// Counts messages per websocket and per session for the close faults.
#[derive(Debug, Default)]
pub(crate) struct CloseCounter {
    on_socket: u64,
    in_session: u64,
    closed_once: bool,
    stalled_once: bool,
}

impl CloseCounter {
    /// Counts one message; returns whether the websocket must now be closed.
    pub(crate) fn count(&mut self, faults: &Faults) -> bool {
        self.on_socket += 1;
        self.in_session += 1;
        if faults.close_every.is_some_and(|n| self.on_socket >= n) {
            return true;
        }
        if !self.closed_once && faults.close_after.is_some_and(|n| self.in_session >= n) {
            self.closed_once = true;
            return true;
        }
        false
    }

    /// A new websocket starts counting from zero.
    pub(crate) fn new_socket(&mut self) {
        self.on_socket = 0;
    }

    /// Whether the websocket must now stall ([`Faults::stall_after`], once per session);
    /// asked after [`CloseCounter::count`].
    pub(crate) fn stall(&mut self, faults: &Faults) -> bool {
        if !self.stalled_once && faults.stall_after.is_some_and(|n| self.in_session >= n) {
            self.stalled_once = true;
            return true;
        }
        false
    }
}

fn every(n: Option<u64>, count: u64) -> bool {
    n.is_some_and(|n| n > 0 && count.is_multiple_of(n))
}

/// Longest a reordered frame waits for a successor.
const REORDER_HOLD_MAX: Duration = Duration::from_millis(20);

#[cfg(test)]
mod tests {
    use postern_protocol::{AcknowledgeContent, MessageId, SCHEMA_VERSION, SequenceNumber};

    use super::*;

    fn stream(seq: i64) -> Vec<u8> {
        message(MessageType::OutputStreamData, seq, b"x".to_vec())
    }

    fn ack(seq: i64) -> Vec<u8> {
        let content = AcknowledgeContent {
            message_type: "input_stream_data".to_owned(),
            message_id: uuid::Uuid::nil().to_string(),
            sequence_number: seq,
            is_sequential_message: true,
        };
        message(
            MessageType::Acknowledge,
            0,
            serde_json::to_vec(&content).unwrap(),
        )
    }

    fn message(message_type: MessageType, seq: i64, payload: Vec<u8>) -> Vec<u8> {
        ClientMessage {
            message_type,
            schema_version: SCHEMA_VERSION,
            created_date: 1,
            sequence_number: SequenceNumber(seq),
            flags: 0,
            message_id: MessageId(uuid::Uuid::nil()),
            payload_type: PayloadType::Output,
            payload,
        }
        .encode()
        .unwrap()
    }

    fn drain(shaper: &mut Shaper, now: Instant) -> Vec<Vec<u8>> {
        std::iter::from_fn(|| shaper.pop_due(now)).collect()
    }

    #[test]
    fn no_faults_passes_frames_in_order() {
        let now = Instant::now();
        let mut shaper = Shaper::new(Faults::default());
        shaper.push(now, stream(0));
        shaper.push(now, ack(0));
        assert_eq!(drain(&mut shaper, now), vec![stream(0), ack(0)]);
    }

    #[test]
    fn duplicates_every_second_stream_message() {
        let now = Instant::now();
        let mut shaper = Shaper::new(Faults {
            duplicate_every: Some(2),
            ..Faults::default()
        });
        for seq in 0..4 {
            shaper.push(now, stream(seq));
        }
        let out = drain(&mut shaper, now);
        assert_eq!(
            out,
            vec![
                stream(0),
                stream(1),
                stream(1),
                stream(2),
                stream(3),
                stream(3)
            ]
        );
    }

    #[test]
    fn reorder_swaps_with_the_next_frame() {
        let now = Instant::now();
        let mut shaper = Shaper::new(Faults {
            reorder_every: Some(2),
            ..Faults::default()
        });
        for seq in 0..4 {
            shaper.push(now, stream(seq));
        }
        assert_eq!(
            drain(&mut shaper, now),
            vec![stream(0), stream(2), stream(1)]
        );
        // The last one waits for a successor, then leaves on its own.
        assert_eq!(drain(&mut shaper, now + REORDER_HOLD_MAX), vec![stream(3)]);
    }

    #[test]
    fn drops_every_ack_when_asked() {
        let now = Instant::now();
        let mut shaper = Shaper::new(Faults {
            drop_acks_every: Some(1),
            ..Faults::default()
        });
        shaper.push(now, ack(0));
        shaper.push(now, stream(0));
        assert_eq!(drain(&mut shaper, now), vec![stream(0)]);
    }

    #[test]
    fn delay_holds_frames() {
        let now = Instant::now();
        let delay = Duration::from_millis(30);
        let mut shaper = Shaper::new(Faults {
            delay: Some(delay),
            ..Faults::default()
        });
        shaper.push(now, stream(0));
        assert!(drain(&mut shaper, now).is_empty());
        assert_eq!(shaper.next_deadline(), Some(now + delay));
        assert_eq!(drain(&mut shaper, now + delay), vec![stream(0)]);
    }

    #[test]
    fn pause_sends_pause_then_holds_then_start() {
        let now = Instant::now();
        let pause_for = Duration::from_millis(50);
        let mut shaper = Shaper::new(Faults {
            pause_every: Some(2),
            pause_for,
            ..Faults::default()
        });
        shaper.push(now, stream(0));
        shaper.push(now, stream(1));
        let first = drain(&mut shaper, now);
        assert_eq!(first.len(), 1);
        assert_eq!(
            gateway::peek_message_type(&first[0]),
            Some(MessageType::PausePublication)
        );
        let later = drain(&mut shaper, now + pause_for);
        assert_eq!(
            gateway::peek_message_type(&later[0]),
            Some(MessageType::StartPublication)
        );
        assert_eq!(&later[1..], &[stream(0), stream(1)]);
    }

    #[test]
    fn tampers_with_exactly_the_nth_output_and_keeps_the_digest_valid() {
        let now = Instant::now();
        let mut shaper = Shaper::new(Faults {
            tamper_output: Some(2),
            ..Faults::default()
        });
        for seq in 0..3 {
            shaper.push(now, stream(seq));
        }
        let out = drain(&mut shaper, now);
        assert_eq!(out[0], stream(0));
        assert_eq!(out[2], stream(2));
        let tampered = ClientMessage::decode(&out[1]).expect("still a valid message");
        assert_eq!(tampered.payload, vec![b'x' ^ 0x01]);
    }

    #[test]
    fn stall_fires_once_per_session() {
        let faults = Faults {
            stall_after: Some(2),
            ..Faults::default()
        };
        let mut counter = CloseCounter::default();
        assert!(!counter.count(&faults));
        assert!(!counter.stall(&faults));
        assert!(!counter.count(&faults));
        assert!(counter.stall(&faults));
        counter.new_socket();
        assert!(!counter.count(&faults));
        assert!(!counter.stall(&faults));
    }

    #[test]
    fn close_counter_fires_once_or_every_socket() {
        let once = Faults {
            close_after: Some(2),
            ..Faults::default()
        };
        let mut counter = CloseCounter::default();
        assert!(!counter.count(&once));
        assert!(counter.count(&once));
        counter.new_socket();
        assert!(!counter.count(&once));
        assert!(!counter.count(&once));
        let every_socket = Faults {
            close_every: Some(2),
            ..Faults::default()
        };
        let mut counter = CloseCounter::default();
        assert!(!counter.count(&every_socket));
        assert!(counter.count(&every_socket));
        counter.new_socket();
        assert!(!counter.count(&every_socket));
        assert!(counter.count(&every_socket));
    }
}
