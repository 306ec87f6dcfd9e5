//! What `postern up` hands its supervisor on stdin (JSON): each tunnel's resolved target,
//! account and AWS choices, its specs and session options, and the broker flags, so that the
//! supervisor opens exactly what `up` resolved and confirmed, without asking again. No secret
//! goes in: credentials come from the broker's cache or the environment the supervisor
//! inherits.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::cli::commands::forward::ForwardArgs;
use crate::cli::common::{BrokerArgs, CommonArgs, ConnectArgs};
use crate::cli::resilience::ResilienceArgs;

/// The supervisor's work.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Launch {
    /// The tunnels, in the order `up` named them.
    pub(crate) tunnels: Vec<LaunchTunnel>,
    /// `--config`.
    pub(crate) config: Option<PathBuf>,
    /// `--source`.
    pub(crate) source: Option<String>,
    /// `--mfa-command`.
    pub(crate) mfa_command: Option<String>,
    /// `--no-cache`.
    pub(crate) no_cache: bool,
}

/// One tunnel, resolved.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct LaunchTunnel {
    /// Its name.
    pub(crate) name: String,
    /// The instance id.
    pub(crate) target: String,
    /// The target as configured.
    pub(crate) target_given: String,
    /// The configured account it resolved in.
    pub(crate) account: Option<String>,
    /// `--profile`.
    pub(crate) profile: Option<String>,
    /// The instance's region.
    pub(crate) region: Option<String>,
    /// `--endpoint-url`.
    pub(crate) endpoint_url: Option<String>,
    /// `-L` specs.
    pub(crate) forwards: Vec<String>,
    /// `-D` specs.
    pub(crate) socks: Vec<String>,
    /// `--sessions`.
    pub(crate) sessions: String,
    /// StartSession reason.
    pub(crate) reason: Option<String>,
    /// `--handshake-timeout`, in milliseconds.
    pub(crate) handshake_timeout_ms: u64,
    /// `--keepalive`, in milliseconds.
    pub(crate) keepalive_ms: u64,
    /// `--reconnect-attempts`.
    pub(crate) reconnect_attempts: u32,
}

impl LaunchTunnel {
    /// The global options the supervisor resolves this tunnel with: the guardrails were
    /// confirmed by `up` (`--yes`), and the account is named, so the id opens there.
    pub(crate) fn common(&self, launch: &Launch) -> CommonArgs {
        CommonArgs {
            profile: self.profile.clone(),
            region: self.region.clone(),
            endpoint_url: self.endpoint_url.clone(),
            broker: BrokerArgs {
                config: launch.config.clone(),
                source: launch.source.clone(),
                mfa_command: launch.mfa_command.clone(),
                no_cache: launch.no_cache,
                yes: true,
            },
            account: self.account.clone(),
            ..CommonArgs::default()
        }
    }

    /// `postern forward`'s arguments for this tunnel.
    pub(crate) fn forward_args(&self) -> ForwardArgs {
        ForwardArgs {
            target: Some(self.target.clone()),
            forwards: self.forwards.clone(),
            socks: self.socks.clone(),
            idle_close: DEFAULT_IDLE_CLOSE,
            sessions: self.sessions.clone(),
            json: false,
            connect: ConnectArgs {
                reason: self.reason.clone(),
                handshake_timeout: Duration::from_millis(self.handshake_timeout_ms),
                resilience: ResilienceArgs {
                    keepalive: Duration::from_millis(self.keepalive_ms),
                    reconnect_attempts: self.reconnect_attempts,
                },
            },
        }
    }
}

/// `--idle-close`'s default, for SOCKS destinations of tunnels.
const DEFAULT_IDLE_CLOSE: Duration = Duration::from_secs(300);
