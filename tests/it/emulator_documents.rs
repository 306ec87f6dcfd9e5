//! Every session document the emulator serves, driven by the protocol crate's client role over
//! a real websocket: shell (a real PTY), interactive and non-interactive commands.

use crate::support::data::contains;
use crate::support::emulator::{CURRENT, Channel, emulator, start_session};
use postern_protocol::{Event, SessionType, SizeData};

#[tokio::test]
async fn shell_round_trips_echo_through_a_pty_and_ends_on_exit() {
    let emulator = emulator(|_| {}).await;
    let started = start_session(&emulator, CURRENT, None, &[]).await;
    let mut channel = Channel::open(&started).await;
    let info = channel.ready().await;
    assert_eq!(info.session_type, SessionType::StandardStream);
    channel.session.send_size(
        tokio::time::Instant::now().into_std(),
        SizeData {
            cols: 132,
            rows: 40,
        },
    );
    channel
        .send_output(b"stty size; echo postern-$((6*7))\r")
        .await;
    let out = channel
        .output_until(|out| contains(out, b"postern-42"))
        .await;
    assert!(
        contains(&out, b"40 132"),
        "{}",
        String::from_utf8_lossy(&out)
    );
    channel.send_output(b"echo $TERM; exit\r").await;
    let events = channel.until_closed().await;
    let output: Vec<u8> = events
        .iter()
        .filter_map(|e| match e {
            Event::Output(b) => Some(b.clone()),
            _ => None,
        })
        .flatten()
        .collect();
    assert!(
        contains(&output, b"xterm-256color"),
        "{}",
        String::from_utf8_lossy(&output)
    );
    assert_eq!(
        emulator.violations().total(),
        0,
        "{}",
        emulator.violations()
    );
    emulator.shutdown().await.unwrap();
}

#[tokio::test]
async fn interactive_command_runs_in_a_pty_without_exit_code() {
    let emulator = emulator(|_| {}).await;
    let started = start_session(
        &emulator,
        CURRENT,
        Some("AWS-StartInteractiveCommand"),
        &[("command", "test -t 0 && echo on-a-tty")],
    )
    .await;
    let mut channel = Channel::open(&started).await;
    let events = channel.until_closed().await;
    assert!(
        matches!(&events[0], Event::Ready(info) if info.session_type == SessionType::StandardStream)
    );
    let output: Vec<u8> = events
        .iter()
        .filter_map(|e| match e {
            Event::Output(b) => Some(b.clone()),
            _ => None,
        })
        .flatten()
        .collect();
    assert!(
        contains(&output, b"on-a-tty"),
        "{}",
        String::from_utf8_lossy(&output)
    );
    assert!(!events.iter().any(|e| matches!(e, Event::ExitCode(_))));
    assert_eq!(
        emulator.violations().total(),
        0,
        "{}",
        emulator.violations()
    );
}

#[tokio::test]
async fn non_interactive_command_with_separate_streams_sends_stderr_and_exit_code() {
    let emulator = emulator(|_| {}).await;
    let started = start_session(
        &emulator,
        CURRENT,
        Some("Postern-StartNonInteractiveCommandSeparateStreams"),
        &[("command", "echo to-stdout; echo to-stderr >&2; exit 3")],
    )
    .await;
    let mut channel = Channel::open(&started).await;
    let info = channel.ready().await;
    assert_eq!(info.session_type, SessionType::NonInteractiveCommands);
    let events = channel.until_closed().await;
    let mut stdout = Vec::new();
    let mut stderr = Vec::new();
    let mut exit = None;
    for event in &events {
        match event {
            Event::Output(b) => stdout.extend_from_slice(b),
            Event::StdErr(b) => stderr.extend_from_slice(b),
            Event::ExitCode(code) => {
                assert!(exit.is_none(), "one exit code");
                exit = Some(*code);
            }
            _ => {}
        }
    }
    assert_eq!(stdout, b"to-stdout\n");
    assert_eq!(stderr, b"to-stderr\n");
    assert_eq!(exit, Some(3));
    // The exit code comes after all output.
    let exit_at = events
        .iter()
        .position(|e| matches!(e, Event::ExitCode(_)))
        .unwrap();
    assert!(
        !events[exit_at..]
            .iter()
            .any(|e| matches!(e, Event::Output(_) | Event::StdErr(_)))
    );
    assert_eq!(
        emulator.violations().total(),
        0,
        "{}",
        emulator.violations()
    );
}

#[tokio::test]
async fn non_interactive_command_without_separation_combines_output() {
    let emulator = emulator(|_| {}).await;
    let started = start_session(
        &emulator,
        CURRENT,
        Some("AWS-StartNonInteractiveCommand"),
        &[("command", "echo one; echo two >&2")],
    )
    .await;
    let mut channel = Channel::open(&started).await;
    let events = channel.until_closed().await;
    let output: Vec<u8> = events
        .iter()
        .filter_map(|e| match e {
            Event::Output(b) => Some(b.clone()),
            _ => None,
        })
        .flatten()
        .collect();
    assert_eq!(output, b"one\ntwo\n");
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, Event::ExitCode(_) | Event::StdErr(_)))
    );
    assert_eq!(
        emulator.violations().total(),
        0,
        "{}",
        emulator.violations()
    );
}
