//! The binary ClientMessage: a fixed 120-byte header followed by the payload.
//!
//! Layout (SPEC.md §3.1; plugin `src/message/clientmessage.go`, `messageparser.go`; agent
//! `agent/session/contracts/agentmessage.go`), all integers big-endian:
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | HeaderLength, always 116 |
//! | 4 | 32 | MessageType, ASCII, space padded |
//! | 36 | 4 | SchemaVersion, 1 |
//! | 40 | 8 | CreatedDate, epoch milliseconds |
//! | 48 | 8 | SequenceNumber, i64 |
//! | 56 | 8 | Flags |
//! | 64 | 16 | MessageId, UUID with its 8-byte halves swapped |
//! | 80 | 32 | PayloadDigest, SHA-256 of the payload |
//! | 112 | 4 | PayloadType |
//! | 116 | 4 | PayloadLength |
//! | 120 | n | Payload |
//!
//! Decoding is strict and never panics: the whole frame (lengths, digest) is checked before a
//! [`ClientMessage`] exists. It must not touch session state.

use sha2::{Digest, Sha256};
use std::fmt;

use crate::error::{DecodeError, EncodeError};

/// A decoded or to-be-encoded data-channel message.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientMessage {
    /// What kind of message this is.
    pub message_type: MessageType,
    /// Always [`SCHEMA_VERSION`] on messages we build.
    pub schema_version: u32,
    /// Creation time, Unix epoch milliseconds.
    pub created_date: u64,
    /// Stream sequence number; 0 for acks and control messages.
    pub sequence_number: SequenceNumber,
    /// 0 for client stream data, 3 for acks (SPEC.md §3.2); receivers ignore it.
    pub flags: u64,
    /// Unique id; acks echo it as a canonical string.
    pub message_id: MessageId,
    /// How to interpret the payload.
    pub payload_type: PayloadType,
    /// Raw payload bytes (possibly encrypted Output).
    pub payload: Vec<u8>,
}

