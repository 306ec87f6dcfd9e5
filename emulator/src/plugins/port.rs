//! Basic port forwarding and SSH-style port sessions: one TCP connection at a time, dialled
//! from this machine when the session starts (agent `port_basic.go`, SPEC.md §6.6, §6.8).
//! Also where every port session's destination is fixed ([`Destination::resolve`]) and
//! dialled ([`dial`]), as the agent does it (agent `agent/session/plugins/port/port.go`): a
//! remote host is resolved once when the plugin starts; a host that resolves to one of the
//! agent's denied addresses (instance metadata, Amazon DNS, time sync) fails the session; a
//! host that does not resolve fails every dial.
//!
//! `LocalPortForwarding`: DisconnectToPort closes the connection, and so does the destination;
//! either way the next client data re-dials. SSH-style (no `type`): the session ends normally
//! when the destination closes, and with an error on DisconnectToPort.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use postern_protocol::Flag;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::documents::PortKind;
use crate::pacing::CHUNK_SIZE;
use crate::plugins::{PluginInput, PluginIo, PluginOutput};

/// Where a port session's connections go, fixed when the plugin starts.
#[derive(Clone, Debug)]
pub(crate) enum Destination {
    /// No `host`: `localhost:PORT` on this machine, resolved at each dial.
    Local(u16),
    /// A `host`'s addresses, dialled in order; empty when it did not resolve.
    Remote {
        /// What it resolved to when the plugin started.
        addresses: Vec<IpAddr>,
        /// The port.
        port: u16,
    },
}

impl Destination {
    /// Resolves `host` once (the agent's `net.LookupHost`; a failure is not an error yet, every
    /// dial then fails with "missing address"); fails with the agent's words when an address
    /// is denied.
    pub(crate) async fn resolve(host: Option<&str>, port: u16) -> Result<Self, String> {
        let Some(host) = host else {
            return Ok(Self::Local(port));
        };
        let mut addresses: Vec<IpAddr> = match tokio::net::lookup_host((host, 0)).await {
            Ok(found) => found.map(|a| a.ip()).collect(),
            Err(err) => {
                tracing::debug!(%host, %err, "host did not resolve");
                Vec::new()
            }
        };
        addresses.dedup();
        if addresses
            .iter()
            .any(|a| DENIED_REMOTE_IPS.iter().any(|d| d.parse() == Ok(*a)))
        {
            return Err(format!("Forwarding to IP address {host} is forbidden."));
        }
        tracing::info!(%host, port, ?addresses, "port session to a remote host");
        Ok(Self::Remote { addresses, port })
    }
}

/// Runs the basic port plugin until the session ends.
pub(crate) async fn run(io: PluginIo, host: Option<String>, port: u16, kind: PortKind) {
    let PluginIo { mut input, output } = io;
    let destination = match Destination::resolve(host.as_deref(), port).await {
        Ok(destination) => destination,
        Err(reason) => {
            let _ = output.send(PluginOutput::Done(Err(reason))).await;
            return;
        }
    };
    // The agent's basic session dials in InitializeSession (agent `port_basic.go`).
    let mut connection = match dial(&destination).await {
        Ok(stream) => Some(stream),
        Err(reason) => {
            let reason = format!("Unable to connect to specified port: {reason}");
            let _ = output.send(PluginOutput::Done(Err(reason))).await;
            return;
        }
    };
    let mut buf = vec![0u8; CHUNK_SIZE];
    let result = loop {
        tokio::select! {
            item = input.recv() => {
                let Some(item) = item else { return };
                match item {
                    PluginInput::Data(bytes) => {
                        if connection.is_none() {
                            match dial(&destination).await {
                                Ok(stream) => connection = Some(stream),
                                Err(reason) => break Err(reason),
                            }
                        }
                        if let Some(stream) = connection.as_mut()
                            && let Err(err) = stream.write_all(&bytes).await
                        {
                            tracing::debug!(%err, "write to the destination failed");
                            connection = None;
                        }
                    }
                    PluginInput::Flag(Flag::DisconnectToPort) => match kind {
                        PortKind::LocalPortForwarding => {
                            tracing::debug!("DisconnectToPort: closing the destination connection");
                            connection = None;
                        }
                        PortKind::Ssh => {
                            break Err("DisconnectToPort in an SSH session".to_owned());
                        }
                    },
                    PluginInput::Flag(_) | PluginInput::Size(_) => {}
                }
            }
            read = read_some(connection.as_mut(), &mut buf) => {
                match read {
                    Ok(n) if n > 0 => {
                        if output.send(PluginOutput::Stdout(buf[..n].to_vec())).await.is_err() {
                            return;
                        }
                    }
                    _ => match kind {
                        PortKind::Ssh => break Ok(()),
                        PortKind::LocalPortForwarding => {
                            tracing::debug!("destination closed; waiting for client data to re-dial");
                            connection = None;
                        }
                    },
                }
            }
        }
    };
    let _ = output.send(PluginOutput::Done(result)).await;
}

