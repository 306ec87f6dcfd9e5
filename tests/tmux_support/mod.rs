//! A tmux server on its own socket for the terminal tests: run, capture the pane, wait
//! (bounded) for text.

#![allow(
    dead_code,
    unreachable_pub,
    reason = "shared by several test crates, each using a subset"
)]

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::cli_util::poll;

const LIMIT: Duration = Duration::from_secs(30);

/// A tmux server on its own socket, killed on drop.
pub struct Tmux {
    socket: String,
}

impl Tmux {
    pub fn new(dir: &Path) -> Self {
        let available = Command::new("tmux").arg("-V").output();
        assert!(
            available.is_ok_and(|o| o.status.success()),
            "tmux is required for this test (apt-get install tmux)"
        );
        Self {
            socket: dir.join("tmux.sock").display().to_string(),
        }
    }

    pub fn run(&self, args: &[&str]) -> String {
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

    pub fn pane(&self) -> String {
        self.run(&["capture-pane", "-p", "-t", "t", "-S", "-100"])
    }

    /// Waits until the pane shows `needle` `count` times.
    pub fn wait_for(&self, needle: &str, count: usize) -> String {
        poll(LIMIT, || {
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
