//! The emulator's in-process configuration: what `Emulator::start` takes. Built from
//! [`crate::EmulatorArgs`] on the command line or directly by tests and benches.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use crate::auth::BaseCredentials;
use crate::fleet::Fleet;
use crate::pacing::Pacing;

/// Everything the emulator needs to start.
#[derive(Clone, Debug)]
pub struct EmulatorConfig {
    /// Address to listen on; must be loopback. Port 0 picks a free port.
    pub listen: SocketAddr,
    /// Region reported in the ready line.
    pub region: String,
    /// The accounts, regions and instances served.
    pub fleet: Fleet,
    /// The long-term keys acting in the management account; `None` makes random ones for this
    /// run (read them back from `EmulatorHandle::base_credentials` or the ready line).
    pub base_credentials: Option<BaseCredentials>,
    /// Lifetime of credentials from AssumeRole and GetSessionToken, overriding the requested
    /// duration (tests shorten it; zero issues credentials that are already expired).
    pub credential_lifetime: Option<Duration>,
    /// Lifetime of AssumeRole credentials alone, overriding `credential_lifetime` for them
    /// (short role credentials under a long MFA session, as in real accounts).
    pub role_credential_lifetime: Option<Duration>,
    /// The only MFA code GetSessionToken and AssumeRole accept; `None` accepts any six digits.
    pub mfa_code: Option<String>,
    /// Latency added to every control-plane call.
    pub api_latency: Option<Duration>,
    /// Calls per second allowed per account and service before throttling errors.
    pub throttle_rate: Option<f64>,
    /// Agent pacing of outgoing stream data; `None` sends as fast as the client acks.
    pub pacing: Option<Pacing>,
    /// Where to append one JSON line per client violation.
    pub violations_log: Option<PathBuf>,
    /// Faults injected into the service's behaviour.
    pub faults: Faults,
    /// The shell run for `Standard_Stream` sessions (the agent runs `sh` on Linux).
    pub shell: PathBuf,
    /// Port that `AWS-StartSSHSession` sessions asking for port 22 connect to instead.
    pub ssh_port: Option<u16>,
    /// Stop by itself after this long (tests bound every server they start).
    pub lifetime: Option<Duration>,
    /// How long a started session waits for its first websocket before it is dropped.
    pub attach_timeout: Duration,
    /// How long a session whose websocket broke waits for a new one before it ends.
    pub detach_timeout: Duration,
    /// Seed for message ids; `None` takes one from the OS.
    pub rng_seed: Option<u64>,
    /// The KMS key of the Session Manager preferences: shell and command sessions (never
    /// port sessions) are encrypted with a data key under it (SPEC.md §7.1).
    pub session_kms_key: Option<String>,
    /// KMS answers only at its own endpoint ([`crate::EmulatorHandle::kms_endpoint`]), as in
    /// AWS, where the SSM endpoint serves no KMS call.
    pub separate_kms_endpoint: bool,
    /// How long a client may leave a message unacknowledged before the emulator logs a
    /// `missing_ack` violation (default 20 s: a debug-build client on a loaded 2-core machine
    /// fell 6.5 s behind in a 64 MiB forward; the real agent retransmits with no limit:
    /// `ResendStreamDataMessageScheduler` in agent/session/datachannel/datachannel.go).
    pub missing_ack_after: Duration,
    /// Close a websocket on which the client sent nothing at all (no frame, no ping) for this
    /// long, as idle-connection timeouts between client and service do; the session itself
    /// stays resumable.
    pub idle_timeout: Option<Duration>,
    /// Close every websocket after it has been open this long, as the service's hourly
    /// recycle does; the session stays resumable.
    pub recycle_after: Option<Duration>,
    /// Where clients reach the emulator when something stands in front of it (a
    /// TLS-terminating relay in a test): StreamUrl is advertised at this base (`https` gives
    /// `wss`). It must name a loopback host (`localhost`, a name under `.localhost`, or a
    /// loopback address); `None` advertises `ws://` on the listen address.
    pub public_url: Option<url::Url>,
    /// Roles whose sessions SendSSHPublicKey refuses with AccessDeniedException.
    pub push_key_denied_roles: Vec<String>,
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            region: DEFAULT_REGION.to_owned(),
            fleet: Fleet::builtin(DEFAULT_REGION),
            base_credentials: None,
            credential_lifetime: None,
            role_credential_lifetime: None,
            mfa_code: None,
            api_latency: None,
            throttle_rate: None,
            pacing: Some(Pacing::AGENT),
            violations_log: None,
            faults: Faults::default(),
            shell: PathBuf::from(DEFAULT_SHELL),
            ssh_port: None,
            lifetime: None,
            attach_timeout: DEFAULT_ATTACH_TIMEOUT,
            detach_timeout: DEFAULT_DETACH_TIMEOUT,
            rng_seed: None,
            session_kms_key: None,
            separate_kms_endpoint: false,
            missing_ack_after: DEFAULT_MISSING_ACK_AFTER,
            idle_timeout: None,
            recycle_after: None,
            public_url: None,
            push_key_denied_roles: Vec::new(),
        }
    }
}

/// Faults the emulator injects, each off by default. "Messages" are binary data-channel frames
/// in either direction on one websocket.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Faults {
    /// Close the websocket once, when the session has carried this many messages.
    pub close_after: Option<u64>,
    /// Close every websocket after it has carried this many messages.
    pub close_every: Option<u64>,
    /// Hold every outgoing message this long before sending it (order kept).
    pub delay: Option<Duration>,
    /// Send every N-th outgoing stream message twice.
    pub duplicate_every: Option<u64>,
    /// Swap every N-th outgoing message with the one after it.
    pub reorder_every: Option<u64>,
    /// Drop every N-th acknowledgement the agent sends.
    pub drop_acks_every: Option<u64>,
    /// After every N outgoing messages, send `pause_publication`, hold output for
    /// [`Faults::pause_for`], then send `start_publication`.
    pub pause_every: Option<u64>,
    /// Length of each publication pause.
    pub pause_for: Duration,
    /// Make every StartSession fail with this AWS error code.
    pub fail_start_session: Option<String>,
    /// Once the session has carried this many messages, stop reading and writing its
    /// websocket without closing it: a dead connection (no close frame, no pong).
    pub stall_after: Option<u64>,
    /// Flip one byte of the payload of this outgoing Output message (counted from 1) and
    /// re-digest it, so that only decryption can notice (for KMS sessions).
    pub tamper_output: Option<u64>,
    /// With [`Faults::tamper_output`]: tamper in this many sessions in all (the first to reach
    /// that message), then no more; unset: in every session.
    pub tamper_sessions: Option<u64>,
    /// The agent's KMS Decrypt yields a different data key than the client's.
    pub kms_wrong_key: bool,
}

/// us-east-1, the SDKs' usual default.
pub(crate) const DEFAULT_REGION: &str = "us-east-1";
/// The agent's Linux shell (agent `agent/session/shell/shell_unix.go`).
const DEFAULT_SHELL: &str = "/bin/sh";
const DEFAULT_MISSING_ACK_AFTER: Duration = Duration::from_secs(20);
const DEFAULT_ATTACH_TIMEOUT: Duration = Duration::from_secs(60);
const DEFAULT_DETACH_TIMEOUT: Duration = Duration::from_secs(60);
/// Default length of a publication pause fault.
pub(crate) const DEFAULT_PAUSE_FOR: Duration = Duration::from_millis(200);
