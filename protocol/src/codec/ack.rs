//! The acknowledge payload (SPEC.md §4.1; plugin `messageparser.go`
//! `SerializeClientMessageWithAcknowledgeContent`, agent `datachannel.go` `sendAgentMessage`).

use serde::{Deserialize, Serialize};

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