impl ClientMessage {
    /// Serializes into a websocket binary frame body.
    ///
    /// Empty payloads are encodable (the service sends header-only control messages); the session
    /// never produces empty stream data (SPEC.md §10 item 4).
    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        let mut out = Vec::with_capacity(PAYLOAD_OFFSET + self.payload.len());
        self.encode_into(&mut out)?;
        Ok(out)
    }

    /// Appends the serialized message to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let type_name = self.message_type.as_str();
        if type_name.len() > MAX_MESSAGE_TYPE_LEN {
            return Err(EncodeError::MessageTypeTooLong {
                len: type_name.len(),
            });
        }
        if self.payload.len() > MAX_PAYLOAD_LEN {
            return Err(EncodeError::PayloadTooLarge {
                len: self.payload.len(),
            });
        }
        out.reserve(PAYLOAD_OFFSET + self.payload.len());
        out.extend_from_slice(&HEADER_LENGTH.to_be_bytes());
        let mut type_field = [b' '; MAX_MESSAGE_TYPE_LEN];
        type_field[..type_name.len()].copy_from_slice(type_name.as_bytes());
        out.extend_from_slice(&type_field);
        out.extend_from_slice(&self.schema_version.to_be_bytes());
        out.extend_from_slice(&self.created_date.to_be_bytes());
        out.extend_from_slice(&self.sequence_number.0.to_be_bytes());
        out.extend_from_slice(&self.flags.to_be_bytes());
        out.extend_from_slice(&self.message_id.to_wire());
        out.extend_from_slice(&Sha256::digest(&self.payload));
        out.extend_from_slice(&self.payload_type.to_u32().to_be_bytes());
        // Checked against MAX_PAYLOAD_LEN above, which fits in u32.
        out.extend_from_slice(&(self.payload.len() as u32).to_be_bytes());
        out.extend_from_slice(&self.payload);
        Ok(())
    }

    /// Parses and validates one frame received from the peer.
    ///
    /// Checks, in order: length ≥ 120, length ≤ 120 + [`MAX_PAYLOAD_LEN`], HeaderLength = 116,
    /// MessageType present and known, CreatedDate ≠ 0, PayloadLength = length − 120, digest
    /// (when the payload is non-empty), PayloadType known. `start_publication`/`pause_publication` are exempt from the
    /// HeaderLength and CreatedDate checks, as in the official client (SPEC.md §3.4).
    pub fn decode(frame: &[u8]) -> Result<Self, DecodeError> {
        if frame.len() < PAYLOAD_OFFSET {
            return Err(DecodeError::Truncated { len: frame.len() });
        }
        if frame.len() > PAYLOAD_OFFSET + MAX_PAYLOAD_LEN {
            return Err(DecodeError::Oversized { len: frame.len() });
        }
        let header_length = be_u32(frame, 0);
        let type_name = trim_message_type(&frame[4..36]);
        if type_name.is_empty() {
            return Err(DecodeError::MissingMessageType);
        }
        let message_type = MessageType::parse(type_name)
            .ok_or_else(|| DecodeError::UnknownMessageType(lossy(type_name)))?;
        let exempt = message_type.is_publication_control();
        if header_length != HEADER_LENGTH && !exempt {
            return Err(DecodeError::BadHeaderLength { header_length });
        }
        let schema_version = be_u32(frame, 36);
        let created_date = be_u64(frame, 40);
        if created_date == 0 && !exempt {
            return Err(DecodeError::MissingCreatedDate);
        }
        let sequence_number = SequenceNumber(be_u64(frame, 48) as i64);
        let flags = be_u64(frame, 56);
        let message_id = MessageId::from_wire(&frame[64..80]);
        let payload = &frame[PAYLOAD_OFFSET..];
        let payload_length = be_u32(frame, 116);
        if payload_length as usize != payload.len() {
            return Err(DecodeError::PayloadLengthMismatch {
                declared: payload_length,
                actual: payload.len(),
            });
        }
        // A header-only message is not digest-checked, as in the official client (SPEC.md §3.4,
        // plugin `messageparser.go` `Validate`): the service's header-only control messages
        // need not carry SHA-256 of the empty string.
        if !payload.is_empty() && Sha256::digest(payload).as_slice() != &frame[80..112] {
            return Err(DecodeError::BadDigest);
        }
        let raw_payload_type = be_u32(frame, 112);
        let payload_type = PayloadType::from_u32(raw_payload_type)
            .ok_or(DecodeError::UnknownPayloadType(raw_payload_type))?;
        Ok(Self {
            message_type,
            schema_version,
            created_date,
            sequence_number,
            flags,
            message_id,
            payload_type,
            payload: payload.to_vec(),
        })
    }
}

impl fmt::Debug for ClientMessage {
    /// Never prints the payload: it may carry keystrokes or tunnel data.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientMessage")
            .field("message_type", &self.message_type)
            .field("sequence_number", &self.sequence_number.0)
            .field("flags", &self.flags)
            .field("message_id", &self.message_id)
            .field("payload_type", &self.payload_type)
            .field("payload_len", &self.payload.len())
            .finish()
    }
}

/// MessageType values (SPEC.md §3.5; agent `agent/session/contracts/model.go`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MessageType {
    /// Sequenced client → agent data.
    InputStreamData,
    /// Sequenced agent → client data.
    OutputStreamData,
    /// Acknowledgement of one stream message.
    Acknowledge,
    /// The service ended the session.
    ChannelClosed,
    /// The peer is reachable again.
    StartPublication,
    /// The peer is not reachable; stop sending.
    PausePublication,
    /// Agent → service session state; clients ignore it.
    AgentSessionState,
}

