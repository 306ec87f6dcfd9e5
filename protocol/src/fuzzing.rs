//! Entry points for the fuzz targets in `fuzz/` and for the corpus replay test
//! (`tests/fuzz_corpus.rs`), so both exercise exactly the same code (STYLE.md §6 item 4).
//!
//! Each entry point takes arbitrary bytes from a hostile peer. Rejecting them is fine; a panic
//! is a bug. The entry points also check invariants (decode ∘ encode is the identity, typed
//! payloads re-parse to themselves) with `assert!`: a failed assertion is a finding the fuzzer
//! reports. Nothing here does IO.

use crate::codec::{
    AcknowledgeContent, AgentSessionState, ChannelClosed, ClientMessage, EncryptionChallenge,
    ExitCode, Flag, HandshakeComplete, HandshakeRequest, HandshakeResponse, MessageType,
    PayloadType, SessionType, SizeData,
};
use crate::mux::{Mux, MuxConfig, MuxEvent};
use crate::session::{AgentConfig, Session, SessionConfig};

/// Decodes `data` as one websocket binary frame; when it is accepted, checks that it encodes and
/// decodes back to the same message, and runs its payload through the typed payload parsers.
///
/// # Panics
///
/// Only when the codec breaks an invariant (that is what the fuzzer looks for).
pub fn decode_message(data: &[u8]) {
    let Ok(message) = ClientMessage::decode(data) else {
        return;
    };
    // Whatever the decoder accepts must be encodable: its caps are the encoder's caps.
    let encoded = match message.encode() {
        Ok(encoded) => encoded,
        Err(err) => panic!("decoded message does not re-encode: {err}"),
    };
    assert_eq!(
        ClientMessage::decode(&encoded).as_ref(),
        Ok(&message),
        "re-encoded message decodes differently"
    );
    parse_payload(&message);
}

/// Feeds `data` to a session as a sequence of received frames: the first byte picks the role
/// (even: client, odd: agent), then frames follow as `u16` big-endian length + bytes. After
/// every frame the outputs are drained and time advances, as a driver would.
///
/// # Panics
///
/// Only when the session breaks an invariant (that is what the fuzzer looks for).
pub fn session_input(data: &[u8]) {
    let Some((&selector, mut rest)) = data.split_first() else {
        return;
    };
    let now = std::time::Instant::now();
    let config = if selector % 2 == 0 {
        SessionConfig::client("1.2.707.0", 1, 1_700_000_000_000)
    } else {
        let agent = AgentConfig::new("3.3.0.0", SessionType::Port, serde_json::Value::Null);
        SessionConfig::agent(agent, 1, 1_700_000_000_000)
    };
    let mut session = Session::new(config, now);
    let mut tick = now;
    while rest.len() >= 2 {
        let len = usize::from(u16::from_be_bytes([rest[0], rest[1]])).min(rest.len() - 2);
        let (frame, tail) = rest[2..].split_at(len);
        rest = tail;
        let _ = session.handle_message(tick, frame);
        while session.poll_transmit(tick).is_some() {}
        while session.poll_event().is_some() {}
        if let Some(deadline) = session.poll_timeout() {
            assert!(
                deadline + std::time::Duration::from_secs(3600) > tick,
                "timer far in the past"
            );
            tick = tick.max(deadline);
            session.handle_timeout(tick);
        }
        let _ = session.send_output(tick, b"fuzz");
    }
}

