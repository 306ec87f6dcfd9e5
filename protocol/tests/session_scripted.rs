//! Scripted-peer tests: one real session against hand-built peer frames, for the handshake of
//! each session type and for the agent role's strictness (what it reports as violations).

use std::time::{Duration, Instant};

use postern_protocol::testkit::scripted::{ScriptedPeer, transmits};
use postern_protocol::{
    AgentConfig, ClientMessage, CloseReason, Event, HandshakeComplete, HandshakeResponse,
    MessageType, PayloadType, Role, Session, SessionConfig, SessionType, SizeData, ViolationKind,
};
use serde_json::{Value, json};

const EPOCH: u64 = 1_700_000_000_000;

fn events(session: &mut Session) -> Vec<Event> {
    std::iter::from_fn(|| session.poll_event()).collect()
}

fn violations(events: &[Event]) -> Vec<ViolationKind> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Violation(v) => Some(v.kind),
            _ => None,
        })
        .collect()
}

fn handshake_request(session_type: &str, properties: Value) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "AgentVersion": "3.3.0.0",
        "RequestedClientActions": [{"ActionType":"SessionType","ActionParameters":{"SessionType":session_type,"Properties":properties}}]
    }))
    .expect("json")
}

fn complete() -> Vec<u8> {
    serde_json::to_vec(&HandshakeComplete {
        handshake_time_to_complete: 1_000_000,
        customer_message: String::new(),
    })
    .expect("json")
}

/// Client side of a handshake for `session_type`: ack, one response, Ready on complete, held
/// data (size first) released only afterwards.
fn client_handshake(session_type: &str, properties: Value) {
    let now = Instant::now();
    let mut client = Session::new(SessionConfig::client("1.2.707.0", 9, EPOCH), now);
    let mut agent = ScriptedPeer::new(Role::Agent, 1);
    client.send_size(
        now,
        SizeData {
            cols: 132,
            rows: 43,
        },
    );
    assert_eq!(client.send_output(now, b"early"), 5);
    assert!(
        transmits(&mut client, now).is_empty(),
        "nothing before the first agent message"
    );

    let request = agent.stream(
        PayloadType::HandshakeRequest,
        &handshake_request(session_type, properties.clone()),
    );
    client
        .handle_message(now, &request)
        .expect("request accepted");
    let sent = transmits(&mut client, now);
    assert_eq!(sent.len(), 2, "ack then response");
    assert_eq!(sent[0].1.message_type, MessageType::Acknowledge);
    assert_eq!(sent[1].1.payload_type, PayloadType::HandshakeResponse);
    assert_eq!(
        sent[1].1.sequence_number.0, 0,
        "the response is our first stream message"
    );
    let response: HandshakeResponse = serde_json::from_slice(&sent[1].1.payload).expect("json");
    assert_eq!(response.client_version, "1.2.707.0");
    assert_eq!(response.processed_client_actions.len(), 1);

    // A retransmitted request (same seq) is re-acked, never answered again.
    client
        .handle_message(now, &request)
        .expect("duplicate accepted");
    let again = transmits(&mut client, now);
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].1.message_type, MessageType::Acknowledge);

    let ack = agent.ack(&sent[1].0);
    client.handle_message(now, &ack).expect("ack");
    assert!(!client.is_ready());
    client
        .handle_message(
            now,
            &agent.stream(PayloadType::HandshakeComplete, &complete()),
        )
        .expect("complete");
    let evs = events(&mut client);
    let ready = evs.iter().find_map(|e| match e {
        Event::Ready(info) => Some(info.clone()),
        _ => None,
    });
    let ready = ready.expect("ready event");
    assert_eq!(String::from(ready.session_type), session_type);
    assert_eq!(ready.properties, properties);
    assert_eq!(ready.agent_version.as_deref(), Some("3.3.0.0"));
    let sent = transmits(&mut client, now);
    let kinds: Vec<_> = sent
        .iter()
        .map(|(_, m)| (m.message_type, m.payload_type))
        .collect();
    assert_eq!(
        kinds,
        vec![
            (MessageType::Acknowledge, PayloadType::Null),
            (MessageType::InputStreamData, PayloadType::Size),
            (MessageType::InputStreamData, PayloadType::Output),
        ]
    );
    assert_eq!(sent[2].1.payload, b"early");
}