impl MessageType {
    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InputStreamData => "input_stream_data",
            Self::OutputStreamData => "output_stream_data",
            Self::Acknowledge => "acknowledge",
            Self::ChannelClosed => "channel_closed",
            Self::StartPublication => "start_publication",
            Self::PausePublication => "pause_publication",
            Self::AgentSessionState => "agent_session_state",
        }
    }

    /// Parses the trimmed wire spelling; `None` for unknown types.
    pub fn parse(name: &[u8]) -> Option<Self> {
        Some(match name {
            b"input_stream_data" => Self::InputStreamData,
            b"output_stream_data" => Self::OutputStreamData,
            b"acknowledge" => Self::Acknowledge,
            b"channel_closed" => Self::ChannelClosed,
            b"start_publication" => Self::StartPublication,
            b"pause_publication" => Self::PausePublication,
            b"agent_session_state" => Self::AgentSessionState,
            _ => return None,
        })
    }

    /// Whether this is sequenced, acknowledged stream data.
    pub fn is_stream_data(self) -> bool {
        matches!(self, Self::InputStreamData | Self::OutputStreamData)
    }

    fn is_publication_control(self) -> bool {
        matches!(self, Self::StartPublication | Self::PausePublication)
    }
}

/// PayloadType values (SPEC.md §3.6; plugin `clientmessage.go`, agent `model.go`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PayloadType {
    /// 0: acks, channel_closed and control messages.
    Null,
    /// 1: terminal, TCP or smux bytes.
    Output,
    /// 2: defined upstream, unused.
    Error,
    /// 3: terminal size JSON.
    Size,
    /// 4: defined upstream, unused.
    Parameter,
    /// 5: agent handshake request.
    HandshakeRequest,
    /// 6: client handshake response.
    HandshakeResponse,
    /// 7: agent handshake complete.
    HandshakeComplete,
    /// 8: agent encryption challenge.
    EncChallengeRequest,
    /// 9: client encryption challenge answer.
    EncChallengeResponse,
    /// 10: 4-byte flag.
    Flag,
    /// 11: standard error of non-interactive commands.
    StdErr,
    /// 12: `EXIT_CODE: <n>`.
    ExitCode,
}

impl PayloadType {
    /// The wire value.
    pub fn to_u32(self) -> u32 {
        match self {
            Self::Null => 0,
            Self::Output => 1,
            Self::Error => 2,
            Self::Size => 3,
            Self::Parameter => 4,
            Self::HandshakeRequest => 5,
            Self::HandshakeResponse => 6,
            Self::HandshakeComplete => 7,
            Self::EncChallengeRequest => 8,
            Self::EncChallengeResponse => 9,
            Self::Flag => 10,
            Self::StdErr => 11,
            Self::ExitCode => 12,
        }
    }

    /// Parses a wire value; `None` for unknown values.
    pub fn from_u32(value: u32) -> Option<Self> {
        Some(match value {
            0 => Self::Null,
            1 => Self::Output,
            2 => Self::Error,
            3 => Self::Size,
            4 => Self::Parameter,
            5 => Self::HandshakeRequest,
            6 => Self::HandshakeResponse,
            7 => Self::HandshakeComplete,
            8 => Self::EncChallengeRequest,
            9 => Self::EncChallengeResponse,
            10 => Self::Flag,
            11 => Self::StdErr,
            12 => Self::ExitCode,
            _ => return None,
        })
    }

    /// Handshake payloads are acked before they are processed (SPEC.md §5.2).
    pub fn is_handshake(self) -> bool {
        matches!(
            self,
            Self::HandshakeRequest
                | Self::HandshakeResponse
                | Self::HandshakeComplete
                | Self::EncChallengeRequest
                | Self::EncChallengeResponse
        )
    }
}

/// A stream sequence number (signed on the wire).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct SequenceNumber(pub i64);

impl SequenceNumber {
    /// The following sequence number.
    pub fn next(self) -> Self {
        Self(self.0.wrapping_add(1))
    }
}

impl fmt::Display for SequenceNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A message id: a UUID whose 8-byte halves are swapped on the wire (SPEC.md §3.2).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MessageId(pub uuid::Uuid);

impl MessageId {
    /// Builds a version-4 id from 16 caller-supplied random bytes.
    pub fn from_random_bytes(bytes: [u8; 16]) -> Self {
        Self(uuid::Builder::from_random_bytes(bytes).into_uuid())
    }

