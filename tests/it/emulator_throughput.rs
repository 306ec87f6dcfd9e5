//! Large downloads through one port session of the emulator, unpaced (its ceiling) and paced
//! like the real agent: every byte arrives, intact and in order, nothing more, and no violation
//! is recorded against the client. Correctness only: how fast it goes is measured by
//! bench/forward.sh, never asserted here. Every wait is bounded by progress: each round must
//! bring data within [`STEP`], however long the whole download takes.

use postern_protocol::Event;
use tokio::time::Instant;

use crate::support::data::{random_bytes, sha256};
use crate::support::emulator::{Channel, OLD, STEP, emulator, start_session};
use crate::support::net::TcpServer;

/// Downloads `len` random bytes from a source behind a port session; checks them.
async fn download_intact(paced: bool, len: usize) {
    let data = random_bytes(len, len as u64);
    let source = TcpServer::source(data.clone());
    let emulator = emulator(|config| {
        if paced {
            config.pacing = Some(postern_emulator::Pacing::AGENT);
        }
    })
    .await;
    let started = start_session(
        &emulator,
        OLD,
        Some("AWS-StartPortForwardingSession"),
        &[("portNumber", &source.port.to_string())],
    )
    .await;
    let mut channel = Channel::open(&started).await;
    channel.ready().await;
    let mut received = Vec::with_capacity(len);
    let mut deadline = Instant::now() + STEP;
    while received.len() < len {
        assert!(
            channel.step(deadline).await,
            "no data for {STEP:?} after {} of {len} bytes",
            received.len()
        );
        let before = received.len();
        for event in channel.take_events() {
            if let Event::Output(bytes) = event {
                received.extend_from_slice(&bytes);
            }
        }
        if received.len() > before {
            deadline = Instant::now() + STEP;
        }
    }
    assert_eq!(received.len(), len, "more bytes than the source sent");
    if received != data {
        let at = received.iter().zip(&data).position(|(a, b)| a != b);
        panic!(
            "download differs from byte {at:?} (sha256 {} for {})",
            sha256(&received),
            sha256(&data)
        );
    }
    assert_eq!(
        emulator.violations().total(),
        0,
        "{}",
        emulator.violations()
    );
    assert_eq!(source.connections(), 1, "one connection to the source");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unpaced_16_mib_download_arrives_intact() {
    download_intact(false, 16 * 1024 * 1024).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_download_paced_like_the_agent_arrives_intact() {
    download_intact(true, 1024 * 1024).await;
}
