//! Session throughput: 64 MiB pushed client → agent through the simulated link with no loss
//! (virtual clock, 1 ms one-way latency), every byte sequenced, acked and reassembled. Reports
//! payload bytes per second; messages per second is that divided by 1024.

use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use postern_protocol::testkit::pair::{LinkConfig, Pair};
use postern_protocol::{AgentConfig, SessionConfig, SessionType};

fn push(total: usize) -> usize {
    let client = SessionConfig::client("1.2.707.0", 1, 1_700_000_000_000);
    let mut agent = AgentConfig::new(
        "3.3.0.0",
        SessionType::StandardStream,
        serde_json::Value::Null,
    );
    agent.pacing = None;
    let agent = SessionConfig::agent(agent, 2, 1_700_000_000_000);
    let mut pair = Pair::new(
        client,
        agent,
        LinkConfig::perfect(Duration::from_millis(1)),
        3,
    );
    // The agent speaks first in a shell session; one byte makes the client ready.
    pair.agent_outbox.push_back(b'$');
    pair.client_outbox
        .extend(std::iter::repeat_n(0xa5u8, total));
    pair.run_until_idle(usize::MAX)
        .expect("a perfect link goes idle");
    assert_eq!(pair.agent_received.len(), total);
    total
}

fn session(c: &mut Criterion) {
    let mut group = c.benchmark_group("session");
    group.sample_size(10);
    group.throughput(Throughput::Bytes(TOTAL as u64));
    group.bench_function("push_64MiB_client_to_agent", |b| b.iter(|| push(TOTAL)));
    group.finish();
}

const TOTAL: usize = 64 * 1024 * 1024;

criterion_group!(benches, session);
criterion_main!(benches);
