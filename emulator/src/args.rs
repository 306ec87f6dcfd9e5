//! `postern emulator` flags (clap derive). Raw arguments only; [`EmulatorArgs::into_config`]
//! turns them into an [`EmulatorConfig`]. Flag doc comments are the help text.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::auth::BaseCredentials;
use crate::config::{DEFAULT_PAUSE_FOR, DEFAULT_REGION, EmulatorConfig, Faults};
use crate::error::EmulatorError;
use crate::fleet::Fleet;
use crate::generate::{FleetShape, generate};
use crate::instances::InstanceSpec;
use crate::pacing::Pacing;

/// Run a local Session Manager emulator (message gateway, SSM agent, and the AWS APIs postern
/// calls) on loopback.
// Flag groups are boxed so the `Emulator` command stays small beside the others.
#[derive(Args, Clone, Debug, PartialEq)]
pub struct EmulatorArgs {
    /// Loopback address to listen on; port 0 picks a free port.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,

    /// Send stream data as fast as the client acks instead of pacing it like the real agent
    /// (1024-byte chunks, 1 ms apart).
    #[arg(long)]
    pub no_pacing: bool,

    /// Append one JSON line per client protocol violation to FILE.
    #[arg(long, value_name = "FILE")]
    pub violations_log: Option<PathBuf>,

    /// Shell run by shell sessions.
    #[arg(long, value_name = "PATH", default_value = "/bin/sh")]
    pub shell: PathBuf,

    /// Port that SSH sessions asking for port 22 connect to on this machine.
    #[arg(long, value_name = "PORT")]
    pub ssh_port: Option<u16>,

    /// Stop by itself after this long (for example `10m`); the process ends at most 10 s later
    /// even when the graceful stop hangs.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub exit_after: Option<Duration>,

    /// Encrypt shell and command sessions with a data key under this KMS key, as the Session
    /// Manager preferences' kmsKeyId does (port sessions are never encrypted).
    #[arg(long, value_name = "KEY_ID")]
    pub session_kms_key: Option<String>,

    /// Serve KMS only at its own endpoint (`kms_endpoint` in the ready line, a path of this
    /// port), as AWS does: the main endpoint then answers KMS calls with
    /// UnknownOperationException, and the KMS endpoint answers nothing else.
    #[arg(long)]
    pub separate_kms_endpoint: bool,

    /// Close a websocket on which the client sent nothing, not even a ping, for DURATION (an
    /// idle-connection timeout between client and service; the session stays resumable).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub idle_timeout: Option<Duration>,

    /// Close every websocket once it has been open for DURATION, busy or not, as the service
    /// recycles its websockets about hourly (the session stays resumable).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub recycle_after: Option<Duration>,

    /// Advertise StreamUrl at this base URL instead of the listen address, for a
    /// TLS-terminating relay in front of the emulator (`https://localhost:PORT` gives
    /// `wss://localhost:PORT/v1/data-channel/...`). Loopback hosts only.
    #[arg(long, value_name = "URL")]
    pub public_url: Option<url::Url>,

    /// Accounts, regions and instances.
    #[command(flatten, next_help_heading = "Fleet")]
    pub fleet: Box<FleetArgs>,

    /// Behaviour of the AWS APIs.
    #[command(flatten, next_help_heading = "AWS APIs")]
    pub api: Box<ApiArgs>,

    /// Faults injected into sessions.
    #[command(flatten, next_help_heading = "Faults")]
    pub faults: Box<FaultArgs>,
}

/// `postern emulator`'s fleet flags.
#[derive(Args, Clone, Debug, PartialEq, Eq)]
pub struct FleetArgs {
    /// Fleet file (TOML) describing the accounts, regions and instances to serve (see
    /// fleets/sample.toml). Without one: three instances in one account.
    #[arg(long, value_name = "FILE", conflicts_with = "generate_fleet")]
    pub fleet: Option<PathBuf>,

    /// Serve a deterministic synthetic fleet of this shape, for benchmarks (for example
    /// `accounts=50,regions=3,instances=5000`).
    #[arg(long, value_name = "SHAPE")]
    pub generate_fleet: Option<FleetShape>,

    /// Print the fleet as TOML on stdout and exit instead of serving it.
    #[arg(long)]
    pub print_fleet: bool,

    /// Region to report (default: the fleet's first region, else us-east-1).
    #[arg(long, value_name = "REGION")]
    pub region: Option<String>,

    /// Account that base credentials (the emulator's long-term keys) act in
    /// (default: the fleet's management account).
    #[arg(long, value_name = "ACCOUNT_ID")]
    pub management_account: Option<String>,

    /// Add or redefine an instance and the agent version it reports (repeatable).
    #[arg(long = "instance", value_name = "ID=AGENT_VERSION")]
    pub instances: Vec<InstanceSpec>,
}

/// A secret given on the command line or in the environment: `Debug` shows nothing of it.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretArg(String);

impl std::fmt::Debug for SecretArg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretArg(<redacted>)")
    }
}

