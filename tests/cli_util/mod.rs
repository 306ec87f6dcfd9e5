//! Helpers for the `cli_*` tests: the real `postern` binary against a `postern emulator`
//! process on loopback (port 0), with dummy credentials and bounded lifetimes
//! (ripgrep `tests/util.rs`).

#![allow(
    dead_code,
    unreachable_pub,
    reason = "shared by several test crates, each using a subset"
)]

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The built binary.
pub fn postern() -> &'static str {
    env!("CARGO_BIN_EXE_postern")
}

/// An emulator process, stopped (SIGTERM) on drop.
pub struct Emulator {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    /// The instance with a current agent.
    pub instance: String,
    /// Where the emulator logs client violations.
    pub violations_log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Emulator {
    /// Starts `postern emulator` with `extra` flags and waits (bounded) for its ready line.
    pub fn start(extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let violations_log = dir.path().join("violations.jsonl");
        let mut child = Command::new(postern())
            .arg("emulator")
            .args(["--exit-after", "120s", "--violations-log"])
            .arg(&violations_log)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn postern emulator");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(line) if !line.is_empty() => line,
            other => {
                let _ = child.kill();
                let mut err = String::new();
                if let Some(mut e) = child.stderr.take() {
                    let _ = e.read_to_string(&mut err);
                }
                panic!("emulator gave no ready line ({other:?}); stderr: {err}");
            }
        };
        let ready: serde_json::Value = serde_json::from_str(&line).expect("ready line is JSON");
        Self {
            child,
            endpoint: ready["endpoint"].as_str().expect("endpoint").to_owned(),
            instance: ready["instances"][0]
                .as_str()
                .expect("an instance")
                .to_owned(),
            violations_log,
            _dir: dir,
        }
    }

    /// A `postern` command against this emulator with dummy credentials.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = base_command();
        cmd.args(["--endpoint-url", &self.endpoint]).args(args);
        cmd
    }

    /// Stops the emulator and returns the violations it logged (one JSON line each).
    pub fn stop(mut self) -> Vec<String> {
        terminate(&mut self.child);
        match std::fs::read_to_string(&self.violations_log) {
            Ok(text) => text.lines().map(str::to_owned).collect(),
            Err(_) => Vec::new(),
        }
    }
}

impl Emulator {
    /// Kills the emulator with SIGKILL: the service vanishes without closing anything, as a
    /// network outage looks from the client.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        terminate(&mut self.child);
    }
}

/// `postern` with dummy credentials and region, and no AWS config files.
pub fn base_command() -> Command {
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
pub fn run_with_input(mut cmd: Command, stdin: &[u8], limit: Duration) -> Output {
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn postern");
    let mut input = child.stdin.take().expect("piped stdin");
    let data = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&data);
    });
    let output = wait_bounded(child, limit);
    let _ = writer.join();
    output
}

/// Runs `cmd` with stdin from /dev/null, killing it after `limit`.
pub fn run(mut cmd: Command, limit: Duration) -> Output {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    wait_bounded(cmd.spawn().expect("spawn postern"), limit)
}

fn wait_bounded(child: Child, limit: Duration) -> Output {
    let pid = child.id();
    let (tx, rx) = mpsc::channel::<()>();
    let watchdog = std::thread::spawn(move || {
        if rx.recv_timeout(limit).is_err() {
            // Still running at the limit: kill the process we started, by its id.
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
    });
    let output = child.wait_with_output().expect("wait for postern");
    let _ = tx.send(());
    let _ = watchdog.join();
    output
}

fn terminate(child: &mut Child) {
    if let Ok(None) = child.try_wait() {
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// Polls `check` until it returns `Some` or `limit` passes.
pub fn poll<T>(limit: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = check() {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// Lossy text of bytes, for assertion messages.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Whether a path exists and is non-empty.
pub fn non_empty(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.len() > 0)
}
