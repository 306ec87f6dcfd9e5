//! Deterministic simulations: a client-role and an agent-role session over a hostile link.
//! For every seed, random byte streams in both directions must arrive exactly once and in
//! order, and the run must go idle (no endless retransmission).

use std::time::Duration;

use postern_protocol::rng::SeededRng;
use postern_protocol::testkit::pair::{LinkConfig, Pair};
use postern_protocol::{AgentConfig, Event, SessionConfig, SessionType, ViolationKind};
use serde_json::json;

fn agent_config(kind: u64) -> AgentConfig {
    let (session_type, properties) = match kind % 3 {
        0 => (SessionType::StandardStream, serde_json::Value::Null),
        1 => (
            SessionType::Port,
            json!({"portNumber":"22","type":"LocalPortForwarding"}),
        ),
        _ => (SessionType::NonInteractiveCommands, serde_json::Value::Null),
    };
    let mut agent = AgentConfig::new("3.3.0.0", session_type, properties);
    agent.pacing = None;
    // Hostile links may lose the response many times over; the deadline is not under test.
    agent.handshake_timeout = Duration::from_secs(3600);
    agent
}

fn random_bytes(rng: &mut SeededRng, max: u64) -> Vec<u8> {
    let len = (rng.next_u64() % max) as usize;
    let mut data = vec![0u8; len];
    rng.fill(&mut data);
    data
}

/// Runs one seed; returns (retransmissions, duplicates) to prove the link was hostile.
fn run_seed(seed: u64, reconnects: bool) -> (u64, u64) {
    let mut rng = SeededRng::new(seed);
    let link = LinkConfig::random(&mut rng);
    let client = SessionConfig::client("1.2.707.0", seed, 1_700_000_000_000);
    let agent = SessionConfig::agent(agent_config(seed), seed + 1, 1_700_000_000_000);
    let mut pair = Pair::new(client, agent, link.clone(), seed);
    let up = random_bytes(&mut rng, 48 * 1024);
    let down = random_bytes(&mut rng, 48 * 1024);
    pair.client_outbox.extend(up.iter().copied());
    pair.agent_outbox.extend(down.iter().copied());
    if reconnects {
        for i in 1..=3 {
            pair.reconnects
                .push(pair.now + Duration::from_millis(rng.next_u64() % 400 + i * 50));
        }
    }
    let steps = pair
        .run_until_idle(2_000_000)
        .unwrap_or_else(|e| panic!("seed {seed} link {link:?}: {e}"));
    assert!(steps > 0, "seed {seed}: nothing happened");
    assert_eq!(
        pair.agent_received.len(),
        up.len(),
        "seed {seed}: client→agent length"
    );
    assert!(pair.agent_received == up, "seed {seed}: client→agent bytes");
    assert!(
        pair.client_received == down,
        "seed {seed}: agent→client bytes"
    );
    assert!(!pair.client.has_unacked() && !pair.agent.has_unacked());
    // A correct client on any link causes no agent-side violations apart from missing acks
    // that the lossy link itself produced.
    let violations: Vec<_> = pair
        .agent_events
        .iter()
        .filter_map(|e| match e {
            Event::Violation(v) if v.kind != ViolationKind::MissingAck => Some(v),
            _ => None,
        })
        .collect();
    assert!(violations.is_empty(), "seed {seed}: {violations:?}");
    let (c, a) = (pair.client.stats(), pair.agent.stats());
    (
        c.retransmissions + a.retransmissions,
        c.duplicates + a.duplicates,
    )
}

fn run_seeds(seeds: std::ops::Range<u64>, reconnects: bool) {
    let (mut retransmissions, mut duplicates) = (0, 0);
    for seed in seeds {
        let (r, d) = run_seed(seed, reconnects);
        retransmissions += r;
        duplicates += d;
    }
    // The harness must really have lost and duplicated frames, or the test proves nothing.
    assert!(
        retransmissions > 1000,
        "only {retransmissions} retransmissions"
    );
    assert!(duplicates > 100, "only {duplicates} duplicates");
}

#[test]
fn exactly_once_in_order_over_hostile_links_for_200_seeds() {
    run_seeds(0..200, false);
}

#[test]
fn exactly_once_in_order_across_reconnects_for_200_seeds() {
    run_seeds(1000..1200, true);
}