/// Feeds `data` to an smux session as the bytes a hostile peer sent over the data channel: the
/// first byte picks the role (even: client, odd: server) and how the rest is cut into reads
/// (its high bits: the read size). Every event is drained, data written back on every stream the
/// peer opened, and timers run, as a driver would.
///
/// # Panics
///
/// Only when the session breaks an invariant (that is what the fuzzer looks for).
pub fn smux_input(data: &[u8]) {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let mut now = std::time::Instant::now();
    let config = MuxConfig::new();
    let mut mux = if selector % 2 == 0 {
        Mux::client(config, now)
    } else {
        Mux::server(config, now)
    };
    let opened = (selector % 2 == 0)
        .then(|| mux.open_stream().ok())
        .flatten();
    let read = usize::from(selector >> 1).max(1);
    for chunk in rest.chunks(read) {
        mux.handle_input(now, chunk);
        while let Some(event) = mux.poll_event() {
            match event {
                MuxEvent::StreamOpened(id) | MuxEvent::Data(id, _) => {
                    let _ = mux.write(id, b"fuzz");
                }
                MuxEvent::StreamClosed(id) => {
                    let _ = mux.close(id);
                }
                MuxEvent::Closed(_) => {
                    assert!(mux.is_closed(), "Closed event but the session is open");
                }
            }
        }
        if let Some(id) = opened {
            let _ = mux.write(id, b"client");
        }
        while mux.poll_output().is_some() {}
        if let Some(deadline) = mux.poll_timeout() {
            now = now.max(deadline);
            mux.handle_timeout(now);
        }
    }
}

/// Parses the payload with the typed parser its header selects; JSON that parses must
/// re-serialize to JSON that parses back to the same value.
fn parse_payload(message: &ClientMessage) {
    let payload = &message.payload[..];
    match message.message_type {
        MessageType::Acknowledge => {
            json_round_trip::<AcknowledgeContent>(payload);
        }
        MessageType::ChannelClosed => {
            let _lenient = ChannelClosed::parse_lenient(payload);
            json_round_trip::<ChannelClosed>(payload);
        }
        MessageType::AgentSessionState => {
            json_round_trip::<AgentSessionState>(payload);
        }
        MessageType::InputStreamData
        | MessageType::OutputStreamData
        | MessageType::StartPublication
        | MessageType::PausePublication => match message.payload_type {
            PayloadType::Size => {
                json_round_trip::<SizeData>(payload);
            }
            PayloadType::HandshakeRequest => {
                if let Some(request) = json_round_trip::<HandshakeRequest>(payload) {
                    for action in &request.requested_client_actions {
                        let _session = action.session_type_parameters();
                        let _kms = action.kms_parameters();
                    }
                }
            }
            PayloadType::HandshakeResponse => {
                json_round_trip::<HandshakeResponse>(payload);
            }
            PayloadType::HandshakeComplete => {
                json_round_trip::<HandshakeComplete>(payload);
            }
            PayloadType::EncChallengeRequest | PayloadType::EncChallengeResponse => {
                json_round_trip::<EncryptionChallenge>(payload);
            }
            PayloadType::Flag => {
                if let Ok(flag) = Flag::decode(payload) {
                    assert_eq!(Flag::decode(&flag.encode()), Ok(flag), "flag round trip");
                }
            }
            PayloadType::ExitCode => {
                if let Ok(code) = ExitCode::decode(payload) {
                    assert_eq!(
                        ExitCode::decode(&code.encode()),
                        Ok(code),
                        "exit code round trip"
                    );
                }
            }
            PayloadType::Null
            | PayloadType::Output
            | PayloadType::Error
            | PayloadType::Parameter
            | PayloadType::StdErr => {}
        },
    }
}

/// Parses `payload` as `T`; when that works, serializes and re-parses, and asserts equality.
fn json_round_trip<T>(payload: &[u8]) -> Option<T>
where
    T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let value: T = serde_json::from_slice(payload).ok()?;
    let text = match serde_json::to_vec(&value) {
        Ok(text) => text,
        Err(err) => panic!("parsed payload does not serialize: {err}"),
    };
    match serde_json::from_slice::<T>(&text) {
        Ok(again) => assert_eq!(again, value, "payload JSON round trip"),
        Err(err) => panic!("serialized payload does not parse back: {err}"),
    }
    Some(value)
}
