//! Local listeners for `-L` and `-D`: bound before any session starts, so a port already in use fails
//! the command at once.

use std::io;
use std::net::SocketAddr;

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
}