/// Dials `destination` from this machine: a remote host's addresses in order, the first
/// success wins, else the first error (agent `port.go`, `DialCall`).
pub(crate) async fn dial(destination: &Destination) -> Result<TcpStream, String> {
    let (addresses, port) = match destination {
        Destination::Local(port) => {
            return connect_to(&format!("localhost:{port}"), ("localhost", *port)).await;
        }
        Destination::Remote {
            addresses, port, ..
        } => (addresses, *port),
    };
    let mut first_error = None;
    for ip in addresses {
        let addr = SocketAddr::new(*ip, port);
        match connect_to(&addr.to_string(), addr).await {
            Ok(stream) => return Ok(stream),
            Err(err) => {
                first_error.get_or_insert(err);
            }
        }
    }
    Err(first_error.unwrap_or_else(|| "missing address".to_owned()))
}

async fn connect_to(
    shown: &str,
    addr: impl tokio::net::ToSocketAddrs,
) -> Result<TcpStream, String> {
    match tokio::time::timeout(DIAL_TIMEOUT, TcpStream::connect(addr)).await {
        Ok(Ok(stream)) => {
            // Latency matters more than packet count for interactive forwarding.
            let _ = stream.set_nodelay(true);
            Ok(stream)
        }
        Ok(Err(err)) => Err(format!("dial tcp {shown}: {err}")),
        Err(_) => Err(format!("dial tcp {shown}: i/o timeout")),
    }
}

async fn read_some(stream: Option<&mut TcpStream>, buf: &mut [u8]) -> std::io::Result<usize> {
    match stream {
        Some(stream) => stream.read(buf).await,
        None => std::future::pending().await,
    }
}

/// How long a dial may take (the agent uses the OS default; a bound keeps tests finite).
const DIAL_TIMEOUT: Duration = Duration::from_secs(10);
/// Addresses a remote host may not resolve to (agent `agent/appconfig/constants.go`,
/// `DefaultDeniedPortForwardingRemoteIPs`). The agent also denies the VPC's DNS resolver
/// (its CIDR base + 2), which a fleet without VPC CIDRs has no equivalent for.
const DENIED_REMOTE_IPS: [&str; 9] = [
    "169.254.169.254",
    "fd00:ec2::254",
    "169.254.169.253",
    "fd00:ec2::253",
    "169.254.169.123",
    "fd00:ec2::123",
    "169.254.169.250",
    "169.254.169.251",
    "fd00:ec2::240",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn metadata_addresses_are_forbidden_in_the_agents_words() {
        for host in ["169.254.169.254", "fd00:ec2::254"] {
            let err = Destination::resolve(Some(host), 80).await.unwrap_err();
            assert_eq!(
                err,
                format!("Forwarding to IP address {host} is forbidden.")
            );
        }
    }

    #[tokio::test]
    async fn a_host_that_does_not_resolve_fails_each_dial_with_missing_address() {
        let destination = Destination::resolve(Some("[::1]"), 80).await.unwrap();
        assert_eq!(dial(&destination).await.unwrap_err(), "missing address");
    }

    #[tokio::test]
    async fn literals_and_names_resolve_once() {
        let v6 = Destination::resolve(Some("::1"), 80).await.unwrap();
        assert!(
            matches!(&v6, Destination::Remote { addresses, .. } if addresses == &["::1".parse::<IpAddr>().unwrap()]),
            "{v6:?}"
        );
        let name = Destination::resolve(Some("localhost"), 80).await.unwrap();
        assert!(
            matches!(&name, Destination::Remote { addresses, .. } if addresses.iter().all(IpAddr::is_loopback) && !addresses.is_empty()),
            "{name:?}"
        );
    }
}
