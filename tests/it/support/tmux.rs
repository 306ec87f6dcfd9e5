//! A tmux server on its own socket for the terminal tests: one session running a command,
//! keys typed into it, its pane captured, text waited for (bounded).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use super::poll::try_poll;

/// A tmux server on its own socket, killed on drop.
pub(crate) struct Tmux {
    socket: String,
}

impl Tmux {
    /// A server whose socket lives in `dir`; fails clearly when tmux is missing.
    pub(crate) fn new(dir: &Path) -> Self {
        let available = Command::new("tmux").arg("-V").output();
        assert!(
            available.is_ok_and(|o| o.status.success()),
            "tmux is required for this test (apt-get install tmux)"
        );
        Self {
            socket: dir.join("tmux.sock").display().to_string(),
        }
    }

    /// Starts the session `t`, `cols` x `rows`, running `command` (a shell command line).
    pub(crate) fn start(&self, cols: u16, rows: u16, command: &str) {
        let (cols, rows) = (cols.to_string(), rows.to_string());
        self.run(&[
            "new-session",
            "-d",
            "-s",
            SESSION,
            "-x",
            &cols,
            "-y",
            &rows,
            command,
        ]);
    }

    /// `tmux ARGS` on this server; panics when tmux fails. Returns its stdout.
    pub(crate) fn run(&self, args: &[&str]) -> String {
        let out = Command::new("tmux")
            .args(["-S", &self.socket])
            .args(args)
            .output()
            .expect("run tmux");
        assert!(
            out.status.success(),
            "tmux {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Types `keys` into the session (`tmux send-keys`: key names, or text after `-l`).
    pub(crate) fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", SESSION];
        args.extend_from_slice(keys);
        self.run(&args);
    }

    /// The pane's text, with 100 lines of history.
    pub(crate) fn pane(&self) -> String {
        self.run(&["capture-pane", "-p", "-t", SESSION, "-S", "-100"])
    }

    /// Waits until the pane shows `needle` `count` times; returns the pane.
    pub(crate) fn wait_for(&self, needle: &str, count: usize) -> String {
        try_poll(LIMIT, || {
            let pane = self.pane();
            (pane.matches(needle).count() >= count).then_some(pane)
        })
        .unwrap_or_else(|| panic!("pane never showed {needle:?} x{count}:\n{}", self.pane()))
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-S", &self.socket, "kill-server"])
            .output();
    }
}

/// The one session's name.
const SESSION: &str = "t";
const LIMIT: Duration = Duration::from_secs(30);
