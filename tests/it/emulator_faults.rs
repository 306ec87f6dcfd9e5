//! Each fault flag of the emulator, exercised with a correct client: the data still arrives
//! intact and in order, the fault's effect is visible to the client, and no violation is
//! recorded against the client.

use std::time::Duration;

use crate::support::data::{random_bytes, sha256};
use crate::support::emulator::{
    Channel, OLD, STEP, Started, emulator, resume_session, ssm, start_session,
};
use crate::support::net::TcpServer;
use aws_sdk_ssm::error::ProvideErrorMetadata;
use postern_emulator::{EmulatorConfig, EmulatorHandle, Faults};
use postern_protocol::Event;
use tokio::time::Instant;

struct Run {
    echoed: Vec<u8>,
    events: Vec<Event>,
    reconnects: usize,
    elapsed: Duration,
    channel: Channel,
}

/// Echoes `data` through a basic port session, resuming whenever the emulator closes the
/// websocket.
async fn echo_through(emulator: &EmulatorHandle, echo: &TcpServer, data: &[u8]) -> Run {
    let port = echo.port.to_string();
    let started: Started = start_session(
        emulator,
        OLD,
        Some("AWS-StartPortForwardingSession"),
        &[("portNumber", &port)],
    )
    .await;
    let mut channel = Channel::open(&started).await;
    channel.ready().await;
    let begin = Instant::now();
    let deadline = begin + STEP;
    let mut offset = 0;
    let mut echoed = Vec::new();
    let mut events = Vec::new();
    let mut reconnects = 0;
    while echoed.len() < data.len() {
        if channel.socket_closed {
            let token = resume_session(emulator, &started.session_id).await;
            channel.reconnect(&started, &token).await;
            reconnects += 1;
        }
        if offset < data.len() {
            let end = (offset + 8 * 1024).min(data.len());
            offset += channel
                .session
                .send_output(Instant::now().into_std(), &data[offset..end]);
            channel.flush().await;
        }
        assert!(channel.step(deadline).await, "echo did not complete");
        for event in channel.take_events() {
            if let Event::Output(bytes) = &event {
                echoed.extend_from_slice(bytes);
            }
            events.push(event);
        }
    }
    Run {
        echoed,
        events,
        reconnects,
        elapsed: begin.elapsed(),
        channel,
    }
}

async fn with_faults(faults: Faults) -> EmulatorHandle {
    emulator(|config: &mut EmulatorConfig| config.faults = faults).await
}

async fn check_intact(faults: Faults, len: usize) -> (Run, EmulatorHandle) {
    let echo = TcpServer::echo();
    let emulator = with_faults(faults).await;
    let data = random_bytes(len, len as u64);
    let run = echo_through(&emulator, &echo, &data).await;
    assert_eq!(sha256(&run.echoed), sha256(&data));
    assert_eq!(
        emulator.violations().total(),
        0,
        "{}",
        emulator.violations()
    );
    (run, emulator)
}

#[tokio::test]
async fn close_after_n_messages_is_survived_by_resume_session() {
    let faults = Faults {
        close_after: Some(20),
        ..Faults::default()
    };
    let (run, _emulator) = check_intact(faults, 64 * 1024).await;
    assert_eq!(run.reconnects, 1);
}

#[tokio::test]
async fn close_every_n_messages_forces_repeated_resumes() {
    let faults = Faults {
        close_every: Some(40),
        ..Faults::default()
    };
    let (run, _emulator) = check_intact(faults, 64 * 1024).await;
    assert!(run.reconnects >= 2, "{} reconnects", run.reconnects);
}

#[tokio::test]
async fn delay_holds_every_message() {
    let delay = Duration::from_millis(40);
    let faults = Faults {
        delay: Some(delay),
        ..Faults::default()
    };
    let (run, _emulator) = check_intact(faults, 1024).await;
    // A lower bound only: the echo cannot come back before the delay.
    assert!(run.elapsed >= delay, "{:?}", run.elapsed);
}

#[tokio::test]
async fn duplicates_are_seen_and_re_acked_by_the_client() {
    let faults = Faults {
        duplicate_every: Some(3),
        ..Faults::default()
    };
    let (run, _emulator) = check_intact(faults, 32 * 1024).await;
    assert!(run.channel.session.stats().duplicates > 0);
}

#[tokio::test]
async fn reordered_messages_are_delivered_in_order() {
    let faults = Faults {
        reorder_every: Some(3),
        ..Faults::default()
    };
    // The fault holds every third frame until the next one passes it; acks are frames too, so
    // only some swaps put stream data out of order (about a third of the data frames here).
    let (run, _emulator) = check_intact(faults, 32 * 1024).await;
    // The fault was injected: stream data came in out of order on the websocket, and was
    // delivered in order all the same (check_intact compares the echo with the data).
    let late = run.channel.arrived_out_of_order();
    assert!(
        late > 0,
        "no stream data arrived out of order: {:?}",
        run.channel.arrivals
    );
}

#[tokio::test]
async fn dropped_acks_make_the_client_retransmit() {
    let faults = Faults {
        drop_acks_every: Some(4),
        ..Faults::default()
    };
    let (mut run, _emulator) = check_intact(faults, 16 * 1024).await;
    run.channel.until_acked().await;
    assert!(run.channel.session.stats().retransmissions > 0);
}

#[tokio::test]
async fn pause_publication_bursts_reach_the_client() {
    let faults = Faults {
        pause_every: Some(10),
        pause_for: Duration::from_millis(30),
        ..Faults::default()
    };
    let (run, _emulator) = check_intact(faults, 32 * 1024).await;
    assert!(run.events.iter().any(|e| matches!(e, Event::Paused)));
    assert!(run.events.iter().any(|e| matches!(e, Event::Resumed)));
}

#[tokio::test]
async fn start_session_fails_with_the_chosen_code() {
    for code in [
        "TargetNotConnected",
        "AccessDeniedException",
        "InvalidDocument",
    ] {
        let emulator = with_faults(Faults {
            fail_start_session: Some(code.to_owned()),
            ..Faults::default()
        })
        .await;
        let err = ssm(&emulator)
            .start_session()
            .target(OLD)
            .send()
            .await
            .expect_err("StartSession must fail");
        assert_eq!(err.code(), Some(code));
        assert!(err.meta().extra("aws_request_id").is_some() || err.message().is_some());
    }
}