#[test]
fn port_handshake() {
    client_handshake(
        "Port",
        json!({"portNumber":"5432","type":"LocalPortForwarding"}),
    );
}

#[test]
fn ssh_handshake() {
    client_handshake("Port", json!({"portNumber":"22"}));
}

#[test]
fn non_interactive_commands_handshake() {
    client_handshake("NonInteractiveCommands", Value::Null);
}

#[test]
fn shell_without_handshake_becomes_ready_on_first_output() {
    let now = Instant::now();
    let mut client = Session::new(SessionConfig::client("1.2.707.0", 9, EPOCH), now);
    let mut agent = ScriptedPeer::new(Role::Agent, 1);
    client.send_size(now, SizeData { cols: 80, rows: 24 });
    client.send_size(
        now,
        SizeData {
            cols: 100,
            rows: 30,
        },
    );
    client
        .handle_message(now, &agent.stream(PayloadType::Output, b"$ "))
        .expect("output");
    let evs = events(&mut client);
    assert!(
        matches!(&evs[0], Event::Ready(info) if info.session_type == SessionType::StandardStream)
    );
    assert_eq!(evs[1], Event::Output(b"$ ".to_vec()));
    let sent = transmits(&mut client, now);
    assert_eq!(sent.len(), 2, "ack and the latest size only");
    let size: SizeData = serde_json::from_slice(&sent[1].1.payload).expect("size json");
    assert_eq!(
        size,
        SizeData {
            cols: 100,
            rows: 30
        }
    );
}

#[test]
fn exit_code_stderr_and_channel_closed_reach_the_client() {
    let now = Instant::now();
    let mut client = Session::new(SessionConfig::client("1.2.707.0", 9, EPOCH), now);
    let mut agent = ScriptedPeer::new(Role::Agent, 1);
    client
        .handle_message(now, &agent.stream(PayloadType::Output, b"out"))
        .expect("out");
    client
        .handle_message(now, &agent.stream(PayloadType::StdErr, b"err"))
        .expect("err");
    client
        .handle_message(now, &agent.stream(PayloadType::ExitCode, b"EXIT_CODE: 42"))
        .expect("exit");
    client
        .handle_message(
            now,
            &agent.control(MessageType::ChannelClosed, br#"{"Output":"bye"}"#),
        )
        .expect("closed");
    let evs = events(&mut client);
    assert!(evs.contains(&Event::StdErr(b"err".to_vec())));
    assert!(evs.contains(&Event::ExitCode(42)));
    assert!(
        evs.iter()
            .any(|e| matches!(e, Event::ChannelClosed(c) if c.output == "bye"))
    );
    assert_eq!(evs.last(), Some(&Event::Closed(CloseReason::ChannelClosed)));
}

/// A ready client at `t0` that has queued `abc` for an agent that never acks.
fn client_sending_abc() -> (Instant, Session) {
    let t0 = Instant::now();
    let mut client = Session::new(SessionConfig::client("1.2.707.0", 9, EPOCH), t0);
    let mut agent = ScriptedPeer::new(Role::Agent, 1);
    client
        .handle_message(t0, &agent.stream(PayloadType::Output, b"$"))
        .expect("out");
    let _ = transmits(&mut client, t0);
    client.send_output(t0, b"abc");
    (t0, client)
}

#[test]
fn client_retransmits_head_once_per_rto_and_gives_up() {
    let (t0, mut client) = client_sending_abc();
    assert_eq!(transmits(&mut client, t0).len(), 1);
    // Before the RTO nothing is resent; at the RTO exactly one copy goes out.
    assert!(transmits(&mut client, t0 + Duration::from_millis(150)).is_empty());
    let deadline = client.poll_timeout().expect("armed");
    assert_eq!(deadline, t0 + Duration::from_millis(200));
    assert_eq!(transmits(&mut client, deadline).len(), 1);
    assert!(
        transmits(&mut client, deadline + Duration::from_millis(100)).is_empty(),
        "not every tick"
    );
    // Silence for the give-up limit closes the session.
    let late = t0 + Duration::from_secs(301);
    client.handle_timeout(late);
    assert!(
        events(&mut client).contains(&Event::Closed(CloseReason::GaveUp(Duration::from_secs(
            300
        ))))
    );
}

#[test]
fn no_give_up_while_the_driver_has_stopped_receiving() {
    let (t0, mut client) = client_sending_abc();
    let _ = transmits(&mut client, t0);
    // The driver stops receiving (its local side is behind): the agent's acks go unread, so
    // their absence says nothing.
    client.set_receive_ready(t0, false);
    let late = t0 + Duration::from_secs(600);
    client.handle_timeout(late);
    assert!(
        !events(&mut client)
            .iter()
            .any(|e| matches!(e, Event::Closed(_))),
        "gave up while not receiving"
    );
    // Receiving again: the limit runs afresh from then.
    client.set_receive_ready(late, true);
    client.handle_timeout(late + Duration::from_secs(299));
    assert!(
        !events(&mut client)
            .iter()
            .any(|e| matches!(e, Event::Closed(_)))
    );
    client.handle_timeout(late + Duration::from_secs(301));
    assert!(
        events(&mut client).contains(&Event::Closed(CloseReason::GaveUp(Duration::from_secs(
            300
        ))))
    );
}

#[test]
fn pause_publication_holds_sending_until_resumed() {
    let t0 = Instant::now();
    let mut client = Session::new(SessionConfig::client("1.2.707.0", 9, EPOCH), t0);
    let mut agent = ScriptedPeer::new(Role::Agent, 1);
    client
        .handle_message(t0, &agent.stream(PayloadType::Output, b"$"))
        .expect("out");
    let _ = transmits(&mut client, t0);
    client
        .handle_message(t0, &agent.control(MessageType::PausePublication, b""))
        .expect("pause");
    client.send_output(t0, b"held");
    assert!(transmits(&mut client, t0).is_empty());
    client
        .handle_message(t0, &agent.control(MessageType::StartPublication, b""))
        .expect("start");
    let sent = transmits(&mut client, t0);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].1.payload, b"held");
    let evs = events(&mut client);
    assert!(evs.contains(&Event::Paused) && evs.contains(&Event::Resumed));
}

