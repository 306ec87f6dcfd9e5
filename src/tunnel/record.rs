//! The state file of one running tunnel (`NAME.json`): what `postern status` shows, written by
//! the tunnel's supervisor every second and at each change. JSON, so that scripts can read it
//! too; no secret goes in (no credentials, tokens or stream URLs).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// One tunnel as its supervisor last described it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TunnelRecord {
    /// The tunnel's name (`[tunnels.NAME]`).
    pub name: String,
    /// The supervisor's process id.
    pub pid: u32,
    /// Every tunnel the same supervisor serves (started by one `postern up`), this one included.
    pub siblings: Vec<String>,
    /// The instance id.
    pub target: String,
    /// The target as the configuration gives it.
    pub target_given: String,
    /// The configured account it resolved in, if any.
    pub account: Option<String>,
    /// The instance's region, when known.
    pub region: Option<String>,
    /// Its listeners.
    pub listeners: Vec<ListenerRecord>,
    /// How it fares.
    pub state: TunnelState,
    /// SSM sessions open now.
    pub sessions: usize,
    /// Local connections open now.
    pub connections: usize,
    /// Bytes carried towards the instance, ever.
    pub bytes_up: u64,
    /// Bytes carried from the instance, ever.
    pub bytes_down: u64,
    /// When the tunnel became ready (seconds since the Unix epoch).
    pub since: u64,
    /// Websockets resumed and sessions restarted since then.
    pub reconnects: u64,
    /// The latest trouble (a session that ended, a restart that failed, why it failed).
    pub last_error: Option<String>,
    /// When the supervisor last wrote this (seconds since the Unix epoch).
    pub updated: u64,
    /// The supervisor's log file.
    pub log: Option<PathBuf>,
}

/// One listener of a tunnel.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListenerRecord {
    /// The local address it listens on.
    pub local: String,
    /// Where connections go (`host:port` from the instance); `None` for a SOCKS5 proxy.
    pub remote: Option<String>,
}

/// How a tunnel fares.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TunnelState {
    /// Every forward has its sessions, or opens them on demand.
    Ready,
    /// A session's websocket is being resumed, or a session that ended is being replaced.
    Reconnecting,
    /// It can never work as configured (access denied, the instance gone); the reason is in
    /// `last_error`. Its listeners are closed; the record stays until `postern down`.
    Failed,
}

impl TunnelState {
    /// The word `postern status` shows.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ready => "ready",
            Self::Reconnecting => "reconnecting",
            Self::Failed => "failed",
        }
    }
}
