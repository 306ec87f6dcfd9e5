//! The codec against the golden vectors produced by the official client and agent
//! (`../shared/protocol/vectors/`, located by `testkit::vectors`; never copied, never skipped).
//!
//! Every case is checked field by field and re-encoded byte for byte; case counts are asserted
//! so that a shrinking vector file fails instead of silently testing less.

use postern_protocol::testkit::vectors::{
    hex, hex_field, load_cases, load_json, str_field, to_hex,
};
use postern_protocol::{
    AcknowledgeContent, ActionStatus, ActionType, AgentSessionState, ChannelClosed, ClientMessage,
    DecodeError, EncryptionChallenge, ExitCode, Flag, HandshakeComplete, HandshakeRequest,
    HandshakeResponse, KmsEncryptionResult, MessageId, MessageType, OpenDataChannelInput,
    PayloadType, SessionType, SizeData,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

#[test]
fn client_messages_decode_field_by_field_and_re_encode_byte_exact() {
    let cases = load_cases("client_messages.json", CLIENT_MESSAGE_CASES);
    for case in &cases {
        let name = str_field(case, "name");
        let fields = &case["fields"];
        let frame = hex_field(case, "serialized_hex");
        assert_eq!(frame.len() as u64, int(case, "serialized_length"), "{name}");

        let message = ClientMessage::decode(&frame)
            .unwrap_or_else(|err| panic!("{name}: golden message rejected: {err}"));
        assert_eq!(
            message.message_type.as_str(),
            str_field(fields, "message_type"),
            "{name}"
        );
        assert_eq!(
            u64::from(message.schema_version),
            int(fields, "schema_version"),
            "{name}"
        );
        assert_eq!(message.created_date, int(fields, "created_date"), "{name}");
        assert_eq!(
            message.sequence_number.0,
            signed(fields, "sequence_number"),
            "{name}"
        );
        assert_eq!(message.flags, int(fields, "flags"), "{name}");
        assert_eq!(
            message.message_id.to_canonical_string(),
            str_field(fields, "message_id")
        );
        assert_eq!(
            message.message_id.0.as_bytes().as_slice(),
            hex_field(case, "message_id_canonical_bytes_hex"),
            "{name}: canonical id bytes"
        );
        assert_eq!(
            message.message_id.to_wire().as_slice(),
            hex_field(case, "message_id_wire_hex"),
            "{name}: wire id bytes"
        );
        assert_eq!(
            &frame[64..80],
            hex_field(case, "message_id_wire_hex"),
            "{name}"
        );
        assert_eq!(
            u64::from(message.payload_type.to_u32()),
            int(fields, "payload_type")
        );
        assert_eq!(
            message.payload.len() as u64,
            int(fields, "payload_length"),
            "{name}"
        );
        assert_eq!(
            message.payload,
            hex_field(case, "payload_hex"),
            "{name}: payload"
        );
        assert_eq!(
            to_hex(&frame[80..112]),
            str_field(fields, "payload_digest_hex"),
            "{name}"
        );
        assert_eq!(
            u64::from(postern_protocol::HEADER_LENGTH),
            int(fields, "header_length")
        );
        if let Some(text) = case.get("payload_text").and_then(Value::as_str) {
            assert_eq!(message.payload, text.as_bytes(), "{name}: payload_text");
        }
        assert_eq!(
            case["plugin_validate_error"],
            Value::Null,
            "{name}: vector expects valid"
        );

        // Our encoder also writes header-only messages (the official serializers cannot), and
        // must reproduce the derived header-only frames exactly.
        let encoded = message
            .encode()
            .unwrap_or_else(|err| panic!("{name}: cannot re-encode: {err}"));
        assert_eq!(
            to_hex(&encoded),
            to_hex(&frame),
            "{name}: re-encoding differs"
        );
    }
}

#[test]
fn client_message_json_payloads_round_trip_through_typed_structs() {
    let cases = load_cases("client_messages.json", CLIENT_MESSAGE_CASES);
    let mut checked = 0;
    for case in &cases {
        let Some(json) = case.get("payload_json") else {
            continue;
        };
        let name = str_field(case, "name");
        let payload = hex_field(case, "payload_hex");
        let message = ClientMessage::decode(&hex_field(case, "serialized_hex")).unwrap();
        let text = std::str::from_utf8(&payload).unwrap();
        match (message.message_type, message.payload_type) {
            (MessageType::Acknowledge, PayloadType::Null) => {
                let ack: AcknowledgeContent = exact(name, text);
                assert_eq!(
                    ack.message_id,
                    json["AcknowledgedMessageId"].as_str().unwrap()
                );
                assert!(ack.is_sequential_message, "{name}");
            }
            (MessageType::ChannelClosed, PayloadType::Null) => {
                let closed: ChannelClosed = exact(name, text);
                assert_eq!(closed, ChannelClosed::parse_lenient(&payload), "{name}");
                assert_eq!(closed.output, json["Output"].as_str().unwrap(), "{name}");
            }
            (MessageType::AgentSessionState, PayloadType::Null) => {
                let state: AgentSessionState = exact(name, text);
                assert_eq!(state.session_state, "Connected", "{name}");
            }
            (_, PayloadType::Size) => {
                let size: SizeData = exact(name, text);
                assert_eq!(
                    size,
                    SizeData {
                        cols: 120,
                        rows: 40
                    },
                    "{name}"
                );
            }
            (_, PayloadType::HandshakeRequest) => {
                let request: HandshakeRequest = exact(name, text);
                check_handshake_request(name, &request);
            }
            (_, PayloadType::HandshakeResponse) => {
                let response: HandshakeResponse = exact(name, text);
                assert_eq!(response.client_version, "1.2.0.0", "{name}");
                check_processed_actions(name, &response);
            }
            (_, PayloadType::HandshakeComplete) => {
                let complete: HandshakeComplete = exact(name, text);
                assert!(complete.handshake_time_to_complete > 0, "{name}");
            }
            (_, PayloadType::EncChallengeRequest | PayloadType::EncChallengeResponse) => {
                let challenge: EncryptionChallenge = exact(name, text);
                assert_eq!(challenge.challenge.len(), 140 - r#"{"Challenge":""}"#.len());
            }
            other => panic!("{name}: JSON payload of unexpected kind {other:?}"),
        }
        checked += 1;
    }
    assert_eq!(
        checked, JSON_PAYLOAD_CASES,
        "client_messages cases with payload_json"
    );
}

#[test]
fn client_message_binary_payloads_parse() {
    let cases = load_cases("client_messages.json", CLIENT_MESSAGE_CASES);
    let mut flags = Vec::new();
    let mut exit_codes = Vec::new();
    for case in &cases {
        let message = ClientMessage::decode(&hex_field(case, "serialized_hex")).unwrap();
        match message.payload_type {
            PayloadType::Flag => {
                let flag = Flag::decode(&message.payload).unwrap();
                assert_eq!(flag.encode().as_slice(), message.payload);
                flags.push(flag);
            }
            PayloadType::ExitCode => {
                let code = ExitCode::decode(&message.payload).unwrap();
                assert_eq!(code.encode(), message.payload);
                exit_codes.push(code);
            }
            _ => {}
        }
    }
    assert_eq!(
        flags,
        [
            Flag::DisconnectToPort,
            Flag::TerminateSession,
            Flag::ConnectToPortError
        ]
    );
    assert_eq!(exit_codes, [ExitCode(2)]);
}

/// What our strict decoder answers for each hostile input, and why (SPEC.md §3.4 recommends a
/// strict parser; the official parsers' answers are in the vector file for comparison).
fn expected_malformed(name: &str, input_len: usize) -> Result<(), DecodeError> {
    use DecodeError::*;
    match name {
        // The unmodified base message.
        "reference_valid" => Ok(()),
        // Shorter than the 120-byte header: the official parser fails or panics (116).
        "empty_input" | "truncated_50_bytes" | "truncated_116_bytes" => {
            Err(Truncated { len: input_len })
        }
        // Whole header, PayloadLength 5, no payload: we check lengths before the digest.
        "header_only_120_bytes" => Err(PayloadLengthMismatch {
            declared: 5,
            actual: 0,
        }),
        // We require HeaderLength = 116 (the official readers slice the payload at
        // HeaderLength + 4, overlapping the header or panicking).
        "header_length_zero" => Err(BadHeaderLength { header_length: 0 }),
        "header_length_100" => Err(BadHeaderLength { header_length: 100 }),
        "header_length_200" => Err(BadHeaderLength { header_length: 200 }),
        "bad_digest" => Err(BadDigest),
        // The official readers ignore PayloadLength (and skip the digest when it is 0); we
        // require it to match the bytes present, so both are rejected before the digest.
        "payload_length_mismatch_digest_ok" => Err(PayloadLengthMismatch {
            declared: 3,
            actual: 5,
        }),
        "payload_length_zero_bad_digest" => Err(PayloadLengthMismatch {
            declared: 0,
            actual: 5,
        }),
        // Trailing bytes make PayloadLength (5) disagree with the 7 bytes present.
        "trailing_garbage" => Err(PayloadLengthMismatch {
            declared: 5,
            actual: 7,
        }),
        "created_date_zero" => Err(MissingCreatedDate),
        "message_type_blank" => Err(MissingMessageType),
        // Trimmed like the official readers: NUL padding and leading spaces are accepted.
        "message_type_nul_padded" | "message_type_leading_space" => Ok(()),
        // Signed on the wire; no receiver rule forbids it at the codec level.
        "negative_sequence_number" => Ok(()),
        // Publication messages are exempt from HeaderLength/CreatedDate, as in the client; the
        // payload is empty, so no digest check.
        "start_publication_all_zero_header" => Ok(()),
        // Stricter than upstream (which logs and ignores): types outside the data-channel set
        // are rejected with a typed error the session can log.
        "unknown_message_type" => Err(UnknownMessageType("agent_task_reply".to_owned())),
        "message_type_33_chars" => Err(UnknownMessageType(
            "output_stream_data_with_long_nam".to_owned(),
        )),
        "unknown_payload_type_99" => Err(UnknownPayloadType(99)),
        other => panic!("malformed.json has a case this test does not know: {other}"),
    }
}

#[test]
fn malformed_inputs_get_their_specific_error() {
    let cases = load_cases("malformed.json", MALFORMED_CASES);
    for case in &cases {
        let name = str_field(case, "name");
        let input = hex_field(case, "input_hex");
        assert_eq!(input.len() as u64, int(case, "input_length"), "{name}");
        let decoded = std::panic::catch_unwind(|| ClientMessage::decode(&input))
            .unwrap_or_else(|_| panic!("{name}: decoder panicked"));
        let expected = expected_malformed(name, input.len());
        assert_eq!(
            decoded.as_ref().map(|_| ()),
            expected.as_ref().map(|_| ()),
            "{name}"
        );
        assert_eq!(decoded.clone().err(), expected.err(), "{name}");
        if let Ok(message) = decoded {
            // Accepted inputs carry the fields the official parser extracted.
            let fields = &case["fields"];
            assert_eq!(
                message.message_type.as_str(),
                str_field(fields, "message_type")
            );
            assert_eq!(
                message.sequence_number.0,
                signed(fields, "sequence_number"),
                "{name}"
            );
            assert_eq!(
                message.message_id.to_canonical_string(),
                str_field(fields, "message_id")
            );
            assert_eq!(message.created_date, int(fields, "created_date"), "{name}");
            if message.message_type != MessageType::StartPublication {
                assert_eq!(message.payload, hex_field(case, "payload_hex"), "{name}");
            }
        }
    }
}

#[test]
fn payloads_round_trip_byte_exact() {
    let payloads = load_json("payloads.json");
    let get = |key: &str| str_field(&payloads, key).to_owned();

    let open: OpenDataChannelInput = exact("open", &get("open_data_channel_input_fixed"));
    assert_eq!(open.client_version.as_deref(), Some("1.2.0.0"));
    let captured = &payloads["open_data_channel_input_captured"]["frame"][0]["json"];
    let captured: OpenDataChannelInput = serde_json::from_value(captured.clone()).unwrap();
    assert_eq!(captured.client_id, open.client_id);

    let ack: AcknowledgeContent = exact("acknowledge", &get("acknowledge"));
    assert_eq!(ack.sequence_number, 3);
    let ack: AcknowledgeContent = exact("acknowledge_from_agent", &get("acknowledge_from_agent"));
    assert_eq!(ack.message_type, "input_stream_data");

    let size: SizeData = exact("size", &get("size"));
    assert_eq!(size, SizeData { cols: 80, rows: 24 });

    for (key, flag) in [
        ("flag_disconnect_to_port_hex", Flag::DisconnectToPort),
        ("flag_terminate_session_hex", Flag::TerminateSession),
        ("flag_connect_to_port_error_hex", Flag::ConnectToPortError),
    ] {
        let bytes = hex(&get(key));
        assert_eq!(Flag::decode(&bytes), Ok(flag), "{key}");
        assert_eq!(flag.encode().as_slice(), bytes, "{key}");
    }

    let requests = payloads["handshake_request_examples_from_agent"]
        .as_object()
        .unwrap();
    assert_eq!(requests.len(), 4, "handshake request examples");
    for (key, text) in requests {
        let request: HandshakeRequest = exact(key, text.as_str().unwrap());
        check_handshake_request(key, &request);
    }

    for key in [
        "handshake_response_port_from_client",
        "handshake_response_kms_from_client",
    ] {
        let response: HandshakeResponse = exact(key, &get(key));
        check_processed_actions(key, &response);
    }

    let edge_cases = payloads["handshake_response_edge_cases"]
        .as_array()
        .unwrap();
    assert_eq!(edge_cases.len(), 5, "handshake response edge cases");
    for case in edge_cases {
        let name = str_field(case, "name");
        let request: HandshakeRequest = exact(name, str_field(case, "handshake_request_payload"));
        let response: HandshakeResponse =
            exact(name, str_field(case, "handshake_response_payload"));
        assert_eq!(
            request.requested_client_actions.len(),
            response.processed_client_actions.len(),
            "{name}: one processed action per requested action"
        );
        if name == "unknown_action_type" {
            // The official client's bug (SPEC.md §4.3): status 0, result 3. Representable.
            let action = &response.processed_client_actions[0];
            assert_eq!(
                action.action_type,
                ActionType::Other("SomeFutureAction".to_owned())
            );
            assert_eq!(action.action_status, ActionStatus::Other(0));
            assert_eq!(action.action_result, Value::from(3));
        }
        if name == "unknown_session_type" {
            let params = request.requested_client_actions[0]
                .session_type_parameters()
                .unwrap();
            assert_eq!(params.session_type, SessionType::Other("Foo".to_owned()));
            assert_eq!(
                response.processed_client_actions[0].action_status,
                ActionStatus::Failed
            );
        }
    }

    let completes = payloads["handshake_complete_examples_from_agent"]
        .as_object()
        .unwrap();
    assert_eq!(completes.len(), 2);
    let plain: HandshakeComplete = exact("plain", completes["plain"].as_str().unwrap());
    assert_eq!(plain.customer_message, "");
    let kms: HandshakeComplete = exact("kms", completes["kms"].as_str().unwrap());
    assert_eq!(kms.handshake_time_to_complete, 2_500_000_000);

    for key in [
        "encryption_challenge_request_from_agent",
        "encryption_challenge_response_from_client",
    ] {
        let _: EncryptionChallenge = exact(key, &get(key));
    }

    for key in [
        "channel_closed_plugin_struct",
        "channel_closed_plugin_struct_with_output",
    ] {
        let closed: ChannelClosed = exact(key, &get(key));
        assert_eq!(closed.message_type, "channel_closed");
    }
    // The agent's struct orders keys differently and has no Output: parse only.
    let agent_closed: ChannelClosed =
        serde_json::from_str(&get("channel_closed_agent_struct")).unwrap();
    assert_eq!(agent_closed.session_id, "alice-0a1b2c3d4e5f67890");
    assert_eq!(agent_closed.created_date, "2023-11-14T22:13:20.123Z");
    assert_eq!(agent_closed.schema_version, 1);
    assert_eq!(agent_closed.output, "");
    assert_eq!(
        ChannelClosed::parse_lenient(get("channel_closed_agent_struct").as_bytes()),
        agent_closed
    );

    let exit_text = get("exit_code_text_example");
    assert_eq!(ExitCode::decode(exit_text.as_bytes()), Ok(ExitCode(2)));
    assert_eq!(ExitCode(2).encode(), exit_text.as_bytes());

    let state: AgentSessionState = exact("agent_session_state", &get("agent_session_state"));
    assert_eq!(state.schema_version, 1);

    let properties = &payloads["session_properties_after_port_handshake"];
    let port: HandshakeRequest =
        serde_json::from_str(requests["port_local_port_forwarding"].as_str().unwrap()).unwrap();
    let params = port.requested_client_actions[0]
        .session_type_parameters()
        .unwrap();
    assert_eq!(&params.properties, properties);
}

#[test]
fn agent_crosscheck_agrees_on_validity() {
    let file = load_json("agent_crosscheck.json");
    let results = file["message_results"].as_array().unwrap();
    assert_eq!(
        results.len(),
        CLIENT_MESSAGE_CASES,
        "agent_crosscheck message_results"
    );
    let cases = load_cases("client_messages.json", CLIENT_MESSAGE_CASES);
    for result in results {
        let name = str_field(result, "name");
        let case = cases
            .iter()
            .find(|case| case["name"] == result["name"])
            .unwrap_or_else(|| panic!("{name}: not in client_messages.json"));
        let decoded = ClientMessage::decode(&hex_field(case, "serialized_hex"));
        // No exception applies to the golden messages: every one is valid for the agent and
        // for us (the header-only ones have PayloadLength 0 and the empty-string digest).
        assert_eq!(result["agent_validate_error"], Value::Null, "{name}");
        assert!(
            decoded.is_ok(),
            "{name}: agent accepts it, we reject it: {decoded:?}"
        );
        assert_eq!(result["agent_fields_match_plugin_fields"], true, "{name}");
    }

    let malformed = file["malformed_results_agent_parser"].as_array().unwrap();
    assert_eq!(
        malformed.len(),
        MALFORMED_CASES,
        "agent_crosscheck malformed results"
    );
    let inputs = load_cases("malformed.json", MALFORMED_CASES);
    for result in malformed {
        let name = str_field(result, "name");
        let case = inputs
            .iter()
            .find(|case| case["name"] == result["name"])
            .unwrap();
        let ours = ClientMessage::decode(&hex_field(case, "input_hex"));
        let agent_ok = result["agent_panicked"] == false
            && result["agent_deserialize_error"].is_null()
            && result["agent_validate_error"].is_null();
        match (agent_ok, &ours) {
            (true, Ok(_)) => {}
            (true, Err(err)) => assert!(
                STRICTER_THAN_AGENT.contains(&name),
                "{name}: the agent accepts it, we reject it ({err}) without a documented reason"
            ),
            (false, Ok(_)) => assert!(
                LAXER_THAN_AGENT.contains(&name),
                "{name}: the agent rejects it, we accept it without a documented reason"
            ),
            (false, Err(_)) => {}
        }
    }
}

/// Inputs the agent accepts and we reject:
/// * header_only_120_bytes, payload_length_mismatch_digest_ok, payload_length_zero_bad_digest,
///   trailing_garbage: the agent ignores PayloadLength; we require it to match.
/// * header_length_100: the agent only rejects HeaderLength 0; we require 116.
/// * bad_digest: the agent never checks the digest; we do, like the official client.
/// * unknown_message_type, message_type_33_chars, unknown_payload_type_99: we reject types
///   outside the data-channel set with a typed error.
const STRICTER_THAN_AGENT: &[&str] = &[
    "header_only_120_bytes",
    "header_length_100",
    "bad_digest",
    "payload_length_mismatch_digest_ok",
    "payload_length_zero_bad_digest",
    "trailing_garbage",
    "unknown_message_type",
    "unknown_payload_type_99",
    "message_type_33_chars",
];

/// Inputs the agent rejects and we accept: start_publication_all_zero_header, because we keep
/// the official client's exemption of publication messages from the HeaderLength check.
const LAXER_THAN_AGENT: &[&str] = &["start_publication_all_zero_header"];

#[test]
fn message_ids_from_the_vectors_swap_halves_on_the_wire() {
    let cases = load_cases("client_messages.json", CLIENT_MESSAGE_CASES);
    for case in &cases {
        let canonical: [u8; 16] = hex_field(case, "message_id_canonical_bytes_hex")
            .try_into()
            .unwrap();
        let id = MessageId(uuid_from(canonical));
        assert_eq!(
            id.to_wire().as_slice(),
            hex_field(case, "message_id_wire_hex")
        );
        assert_eq!(MessageId::from_wire(&id.to_wire()), id);
    }
}

/// Parses `text` as `T`, serializes it back and requires the very same bytes: the official
/// encoders and ours produce keys in the same order.
fn exact<T: Serialize + DeserializeOwned>(name: &str, text: &str) -> T {
    let value: T = serde_json::from_str(text)
        .unwrap_or_else(|err| panic!("{name}: does not parse into our type: {err}\n{text}"));
    let again = serde_json::to_string(&value).unwrap();
    assert_eq!(
        again, text,
        "{name}: re-serialized JSON differs from the official bytes"
    );
    value
}

fn check_handshake_request(name: &str, request: &HandshakeRequest) {
    assert_eq!(request.agent_version, "3.3.0.0", "{name}");
    for action in &request.requested_client_actions {
        match action.action_type {
            ActionType::SessionType => {
                action.session_type_parameters().unwrap();
            }
            ActionType::KmsEncryption => {
                let kms = action.kms_parameters().unwrap();
                assert!(!kms.kms_key_id.is_empty(), "{name}");
            }
            ActionType::Other(_) => {}
        }
    }
}

fn check_processed_actions(name: &str, response: &HandshakeResponse) {
    for action in &response.processed_client_actions {
        if action.action_type == ActionType::KmsEncryption
            && action.action_status == ActionStatus::Success
        {
            let result: KmsEncryptionResult = serde_json::from_value(action.action_result.clone())
                .unwrap_or_else(|err| panic!("{name}: KMS result: {err}"));
            assert_eq!(result.kms_cipher_text_hash, None, "{name}");
            // Rebuilt from the typed struct, the response must still be byte-exact.
            let mut rebuilt = response.clone();
            for entry in &mut rebuilt.processed_client_actions {
                if entry.action_type == ActionType::KmsEncryption {
                    entry.action_result = serde_json::to_value(&result).unwrap();
                }
            }
            assert_eq!(
                serde_json::to_string(&rebuilt).unwrap(),
                serde_json::to_string(response).unwrap(),
                "{name}"
            );
        }
    }
}

fn uuid_from(bytes: [u8; 16]) -> uuid::Uuid {
    uuid::Uuid::from_bytes(bytes)
}

fn int(value: &Value, key: &str) -> u64 {
    value[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} is not an unsigned integer: {value}"))
}

fn signed(value: &Value, key: &str) -> i64 {
    value[key]
        .as_i64()
        .unwrap_or_else(|| panic!("{key} is not an integer: {value}"))
}

/// client_messages.json cases (vectors README: 31 encoded messages).
const CLIENT_MESSAGE_CASES: usize = 31;
/// Of those, the ones carrying a JSON object payload.
const JSON_PAYLOAD_CASES: usize = 16;
/// malformed.json cases (vectors README: 21 hostile inputs).
const MALFORMED_CASES: usize = 21;