/// `postern emulator`'s AWS API flags.
#[derive(Args, Clone, Debug, PartialEq)]
pub struct ApiArgs {
    /// Access key id of the base credentials, the long-term keys every request is signed with
    /// (default: a random key and secret for this run, printed in the ready line).
    #[arg(
        long,
        value_name = "ID",
        env = "POSTERN_EMULATOR_ACCESS_KEY_ID",
        requires = "secret_access_key"
    )]
    pub access_key_id: Option<String>,

    /// Secret of the base credentials (best given in the environment, where other local users
    /// cannot read it).
    #[arg(
        long,
        value_name = "SECRET",
        env = "POSTERN_EMULATOR_SECRET_ACCESS_KEY",
        hide_env_values = true,
        requires = "access_key_id",
        value_parser = |raw: &str| Ok::<_, std::convert::Infallible>(SecretArg(raw.to_owned()))
    )]
    pub secret_access_key: Option<SecretArg>,

    /// Lifetime of credentials issued by AssumeRole and GetSessionToken, overriding the
    /// requested duration (for example `2s`; `0s` issues already-expired credentials).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub credential_lifetime: Option<Duration>,

    /// Lifetime of AssumeRole credentials only, overriding --credential-lifetime for them.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub role_credential_lifetime: Option<Duration>,

    /// The only MFA code accepted (default: any six digits).
    #[arg(long, value_name = "CODE")]
    pub mfa_code: Option<String>,

    /// Latency added to every AWS API call (for example `50ms`).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub api_latency: Option<Duration>,

    /// Throttle AWS API calls above RATE per second per account and service (bursts of RATE),
    /// answering with each service's throttling error.
    #[arg(long, value_name = "RATE", value_parser = parse_rate)]
    pub throttle_rate: Option<f64>,

    /// Refuse EC2 Instance Connect's SendSSHPublicKey (AccessDeniedException) to sessions of
    /// this role name (repeatable).
    #[arg(long = "deny-push-key", value_name = "ROLE")]
    pub push_key_denied_roles: Vec<String>,
}

/// `postern emulator`'s fault flags.
#[derive(Args, Clone, Debug, PartialEq, Eq)]
pub struct FaultArgs {
    /// Fault: close the websocket once, after the session has carried N messages.
    #[arg(long, value_name = "N")]
    pub close_after: Option<u64>,

    /// Fault: close every websocket after it has carried N messages.
    #[arg(long, value_name = "N")]
    pub close_every: Option<u64>,

    /// Fault: hold every outgoing message for DURATION (for example `50ms`).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub delay: Option<Duration>,

    /// Fault: send every N-th outgoing stream message twice.
    #[arg(long, value_name = "N")]
    pub duplicate_every: Option<u64>,

    /// Fault: swap every N-th outgoing message with the next one.
    #[arg(long, value_name = "N")]
    pub reorder_every: Option<u64>,

    /// Fault: drop every N-th acknowledgement sent to the client.
    #[arg(long, value_name = "N")]
    pub drop_acks_every: Option<u64>,

    /// Fault: after every N outgoing messages, pause publication for --pause-for.
    #[arg(long, value_name = "N")]
    pub pause_every: Option<u64>,

    /// Fault: length of each publication pause.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub pause_for: Option<Duration>,

    /// Fault: make StartSession fail with this AWS error code (for example TargetNotConnected,
    /// AccessDeniedException, InvalidDocument).
    #[arg(long, value_name = "CODE")]
    pub fail_start_session: Option<String>,

    /// Fault: once a session has carried N messages, stop reading and writing its websocket
    /// without closing it (a dead connection: no close frame, no pong).
    #[arg(long, value_name = "N")]
    pub stall_after: Option<u64>,

    /// Fault: flip a byte in the payload of the N-th outgoing Output message (re-digested, so
    /// only KMS decryption notices).
    #[arg(long, value_name = "N")]
    pub tamper_output: Option<u64>,

    /// Fault: with --tamper-output, tamper in the first N sessions that reach that message
    /// only (a client fetching the data again then gets it intact).
    #[arg(long, value_name = "N", requires = "tamper_output")]
    pub tamper_sessions: Option<u64>,

    /// Fault: the agent's KMS Decrypt yields another data key than the client's.
    #[arg(long)]
    pub kms_wrong_key: bool,
}

