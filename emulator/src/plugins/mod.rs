//! Agent plugins: what runs on "the instance" for each session type. Each runs in its own task
//! and talks to the session driver through a [`PluginHandle`] only: input (client data, sizes,
//! flags) in, output chunks of at most 1024 bytes out, then [`PluginOutput::Done`].

mod command;
mod mux;
mod port;
mod pty;
mod shell;

use std::path::PathBuf;

use postern_protocol::{Flag, SizeData};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::documents::{PluginSpec, PortKind};

/// What the driver hands a plugin.
#[derive(Debug)]
pub(crate) enum PluginInput {
    /// Client Output bytes.
    Data(Vec<u8>),
    /// The client's terminal size.
    Size(SizeData),
    /// A client flag the plugin acts on (DisconnectToPort).
    Flag(Flag),
}

/// What a plugin hands the driver.
#[derive(Debug)]
pub(crate) enum PluginOutput {
    /// Bytes for Output messages (at most 1024).
    Stdout(Vec<u8>),
    /// Bytes for StdErr messages (at most 1024).
    Stderr(Vec<u8>),
    /// The command's exit status (ExitCode message).
    ExitCode(i32),
    /// An agent flag (ConnectToPortError).
    Flag(Flag),
    /// The plugin finished; `Err` carries the reason shown in `channel_closed`.
    Done(Result<(), String>),
}

/// How a port session carries its connections, decided after the handshake.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum PortMode {
    /// One connection at a time (old clients or agents, and SSH-style sessions).
    Basic,
    /// smux server over the data channel.
    Mux {
        /// The client's reported version, for the smux keepalive rule.
        client_version: String,
    },
}

/// Everything a plugin needs to start.
#[derive(Clone, Debug)]
pub(crate) struct PluginStart {
    pub(crate) spec: PluginSpec,
    pub(crate) shell: PathBuf,
    pub(crate) size: SizeData,
    pub(crate) port_mode: PortMode,
    /// Environment variables of the processes the plugin starts (the instance's identity).
    pub(crate) env: Vec<(String, String)>,
}

/// A running plugin. Dropping it stops the plugin (child processes and connections included).
#[derive(Debug)]
pub(crate) struct PluginHandle {
    pub(crate) input: mpsc::Sender<PluginInput>,
    pub(crate) output: mpsc::Receiver<PluginOutput>,
    task: JoinHandle<()>,
}

impl PluginHandle {
    /// Starts the plugin `start` describes.
    pub(crate) fn start(start: PluginStart) -> Self {
        let (input_tx, input_rx) = mpsc::channel(INPUT_QUEUE);
        let (output_tx, output_rx) = mpsc::channel(OUTPUT_QUEUE);
        let io = PluginIo {
            input: input_rx,
            output: output_tx,
        };
        let task = match start.spec {
            PluginSpec::Pty { command } => {
                tokio::spawn(shell::run(io, start.shell, command, start.size, start.env))
            }
            PluginSpec::NonInteractive {
                command,
                separate_streams,
            } => tokio::spawn(command::run(io, command, separate_streams, start.env)),
            PluginSpec::Port { host, port, kind } => match (kind, start.port_mode) {
                (PortKind::LocalPortForwarding, PortMode::Mux { client_version }) => {
                    tokio::spawn(mux::run(io, host, port, client_version))
                }
                (kind, _) => tokio::spawn(port::run(io, host, port, kind)),
            },
        };
        Self {
            input: input_tx,
            output: output_rx,
            task,
        }
    }
}

impl Drop for PluginHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The plugin task's ends of the channels.
#[derive(Debug)]
pub(crate) struct PluginIo {
    pub(crate) input: mpsc::Receiver<PluginInput>,
    pub(crate) output: mpsc::Sender<PluginOutput>,
}

impl PluginIo {
    /// Reports the end; the driver may already be gone.
    pub(crate) async fn done(&self, result: Result<(), String>) {
        let _ = self.output.send(PluginOutput::Done(result)).await;
    }
}

const INPUT_QUEUE: usize = 64;
const OUTPUT_QUEUE: usize = 16;
