//! The Unix side of the terminal: whether a descriptor is a terminal, the signals a session
//! reacts to as one stream, and stopping the process on suspend. A Windows port fills a
//! `windows.rs` with the same items (console control events instead of signals).
//!
//! Signals: terminate (SIGTERM, SIGHUP; SIGQUIT when not raw), interrupt (SIGINT, only caught
//! when the terminal is not raw), suspend (SIGTSTP), continue (SIGCONT) and resize (SIGWINCH,
//! never polled). Handlers are installed explicitly: under `aws ssm start-session` the process
//! may start with SIGINT and SIGTSTP ignored (SPEC.md §9.1).

use std::io;
use std::os::fd::{BorrowedFd, RawFd};

use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::sync::mpsc;

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

/// The installed handlers, read by a task of their own that forwards what arrives: a session
/// loop then looks at one queue per turn, not at seven signal streams (each turn of a
/// keystroke's echo polled all seven, cold, between waking and sending; issue 22).
#[derive(Debug)]
pub struct Signals {
    received: mpsc::Receiver<LocalSignal>,
    listener: tokio::task::JoinHandle<()>,
}

impl Signals {
    /// Installs the handlers; SIGINT and SIGQUIT only when `catch_interrupt` (outside raw mode,
    /// where Ctrl-C and Ctrl-backslash raise them; under `aws ssm start-session` they start
    /// ignored and an explicit handler is the only way to see them). Must be called within
    /// the runtime, which runs the forwarding task.
    pub fn install(catch_interrupt: bool) -> io::Result<Self> {
        let mut handlers = Handlers::install(catch_interrupt)?;
        let (forward, received) = mpsc::channel(SIGNAL_QUEUE);
        let listener = tokio::spawn(async move {
            loop {
                let signal = handlers.recv().await;
                if forward.send(signal).await.is_err() {
                    break;
                }
            }
        });
        Ok(Self { received, listener })
    }

    /// The next signal. Cancel-safe.
    pub async fn recv(&mut self) -> LocalSignal {
        match self.received.recv().await {
            Some(signal) => signal,
            // The listener only stops when this is dropped.
            None => std::future::pending().await,
        }
    }

    /// The next signal that ends the program (SIGTERM, SIGHUP, SIGINT, ...), as its number: a
    /// window resize, a suspend or a continue on the way is not one. Cancel-safe.
    pub async fn ending(&mut self) -> i32 {
        loop {
            match self.recv().await {
                LocalSignal::Terminate(n) => return n,
                LocalSignal::Interrupt => return libc::SIGINT,
                LocalSignal::Suspend | LocalSignal::Continue | LocalSignal::Resize => {}
            }
        }
    }

    /// The next signal that ends a session the way the official plugin's control signals do
    /// (Ctrl-C, Ctrl-backslash, Ctrl-Z: plugin `sessionmanagerplugin/session/sessionutil`), or
    /// SIGTERM, SIGHUP; a window resize or a continue is not one. Cancel-safe.
    pub async fn ending_or_suspend(&mut self) {
        loop {
            match self.recv().await {
                LocalSignal::Terminate(_) | LocalSignal::Interrupt | LocalSignal::Suspend => return,
                LocalSignal::Continue | LocalSignal::Resize => {}
            }
        }
    }

    /// As [`Signals::ending`], for a program without a terminal of its own (a forward in the
    /// foreground): Ctrl-Z (SIGTSTP) meanwhile stops the process until it is continued, as the
    /// default action would, instead of being swallowed by the handler.
    pub async fn ending_with_job_control(&mut self) -> i32 {
        loop {
            match self.recv().await {
                LocalSignal::Terminate(n) => return n,
                LocalSignal::Interrupt => return libc::SIGINT,
                LocalSignal::Suspend => {
                    if let Err(e) = suspend(&mut TerminalGuard::noop()) {
                        tracing::warn!(error = %e, "could not stop on Ctrl-Z");
                    }
                }
                LocalSignal::Continue | LocalSignal::Resize => {}
            }
        }
    }
}

impl Drop for Signals {
    fn drop(&mut self) {
        self.listener.abort();
    }
}

/// Signals received and not yet read; a burst of resizes waits in the listener beyond this.
const SIGNAL_QUEUE: usize = 8;

#[derive(Debug)]
struct Handlers {
    terminate: Signal,
    hangup: Signal,
    interrupt: Option<Signal>,
    quit: Option<Signal>,
    suspend: Signal,
    resume: Signal,
    resize: Signal,
}

impl Handlers {
    fn install(catch_interrupt: bool) -> io::Result<Self> {
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

    async fn recv(&mut self) -> LocalSignal {
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

/// Whether `fd` refers to a terminal.
pub fn is_terminal(fd: RawFd) -> bool {
    use std::io::IsTerminal as _;
    if fd < 0 {
        return false;
    }
    // SAFETY: the descriptor is only borrowed for the isatty(3) call below, which accepts any
    // descriptor (an unopened one reads as "not a terminal").
    unsafe { BorrowedFd::borrow_raw(fd) }.is_terminal()
}

/// Waits for SIGTERM or SIGHUP (for what shows a screen of its own, like the picker: it
/// closes the screen, then calls [`die_of`]); the signal's number.
pub async fn termination() -> i32 {
    let (Ok(mut terminate), Ok(mut hangup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::hangup()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = terminate.recv() => libc::SIGTERM,
        _ = hangup.recv() => libc::SIGHUP,
    }
}

/// Ends the process of `signal` with its default action (the shell then sees 128+N), once the
/// terminal is restored.
pub fn die_of(signal: i32) -> ! {
    use nix::sys::signal::{SigHandler, Signal, raise};
    if let Ok(signal) = Signal::try_from(signal) {
        // SAFETY: restoring the default disposition installs no Rust code as a handler.
        let _ = unsafe { nix::sys::signal::signal(signal, SigHandler::SigDfl) };
        let _ = raise(signal);
    }
    std::process::exit(128 + signal);
}
