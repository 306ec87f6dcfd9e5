//! Property tests for the codec: arbitrary messages round-trip, arbitrary and mutated bytes never
//! make the decoder panic, and typed payloads round-trip through their JSON or binary forms.

use postern_protocol::{
    AcknowledgeContent, ActionStatus, ActionType, ClientMessage, DecodeError, ExitCode, Flag,
    HandshakeComplete, HandshakeRequest, HandshakeResponse, MessageId, MessageType, PayloadType,
    ProcessedClientAction, RequestedClientAction, SequenceNumber, SessionType,
    SessionTypeParameters, SizeData, fuzzing,
};
use proptest::prelude::*;
use serde_json::json;

fn message_type() -> impl Strategy<Value = MessageType> {
    prop_oneof![
        Just(MessageType::InputStreamData),
        Just(MessageType::OutputStreamData),
        Just(MessageType::Acknowledge),
        Just(MessageType::ChannelClosed),
        Just(MessageType::StartPublication),
        Just(MessageType::PausePublication),
        Just(MessageType::AgentSessionState),
    ]
}

fn payload_type() -> impl Strategy<Value = PayloadType> {
    (0u32..=12).prop_map(|value| PayloadType::from_u32(value).expect("0..=12 are all defined"))
}

prop_compose! {
    fn client_message()(
        message_type in message_type(),
        schema_version in any::<u32>(),
        // CreatedDate 0 is only accepted on publication messages; keep every message valid.
        created_date in 1..=u64::MAX,
        sequence_number in any::<i64>(),
        flags in any::<u64>(),
        id in any::<[u8; 16]>(),
        payload_type in payload_type(),
        payload in proptest::collection::vec(any::<u8>(), 0..4096),
    ) -> ClientMessage {
        ClientMessage {
            message_type,
            schema_version,
            created_date,
            sequence_number: SequenceNumber(sequence_number),
            flags,
            message_id: MessageId(uuid::Uuid::from_bytes(id)),
            payload_type,
            payload,
        }
    }
}

proptest! {
    #[test]
    fn encode_then_decode_is_identity(message in client_message()) {
        let frame = message.encode().unwrap();
        prop_assert_eq!(frame.len(), 120 + message.payload.len());
        prop_assert_eq!(&frame[64..80], &message.message_id.to_wire()[..]);
        prop_assert_eq!(ClientMessage::decode(&frame), Ok(message));
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = ClientMessage::decode(&bytes);
        fuzzing::decode_message(&bytes);
    }

    #[test]
    fn mutated_frames_never_panic_and_flipped_payload_bits_are_caught(
        message in client_message(),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 1..4),
        cut in any::<prop::sample::Index>(),
    ) {
        let frame = message.encode().unwrap();
        let mut mutated = frame.clone();
        for (at, mask) in &flips {
            let len = mutated.len();
            mutated[at.index(len)] ^= mask;
        }
        fuzzing::decode_message(&mutated);
        fuzzing::decode_message(&frame[..cut.index(frame.len() + 1)]);
        // A change confined to a non-empty payload must be detected by the digest.
        if !message.payload.is_empty() {
            let mut payload_flip = frame.clone();
            let (at, mask) = flips[0];
            payload_flip[120 + at.index(message.payload.len())] ^= mask;
            prop_assert_eq!(ClientMessage::decode(&payload_flip), Err(DecodeError::BadDigest));
        }
    }

    #[test]
    fn truncated_frames_are_rejected(message in client_message(), cut in 0usize..120) {
        let frame = message.encode().unwrap();
        prop_assert_eq!(ClientMessage::decode(&frame[..cut]), Err(DecodeError::Truncated { len: cut }));
    }

    #[test]
    fn acknowledge_round_trips(
        message_type in "[a-z_]{0,32}",
        id in any::<[u8; 16]>(),
        sequence_number in any::<i64>(),
    ) {
        let ack = AcknowledgeContent {
            message_type,
            message_id: MessageId(uuid::Uuid::from_bytes(id)).to_canonical_string(),
            sequence_number,
            is_sequential_message: true,
        };
        let text = serde_json::to_vec(&ack).unwrap();
        prop_assert_eq!(serde_json::from_slice::<AcknowledgeContent>(&text).unwrap(), ack);
    }

    #[test]
    fn size_round_trips(cols in any::<u32>(), rows in any::<u32>()) {
        let size = SizeData { cols, rows };
        let text = serde_json::to_string(&size).unwrap();
        prop_assert_eq!(&text, &format!(r#"{{"cols":{cols},"rows":{rows}}}"#));
        prop_assert_eq!(serde_json::from_str::<SizeData>(&text).unwrap(), size);
    }

    #[test]
    fn exit_code_round_trips(code in any::<i32>()) {
        let encoded = ExitCode(code).encode();
        prop_assert_eq!(ExitCode::decode(&encoded), Ok(ExitCode(code)));
    }

    #[test]
    fn flag_payloads_decode_only_known_values(bytes in proptest::collection::vec(any::<u8>(), 0..8)) {
        match Flag::decode(&bytes) {
            Ok(flag) => prop_assert_eq!(flag.encode().to_vec(), bytes),
            Err(_) => prop_assert!(bytes.len() != 4 || !(1..=3).contains(&u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))),
        }
    }

    #[test]
    fn handshake_payloads_round_trip(
        agent_version in "[0-9]{1,3}(\\.[0-9]{1,4}){3}",
        session_type in prop_oneof![
            Just(SessionType::StandardStream),
            Just(SessionType::InteractiveCommands),
            Just(SessionType::NonInteractiveCommands),
            Just(SessionType::Port),
            "[A-Za-z]{1,12}".prop_map(SessionType::Other),
        ],
        port in any::<u16>(),
        status in any::<i64>(),
        error in ".{0,40}",
        nanos in any::<i64>(),
        message in ".{0,60}",
    ) {
        let request = HandshakeRequest {
            agent_version: agent_version.clone(),
            requested_client_actions: vec![RequestedClientAction {
                action_type: ActionType::SessionType,
                action_parameters: serde_json::to_value(SessionTypeParameters {
                    session_type,
                    properties: json!({"portNumber": port.to_string()}),
                }).unwrap(),
            }],
        };
        let text = serde_json::to_string(&request).unwrap();
        prop_assert_eq!(serde_json::from_str::<HandshakeRequest>(&text).unwrap(), request);

        let response = HandshakeResponse {
            client_version: agent_version,
            processed_client_actions: vec![ProcessedClientAction {
                action_type: ActionType::SessionType,
                action_status: ActionStatus::from(status),
                action_result: serde_json::Value::Null,
                error: error.clone(),
            }],
            errors: (!error.is_empty()).then(|| vec![error]),
        };
        let text = serde_json::to_string(&response).unwrap();
        prop_assert_eq!(serde_json::from_str::<HandshakeResponse>(&text).unwrap(), response);

        let complete = HandshakeComplete { handshake_time_to_complete: nanos, customer_message: message };
        let text = serde_json::to_string(&complete).unwrap();
        prop_assert_eq!(serde_json::from_str::<HandshakeComplete>(&text).unwrap(), complete);
    }
}
