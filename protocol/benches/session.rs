//! Session throughput: 64 MiB pushed client → agent through the simulated link with no loss
//! (virtual clock, 1 ms one-way latency), every byte sequenced, acked and reassembled. Reports
//! payload bytes per second; messages per second is that divided by 1024. The same push in a
//! KMS-encrypted session (AES-256-GCM per message, SPEC.md §7, the testkit's fake KMS) runs
//! in the same group, so the report shows the cost of encryption against plain in one run.
// criterion_group! expands to an undocumented public function.
#![allow(missing_docs)]

use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use postern_protocol::testkit::pair::{LinkConfig, Pair};
use postern_protocol::{AgentConfig, KmsContext, SessionConfig, SessionType};

fn push(total: usize, encrypted: bool) -> usize {
    let mut client = SessionConfig::client("1.2.707.0", 1, 1_700_000_000_000);
    let mut agent = AgentConfig::new(
        "3.3.0.0",
        SessionType::StandardStream,
        serde_json::Value::Null,
    );
    agent.pacing = None;
    if encrypted {
        agent.kms_key_id = Some("alias/bench".into());
        client.kms_context = Some(KmsContext {
            session_id: "bench-0123".into(),
            target_id: "i-0123456789abcdef0".into(),
        });
    }
    let mut agent = SessionConfig::agent(agent, 2, 1_700_000_000_000);
    agent.kms_context = client.kms_context.clone();
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
    let encrypted_session = pair
        .client_events
        .iter()
        .any(|e| matches!(e, postern_protocol::Event::Ready(info) if info.encrypted));
    assert_eq!(encrypted_session, encrypted);
    total
}

fn session(c: &mut Criterion) {
    let mut group = c.benchmark_group("session");
    group.sample_size(10);
    group.throughput(Throughput::Bytes(TOTAL as u64));
    let mut fastest = [Duration::MAX; 2];
    for (slot, (name, encrypted)) in [
        ("push_64MiB_client_to_agent", false),
        ("push_64MiB_client_to_agent_kms_encrypted", true),
    ]
    .into_iter()
    .enumerate()
    {
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                for _ in 0..iters {
                    std::hint::black_box(push(TOTAL, encrypted));
                }
                let elapsed = start.elapsed();
                fastest[slot] = fastest[slot].min(elapsed / iters as u32);
                elapsed
            })
        });
    }
    group.finish();
    let [plain, encrypted] = fastest.map(|d| TOTAL as f64 / d.as_secs_f64() / 1e6);
    println!(
        "session push, fastest sample: plain {plain:.0} MB/s, KMS-encrypted {encrypted:.0} MB/s, \
         ratio encrypted/plain {:.2}",
        encrypted / plain
    );
}

const TOTAL: usize = 64 * 1024 * 1024;

criterion_group!(benches, session);
criterion_main!(benches);
