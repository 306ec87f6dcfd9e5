//! Raw mode as a guard (nextest `nextest-runner/src/input.rs`): entered on creation, restored
//! in `Drop` and by a panic hook, released around a suspension (SIGTSTP) and retaken on resume.
//!
//! Real raw mode, not the official client's `cbreak -echo` (SPEC.md §6.2): no local signal
//! generation, no CR/LF translation, every byte goes to the remote side. A no-op variant
//! stands in when standard input is not a terminal, and in tests.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::{Mutex, Once};

/// Holds the terminal in raw mode until dropped.
#[derive(Debug)]
pub struct TerminalGuard {
    /// The terminal's settings before raw mode; `None` for the no-op guard.
    saved: Option<libc::termios>,
    fd: RawFd,
    raw: bool,
}

impl TerminalGuard {
    /// Puts standard input's terminal in raw mode. Returns the no-op guard when standard
    /// input is not a terminal.
    pub fn enter() -> io::Result<Self> {
        let fd = io::stdin().as_raw_fd();
        if !super::is_terminal(fd) {
            return Ok(Self::noop());
        }
        let saved = get_attributes(fd)?;
        install_panic_hook();
        *SAVED.lock().unwrap_or_else(|p| p.into_inner()) = Some((fd, saved));
        let mut guard = Self {
            saved: Some(saved),
            fd,
            raw: false,
        };
        guard.retake()?;
        Ok(guard)
    }

    /// A guard that changes nothing (standard input is not a terminal, or a test).
    pub fn noop() -> Self {
        Self {
            saved: None,
            fd: -1,
            raw: false,
        }
    }

    /// Whether this guard manages a real terminal.
    pub fn is_active(&self) -> bool {
        self.saved.is_some()
    }

    /// Restores the saved settings (before suspending, or before exit). Idempotent.
    pub fn release(&mut self) -> io::Result<()> {
        if let Some(saved) = &self.saved
            && self.raw
        {
            set_attributes(self.fd, saved)?;
            self.raw = false;
        }
        Ok(())
    }

    /// Enters raw mode again (after resuming). Idempotent.
    pub fn retake(&mut self) -> io::Result<()> {
        if let Some(saved) = &self.saved
            && !self.raw
        {
            let mut raw = *saved;
            // SAFETY: cfmakeraw only writes fields of the termios it is given.
            unsafe { libc::cfmakeraw(&mut raw) };
            set_attributes(self.fd, &raw)?;
            self.raw = true;
        }
        Ok(())
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        // Nothing sensible to do if restoring fails while dropping; the panic hook and the
        // explicit release paths report nothing either.
        let _ = self.release();
        if self.saved.is_some() {
            *SAVED.lock().unwrap_or_else(|p| p.into_inner()) = None;
        }
    }
}

/// Restores the terminal from the panic hook, which cannot reach the guard.
fn install_panic_hook() {
    PANIC_HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if let Ok(saved) = SAVED.try_lock()
                && let Some((fd, termios)) = saved.as_ref()
            {
                let _ = set_attributes(*fd, termios);
            }
            previous(info);
        }));
    });
}

fn get_attributes(fd: RawFd) -> io::Result<libc::termios> {
    let mut termios = std::mem::MaybeUninit::<libc::termios>::uninit();
    // SAFETY: tcgetattr fully initialises the termios on success, checked below.
    let rc = unsafe { libc::tcgetattr(fd, termios.as_mut_ptr()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: rc == 0, so tcgetattr initialised it.
    Ok(unsafe { termios.assume_init() })
}

fn set_attributes(fd: RawFd, termios: &libc::termios) -> io::Result<()> {
    // TCSADRAIN, as ssh does: output already written is shown with the old settings.
    // SAFETY: termios is a valid, initialised struct borrowed for the call.
    let rc = unsafe { libc::tcsetattr(fd, libc::TCSADRAIN, termios) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The settings to restore from the panic hook: (fd, saved termios).
static SAVED: Mutex<Option<(RawFd, libc::termios)>> = Mutex::new(None);
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
    }
}
