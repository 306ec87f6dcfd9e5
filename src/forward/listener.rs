//! Local listeners for `-L` and `-D`: bound before any session starts, so a port already in use fails
//! the command at once.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::forward::spec::{ForwardSpec, SocksSpec};

/// Why a local address could not be listened on.
#[derive(Debug, thiserror::Error)]
#[error("could not listen on {addr}")]
pub struct BindError {
    /// The address asked for.
    pub addr: SocketAddr,
    /// The OS error (address in use, permission denied, address not available).
    #[source]
    pub source: io::Error,
}

/// Binds `spec`'s local address; returns the listener and the address it got (port 0 picks
/// one).
pub(crate) async fn bind(spec: &ForwardSpec) -> Result<(TcpListener, SocketAddr), BindError> {
    bind_addr(SocketAddr::new(spec.bind, spec.local_port)).await
}

/// Binds a `-D` listener's address; returns the listener and the address it got.
pub(crate) async fn bind_socks(spec: &SocksSpec) -> Result<(TcpListener, SocketAddr), BindError> {
    bind_addr(SocketAddr::new(spec.bind, spec.port)).await
}

async fn bind_addr(addr: SocketAddr) -> Result<(TcpListener, SocketAddr), BindError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| BindError { addr, source })?;
    let local = listener
        .local_addr()
        .map_err(|source| BindError { addr, source })?;
    Ok((listener, local))
}

impl BindError {
    /// Whether another process holds the port.
    pub fn in_use(&self) -> bool {
        self.source.kind() == io::ErrorKind::AddrInUse
    }
}

/// Pauses after a failed `accept`. A listener whose accept fails at once (out of file
/// descriptors: EMFILE, with the connection still pending) would otherwise be retried in a
/// tight loop, a whole CPU and a warning per turn; the pause doubles from 10 ms up to 1 s and
/// the warning is written once per second at most.
#[derive(Debug, Default)]
pub(crate) struct AcceptBackoff {
    pause: Duration,
    failures: u64,
    warned: bool,
    since_warning: Duration,
}

impl AcceptBackoff {
    /// An accept worked: the next failure starts over.
    pub(crate) fn accepted(&mut self) {
        self.pause = Duration::ZERO;
    }

    /// An accept failed: warns (at most once a second) and waits before the next one.
    pub(crate) async fn failed(&mut self, error: &io::Error, local: &str) {
        let (pause, warn) = self.next();
        if warn {
            tracing::warn!(%error, %local, failures = self.failures, "accept failed; retrying");
        }
        tokio::time::sleep(pause).await;
    }

    /// The pause before the next accept and whether to warn about this failure.
    fn next(&mut self) -> (Duration, bool) {
        self.failures += 1;
        self.pause = (self.pause * 2).clamp(FIRST_PAUSE, MAX_PAUSE);
        let warn = !self.warned || self.since_warning >= WARN_EVERY;
        if warn {
            self.warned = true;
            self.since_warning = Duration::ZERO;
        }
        self.since_warning += self.pause;
        (self.pause, warn)
    }
}

const FIRST_PAUSE: Duration = Duration::from_millis(10);
const MAX_PAUSE: Duration = Duration::from_secs(1);
const WARN_EVERY: Duration = Duration::from_secs(1);

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn port_zero_picks_a_port_and_a_taken_port_says_in_use() {
        let spec: ForwardSpec = "0:80".parse().unwrap();
        let (_held, local) = bind(&spec).await.unwrap();
        assert_ne!(local.port(), 0);
        let again: ForwardSpec = format!("{}:80", local.port()).parse().unwrap();
        let err = bind(&again).await.unwrap_err();
        assert!(err.in_use(), "{err}: {}", err.source);
        assert_eq!(err.to_string(), format!("could not listen on {local}"));
    }

    #[test]
    fn failed_accepts_back_off_and_warn_once_a_second() {
        let mut backoff = AcceptBackoff::default();
        let pauses: Vec<(u64, bool)> = (0..10)
            .map(|_| {
                let (pause, warn) = backoff.next();
                (u64::try_from(pause.as_millis()).unwrap(), warn)
            })
            .collect();
        assert_eq!(
            pauses,
            [
                (10, true),
                (20, false),
                (40, false),
                (80, false),
                (160, false),
                (320, false),
                (640, false),
                (1000, true),
                (1000, true),
                (1000, true),
            ]
        );
        backoff.accepted();
        assert_eq!(backoff.next().0, Duration::from_millis(10));
    }
}
