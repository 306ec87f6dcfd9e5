//! A command stopped while its sessions start leaves nothing open at the service: Ctrl-C during
//! a forward's handshake and during a shell's StartSession call both end the session the
//! service started (TerminateSession), which the emulator would otherwise keep open for its
//! 60 s detach timeout. The same for a StartSession answer its caller never reads, and for a
//! forward whose polite end a second Ctrl-C cuts short.

use std::future::Future as _;
use std::process::{Child, Stdio};
use std::sync::mpsc::Receiver;
use std::task::Poll;
use std::time::Duration;

use nix::sys::signal::Signal;
use postern::aws::{AwsContext, SsmClient, StartSessionRequest};
use postern::transport::{ledger, lifecycle};
use postern_emulator::EmulatorHandle;

use crate::support::emulator::{CURRENT, base, emulator};
use crate::support::home::Home;
use crate::support::poll::{poll, try_poll};
use crate::support::process::{exit_within, lines, signal, spawn_piped, wait_for_line};

const LIMIT: Duration = Duration::from_secs(60);

/// `postern -v shell` on the emulator's current instance, its stderr read line by line; the
/// home lives as long as the process needs it.
fn spawn_shell(emulator: &EmulatorHandle) -> (Child, Receiver<String>, Home) {
    let home = Home::new(None);
    let region = emulator.region().to_owned();
    let mut child = home
        .against(emulator, &["-v", "shell", CURRENT, "--region", &region])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn postern shell");
    let stderr = lines(child.stderr.take().expect("piped stderr"));
    (child, stderr, home)
}

/// Asserts that one of `lines` contains `text`.
#[track_caller]
fn assert_said(lines: &[String], text: &str) {
    assert!(lines.iter().any(|l| l.contains(text)), "{lines:?}");
}

/// Interrupts `child` and returns its exit code and the rest of its stderr.
fn interrupt(mut child: Child, stderr: &Receiver<String>) -> (Option<i32>, Vec<String>) {
    signal(child.id(), Signal::SIGINT);
    let status = exit_within(&mut child, LIMIT).expect("postern exits after Ctrl-C");
    (status.code(), stderr.iter().collect())
}

