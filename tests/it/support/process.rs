//! Child processes under a bound: the built `postern` binary with a dummy AWS environment,
//! runs that are killed at their limit, line readers for a child's output, and signals to
//! processes the test started (by id, never by name). ripgrep `tests/util.rs` is the model.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::unistd::Pid;

use super::poll::try_poll;

/// The built binary.
pub(crate) fn postern() -> &'static str {
    env!("CARGO_BIN_EXE_postern")
}

/// `postern` with dummy credentials and region, no AWS config files, and nothing else of the
/// caller's environment but PATH.
pub(crate) fn base_command() -> Command {
    let mut cmd = Command::new(postern());
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", "/nonexistent")
        .env("AWS_ACCESS_KEY_ID", "AKIDPOSTERNTEST")
        .env("AWS_SECRET_ACCESS_KEY", "postern-test-secret")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true");
    cmd
}

/// Runs `cmd` with `stdin` bytes, killing it after `limit`.
pub(crate) fn run_with_input(mut cmd: Command, stdin: &[u8], limit: Duration) -> Output {
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn the command");
    let mut input = child.stdin.take().expect("piped stdin");
    let data = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&data);
    });
    let output = wait_with_output(child, limit);
    let _ = writer.join();
    output
}

/// Runs `cmd` as the far end of an echo: writes `input` to its stdin and keeps stdin open until
/// `input.len()` bytes came back on its stdout (or stdout ended, or `limit` passed), then
/// closes it, as ssh closes a ProxyCommand's input only when it is done with the connection.
/// Kills the command after `limit`.
pub(crate) fn run_echo(mut cmd: Command, input: &[u8], limit: Duration) -> Output {
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn the command");
    let mut stdin = child.stdin.take().expect("piped stdin");
    let mut stdout = child.stdout.take().expect("piped stdout");
    let mut stderr = child.stderr.take().expect("piped stderr");
    let (echoed, all_back) = mpsc::channel::<()>();
    let data = input.to_vec();
    let want = data.len();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&data);
        // Ends when the reader signals or stops (the sender dropped), or at the limit.
        let _ = all_back.recv_timeout(limit);
    });
    let reader = std::thread::spawn(move || {
        let mut echoed = Some(echoed);
        let mut out = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match stdout.read(&mut buf) {
                Ok(0) | Err(_) => break out,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
            if out.len() >= want
                && let Some(echoed) = echoed.take()
            {
                let _ = echoed.send(());
            }
        }
    });
    let errors = std::thread::spawn(move || {
        let mut out = Vec::new();
        let _ = stderr.read_to_end(&mut out);
        out
    });
    let status = match exit_within(&mut child, limit) {
        Some(status) => status,
        None => child.wait().expect("status of the killed command"),
    };
    let _ = writer.join();
    Output {
        status,
        stdout: reader.join().expect("stdout reader"),
        stderr: errors.join().expect("stderr reader"),
    }
}

/// Runs `cmd` with stdin from /dev/null, killing it after `limit`.
pub(crate) fn run(mut cmd: Command, limit: Duration) -> Output {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    wait_with_output(cmd.spawn().expect("spawn the command"), limit)
}

/// Waits for `child` to exit; kills it and returns `None` when `limit` passes first.
pub(crate) fn exit_within(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let status = try_poll(limit, || child.try_wait().expect("child status"));
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    status
}

/// SIGTERM, then SIGKILL if `child` is still there after a grace period.
pub(crate) fn terminate(child: &mut Child) {
    if let Ok(None) = child.try_wait() {
        signal(child.id(), Signal::SIGTERM);
        exit_within(child, TERM_GRACE);
    }
}

/// Stops `child`, started in a process group of its own (`process_group(0)`: a watchdog such as
/// `timeout` and the server it runs), with everything in that group: SIGTERM, then SIGKILL
/// after a grace period. Killing the watchdog alone would leave the server running, orphaned,
/// with nobody left to time it out.
pub(crate) fn stop_group(child: &mut Child) {
    if let Ok(Some(_)) = child.try_wait() {
        return;
    }
    let group = child.id();
    let _ = killpg(group, Signal::SIGTERM);
    if exit_within(child, TERM_GRACE).is_none() {
        let _ = killpg(group, Signal::SIGKILL);
    }
}

/// Sends `signal` to the process `pid`, one this test started.
pub(crate) fn signal(pid: u32, signal: Signal) {
    let pid = i32::try_from(pid).expect("pids fit in i32");
    let _ = nix::sys::signal::kill(Pid::from_raw(pid), signal);
}

/// Sends `signal` to the process group `pgid`, one this test created (`process_group(0)`).
pub(crate) fn killpg(pgid: u32, signal: Signal) -> nix::Result<()> {
    let pgid = i32::try_from(pgid).expect("pids fit in i32");
    nix::sys::signal::killpg(Pid::from_raw(pgid), signal)
}

/// Reads `lines` until one containing `wanted`, for at most `limit`; every line read (the
/// last one the match), for messages. Panics, naming what it saw, when none comes in time.
pub(crate) fn wait_for_line(
    lines: &mpsc::Receiver<String>,
    wanted: &str,
    limit: Duration,
) -> Vec<String> {
    let deadline = Instant::now() + limit;
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = lines
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("no line with {wanted:?} in time; saw {seen:?}"));
        let found = line.contains(wanted);
        seen.push(line);
        if found {
            return seen;
        }
    }
}

/// Starts `command` with no stdin and its stdout and stderr read line by line.
pub(crate) fn spawn_piped(
    mut command: Command,
) -> (Child, mpsc::Receiver<String>, mpsc::Receiver<String>) {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn postern");
    let stdout = lines(child.stdout.take().expect("piped stdout"));
    let stderr = lines(child.stderr.take().expect("piped stderr"));
    (child, stdout, stderr)
}

/// Reads `source` line by line on a thread of its own (a full pipe would block the child);
/// the channel ends with the source.
pub(crate) fn lines(source: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(source).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Lossy text of bytes, for assertions and their messages.
pub(crate) fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Collects `child`'s output; a watchdog kills it (by its id) if it outlives `limit`.
fn wait_with_output(child: Child, limit: Duration) -> Output {
    let pid = child.id();
    let (done, finished) = mpsc::channel::<()>();
    let watchdog = std::thread::spawn(move || {
        if finished.recv_timeout(limit).is_err() {
            signal(pid, Signal::SIGKILL);
        }
    });
    let output = child.wait_with_output().expect("wait for the command");
    let _ = done.send(());
    let _ = watchdog.join();
    output
}

/// How long a stopped process may take to exit after SIGTERM.
const TERM_GRACE: Duration = Duration::from_secs(10);

/// The records `postern history --json ARGS` shows of the history file `history`, newest
/// first; panics unless it exits 0 within `limit`.
pub(crate) fn history_records(
    history: &std::path::Path,
    args: &[&str],
    limit: Duration,
) -> Vec<serde_json::Value> {
    let mut show = base_command();
    show.env("POSTERN_HISTORY_FILE", history)
        .args(["history", "--json"])
        .args(args);
    let out = run(show, limit);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    text(&out.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON record"))
        .collect()
}

/// The scheduler state of process `pid` from `/proc` (`R`, `S`, `T` for stopped, ...); `None`
/// once it is gone.
pub(crate) fn process_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) STATE ...`: the state follows the last `)`.
    stat.rsplit_once(") ")
        .and_then(|(_, rest)| rest.chars().next())
}
