//! Messages the message gateway (MGS) itself sends to the client, as opposed to the agent:
//! `channel_closed`, `pause_publication` and `start_publication` (SPEC.md §4.8, §5.7). The
//! emulator plays both parts; the agent part lives in the protocol `Session`.

use std::time::{SystemTime, UNIX_EPOCH};

use postern_protocol::{
    ChannelClosed, ClientMessage, MessageId, MessageType, PayloadType, SCHEMA_VERSION,
    SequenceNumber,
};

/// `channel_closed` for `session_id` on `target`, with an optional reason shown to the user.
pub(crate) fn channel_closed(session_id: &str, target: &str, output: &str) -> Vec<u8> {
    let id = uuid::Uuid::new_v4();
    let payload = ChannelClosed {
        message_id: id.to_string(),
        created_date: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
        destination_id: target.to_owned(),
        session_id: session_id.to_owned(),
        message_type: MessageType::ChannelClosed.as_str().to_owned(),
        schema_version: 1,
        output: output.to_owned(),
    };
    // Serializing a struct of strings and integers cannot fail.
    let payload = serde_json::to_vec(&payload).unwrap_or_default();
    frame(MessageType::ChannelClosed, id, payload)
}

/// `pause_publication` (header only).
pub(crate) fn pause_publication() -> Vec<u8> {
    frame(
        MessageType::PausePublication,
        uuid::Uuid::new_v4(),
        Vec::new(),
    )
}

/// `start_publication` (header only).
pub(crate) fn start_publication() -> Vec<u8> {
    frame(
        MessageType::StartPublication,
        uuid::Uuid::new_v4(),
        Vec::new(),
    )
}

/// The MessageType of an encoded frame, read from its header without decoding the rest.
pub(crate) fn peek_message_type(frame: &[u8]) -> Option<MessageType> {
    let field = frame.get(4..36)?;
    let end = field
        .iter()
        .rposition(|b| *b != b' ' && *b != 0)
        .map_or(0, |i| i + 1);
    MessageType::parse(&field[..end])
}

fn frame(message_type: MessageType, id: uuid::Uuid, payload: Vec<u8>) -> Vec<u8> {
    let created_date = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(1, |d| d.as_millis() as u64);
    let message = ClientMessage {
        message_type,
        schema_version: SCHEMA_VERSION,
        created_date,
        sequence_number: SequenceNumber(0),
        flags: 0,
        message_id: MessageId(id),
        payload_type: PayloadType::Null,
        payload,
    };
    // The type name is fixed and the payload a few hundred bytes: far below the codec's caps.
    message.encode().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_closed_decodes_with_its_reason() {
        let frame = channel_closed("s-1", "i-1", "bye");
        let message = ClientMessage::decode(&frame).unwrap();
        assert_eq!(message.message_type, MessageType::ChannelClosed);
        let closed = ChannelClosed::parse_lenient(&message.payload);
        assert_eq!(closed.session_id, "s-1");
        assert_eq!(closed.output, "bye");
        assert_eq!(peek_message_type(&frame), Some(MessageType::ChannelClosed));
    }

    #[test]
    fn publication_messages_are_header_only() {
        let frame = pause_publication();
        assert_eq!(frame.len(), postern_protocol::PAYLOAD_OFFSET);
        assert_eq!(
            ClientMessage::decode(&frame).unwrap().message_type,
            MessageType::PausePublication
        );
        assert_eq!(
            peek_message_type(&start_publication()),
            Some(MessageType::StartPublication)
        );
    }
}
