//! The emulator's control plane and data-channel entry: the ready line, authentication,
//! AWS-shaped errors, TerminateSession, ResumeSession tokens, and the violations recorded for
//! deliberately wrong clients (and none for a correct one).

use crate::support::data::contains;
use crate::support::emulator::{
    CURRENT, Channel, STEP, emulator, resume_session, ssm, start_session,
};
use aws_sdk_ssm::error::ProvideErrorMetadata;
use postern_emulator::EmulatorArgs;
use postern_protocol::{ClientMessage, Event, MessageId, MessageType, PayloadType, SequenceNumber};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

#[tokio::test]
async fn ready_line_names_endpoint_region_and_instances() {
    let emulator = emulator(|_| {}).await;
    let line = serde_json::to_value(emulator.ready_line()).unwrap();
    let endpoint = line["endpoint"].as_str().unwrap();
    assert!(endpoint.starts_with("http://127.0.0.1:"), "{endpoint}");
    assert_ne!(endpoint, "http://127.0.0.1:0");
    assert_eq!(line["region"], "us-east-1");
    assert!(
        line["instances"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i == CURRENT)
    );
}

#[tokio::test]
async fn requests_without_authorization_get_an_aws_error() {
    let emulator = emulator(|_| {}).await;
    let addr = emulator.endpoint().trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let body = r#"{"Target":"i-0a1b2c3d4e5f60718"}"#;
    let request = format!(
        "POST / HTTP/1.1\r\nHost: {addr}\r\nX-Amz-Target: AmazonSSM.StartSession\r\n\
         Content-Type: application/x-amz-json-1.1\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(STEP, stream.read_to_end(&mut response))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&response);
    assert!(text.starts_with("HTTP/1.1 400"), "{text}");
    assert!(text.to_lowercase().contains("x-amzn-requestid"), "{text}");
    assert!(
        text.contains(r#""__type":"MissingAuthenticationTokenException""#),
        "{text}"
    );
}

#[tokio::test]
async fn unknown_targets_and_documents_are_refused_like_aws() {
    let emulator = emulator(|_| {}).await;
    let err = ssm(&emulator)
        .start_session()
        .target("i-00000000000000000")
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("TargetNotConnected"));
    let err = ssm(&emulator)
        .start_session()
        .target(CURRENT)
        .document_name("AWS-NoSuchDocument")
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("InvalidDocument"));
}

#[tokio::test]
async fn stream_url_has_the_aws_shape() {
    let emulator = emulator(|_| {}).await;
    let started = start_session(&emulator, CURRENT, None, &[]).await;
    let expected = format!(
        "{}/v1/data-channel/{}?role=publish_subscribe",
        emulator.endpoint().replace("http://", "ws://"),
        started.session_id
    );
    assert_eq!(started.stream_url, expected);
}

