//! The live status line of `postern forward` on a terminal: one line on stderr (listeners,
//! open connections, sessions, bytes and rate each way), redrawn a few times a second in place
//! (crossterm clears it), cleared before each notice and at the end. Off a terminal nothing is
//! drawn. stdout never carries it.

use std::collections::VecDeque;
use std::io::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossterm::QueueableCommand as _;
use crossterm::cursor::MoveToColumn;
use crossterm::terminal::{Clear, ClearType};

use crate::forward::{Rate, Traffic, TrafficSnapshot};

/// The line on stderr, while it is shown.
pub(crate) struct StatusLine {
    traffic: Arc<Traffic>,
    listeners: usize,
    /// Recent snapshots, for a rate over [`RATE_WINDOW`].
    history: VecDeque<(Instant, TrafficSnapshot)>,
    drawn: bool,
}

impl StatusLine {
    /// A status line over `traffic` for `listeners` listeners.
    pub(crate) fn new(traffic: Arc<Traffic>, listeners: usize) -> Self {
        Self {
            traffic,
            listeners,
            history: VecDeque::new(),
            drawn: false,
        }
    }

    /// Redraws the line with the counters now.
    pub(crate) fn draw(&mut self) {
        let now = Instant::now();
        let snapshot = self.traffic.snapshot();
        self.history.push_back((now, snapshot));
        while self
            .history
            .front()
            .is_some_and(|(t, _)| now.duration_since(*t) > RATE_WINDOW)
        {
            self.history.pop_front();
        }
        let rate = match self.history.front() {
            Some((then, before)) => Rate::between(before, &snapshot, now.duration_since(*then)),
            None => Rate::default(),
        };
        let mut text = render(self.listeners, &snapshot, rate);
        let width = crate::term::window_size().map_or(80, |(cols, _)| usize::from(cols));
        // A line that wraps could not be cleared in place.
        if let Some((cut, _)) = text.char_indices().nth(width.saturating_sub(1)) {
            text.truncate(cut);
        }
        let mut stderr = std::io::stderr().lock();
        let _ = stderr.queue(MoveToColumn(0));
        let _ = stderr.queue(Clear(ClearType::CurrentLine));
        let _ = write!(stderr, "{text}");
        let _ = stderr.flush();
        self.drawn = true;
    }

    /// Removes the line, so that the next output starts on a clean line.
    pub(crate) fn clear(&mut self) {
        if !self.drawn {
            return;
        }
        let mut stderr = std::io::stderr().lock();
        let _ = stderr.queue(MoveToColumn(0));
        let _ = stderr.queue(Clear(ClearType::CurrentLine));
        let _ = stderr.flush();
        self.drawn = false;
    }
}

impl Drop for StatusLine {
    fn drop(&mut self) {
        self.clear();
    }
}

/// The text of the line: rates first, so that a narrow terminal cuts the least useful end.
pub(crate) fn render(listeners: usize, now: &TrafficSnapshot, rate: Rate) -> String {
    format!(
        "postern: ↓ {}/s ({}) ↑ {}/s ({}) · {} · {} · {}",
        bytes(rate.down),
        bytes(now.down as f64),
        bytes(rate.up),
        bytes(now.up as f64),
        plural(now.connections, "connection"),
        plural(now.sessions, "session"),
        plural(listeners, "listener"),
    )
}

fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{n} {word}s")
    }
}

/// Bytes in decimal units, three significant digits.
fn bytes(n: f64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut value = n.max(0.0);
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{value:.0} B")
    } else if value < 10.0 {
        format!("{value:.2} {}", UNITS[unit])
    } else if value < 100.0 {
        format!("{value:.1} {}", UNITS[unit])
    } else {
        format!("{value:.0} {}", UNITS[unit])
    }
}

/// How often the line is redrawn.
pub(crate) const REDRAW_EVERY: Duration = Duration::from_millis(250);
/// The rate is measured over this much recent time.
const RATE_WINDOW: Duration = Duration::from_secs(2);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_names_every_counter() {
        let now = TrafficSnapshot {
            connections: 3,
            sessions: 1,
            up: 1_234,
            down: 54_321_000,
            ..TrafficSnapshot::default()
        };
        let rate = Rate {
            up: 512.0,
            down: 990_000.0,
        };
        assert_eq!(
            render(2, &now, rate),
            "postern: ↓ 990 kB/s (54.3 MB) ↑ 512 B/s (1.23 kB) · 3 connections · 1 session · \
             2 listeners"
        );
    }

    #[test]
    fn bytes_keep_three_digits() {
        assert_eq!(bytes(0.0), "0 B");
        assert_eq!(bytes(999.0), "999 B");
        assert_eq!(bytes(1000.0), "1.00 kB");
        assert_eq!(bytes(12_345_678.0), "12.3 MB");
        assert_eq!(bytes(123_456_789_000.0), "123 GB");
    }
}