impl EmulatorArgs {
    /// The configuration these flags describe.
    pub fn into_config(self) -> Result<EmulatorConfig, EmulatorError> {
        let FleetArgs {
            fleet: fleet_file,
            generate_fleet,
            print_fleet: _,
            region,
            management_account,
            instances,
        } = *self.fleet;
        let api = *self.api;
        let faults = *self.faults;
        let mut fleet = match (&fleet_file, generate_fleet) {
            (Some(path), _) => Fleet::load(path)?,
            (None, Some(shape)) => generate(shape),
            (None, None) => Fleet::builtin(region.as_deref().unwrap_or(DEFAULT_REGION)),
        };
        if let Some(account) = management_account {
            if fleet.account(&account).is_none() {
                return Err(EmulatorError::UnknownAccount(account));
            }
            fleet.management_account = account;
        }
        for spec in instances {
            fleet.upsert_agent_version(spec);
        }
        let region = region
            .or_else(|| fleet.regions.first().cloned())
            .unwrap_or_else(|| DEFAULT_REGION.to_owned());
        let config = EmulatorConfig {
            listen: self.listen,
            region,
            fleet,
            credential_lifetime: api.credential_lifetime,
            role_credential_lifetime: api.role_credential_lifetime,
            mfa_code: api.mfa_code,
            base_credentials: api
                .access_key_id
                .zip(api.secret_access_key)
                .map(|(id, secret)| BaseCredentials::new(id, secret.0)),
            api_latency: api.api_latency,
            throttle_rate: api.throttle_rate,
            pacing: (!self.no_pacing).then_some(Pacing::AGENT),
            violations_log: self.violations_log,
            shell: self.shell,
            ssh_port: self.ssh_port,
            lifetime: self.exit_after,
            faults: Faults {
                close_after: faults.close_after,
                close_every: faults.close_every,
                delay: faults.delay,
                duplicate_every: faults.duplicate_every,
                reorder_every: faults.reorder_every,
                drop_acks_every: faults.drop_acks_every,
                pause_every: faults.pause_every,
                pause_for: faults.pause_for.unwrap_or(DEFAULT_PAUSE_FOR),
                fail_start_session: faults.fail_start_session,
                stall_after: faults.stall_after,
                tamper_output: faults.tamper_output,
                tamper_sessions: faults.tamper_sessions,
                kms_wrong_key: faults.kms_wrong_key,
            },
            session_kms_key: self.session_kms_key,
            separate_kms_endpoint: self.separate_kms_endpoint,
            idle_timeout: self.idle_timeout,
            recycle_after: self.recycle_after,
            public_url: self.public_url,
            push_key_denied_roles: api.push_key_denied_roles,
            ..EmulatorConfig::default()
        };
        Ok(config)
    }
}

/// A positive, finite number of calls per second.
fn parse_rate(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(rate) if rate.is_finite() && rate > 0.0 => Ok(rate),
        _ => Err(format!(
            "{text:?} is not a positive number of calls per second"
        )),
    }
}

#[cfg(test)]
mod tests {

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: EmulatorArgs,
    }

    #[test]
    fn the_base_secret_never_shows_in_debug() {
        let args = Cli::try_parse_from([
            "emulator",
            "--access-key-id",
            "AKIAEXAMPLE",
            "--secret-access-key",
            "s3cr3t-value",
        ])
        .unwrap()
        .args;
        let shown = format!("{args:?}");
        assert!(!shown.contains("s3cr3t-value"), "{shown}");
        assert!(shown.contains("AKIAEXAMPLE"));
    }
    use clap::Parser;

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
            .fleet
            .instances
            .iter()
            .find(|i| i.id == "i-0a1b2c3d4e5f60718")
            .unwrap();
        assert_eq!(current.agent_version, "3.0.100.0");
        assert_eq!(
            config.fleet.instances.last().unwrap().id,
            "mi-0123456789abcdef0"
        );
    }

    #[test]
    fn control_plane_flags_reach_the_config() {
        let config = parse(&[
            "--generate-fleet",
            "accounts=4,regions=2,instances=40",
            "--credential-lifetime",
            "0s",
            "--api-latency",
            "50ms",
            "--throttle-rate",
            "2.5",
            "--mfa-code",
            "123456",
        ]);
        assert_eq!(config.fleet.accounts.len(), 4);
        assert_eq!(config.region, config.fleet.regions[0]);
        assert_eq!(config.credential_lifetime, Some(Duration::ZERO));
        assert_eq!(config.api_latency, Some(Duration::from_millis(50)));
        assert_eq!(config.throttle_rate, Some(2.5));
        assert_eq!(config.mfa_code.as_deref(), Some("123456"));
        assert_eq!(config.base_credentials, None, "random keys by default");
    }

    #[test]
    fn base_credentials_come_in_pairs() {
        let config = parse(&[
            "--access-key-id",
            "AKIAFIXED",
            "--secret-access-key",
            "s3cr3t",
        ]);
        assert_eq!(
            config.base_credentials,
            Some(BaseCredentials::new("AKIAFIXED", "s3cr3t"))
        );
        assert!(Cli::try_parse_from(["emulator", "--access-key-id", "AKIAFIXED"]).is_err());
    }

    #[test]
    fn management_account_must_be_in_the_fleet() {
        let err = Cli::try_parse_from(["emulator", "--management-account", "999999999999"])
            .unwrap()
            .args
            .into_config()
            .unwrap_err();
        assert!(err.to_string().contains("999999999999"), "{err}");
        assert!(Cli::try_parse_from(["emulator", "--throttle-rate", "0"]).is_err());
    }
}