#[tokio::test]
async fn terminate_session_sends_channel_closed() {
    let emulator = emulator(|_| {}).await;
    let started = start_session(&emulator, CURRENT, None, &[]).await;
    let mut channel = Channel::open(&started).await;
    channel.ready().await;
    ssm(&emulator)
        .terminate_session()
        .session_id(&started.session_id)
        .send()
        .await
        .unwrap();
    channel.until_closed().await;
    assert_eq!(
        channel.closed.as_ref().unwrap().session_id,
        started.session_id
    );
    // An ended session can no longer be resumed: no token.
    let deadline = Instant::now() + STEP;
    loop {
        let output = ssm(&emulator)
            .resume_session()
            .session_id(&started.session_id)
            .send()
            .await
            .unwrap();
        if output.token_value().is_none() {
            break;
        }
        assert!(Instant::now() < deadline, "session still resumable");
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn correct_client_records_no_violation() {
    let emulator = emulator(|_| {}).await;
    let started = start_session(&emulator, CURRENT, None, &[]).await;
    let mut channel = Channel::open(&started).await;
    channel.ready().await;
    channel.send_output(b"echo fine\r").await;
    channel.output_until(|out| contains(out, b"fine\r\n")).await;
    channel.send_output(b"exit\r").await;
    channel.until_closed().await;
    assert!(
        emulator.violations().is_empty(),
        "{}",
        emulator.violations()
    );
    let counts = emulator.shutdown().await.unwrap();
    assert_eq!(counts.total(), 0);
}

#[tokio::test]
async fn token_reuse_is_refused_and_recorded() {
    let emulator = emulator(|_| {}).await;
    let started = start_session(&emulator, CURRENT, None, &[]).await;
    let mut first = Channel::open(&started).await;
    first.ready().await;
    let mut second = Channel::open(&started).await;
    // The reused token's websocket is closed without any session traffic.
    assert!(second.next_event().await.is_none());
    assert!(second.socket_closed);
    assert_eq!(emulator.violations().get("token_reuse"), 1);
    // A fresh token from ResumeSession attaches to the same session.
    let token = resume_session(&emulator, &started.session_id).await;
    first.reconnect(&started, &token).await;
    first.send_output(b"echo still-here\r").await;
    first
        .output_until(|out| contains(out, b"still-here\r\n"))
        .await;
}

#[tokio::test]
async fn bad_digest_is_recorded() {
    let emulator = emulator(|_| {}).await;
    let started = start_session(&emulator, CURRENT, None, &[]).await;
    let mut channel = Channel::open(&started).await;
    channel.ready().await;
    let mut frame = ClientMessage {
        message_type: MessageType::InputStreamData,
        schema_version: 1,
        created_date: 1_700_000_000_000,
        sequence_number: SequenceNumber(0),
        flags: 0,
        message_id: MessageId(uuid::Uuid::new_v4()),
        payload_type: PayloadType::Output,
        payload: b"ls\r".to_vec(),
    }
    .encode()
    .unwrap();
    let last = frame.len() - 1;
    frame[last] ^= 0xff;
    channel.send_raw(frame).await;
    // Frames are handled in order: once a later message is acked, the bad one was seen.
    channel.send_output(b"\r").await;
    channel.until_acked().await;
    assert_eq!(
        emulator.violations().get("bad_digest"),
        1,
        "{}",
        emulator.violations()
    );
}

#[tokio::test]
async fn a_client_that_never_acks_is_recorded() {
    let emulator =
        emulator(|config| config.missing_ack_after = std::time::Duration::from_secs(2)).await;
    let started = start_session(&emulator, CURRENT, None, &[]).await;
    let mut channel = Channel::open(&started).await;
    channel.drop_acks = true;
    wait_for_violation(&emulator, &mut channel, "missing_ack").await;
    assert!(
        channel
            .take_events()
            .iter()
            .any(|e| matches!(e, Event::Ready(_)))
    );
}

#[test]
fn cli_flags_parse_into_a_config() {
    use clap::Parser;
    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: EmulatorArgs,
    }
    let cli = Cli::try_parse_from(["postern", "--no-pacing", "--drop-acks-every", "3"]).unwrap();
    let config = cli.args.into_config().unwrap();
    assert_eq!(config.pacing, None);
    assert_eq!(config.faults.drop_acks_every, Some(3));
}

async fn wait_for_violation(
    emulator: &postern_emulator::EmulatorHandle,
    channel: &mut Channel,
    kind: &str,
) {
    let deadline = Instant::now() + STEP;
    while emulator.violations().get(kind) == 0 {
        assert!(
            channel.step(deadline).await,
            "no {kind} violation; got {}",
            emulator.violations()
        );
    }
}

#[tokio::test]
async fn service_messages_from_a_client_are_recorded_and_not_relayed() {
    let emulator = emulator(|_| {}).await;
    let started = start_session(&emulator, CURRENT, None, &[]).await;
    let mut channel = Channel::open(&started).await;
    channel.ready().await;
    for message_type in [MessageType::ChannelClosed, MessageType::PausePublication] {
        let frame = ClientMessage {
            message_type,
            schema_version: 1,
            created_date: 1_700_000_000_000,
            sequence_number: SequenceNumber(0),
            flags: 0,
            message_id: MessageId(uuid::Uuid::new_v4()),
            payload_type: PayloadType::Null,
            payload: b"{}".to_vec(),
        }
        .encode()
        .unwrap();
        channel.send_raw(frame).await;
    }
    // The agent neither closed nor paused: the shell still answers.
    channel.send_output(b"echo alive\r").await;
    channel
        .output_until(|out| contains(out, b"alive\r\n"))
        .await;
    assert_eq!(
        emulator.violations().get("unexpected_message"),
        2,
        "{}",
        emulator.violations()
    );
}