fn agent_session(session_type: SessionType, now: Instant) -> Session {
    let mut config = AgentConfig::new(
        "3.3.0.0",
        session_type,
        json!({"portNumber":"22","type":"LocalPortForwarding"}),
    );
    config.pacing = None;
    Session::new(SessionConfig::agent(config, 5, EPOCH), now)
}

fn response_bytes(status: i64) -> Vec<u8> {
    serde_json::to_vec(&json!({"ClientVersion":"1.2.707.0","ProcessedClientActions":[{"ActionType":"SessionType","ActionStatus":status,"ActionResult":null,"Error":""}],"Errors":null})).expect("json")
}

#[test]
fn agent_port_handshake_completes_and_reports_client_version() {
    let now = Instant::now();
    let mut agent = agent_session(SessionType::Port, now);
    let mut client = ScriptedPeer::new(Role::Client, 2);
    let sent = transmits(&mut agent, now);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].1.payload_type, PayloadType::HandshakeRequest);
    assert_eq!(sent[0].1.flags, 1, "agent seq 0 carries flag 1");
    agent
        .handle_message(now, &client.ack(&sent[0].0))
        .expect("ack");
    agent
        .handle_message(
            now,
            &client.stream(PayloadType::HandshakeResponse, &response_bytes(1)),
        )
        .expect("resp");
    let sent = transmits(&mut agent, now);
    assert_eq!(sent[0].1.message_type, MessageType::Acknowledge);
    assert_eq!(sent[1].1.payload_type, PayloadType::HandshakeComplete);
    let evs = events(&mut agent);
    assert!(
        evs.iter().any(
            |e| matches!(e, Event::Ready(i) if i.client_version.as_deref() == Some("1.2.707.0"))
        )
    );
    assert!(violations(&evs).is_empty());
}

#[test]
fn agent_reports_data_before_handshake_and_repeated_response() {
    let now = Instant::now();
    let mut agent = agent_session(SessionType::Port, now);
    let mut client = ScriptedPeer::new(Role::Client, 2);
    let _ = transmits(&mut agent, now);
    agent
        .handle_message(now, &client.stream(PayloadType::Output, b"too early"))
        .expect("acked and dropped");
    let sent = transmits(&mut agent, now);
    assert_eq!(sent.len(), 1, "acked");
    agent
        .handle_message(
            now,
            &client.stream(PayloadType::HandshakeResponse, &response_bytes(1)),
        )
        .expect("resp");
    agent
        .handle_message(
            now,
            &client.stream(PayloadType::HandshakeResponse, &response_bytes(1)),
        )
        .expect("resp2");
    let evs = events(&mut agent);
    assert_eq!(
        violations(&evs),
        vec![
            ViolationKind::DataBeforeHandshake,
            ViolationKind::RepeatedHandshakeMessage
        ]
    );
    assert!(
        !evs.iter().any(|e| matches!(e, Event::Output(_))),
        "early data discarded"
    );
}

