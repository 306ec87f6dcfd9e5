//! `ScriptedPeer`: builds the frames a peer would send (stream data with its own sequence
//! numbers, acks of our frames, service control messages), so tests can play one side of a
//! conversation step by step and assert on exactly what the session answers.

use crate::codec::{
    AcknowledgeContent, ClientMessage, MessageId, MessageType, PayloadType, SCHEMA_VERSION,
    SequenceNumber,
};
use crate::rng::SeededRng;
use crate::session::{Role, Session};
use std::time::Instant;

/// Plays the side opposite to `peer_of`.
pub struct ScriptedPeer {
    role: Role,
    next_seq: i64,
    rng: SeededRng,
}

impl ScriptedPeer {
    /// A peer playing `role` (Agent to test a client session, Client to test an agent session).
    pub fn new(role: Role, seed: u64) -> Self {
        Self {
            role,
            next_seq: 0,
            rng: SeededRng::new(seed),
        }
    }

    /// The peer's next stream message with this payload.
    pub fn stream(&mut self, payload_type: PayloadType, payload: &[u8]) -> Vec<u8> {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.stream_at(seq, payload_type, payload)
    }

    /// A stream message with an explicit sequence number (for reordering and duplicates).
    pub fn stream_at(&mut self, seq: i64, payload_type: PayloadType, payload: &[u8]) -> Vec<u8> {
        let message_type = match self.role {
            Role::Agent => MessageType::OutputStreamData,
            Role::Client => MessageType::InputStreamData,
        };
        let flags = u64::from(self.role == Role::Agent && seq == 0);
        self.build(message_type, seq, flags, payload_type, payload.to_vec())
    }

    /// An ack for one of the session's frames.
    pub fn ack(&mut self, frame: &[u8]) -> Vec<u8> {
        let acked = ClientMessage::decode(frame).expect("session frames decode");
        let content = AcknowledgeContent {
            message_type: acked.message_type.as_str().to_owned(),
            message_id: acked.message_id.to_canonical_string(),
            sequence_number: acked.sequence_number.0,
            is_sequential_message: true,
        };
        let payload = serde_json::to_vec(&content).expect("ack serializes");
        self.build(MessageType::Acknowledge, 0, 3, PayloadType::Null, payload)
    }

    /// A service control message (channel_closed, start/pause_publication).
    pub fn control(&mut self, message_type: MessageType, payload: &[u8]) -> Vec<u8> {
        self.build(message_type, 0, 3, PayloadType::Null, payload.to_vec())
    }

    fn build(
        &mut self,
        message_type: MessageType,
        seq: i64,
        flags: u64,
        payload_type: PayloadType,
        payload: Vec<u8>,
    ) -> Vec<u8> {
        ClientMessage {
            message_type,
            schema_version: SCHEMA_VERSION,
            created_date: 1_700_000_000_000,
            sequence_number: SequenceNumber(seq),
            flags,
            message_id: MessageId::from_random_bytes(self.rng.bytes16()),
            payload_type,
            payload,
        }
        .encode()
        .expect("test messages encode")
    }
}

/// Drains every pending transmit of `session` and decodes it.
pub fn transmits(session: &mut Session, now: Instant) -> Vec<(Vec<u8>, ClientMessage)> {
    std::iter::from_fn(|| session.poll_transmit(now))
        .map(|t| {
            let decoded = ClientMessage::decode(&t.frame).expect("session frames decode");
            (t.frame, decoded)
        })
        .collect()
}
