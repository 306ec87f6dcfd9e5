//! The emulator's `--exit-after`: a test's (or a benchmark's) emulator stops by itself, its
//! sessions ended, even when nobody stops it.

use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::support::emulator::EmulatorProcess;
use crate::support::process::{exit_within, lines};

#[test]
fn exit_after_ends_the_sessions_and_the_process_by_itself() {
    // The emulator's lifetime runs from before its ready line.
    let started = Instant::now();
    let emu = EmulatorProcess::start_for(&format!("{}s", LIFETIME.as_secs()), &[], &[]);
    let mut exec = emu
        .command(&["exec", &emu.instance, "--", "echo running; sleep 60"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn postern exec");
    let stdout = lines(exec.stdout.take().expect("piped stdout"));
    let stderr = lines(exec.stderr.take().expect("piped stderr"));
    assert_eq!(
        stdout.recv_timeout(LIMIT).as_deref(),
        Ok("running"),
        "the session ran"
    );
    let (status, said_by_emulator) = emu
        .wait_for_exit(LIMIT)
        .expect("the emulator ends by itself");
    assert!(started.elapsed() >= LIFETIME, "it lived its lifetime");
    assert_eq!(
        status.code(),
        Some(0),
        "a graceful stop: {said_by_emulator}"
    );
    assert!(
        said_by_emulator.contains("postern emulator: "),
        "the violation summary: {said_by_emulator}"
    );
    // The session the emulator ended: the client is told, long before its `sleep 60` ends.
    let client = exit_within(&mut exec, LIMIT).expect("postern exec ends with the emulator");
    assert_ne!(client.code(), Some(0), "an ended session is not a success");
    assert!(started.elapsed() < Duration::from_secs(55), "ended early");
    let said: Vec<String> = stderr.iter().collect();
    assert!(
        said.iter().any(|l| l.contains("closed by the service")),
        "postern says why: {said:?}"
    );
    // The service ended the session itself: that TerminateSession then finds nobody to answer
    // is no news to the user.
    assert!(
        !said.iter().any(|l| l.contains("WARN")),
        "no warning: {said:?}"
    );
}

/// The emulator's lifetime: long enough for a debug build's `postern exec` to start its
/// session on a busy machine.
const LIFETIME: Duration = Duration::from_secs(6);

/// How long any step may take.
const LIMIT: Duration = Duration::from_secs(30);
