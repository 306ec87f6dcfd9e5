//! A quick measurement of one port session's download rate through the emulator, unpaced (the
//! emulator's ceiling) and paced like the real agent. Printed, never asserted: timing belongs
//! in benchmarks; the test asserts only that the bytes arrive intact.

use std::time::Duration;

use postern_protocol::Event;
use tokio::time::Instant;

use crate::support::data::{random_bytes, sha256};
use crate::support::emulator::{Channel, OLD, STEP, emulator, start_session};
use crate::support::net::TcpServer;

async fn download(paced: bool, len: usize) -> Duration {
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
    let begin = Instant::now();
    let deadline = begin + STEP;
    let mut received = Vec::with_capacity(len);
    while received.len() < len {
        assert!(channel.step(deadline).await, "download did not complete");
        for event in channel.take_events() {
            if let Event::Output(bytes) = event {
                received.extend_from_slice(&bytes);
            }
        }
    }
    let elapsed = begin.elapsed();
    assert_eq!(sha256(&received), sha256(&data));
    elapsed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_port_session_download_rate_is_printed() {
    let unpaced_len = 16 * 1024 * 1024;
    let unpaced = download(false, unpaced_len).await;
    let paced_len = 1024 * 1024;
    let paced = download(true, paced_len).await;
    eprintln!(
        "emulator ceiling (--no-pacing): {:.1} MB/s; paced like the agent: {:.2} MB/s",
        unpaced_len as f64 / unpaced.as_secs_f64() / 1e6,
        paced_len as f64 / paced.as_secs_f64() / 1e6,
    );
}
