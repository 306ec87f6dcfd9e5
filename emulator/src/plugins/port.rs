//! Basic port forwarding and SSH-style port sessions: one TCP connection at a time, dialled
//! from this machine when the session starts (agent `port_basic.go`, SPEC.md §6.6, §6.8).
//!
//! `LocalPortForwarding`: DisconnectToPort closes the connection, and so does the destination;
//! either way the next client data re-dials. SSH-style (no `type`): the session ends normally
//! when the destination closes, and with an error on DisconnectToPort.

use std::time::Duration;

use postern_protocol::Flag;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::documents::PortKind;
use crate::pacing::CHUNK_SIZE;
use crate::plugins::{PluginInput, PluginIo, PluginOutput};

/// Runs the basic port plugin until the session ends.
pub(crate) async fn run(io: PluginIo, host: String, port: u16, kind: PortKind) {
    let PluginIo { mut input, output } = io;
    let mut connection = match dial(&host, port).await {
        Ok(stream) => Some(stream),
        Err(reason) => {
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
                            match dial(&host, port).await {
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

/// Dials `host:port` from this machine; the error is the text for `channel_closed`.
pub(crate) async fn dial(host: &str, port: u16) -> Result<TcpStream, String> {
    match tokio::time::timeout(DIAL_TIMEOUT, TcpStream::connect((host, port))).await {
        Ok(Ok(stream)) => {
            // Latency matters more than packet count for interactive forwarding.
            let _ = stream.set_nodelay(true);
            Ok(stream)
        }
        Ok(Err(err)) => Err(format!("cannot connect to {host}:{port}: {err}")),
        Err(_) => Err(format!("cannot connect to {host}:{port}: timed out")),
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
