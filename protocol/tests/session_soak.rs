//! The randomised soak: 1,000 seeds of a hostile link (loss, duplicates, reordering through
//! jitter) with outages and reconnects in the middle of the transfer. Every byte must arrive
//! exactly once and in order in both directions, and the run must go idle. Kept small per
//! seed (up to 12 KiB each way) so the whole soak stays a few seconds.

use std::time::Duration;

use postern_protocol::rng::SeededRng;
use postern_protocol::testkit::pair::{LinkConfig, Pair};
use postern_protocol::{AgentConfig, Event, SessionConfig, SessionType, ViolationKind};
use serde_json::json;

const SEEDS: u64 = 1000;

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
    // Outages may eat the response; the handshake deadline is not under test here.
    agent.handshake_timeout = Duration::from_secs(3600);
    agent
}

/// At least one byte: a legacy shell client sends nothing before the agent's first output
/// (SPEC.md §2.7), so an empty agent stream would leave it waiting by design.
fn random_bytes(rng: &mut SeededRng, max: u64) -> Vec<u8> {
    let len = 1 + (rng.next_u64() % max) as usize;
    let mut data = vec![0u8; len];
    rng.fill(&mut data);
    data
}

struct Outcome {
    retransmissions: u64,
    duplicates: u64,
    breaks: usize,
}

fn run_seed(seed: u64) -> Outcome {
    let mut rng = SeededRng::new(seed ^ 0x50a6);
    let link = LinkConfig::random(&mut rng);
    let client = SessionConfig::client("1.2.707.0", seed, 1_700_000_000_000);
    let agent = SessionConfig::agent(agent_config(seed), seed + 7, 1_700_000_000_000);
    let mut pair = Pair::new(client, agent, link.clone(), seed);
    let up = random_bytes(&mut rng, 12 * 1024);
    let down = random_bytes(&mut rng, 12 * 1024);
    pair.client_outbox.extend(up.iter().copied());
    pair.agent_outbox.extend(down.iter().copied());
    // One to four breaks in the first 600 ms: instant reconnects and outages of up to 2 s
    // (frames sent meanwhile are lost, as a driver draining into a dead websocket loses them).
    let breaks = 1 + (rng.next_u64() % 4) as usize;
    for _ in 0..breaks {
        let at = pair.now + Duration::from_millis(rng.next_u64() % 600);
        if rng.next_u64().is_multiple_of(2) {
            pair.reconnects.push(at);
        } else {
            let length = Duration::from_millis(rng.next_u64() % 2000);
            pair.outages.push((at, length));
        }
    }
    pair.run_until_idle(2_000_000)
        .unwrap_or_else(|e| panic!("seed {seed} link {link:?}: {e}"));
    if pair.agent_received != up {
        let first_diff = pair
            .agent_received
            .iter()
            .zip(&up)
            .position(|(a, b)| a != b);
        panic!(
            "seed {seed}: client→agent bytes differ: got {} of {}, first difference at {first_diff:?}; kind {}; agent events {:?}; client events {:?}",
            pair.agent_received.len(),
            up.len(),
            seed % 3,
            pair.agent_events,
            pair.client_events
        );
    }
    assert!(
        pair.client_received == down,
        "seed {seed}: agent→client bytes differ"
    );
    assert!(
        !pair.client.has_unacked() && !pair.agent.has_unacked(),
        "seed {seed}: unacked data left"
    );
    assert!(
        !pair.client.is_closed() && !pair.agent.is_closed(),
        "seed {seed}: closed"
    );
    let violations: Vec<_> = pair
        .agent_events
        .iter()
        .chain(&pair.client_events)
        .filter_map(|e| match e {
            Event::Violation(v) if v.kind != ViolationKind::MissingAck => Some(v),
            _ => None,
        })
        .collect();
    assert!(violations.is_empty(), "seed {seed}: {violations:?}");
    let (c, a) = (pair.client.stats(), pair.agent.stats());
    Outcome {
        retransmissions: c.retransmissions + a.retransmissions,
        duplicates: c.duplicates + a.duplicates,
        breaks,
    }
}

#[test]
fn exactly_once_in_order_across_outages_and_reconnects_for_1000_seeds() {
    let (mut retransmissions, mut duplicates, mut breaks) = (0, 0, 0);
    for seed in 0..SEEDS {
        let outcome = run_seed(seed);
        retransmissions += outcome.retransmissions;
        duplicates += outcome.duplicates;
        breaks += outcome.breaks;
    }
    // The soak must really have been hostile, or it proves nothing.
    assert!(
        retransmissions > 5000,
        "only {retransmissions} retransmissions"
    );
    assert!(duplicates > 500, "only {duplicates} duplicates");
    assert!(breaks >= 2000, "only {breaks} breaks");
}

#[test]
fn client_replays_everything_in_flight_at_once_after_a_reconnect() {
    // A perfect link: the only loss is the outage. After it, the client resends its whole
    // in-flight window at once instead of one message per round trip.
    let client = SessionConfig::client("1.2.707.0", 1, 1_700_000_000_000);
    let agent = SessionConfig::agent(agent_config(1), 2, 1_700_000_000_000);
    let mut pair = Pair::new(
        client,
        agent,
        LinkConfig::perfect(Duration::from_millis(20)),
        3,
    );
    pair.run_until_idle(10_000).expect("handshake");
    let start = pair.now;
    // All 200 messages go out at once, and the outage swallows them on the wire.
    let data = vec![5u8; 200 * 1024];
    assert_eq!(pair.client.send_output(start, &data), data.len());
    pair.outages
        .push((start + Duration::from_millis(1), Duration::from_millis(500)));
    pair.run_until_idle(1_000_000).expect("delivers");
    assert_eq!(pair.agent_received.len(), 200 * 1024);
    // 200 messages lost in the outage at 20 ms one way; resent one per round trip they
    // would take 8 s.
    assert!(
        pair.now - start < Duration::from_secs(2),
        "took {:?}",
        pair.now - start
    );
}