#[tokio::test(flavor = "multi_thread")]
async fn ctrl_c_during_a_forwards_handshake_ends_its_session() {
    // Every data-channel message held 5 s: the handshake is still running when Ctrl-C comes.
    let emulator = emulator(|config| config.faults.delay = Some(Duration::from_secs(5))).await;
    let home = Home::new(None);
    let region = emulator.region().to_owned();
    let mut child = home
        .against(
            &emulator,
            &[
                "-vv", "forward", CURRENT, "-L", "0:22", "--json", "--region", &region,
            ],
        )
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn postern forward");
    let stderr = lines(child.stderr.take().expect("piped stderr"));
    wait_for_line(&stderr, "opening data channel", LIMIT);
    assert_eq!(emulator.open_sessions().0, 1, "the session has started");
    let (code, rest) = interrupt(child, &stderr);
    assert_eq!(code, Some(0), "{rest:?}");
    assert_said(&rest, "ended 1 session left open by the stopped command");
    // Ended before postern exited: no poll needed.
    assert_eq!(emulator.open_sessions().0, 0, "{rest:?}");
    emulator.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_ctrl_c_cuts_a_forwards_wind_down_short_and_its_session_still_ends() {
    // The websocket goes silent once the session has carried five messages, the last of them
    // the agent's HandshakeComplete: the forward is ready, and the agent never answers the
    // TerminateSession flag, so the polite end waits out its 2 s grace and then calls
    // TerminateSession itself, which takes 1 s (every API call does): a window of 3 s for the
    // second Ctrl-C. No keepalive pings, so nothing notices the silence before.
    let emulator = emulator(|config| {
        config.faults.stall_after = Some(5);
        config.api_latency = Some(Duration::from_secs(1));
    })
    .await;
    let home = Home::new(None);
    let region = emulator.region().to_owned();
    let (child, stdout, stderr) = spawn_piped(home.against(
        &emulator,
        &[
            "-v",
            "forward",
            CURRENT,
            "-L",
            "0:22",
            "--keepalive",
            "0s",
            "--region",
            &region,
        ],
    ));
    stdout
        .recv_timeout(LIMIT)
        .expect("the forward's ready line");
    signal(child.id(), Signal::SIGINT);
    wait_for_line(&stderr, "stopping the forwards", LIMIT);
    let (code, rest) = interrupt(child, &stderr);
    assert_eq!(code, Some(0), "{rest:?}");
    assert_said(&rest, "stopped waiting for the forwards to wind down");
    // The exit sweep, not the aborted polite end, ended it.
    assert_said(&rest, "ended 1 session left open by the stopped command");
    // Ended before postern exited: no poll needed.
    assert_eq!(emulator.open_sessions().0, 0, "{rest:?}");
    emulator.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn ctrl_c_while_a_shells_start_session_call_runs_ends_the_session_it_starts() {
    // Every API call takes 1 s: Ctrl-C lands while StartSession is unanswered, and the answer
    // and the TerminateSession after it fit in postern's 3 s bounds.
    let emulator = emulator(|config| config.api_latency = Some(Duration::from_secs(1))).await;
    let (child, stderr, _home) = spawn_shell(&emulator);
    let seen = wait_for_line(&stderr, "StartSession", LIMIT);
    assert_eq!(emulator.open_sessions().0, 0, "not answered yet: {seen:?}");
    let (code, rest) = interrupt(child, &stderr);
    assert_eq!(code, Some(130), "{rest:?}");
    assert_said(&rest, "ended 1 session left open by the stopped command");
    assert_eq!(emulator.open_sessions().1, 1, "StartSession was answered");
    assert_eq!(emulator.open_sessions().0, 0, "{rest:?}");
    emulator.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_ctrl_c_leaves_without_waiting_and_says_what_may_stay_open() {
    // StartSession takes 20 s: the first Ctrl-C's clean-up would wait for its answer.
    let emulator = emulator(|config| config.api_latency = Some(Duration::from_secs(20))).await;
    let (mut child, stderr, _home) = spawn_shell(&emulator);
    wait_for_line(&stderr, "StartSession", LIMIT);
    signal(child.id(), Signal::SIGINT);
    wait_for_line(&stderr, "stopped while the session started", LIMIT);
    // The clean-up waits for the unanswered call; another Ctrl-C ends the wait (sent until
    // postern exits: one that lands before the clean-up listens is not the subject).
    let status = poll(LIMIT, || {
        signal(child.id(), Signal::SIGINT);
        try_poll(Duration::from_millis(200), || {
            child.try_wait().expect("child status")
        })
    });
    let rest: Vec<String> = stderr.iter().collect();
    assert_eq!(status.code(), Some(130), "{rest:?}");
    assert!(
        rest.iter()
            .any(|l| l.contains("left without ending the sessions being started or ended")),
        "{rest:?}"
    );
    emulator.shutdown().await.unwrap();
}

// One thread: while this test's code runs, the call's task is not half-way between listing the
// session and sending the answer. The ledger is the process's (nextest runs each test in a
// process of its own).
#[tokio::test(flavor = "current_thread")]
async fn an_answer_its_caller_never_reads_ends_its_session() {
    let emulator = emulator(|_| {}).await;
    let region = emulator.region().to_owned();
    let ssm = SsmClient::new(&AwsContext {
        sdk: base(&emulator, &region),
        region,
        profile: None,
        ssm_endpoint: None,
    });
    let request = StartSessionRequest {
        target: CURRENT.to_owned(),
        ..StartSessionRequest::default()
    };
    let mut start = Box::pin(lifecycle::start(&ssm, &request));
    // The first poll sends the call (in a task of its own); `start` is not polled again.
    let first = std::future::poll_fn(|cx| Poll::Ready(start.as_mut().poll(cx))).await;
    assert!(first.is_pending());
    // Until the call's task has put the answer in the channel: the session is listed.
    let deadline = tokio::time::Instant::now() + LIMIT;
    while ledger::open_session_ids().is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "no answer in time");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(emulator.open_sessions().0, 1, "the session has started");
    // The caller gives up with the answer unread: the session is its starter's no more.
    drop(start);
    assert_eq!(
        ledger::open_session_ids(),
        Vec::<String>::new(),
        "handed to its ending"
    );
    while emulator.open_sessions().0 != 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the session stays open"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        ledger::end_unfinished(LIMIT).await,
        1,
        "one session was ended"
    );
    emulator.shutdown().await.unwrap();
}