    /// The 16 bytes as they appear at offset 64: canonical bytes 8..16, then 0..8.
    pub fn to_wire(self) -> [u8; 16] {
        let canonical = self.0.as_bytes();
        let mut wire = [0u8; 16];
        wire[..8].copy_from_slice(&canonical[8..]);
        wire[8..].copy_from_slice(&canonical[..8]);
        wire
    }

    /// Reverses [`MessageId::to_wire`]; `wire` must be 16 bytes.
    pub fn from_wire(wire: &[u8]) -> Self {
        let mut canonical = [0u8; 16];
        canonical[..8].copy_from_slice(&wire[8..16]);
        canonical[8..].copy_from_slice(&wire[..8]);
        Self(uuid::Uuid::from_bytes(canonical))
    }

    /// Canonical lowercase hyphenated form, as acks carry it.
    pub fn to_canonical_string(self) -> String {
        self.0.hyphenated().to_string()
    }
}

impl fmt::Debug for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.hyphenated())
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.hyphenated())
    }
}

fn be_u32(frame: &[u8], at: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&frame[at..at + 4]);
    u32::from_be_bytes(b)
}

fn be_u64(frame: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&frame[at..at + 8]);
    u64::from_be_bytes(b)
}

/// Strips NUL bytes from both ends, then ASCII whitespace, as the official readers do.
fn trim_message_type(raw: &[u8]) -> &[u8] {
    let start = raw.iter().position(|&b| b != 0).unwrap_or(raw.len());
    let end = raw.iter().rposition(|&b| b != 0).map_or(start, |i| i + 1);
    raw[start..end].trim_ascii()
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// HeaderLength on the wire: the bytes before the PayloadLength field (SPEC.md §3.1).
pub const HEADER_LENGTH: u32 = 116;
/// Where the payload starts: HeaderLength plus the 4-byte PayloadLength field.
pub const PAYLOAD_OFFSET: usize = 120;
/// Width of the MessageType field.
pub const MAX_MESSAGE_TYPE_LEN: usize = 32;
/// SchemaVersion on every message we build.
pub const SCHEMA_VERSION: u32 = 1;
/// Largest payload we encode or accept: 256 KiB. Stream payloads are at most 1024 bytes
/// (+28 when KMS-encrypted) and handshake JSON is a few KiB; this cap bounds memory per frame
/// against a hostile peer.
pub const MAX_PAYLOAD_LEN: usize = 256 * 1024;

#[cfg(test)]
mod tests {
    use super::*;

    fn header_only(message_type: MessageType, digest: [u8; 32]) -> Vec<u8> {
        let message = ClientMessage {
            message_type,
            schema_version: SCHEMA_VERSION,
            created_date: 1_700_000_000_000,
            sequence_number: SequenceNumber(0),
            flags: 3,
            message_id: MessageId::from_random_bytes([7; 16]),
            payload_type: PayloadType::Null,
            payload: Vec::new(),
        };
        let mut frame = message.encode().unwrap();
        frame[80..112].copy_from_slice(&digest);
        frame
    }

    #[test]
    fn accepts_header_only_message_whatever_its_digest() {
        let frame = header_only(MessageType::PausePublication, [0; 32]);
        let decoded = ClientMessage::decode(&frame).unwrap();
        assert_eq!(decoded.message_type, MessageType::PausePublication);
        assert!(decoded.payload.is_empty());
    }

    #[test]
    fn rejects_bad_digest_on_non_empty_payload() {
        let mut frame = header_only(MessageType::OutputStreamData, [0; 32]);
        frame.push(b'x');
        frame[116..120].copy_from_slice(&1u32.to_be_bytes());
        assert_eq!(ClientMessage::decode(&frame), Err(DecodeError::BadDigest));
    }

    #[test]
    fn message_id_wire_form_swaps_halves() {
        let id = MessageId(uuid::Uuid::from_bytes(core::array::from_fn(|i| i as u8)));
        assert_eq!(
            id.to_wire(),
            [8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7]
        );
        assert_eq!(MessageId::from_wire(&id.to_wire()), id);
    }
}
