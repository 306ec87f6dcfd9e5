//! The signals a session reacts to, as one stream: terminate (SIGTERM, SIGHUP; SIGQUIT when
//! not raw), interrupt (SIGINT, only caught when the terminal is not raw), suspend (SIGTSTP), continue (SIGCONT)
//! and resize (SIGWINCH, never polled).
//!
//! Handlers are installed explicitly: under `aws ssm start-session` the process may start
//! with SIGINT and SIGTSTP ignored (SPEC.md §9.1).

use std::io;

use tokio::signal::unix::{Signal, SignalKind, signal};

use crate::term::TerminalGuard;

/// One signal received.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LocalSignal {
    /// SIGTERM, SIGHUP or (not raw) SIGQUIT: end the session. Carries the signal number.
    Terminate(i32),
    /// SIGINT (only when not in raw mode, where Ctrl-C is a byte).
    Interrupt,
    /// SIGTSTP sent to us (in raw mode Ctrl-Z is a byte and never raises it).
    Suspend,
    /// SIGCONT: we were resumed.
    Continue,
    /// SIGWINCH: the window size changed.
    Resize,
}

/// The installed handlers.
#[derive(Debug)]
pub struct Signals {
    terminate: Signal,
    hangup: Signal,
    interrupt: Option<Signal>,
    quit: Option<Signal>,
    suspend: Signal,
    resume: Signal,
    resize: Signal,
}

impl Signals {
    /// Installs the handlers; SIGINT and SIGQUIT only when `catch_interrupt` (outside raw mode,
    /// where Ctrl-C and Ctrl-backslash raise them; under `aws ssm start-session` they start ignored and
    /// an explicit handler is the only way to see them).
    pub fn install(catch_interrupt: bool) -> io::Result<Self> {
        let optional = |kind: SignalKind| -> io::Result<Option<Signal>> {
            if catch_interrupt {
                signal(kind).map(Some)
            } else {
                Ok(None)
            }
        };
        Ok(Self {
            terminate: signal(SignalKind::terminate())?,
            hangup: signal(SignalKind::hangup())?,
            interrupt: optional(SignalKind::interrupt())?,
            quit: optional(SignalKind::quit())?,
            suspend: signal(SignalKind::from_raw(libc::SIGTSTP))?,
            resume: signal(SignalKind::from_raw(libc::SIGCONT))?,
            resize: signal(SignalKind::window_change())?,
        })
    }

    /// The next signal. Cancel-safe.
    pub async fn recv(&mut self) -> LocalSignal {
        let interrupt = async {
            match &mut self.interrupt {
                Some(s) => s.recv().await,
                None => std::future::pending().await,
            }
        };
        let quit = async {
            match &mut self.quit {
                Some(s) => s.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = self.terminate.recv() => LocalSignal::Terminate(libc::SIGTERM),
            _ = quit => LocalSignal::Terminate(libc::SIGQUIT),
            _ = self.hangup.recv() => LocalSignal::Terminate(libc::SIGHUP),
            _ = interrupt => LocalSignal::Interrupt,
            _ = self.suspend.recv() => LocalSignal::Suspend,
            _ = self.resume.recv() => LocalSignal::Continue,
            _ = self.resize.recv() => LocalSignal::Resize,
        }
    }
}

/// Stops the process the way the default SIGTSTP action would, with the terminal restored
/// while stopped and raw mode retaken on resume.
pub fn suspend(guard: &mut TerminalGuard) -> io::Result<()> {
    guard.release()?;
    // SIGSTOP cannot be caught: the process stops here until SIGCONT.
    nix::sys::signal::raise(nix::sys::signal::Signal::SIGSTOP).map_err(io::Error::from)?;
    guard.retake()
}
