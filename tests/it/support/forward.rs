//! A running `postern forward` against an [`EmulatorProcess`]: started until its ready lines
//! (bounded), its stderr read as it comes, stopped with SIGINT as a terminal's Ctrl-C would.

use std::process::{Child, Command};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use super::emulator::EmulatorProcess;
use super::process::{exit_within, signal, spawn_piped};

/// A running `postern forward` and what it printed when ready.
pub(crate) struct Forward {
    child: Child,
    /// Ready lines as printed.
    pub(crate) lines: Vec<String>,
    /// Ready lines parsed, with `--json`.
    pub(crate) ready: Vec<serde_json::Value>,
    stderr: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Forward {
    /// Starts `postern forward ARGS` and waits (bounded) for `count` ready lines.
    pub(crate) fn start(emu: &EmulatorProcess, args: &[&str], count: usize) -> Self {
        let mut full = vec!["forward"];
        full.extend_from_slice(args);
        Self::spawn(emu.command(&full), count)
    }

    /// Starts `command` (a `postern forward` with its environment) and waits (bounded) for
    /// `count` ready lines.
    pub(crate) fn spawn(command: Command, count: usize) -> Self {
        let (mut child, stdout, stderr) = spawn_piped(command);
        let deadline = Instant::now() + LIMIT;
        let mut ready_lines = Vec::new();
        while ready_lines.len() < count {
            let left = deadline.saturating_duration_since(Instant::now());
            match stdout.recv_timeout(left) {
                Ok(line) => ready_lines.push(line),
                Err(_) => {
                    let _ = child.kill();
                    let err: Vec<String> = stderr.try_iter().collect();
                    panic!("forward never became ready; stdout {ready_lines:?}; stderr {err:?}");
                }
            }
        }
        let ready = ready_lines
            .iter()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        Self {
            child,
            lines: ready_lines,
            ready,
            stderr,
            seen: Vec::new(),
        }
    }

    /// The local address of the first forward, from its ready line (JSON or text).
    pub(crate) fn local(&self) -> String {
        if let Some(json) = self.ready.first() {
            return json["local"].as_str().expect("local address").to_owned();
        }
        self.lines[0]
            .strip_prefix("forwarding ")
            .and_then(|rest| rest.split_once(" -> "))
            .map(|(local, _)| local.to_owned())
            .expect("ready line")
    }

    /// The forward's process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits (bounded) for a stderr line containing `needle`.
    pub(crate) fn stderr_line_containing(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + LIMIT;
        loop {
            if let Some(line) = self.seen.iter().find(|l| l.contains(needle)) {
                return line.clone();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stderr.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(_) => panic!("no stderr line with {needle:?}; got {:?}", self.seen),
            }
        }
    }

    /// SIGINT, then expects exit 0 within the limit; returns all of stderr.
    pub(crate) fn stop_ok(mut self) -> String {
        signal(self.child.id(), Signal::SIGINT);
        let status = exit_within(&mut self.child, LIMIT);
        // The reader thread sees EOF now: the channel ends once it has passed on the rest.
        while let Ok(line) = self.stderr.recv_timeout(DRAIN_LIMIT) {
            self.seen.push(line);
        }
        let stderr = self.seen.join("\n");
        assert!(status.is_some(), "forward did not stop; stderr: {stderr}");
        assert_eq!(status.and_then(|s| s.code()), Some(0), "stderr: {stderr}");
        stderr
    }
}

impl Drop for Forward {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Longest the forward may take to become ready, to print a line, or to stop.
const LIMIT: Duration = Duration::from_secs(60);
/// Longest the rest of stderr may take to arrive once the forward exited.
const DRAIN_LIMIT: Duration = Duration::from_secs(5);
