//! The acknowledge payload (SPEC.md §4.1; plugin `messageparser.go`
//! `SerializeClientMessageWithAcknowledgeContent`, agent `datachannel.go` `sendAgentMessage`).

use serde::{Deserialize, Serialize};

use super::header::{MessageId, MessageType, SequenceNumber};

/// Acknowledges one stream message. Receivers match acks only by sequence number.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AcknowledgeContent {
    /// MessageType of the acked message.
    #[serde(rename = "AcknowledgedMessageType")]
    pub message_type: String,
    /// Canonical UUID string of the acked message's id.
    #[serde(rename = "AcknowledgedMessageId")]
    pub message_id: String,
    /// SequenceNumber of the acked message.
    #[serde(rename = "AcknowledgedMessageSequenceNumber")]
    pub sequence_number: i64,
    /// Always `true`.
    #[serde(rename = "IsSequentialMessage")]
    pub is_sequential_message: bool,
}

impl AcknowledgeContent {
    /// Appends the JSON of the ack of message `id` (`message_type`, `sequence_number`) to
    /// `out`: the bytes `serde_json` makes of the matching [`AcknowledgeContent`], without the
    /// owned strings and the serializer (one ack per received message). Type names and
    /// canonical UUIDs are plain ASCII, so nothing needs escaping.
    pub fn write_json(
        message_type: MessageType,
        id: MessageId,
        sequence_number: SequenceNumber,
        out: &mut Vec<u8>,
    ) {
        let mut uuid = uuid::Uuid::encode_buffer();
        let uuid = id.0.hyphenated().encode_lower(&mut uuid);
        out.extend_from_slice(b"{\"AcknowledgedMessageType\":\"");
        out.extend_from_slice(message_type.as_str().as_bytes());
        out.extend_from_slice(b"\",\"AcknowledgedMessageId\":\"");
        out.extend_from_slice(uuid.as_bytes());
        out.extend_from_slice(b"\",\"AcknowledgedMessageSequenceNumber\":");
        write_decimal(sequence_number.0, out);
        out.extend_from_slice(b",\"IsSequentialMessage\":true}");
    }
}

/// Appends `n` in decimal, as `Display` writes it, without the formatting machinery.
fn write_decimal(n: i64, out: &mut Vec<u8>) {
    if n < 0 {
        out.push(b'-');
    }
    let mut magnitude = n.unsigned_abs();
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    loop {
        start -= 1;
        // A remainder of 10 fits in a byte.
        digits[start] = b'0' + (magnitude % 10) as u8;
        magnitude /= 10;
        if magnitude == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[start..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_json_is_byte_for_byte_what_serde_makes() {
        let ids = [
            MessageId::from_random_bytes([0; 16]),
            MessageId::from_random_bytes([0xff; 16]),
            MessageId::from_random_bytes(*b"0123456789abcdef"),
        ];
        let types = [
            MessageType::OutputStreamData,
            MessageType::InputStreamData,
            MessageType::Acknowledge,
        ];
        for (id, message_type) in ids.into_iter().zip(types) {
            for seq in [0, 1, 9, 10, 12_345, i64::MAX, -1, i64::MIN] {
                let content = AcknowledgeContent {
                    message_type: message_type.as_str().to_owned(),
                    message_id: id.to_canonical_string(),
                    sequence_number: seq,
                    is_sequential_message: true,
                };
                let mut out = b"prefix".to_vec();
                AcknowledgeContent::write_json(message_type, id, SequenceNumber(seq), &mut out);
                assert_eq!(&out[..6], b"prefix");
                assert_eq!(
                    String::from_utf8_lossy(&out[6..]),
                    String::from_utf8_lossy(&serde_json::to_vec(&content).unwrap()),
                    "seq {seq}"
                );
            }
        }
    }
}
