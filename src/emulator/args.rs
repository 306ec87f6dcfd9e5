//! `postern emulator` flags (clap derive). Raw arguments only; [`EmulatorArgs::into_config`]
//! turns them into an [`EmulatorConfig`]. Flag doc comments are the help text.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::emulator::config::{DEFAULT_PAUSE_FOR, DEFAULT_REGION, EmulatorConfig, Faults};
use crate::emulator::error::EmulatorError;
use crate::emulator::fleet;
use crate::emulator::instances::InstanceSpec;
use crate::emulator::pacing::Pacing;

/// Run a local Session Manager emulator (message gateway and SSM agent) on loopback.
#[derive(Args, Clone, Debug, PartialEq, Eq)]
pub struct EmulatorArgs {
    /// Fleet file (TOML) describing the instances to serve.
    #[arg(long, value_name = "FILE")]
    pub fleet: Option<PathBuf>,

    /// Loopback address to listen on; port 0 picks a free port.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,

    /// Region to report.
    #[arg(long, value_name = "REGION", default_value = DEFAULT_REGION)]
    pub region: String,

    /// Send stream data as fast as the client acks instead of pacing it like the real agent
    /// (1024-byte chunks, 1 ms apart).
    #[arg(long)]
    pub no_pacing: bool,

    /// Append one JSON line per client protocol violation to FILE.
    #[arg(long, value_name = "FILE")]
    pub violations_log: Option<PathBuf>,

    /// Add or redefine an instance and the agent version it reports (repeatable).
    #[arg(long = "instance", value_name = "ID=AGENT_VERSION")]
    pub instances: Vec<InstanceSpec>,

    /// Shell run by shell sessions.
    #[arg(long, value_name = "PATH", default_value = "/bin/sh")]
    pub shell: PathBuf,

    /// Port that SSH sessions asking for port 22 connect to on this machine.
    #[arg(long, value_name = "PORT")]
    pub ssh_port: Option<u16>,

    /// Stop by itself after this long (for example `10m`).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub exit_after: Option<Duration>,

    /// Fault: close the websocket once, after the session has carried N messages.
    #[arg(long, value_name = "N", help_heading = "Faults")]
    pub close_after: Option<u64>,

    /// Fault: close every websocket after it has carried N messages.
    #[arg(long, value_name = "N", help_heading = "Faults")]
    pub close_every: Option<u64>,

    /// Fault: hold every outgoing message for DURATION (for example `50ms`).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration, help_heading = "Faults")]
    pub delay: Option<Duration>,

    /// Fault: send every N-th outgoing stream message twice.
    #[arg(long, value_name = "N", help_heading = "Faults")]
    pub duplicate_every: Option<u64>,

    /// Fault: swap every N-th outgoing message with the next one.
    #[arg(long, value_name = "N", help_heading = "Faults")]
    pub reorder_every: Option<u64>,

    /// Fault: drop every N-th acknowledgement sent to the client.
    #[arg(long, value_name = "N", help_heading = "Faults")]
    pub drop_acks_every: Option<u64>,

    /// Fault: after every N outgoing messages, pause publication for --pause-for.
    #[arg(long, value_name = "N", help_heading = "Faults")]
    pub pause_every: Option<u64>,

    /// Fault: length of each publication pause.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration, help_heading = "Faults")]
    pub pause_for: Option<Duration>,

    /// Fault: make StartSession fail with this AWS error code (for example TargetNotConnected,
    /// AccessDeniedException, InvalidDocument).
    #[arg(long, value_name = "CODE", help_heading = "Faults")]
    pub fail_start_session: Option<String>,
}

impl EmulatorArgs {
    /// The configuration these flags describe.
    pub fn into_config(self) -> Result<EmulatorConfig, EmulatorError> {
        let mut config = EmulatorConfig {
            listen: self.listen,
            region: self.region,
            pacing: (!self.no_pacing).then_some(Pacing::AGENT),
            violations_log: self.violations_log,
            shell: self.shell,
            ssh_port: self.ssh_port,
            lifetime: self.exit_after,
            faults: Faults {
                close_after: self.close_after,
                close_every: self.close_every,
                delay: self.delay,
                duplicate_every: self.duplicate_every,
                reorder_every: self.reorder_every,
                drop_acks_every: self.drop_acks_every,
                pause_every: self.pause_every,
                pause_for: self.pause_for.unwrap_or(DEFAULT_PAUSE_FOR),
                fail_start_session: self.fail_start_session,
            },
            ..EmulatorConfig::default()
        };
        if let Some(path) = &self.fleet {
            config.instances = fleet::load(path)?;
        }
        for spec in self.instances {
            match config
                .instances
                .iter_mut()
                .find(|known| known.id == spec.id)
            {
                Some(known) => known.agent_version = spec.agent_version,
                None => config.instances.push(spec),
            }
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: EmulatorArgs,
    }

    fn parse(argv: &[&str]) -> EmulatorConfig {
        let mut full = vec!["emulator"];
        full.extend_from_slice(argv);
        Cli::try_parse_from(full)
            .unwrap()
            .args
            .into_config()
            .unwrap()
    }

    #[test]
    fn defaults_are_loopback_port_zero_and_paced() {
        let config = parse(&[]);
        assert!(config.listen.ip().is_loopback());
        assert_eq!(config.listen.port(), 0);
        assert_eq!(config.pacing, Some(Pacing::AGENT));
        assert_eq!(
            config.faults,
            Faults {
                pause_for: DEFAULT_PAUSE_FOR,
                ..Faults::default()
            }
        );
    }

    #[test]
    fn fault_flags_reach_the_config() {
        let config = parse(&[
            "--no-pacing",
            "--close-every",
            "40",
            "--delay",
            "5ms",
            "--fail-start-session",
            "TargetNotConnected",
        ]);
        assert_eq!(config.pacing, None);
        assert_eq!(config.faults.close_every, Some(40));
        assert_eq!(config.faults.delay, Some(Duration::from_millis(5)));
        assert_eq!(
            config.faults.fail_start_session.as_deref(),
            Some("TargetNotConnected")
        );
    }

    #[test]
    fn instance_flag_overrides_or_adds() {
        let config = parse(&[
            "--instance",
            "i-0a1b2c3d4e5f60718=3.0.100.0",
            "--instance",
            "mi-0123456789abcdef0=3.2.0.0",
        ]);
        let current = config
            .instances
            .iter()
            .find(|i| i.id == "i-0a1b2c3d4e5f60718")
            .unwrap();
        assert_eq!(current.agent_version, "3.0.100.0");
        assert_eq!(config.instances.last().unwrap().id, "mi-0123456789abcdef0");
    }
}
