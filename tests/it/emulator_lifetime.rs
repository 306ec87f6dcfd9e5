//! The emulator's `--exit-after`: a test's (or a benchmark's) emulator stops by itself, its
//! sessions ended, even when nobody stops it; postern's commands report the session the
//! service ended without a warning about the TerminateSession that then finds nobody.

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::support::emulator::EmulatorProcess;
use crate::support::process::{exit_within, signal, spawn_piped, wait_for_line};

#[test]
fn exit_after_ends_the_sessions_and_the_process_by_itself() {
    // The emulator's lifetime runs from before its ready line.
    let started = Instant::now();
    let emu = emulator();
    let (mut exec, stdout, stderr) =
        spawn_piped(emu.command(&["exec", &emu.instance, "--", "echo running; sleep 60"]));
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
    assert!(
        !said.iter().any(|l| l.contains("WARN")),
        "no warning: {said:?}"
    );
}

#[test]
fn a_forward_reports_its_session_ended_by_the_service_without_a_warning() {
    let emu = emulator();
    let (mut forward, stdout, stderr) =
        spawn_piped(emu.command(&["forward", &emu.instance, "-L", "0:22", "--json"]));
    let ready = stdout
        .recv_timeout(LIMIT)
        .expect("the forward's ready line");
    assert!(ready.contains("\"local\""), "{ready}");
    let (status, said_by_emulator) = emu
        .wait_for_exit(LIMIT)
        .expect("the emulator ends by itself");
    assert_eq!(
        status.code(),
        Some(0),
        "a graceful stop: {said_by_emulator}"
    );
    // The forward stays for new connections and says its session ended.
    let mut said = wait_for_line(&stderr, "ended: the emulator is shutting down", LIMIT);
    signal(forward.id(), Signal::SIGINT);
    let status = exit_within(&mut forward, LIMIT).expect("the forward stops on Ctrl-C");
    said.extend(stderr.iter());
    assert_eq!(status.code(), Some(0), "{said:?}");
    // Its TerminateSession after the service's close found nobody: no news to the user.
    assert!(
        !said.iter().any(|l| l.contains("WARN")),
        "no warning: {said:?}"
    );
}

/// An emulator that stops by itself after [`LIFETIME`].
fn emulator() -> EmulatorProcess {
    EmulatorProcess::start_for(&format!("{}s", LIFETIME.as_secs()), &[], &[])
}

/// The emulator's lifetime: long enough for a debug build's `postern exec` to start its
/// session on a busy machine.
const LIFETIME: Duration = Duration::from_secs(6);

/// How long any step may take.
const LIMIT: Duration = Duration::from_secs(30);
