//! The copy's progress: a byte counter the sessions add to, and on a terminal a one-line bar
//! on stderr (bytes, rate, ETA, sessions) redrawn a few times a second. Off a terminal nothing
//! is drawn: stderr is left to errors.

use std::io::Write as _;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use crate::term;
use crate::transport::now;

/// Shared counters of a copy in flight.
#[derive(Debug, Default)]
pub(crate) struct Progress {
    done: AtomicU64,
    sessions: AtomicUsize,
}

impl Progress {
    /// Counts `bytes` more copied.
    pub(crate) fn add(&self, bytes: u64) {
        self.done.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Bytes counted so far.
    pub(crate) fn done(&self) -> u64 {
        self.done.load(Ordering::Relaxed)
    }

    /// Takes back `bytes` counted for a range that will be copied again.
    pub(crate) fn take_back(&self, bytes: u64) {
        self.done.fetch_sub(bytes, Ordering::Relaxed);
    }

    /// A session began (`+1`) or ended (`-1`).
    pub(crate) fn session(&self, started: bool) {
        if started {
            self.sessions.fetch_add(1, Ordering::Relaxed);
        } else {
            self.sessions.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// Draws the bar for `total` bytes until dropped (only when stderr is a terminal).
#[derive(Debug)]
pub(crate) struct Bar {
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Bar {
    /// Starts drawing `progress` against `total` when stderr is a terminal.
    pub(crate) fn start(progress: &Arc<Progress>, total: u64, label: String) -> Self {
        if !term::is_terminal(std::io::stderr().as_raw_fd()) {
            return Self { task: None };
        }
        let progress = Arc::clone(progress);
        let task = tokio::spawn(async move {
            let started = now();
            loop {
                tokio::time::sleep(REDRAW).await;
                let done = progress.done.load(Ordering::Relaxed);
                let secs = started.elapsed().as_secs_f64().max(0.001);
                let rate = done as f64 / secs;
                let eta = if rate > 0.0 && total > done {
                    format!("{:.0}s", (total - done) as f64 / rate)
                } else {
                    "-".to_owned()
                };
                let line = format!(
                    "\r\x1b[2K{label}: {} / {} {}/s ETA {eta} ({} sessions)",
                    human(done as f64),
                    human(total as f64),
                    human(rate),
                    progress.sessions.load(Ordering::Relaxed),
                );
                let mut err = std::io::stderr().lock();
                let _ = err.write_all(line.as_bytes());
                let _ = err.flush();
            }
        });
        Self { task: Some(task) }
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = std::io::stderr().write_all(b"\r\x1b[2K");
        }
    }
}

fn human(bytes: f64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut value = bytes;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// How often the bar is redrawn.
const REDRAW: Duration = Duration::from_millis(250);
