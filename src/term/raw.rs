//! Raw mode as a guard (nextest `nextest-runner/src/input.rs`): entered on creation, restored
//! in `Drop` and by a panic hook, released around a suspension (SIGTSTP) and retaken on resume.
//! crossterm switches the modes; it has no guard of its own.
//!
//! Real raw mode (crossterm's, `cfmakeraw`), not the official client's `cbreak -echo` (SPEC.md
//! §6.2): no local signal generation, no CR/LF translation, every byte goes to the remote side.
//! A no-op variant stands in when standard input is not a terminal, and in tests.

use std::io::{self, IsTerminal as _};
use std::sync::Once;
use std::sync::atomic::{AtomicBool, Ordering};

/// Holds the terminal in raw mode until dropped.
#[derive(Debug)]
pub struct TerminalGuard {
    /// Whether this guard manages the terminal (false: the no-op guard).
    active: bool,
    /// Whether raw mode is on now (released while suspended).
    raw: bool,
}

impl TerminalGuard {
    /// Puts standard input's terminal in raw mode. Returns the no-op guard when standard
    /// input is not a terminal.
    pub fn enter() -> io::Result<Self> {
        if !io::stdin().is_terminal() {
            return Ok(Self::noop());
        }
        install_panic_hook();
        let mut guard = Self {
            active: true,
            raw: false,
        };
        guard.retake()?;
        Ok(guard)
    }

    /// A guard that changes nothing (standard input is not a terminal, or a test).
    pub fn noop() -> Self {
        Self {
            active: false,
            raw: false,
        }
    }

    /// Whether this guard manages a real terminal.
    pub fn is_active(&self) -> bool {
        self.active
    }

    /// Restores the settings saved when raw mode was entered (before suspending, or before
    /// exit). Idempotent.
    pub fn release(&mut self) -> io::Result<()> {
        if self.active && self.raw {
            crossterm::terminal::disable_raw_mode()?;
            self.raw = false;
            GUARDED.store(false, Ordering::SeqCst);
        }
        Ok(())
    }

    /// Enters raw mode again (after resuming). Idempotent.
    pub fn retake(&mut self) -> io::Result<()> {
        if self.active && !self.raw {
            crossterm::terminal::enable_raw_mode()?;
            self.raw = true;
            GUARDED.store(true, Ordering::SeqCst);
        }
        Ok(())
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        // Nothing sensible to do if restoring fails while dropping; the panic hook and the
        // explicit release paths report nothing either.
        let _ = self.release();
    }
}

/// Restores the terminal from the panic hook, which cannot reach the guard: crossterm keeps
/// the settings it replaced, so restoring needs only to know that a guard holds raw mode.
fn install_panic_hook() {
    PANIC_HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if GUARDED.swap(false, Ordering::SeqCst) {
                let _ = crossterm::terminal::disable_raw_mode();
            }
            previous(info);
        }));
    });
}

/// Whether a guard holds the terminal in raw mode now.
static GUARDED: AtomicBool = AtomicBool::new(false);
static PANIC_HOOK: Once = Once::new();

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn noop_guard_releases_and_retakes_without_a_terminal() {
        let mut guard = TerminalGuard::noop();
        assert!(!guard.is_active());
        guard.retake().unwrap();
        guard.release().unwrap();
        assert!(!GUARDED.load(Ordering::SeqCst));
    }
}
