//! An idle session survives a simulated hour: the client's keepalive pings (virtual clock,
//! 5 ms one way) keep a service-side idle timeout of 60 s from ever firing, the data-channel
//! sessions exchange nothing and stay open, and data flows at the end. Then the peer goes
//! silent and the keepalive declares the connection dead within two intervals.

use std::time::Duration;

use postern_protocol::keepalive::{Keepalive, KeepaliveAction};
use postern_protocol::testkit::pair::{LinkConfig, Pair};
use postern_protocol::{AgentConfig, SessionConfig, SessionType};
use serde_json::json;

const INTERVAL: Duration = Duration::from_secs(20);
const SERVICE_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
const LATENCY: Duration = Duration::from_millis(5);

#[test]
fn an_idle_port_session_survives_a_simulated_hour_and_a_dead_peer_is_found() {
    let mut agent = AgentConfig::new(
        "3.3.0.0",
        SessionType::Port,
        json!({"portNumber":"22","type":"LocalPortForwarding"}),
    );
    agent.pacing = None;
    let mut pair = Pair::new(
        SessionConfig::client("1.2.707.0", 1, 1_700_000_000_000),
        SessionConfig::agent(agent, 2, 1_700_000_000_000),
        LinkConfig::perfect(LATENCY),
        3,
    );
    pair.run_until_idle(10_000).expect("handshake settles");
    let start = pair.now;
    let frames_before = pair.frames_sent;
    let mut keepalive = Keepalive::new(Some(INTERVAL), start);
    // The service's view: when it last heard from the client.
    let mut service_heard = start;
    let mut pings = 0;
    while pair.now - start < Duration::from_secs(3600) {
        let wake = keepalive.poll_timeout().expect("keepalive armed");
        assert!(
            pair.client.poll_timeout().is_none_or(|t| t > wake),
            "the idle session wants to act"
        );
        pair.now = wake;
        pair.client.handle_timeout(pair.now);
        pair.agent.handle_timeout(pair.now);
        assert!(
            pair.now - service_heard < SERVICE_IDLE_TIMEOUT,
            "the service would have closed the idle websocket at {:?}",
            pair.now - start
        );
        match keepalive.handle_timeout(pair.now) {
            Some(KeepaliveAction::SendPing) => {
                pings += 1;
                service_heard = pair.now + LATENCY;
                // The service answers at once: the Pong arrives one round trip later.
                keepalive.handle_received(pair.now + 2 * LATENCY);
            }
            other => panic!("unexpected keepalive action {other:?}"),
        }
    }
    assert_eq!(pings, 180);
    assert_eq!(
        pair.frames_sent, frames_before,
        "no data-channel traffic while idle"
    );
    assert!(!pair.client.is_closed() && !pair.agent.is_closed());
    pair.client_outbox.extend(b"after an hour".iter().copied());
    pair.run_until_idle(10_000).expect("delivers");
    assert_eq!(pair.agent_received, b"after an hour");

    // The peer goes silent (laptop sleep, dropped route): dead within two intervals.
    let silent_from = pair.now;
    let dead_at = loop {
        let wake = keepalive.poll_timeout().expect("armed");
        match keepalive.handle_timeout(wake) {
            Some(KeepaliveAction::SendPing) => {}
            Some(KeepaliveAction::Dead(_)) => break wake,
            None => {}
        }
    };
    assert!(
        dead_at - silent_from <= 2 * INTERVAL,
        "{:?}",
        dead_at - silent_from
    );
}