#[test]
fn agent_rejects_failed_action_and_times_out_silent_clients() {
    let now = Instant::now();
    let mut agent = agent_session(SessionType::Port, now);
    let mut client = ScriptedPeer::new(Role::Client, 2);
    agent
        .handle_message(
            now,
            &client.stream(PayloadType::HandshakeResponse, &response_bytes(2)),
        )
        .expect("resp");
    let evs = events(&mut agent);
    assert_eq!(
        violations(&evs),
        vec![ViolationKind::MalformedHandshakeResponse]
    );
    assert!(
        evs.iter()
            .any(|e| matches!(e, Event::Closed(CloseReason::HandshakeFailed(_))))
    );

    let mut silent = agent_session(SessionType::NonInteractiveCommands, now);
    let _ = transmits(&mut silent, now);
    let deadline = silent.poll_timeout().expect("armed");
    assert!(deadline <= now + Duration::from_secs(15));
    silent.handle_timeout(now + Duration::from_secs(15));
    assert!(events(&mut silent).contains(&Event::Closed(CloseReason::HandshakeTimeout)));
}

#[test]
fn agent_flags_bad_digest_bad_ack_oversize_and_missing_acks() {
    let t0 = Instant::now();
    let mut agent = agent_session(SessionType::StandardStream, t0);
    let mut client = ScriptedPeer::new(Role::Client, 2);
    assert!(
        events(&mut agent)
            .iter()
            .any(|e| matches!(e, Event::Ready(_)))
    );
    // Bad digest: flip a payload byte.
    let mut corrupt = client.stream(PayloadType::Output, b"ls\r");
    let last = corrupt.len() - 1;
    corrupt[last] ^= 1;
    assert!(agent.handle_message(t0, &corrupt).is_err());
    // Ack for something never sent.
    let bogus =
        ClientMessage::decode(&client.stream_at(77, PayloadType::Output, b"x")).expect("decodes");
    let mut fake = ScriptedPeer::new(Role::Client, 3);
    let ack = fake.ack(&bogus.encode().expect("encodes"));
    agent.handle_message(t0, &ack).expect("parsed");
    // Oversize payload and a malformed size.
    agent
        .handle_message(t0, &client.stream_at(0, PayloadType::Output, &[b'a'; 2000]))
        .expect("oversize still delivered");
    agent
        .handle_message(t0, &client.stream_at(1, PayloadType::Size, b"{cols"))
        .expect("malformed size");
    // Our output never acked: five retransmissions later it is a violation.
    agent.send_output(t0, b"hello");
    let mut t = t0;
    // Five retransmissions and five seconds without an ack make it a violation.
    while t < t0 + Duration::from_secs(6) {
        let _ = transmits(&mut agent, t);
        t = agent.poll_timeout().expect("retransmission armed");
    }
    let kinds = violations(&events(&mut agent));
    for expected in [
        ViolationKind::BadDigest,
        ViolationKind::AckForUnknownSequence,
        ViolationKind::OversizePayload,
        ViolationKind::MalformedSize,
        ViolationKind::MissingAck,
    ] {
        assert!(
            kinds.contains(&expected),
            "{expected:?} missing from {kinds:?}"
        );
    }
    // The malformed size is not acked: everything after it waits, as with the real agent.
    assert_eq!(agent.expected_sequence_number().0, 1);
}