#[test]
fn perfect_link_needs_no_retransmission() {
    let client = SessionConfig::client("1.2.707.0", 1, 1_700_000_000_000);
    let agent = SessionConfig::agent(agent_config(1), 2, 1_700_000_000_000);
    let mut pair = Pair::new(
        client,
        agent,
        LinkConfig::perfect(Duration::from_millis(5)),
        3,
    );
    pair.client_outbox.extend(vec![7u8; 100_000]);
    pair.agent_outbox.extend(vec![9u8; 100_000]);
    pair.run_until_idle(100_000).expect("goes idle");
    assert_eq!(pair.agent_received.len(), 100_000);
    assert_eq!(pair.client_received.len(), 100_000);
    assert_eq!(pair.client.stats().retransmissions, 0);
    assert_eq!(pair.agent.stats().retransmissions, 0);
    assert_eq!(pair.client.stats().duplicates, 0);
}

#[test]
fn idle_session_stays_idle_for_a_simulated_hour() {
    let client = SessionConfig::client("1.2.707.0", 1, 1_700_000_000_000);
    let agent = SessionConfig::agent(agent_config(1), 2, 1_700_000_000_000);
    let mut pair = Pair::new(
        client,
        agent,
        LinkConfig::perfect(Duration::from_millis(5)),
        3,
    );
    pair.run_until_idle(1000).expect("handshake settles");
    let before = pair.frames_sent;
    pair.now += Duration::from_secs(3600);
    pair.client.handle_timeout(pair.now);
    pair.agent.handle_timeout(pair.now);
    pair.run_until_idle(1000).expect("still idle");
    assert_eq!(pair.frames_sent, before, "no traffic while idle");
    assert!(!pair.client.is_closed() && !pair.agent.is_closed());
    pair.client_outbox.extend(b"still alive".iter().copied());
    pair.run_until_idle(1000).expect("delivers");
    assert_eq!(pair.agent_received, b"still alive");
}

#[test]
fn kms_encrypted_shell_over_hostile_links_for_50_seeds() {
    for seed in 5000..5050 {
        let mut rng = SeededRng::new(seed);
        let link = LinkConfig::random(&mut rng);
        let mut client = SessionConfig::client("1.2.707.0", seed, 1_700_000_000_000);
        client.kms_context = Some(postern_protocol::KmsContext {
            session_id: "alice-0123".into(),
            target_id: "i-0123456789abcdef0".into(),
        });
        let mut agent = agent_config(0);
        agent.kms_key_id = Some("alias/session-key".into());
        let mut agent = SessionConfig::agent(agent, seed + 1, 1_700_000_000_000);
        agent.kms_context = client.kms_context.clone();
        let mut pair = Pair::new(client, agent, link.clone(), seed);
        let up = random_bytes(&mut rng, 16 * 1024);
        let down = random_bytes(&mut rng, 16 * 1024);
        pair.client_outbox.extend(up.iter().copied());
        pair.agent_outbox.extend(down.iter().copied());
        pair.run_until_idle(2_000_000)
            .unwrap_or_else(|e| panic!("seed {seed} link {link:?}: {e}"));
        assert!(pair.agent_received == up, "seed {seed}: client→agent bytes");
        assert!(
            pair.client_received == down,
            "seed {seed}: agent→client bytes"
        );
        let ready = pair.client_events.iter().find_map(|e| match e {
            Event::Ready(info) => Some(info.clone()),
            _ => None,
        });
        let ready = ready.expect("client ready");
        assert!(ready.encrypted, "seed {seed}: session must be encrypted");
        assert_eq!(
            ready.customer_message.as_deref(),
            Some("This session is encrypted using AWS KMS.")
        );
        // The client asked for the key with the three-key context (challenge acknowledged).
        let context = pair.client_events.iter().find_map(|e| match e {
            Event::KmsDataKeyRequired(postern_protocol::KmsRequest::GenerateDataKey {
                encryption_context,
                ..
            }) => Some(encryption_context.clone()),
            _ => None,
        });
        let context = context.expect("GenerateDataKey requested");
        assert_eq!(context["aws:ssm:TargetId"], "i-0123456789abcdef0");
        assert!(context.contains_key("aws:ssm:RandomChallenge"));
    }
}
