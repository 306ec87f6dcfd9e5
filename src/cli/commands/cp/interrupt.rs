//! Ctrl-C, SIGTERM, SIGHUP or SIGQUIT during a copy: every running session stops and is
//! terminated, the temporary files on both sides are removed (the local one as its owner drops
//! it, the remote one by a last command that ignores the signal), and postern exits 128+N. A
//! copy that does not wind down within [`WIND_DOWN`] is left, and postern exits all the same.

use std::future::Future;
use std::process::ExitCode;
use std::time::Duration;

use tokio::sync::watch;

use crate::report::{ErrorKind, ExpectedError, exit_codes};
use crate::term::{LocalSignal, Signals, TerminalGuard};

/// The signal that ended a copy, as an error its sessions return.
#[derive(Debug, thiserror::Error)]
#[error("interrupted by signal {0}")]
pub(crate) struct Interrupted(pub(crate) i32);

/// Tells the copy's sessions that a signal arrived.
#[derive(Clone, Debug)]
pub(crate) struct Interrupt(watch::Receiver<Option<i32>>);

impl Interrupt {
    /// An interrupt that never fires (the last clean-up commands run under it).
    pub(crate) fn never() -> Self {
        // Without a sender, `fired` stays pending.
        Self(watch::channel(None).1)
    }

    /// Resolves with the signal's number once one arrived; never otherwise.
    pub(crate) async fn fired(&self) -> i32 {
        let mut rx = self.0.clone();
        let signal = match rx.wait_for(Option::is_some).await {
            Ok(signal) => *signal,
            Err(_) => None,
        };
        match signal {
            Some(signal) => signal,
            None => std::future::pending().await,
        }
    }
}

/// Runs the copy `start` makes until it ends; a signal meanwhile is passed to it through its
/// [`Interrupt`], and the copy's result then becomes the signal's exit status.
pub(crate) async fn run<F, Fut>(start: F) -> anyhow::Result<ExitCode>
where
    F: FnOnce(Interrupt) -> Fut,
    Fut: Future<Output = anyhow::Result<ExitCode>>,
{
    let mut signals = Signals::install(true).map_err(|e| {
        ExpectedError::new(ErrorKind::Usage, "could not install the signal handlers").source(e)
    })?;
    let (tx, rx) = watch::channel(None);
    let copy = start(Interrupt(rx));
    tokio::pin!(copy);
    let mut deadline = None;
    let result = loop {
        let wind_down = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            result = &mut copy => break result,
            () = wind_down => {
                tracing::warn!("the copy did not wind down in time; leaving it");
                break Ok(ExitCode::SUCCESS);
            }
            signal = signals.recv() => {
                let number = match signal {
                    LocalSignal::Interrupt => libc::SIGINT,
                    LocalSignal::Terminate(n) => n,
                    LocalSignal::Suspend => {
                        let _ = crate::term::suspend(&mut TerminalGuard::noop());
                        continue;
                    }
                    LocalSignal::Continue | LocalSignal::Resize => continue,
                };
                tracing::info!(signal = number, "signal: stopping the copy and removing its temporary files");
                tx.send_replace(Some(number));
                deadline.get_or_insert_with(|| tokio::time::Instant::now() + WIND_DOWN);
            }
        }
    };
    match *tx.borrow() {
        Some(signal) => Ok(ExitCode::from(exit_codes::for_signal(signal))),
        None => result,
    }
}

/// How long a signalled copy may take to stop its sessions and remove its temporary files.
pub(crate) const WIND_DOWN: Duration = Duration::from_secs(15);