#[test]
fn a_detached_agent_neither_transmits_nor_counts_missing_acks_until_the_reconnect() {
    let t0 = Instant::now();
    let mut agent = agent_session(SessionType::StandardStream, t0);
    let _ = events(&mut agent);
    agent.send_output(t0, b"before");
    let sent = transmits(&mut agent, t0);
    assert_eq!(sent.len(), 1, "the output goes out while attached");
    // The websocket breaks: a minute without a peer, output still produced meanwhile.
    agent.handle_disconnect(t0);
    agent.send_output(t0, b"during");
    assert_eq!(agent.poll_timeout(), None, "no retransmission armed");
    let mut t = t0;
    for _ in 0..60 {
        t += Duration::from_secs(1);
        agent.handle_timeout(t);
        assert!(transmits(&mut agent, t).is_empty(), "sent while detached");
    }
    assert!(violations(&events(&mut agent)).is_empty());
    // The reconnect resends the unacked head at once, then sends what was produced meanwhile.
    agent.handle_reconnect(t);
    let resent = transmits(&mut agent, t);
    let payloads: Vec<&[u8]> = resent.iter().map(|(_, m)| m.payload.as_slice()).collect();
    assert_eq!(payloads, [&b"before"[..], &b"during"[..]]);
    let mut client = ScriptedPeer::new(Role::Client, 2);
    for (frame, _) in &resent {
        agent.handle_message(t, &client.ack(frame)).expect("ack");
    }
    assert!(!agent.has_unacked());
    assert!(violations(&events(&mut agent)).is_empty());
}

#[test]
fn messages_beyond_a_full_reorder_buffer_are_dropped_unacked_and_resent_later() {
    let now = Instant::now();
    let mut config = SessionConfig::client("1.2.707.0", 9, EPOCH);
    config.limits.reorder_capacity = 4;
    let mut client = Session::new(config, now);
    let mut agent = ScriptedPeer::new(Role::Agent, 1);
    client
        .handle_message(now, &agent.stream_at(0, PayloadType::Output, b"0"))
        .expect("first output");
    let _ = transmits(&mut client, now);
    // 1 is lost; 2..=5 fill the buffer (acked); 6..=8 are beyond it: dropped, no ack, and
    // no violation (the official client's full IncomingMessageBuffer does the same).
    // Each message's payload is its sequence number.
    let mut deliver = |client: &mut Session, seq: i64| {
        let payload = seq.to_string();
        client
            .handle_message(
                now,
                &agent.stream_at(seq, PayloadType::Output, payload.as_bytes()),
            )
            .expect("accepted or dropped, never an error");
    };
    for seq in 2..=8 {
        deliver(&mut client, seq);
    }
    let acked: Vec<i64> = transmits(&mut client, now)
        .iter()
        .map(|(_, m)| serde_json::from_slice::<Value>(&m.payload).unwrap())
        .map(|ack| ack["AcknowledgedMessageSequenceNumber"].as_i64().unwrap())
        .collect();
    assert_eq!(acked, [2, 3, 4, 5]);
    assert_eq!(client.stats().dropped_out_of_window, 3);
    // The agent resends 1, then 6..=8: everything arrives once, in order.
    for seq in [1, 6, 7, 8] {
        deliver(&mut client, seq);
    }
    let evs = events(&mut client);
    assert!(violations(&evs).is_empty(), "{evs:?}");
    let output: Vec<u8> = evs
        .iter()
        .filter_map(|e| match e {
            Event::Output(bytes) => Some(bytes.clone()),
            _ => None,
        })
        .flatten()
        .collect();
    assert_eq!(output, b"012345678");
}

#[test]
fn a_peer_flooding_reordered_messages_cannot_make_us_hold_more_than_the_byte_cap() {
    let now = Instant::now();
    let mut config = SessionConfig::client("1.2.707.0", 9, EPOCH);
    config.limits.reorder_bytes = 64 * 1024;
    let mut client = Session::new(config, now);
    let mut agent = ScriptedPeer::new(Role::Agent, 1);
    client
        .handle_message(now, &agent.stream_at(0, PayloadType::Output, b"0"))
        .expect("first output");
    let _ = transmits(&mut client, now);
    // Sequence 1 never comes; 2..=401 carry 16 KiB each (6.4 MB in all): a few fill the cap,
    // the rest are dropped unacked, never an error and never a violation.
    let big = vec![b'x'; 16 * 1024];
    for seq in 2..=401 {
        client
            .handle_message(now, &agent.stream_at(seq, PayloadType::Output, &big))
            .expect("accepted or dropped, never an error");
    }
    let acked = transmits(&mut client, now).len();
    assert_eq!(acked, 4, "64 KiB of 16 KiB messages are held (and acked)");
    assert_eq!(client.stats().dropped_out_of_window, 396);
    assert_eq!(client.buffered_sequence_numbers(), [2, 3, 4, 5]);
    assert!(violations(&events(&mut client)).is_empty());
}
