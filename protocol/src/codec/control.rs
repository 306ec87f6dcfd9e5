//! Small payloads: terminal size, flags, channel_closed, exit code, agent session state
//! (SPEC.md §3.7, §4.6–4.10).

use serde::{Deserialize, Serialize};

use crate::error::PayloadError;

/// Terminal size (PayloadType 3), lowercase keys on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SizeData {
    /// Columns.
    pub cols: u32,
    /// Rows.
    pub rows: u32,
}

/// Flag payloads (PayloadType 10): a 4-byte big-endian value (agent `port_basic.go`,
/// `port_mux.go`, `shell_unix.go`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Flag {
    /// Basic port forwarding: the local connection closed.
    DisconnectToPort,
    /// Port sessions: the client ends the session.
    TerminateSession,
    /// Mux port forwarding: the agent could not dial the destination.
    ConnectToPortError,
}

impl Flag {
    /// The 4-byte payload.
    pub fn encode(self) -> [u8; 4] {
        let value: u32 = match self {
            Self::DisconnectToPort => 1,
            Self::TerminateSession => 2,
            Self::ConnectToPortError => 3,
        };
        value.to_be_bytes()
    }

    /// Parses a 4-byte payload.
    pub fn decode(payload: &[u8]) -> Result<Self, PayloadError> {
        let bytes: [u8; 4] = payload
            .try_into()
            .map_err(|_| PayloadError::BadFlagLength { len: payload.len() })?;
        match u32::from_be_bytes(bytes) {
            1 => Ok(Self::DisconnectToPort),
            2 => Ok(Self::TerminateSession),
            3 => Ok(Self::ConnectToPortError),
            other => Err(PayloadError::UnknownFlag(other)),
        }
    }
}

/// The channel_closed payload as the client reads it (plugin `clientmessage.go` `ChannelClosed`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelClosed {
    /// Id of the close message.
    #[serde(rename = "MessageId", default)]
    pub message_id: String,
    /// Creation time as text.
    #[serde(rename = "CreatedDate", default)]
    pub created_date: String,
    /// The session's target.
    #[serde(rename = "DestinationId", default)]
    pub destination_id: String,
    /// The session being closed.
    #[serde(rename = "SessionId", default)]
    pub session_id: String,
    /// `channel_closed`.
    #[serde(rename = "MessageType", default)]
    pub message_type: String,
    /// 1.
    #[serde(rename = "SchemaVersion", default)]
    pub schema_version: i64,
    /// Optional reason shown to the user.
    #[serde(rename = "Output", default)]
    pub output: String,
}

impl ChannelClosed {
    /// Parses the payload; an unparsable payload counts as empty, as in the official client.
    pub fn parse_lenient(payload: &[u8]) -> Self {
        serde_json::from_slice(payload).unwrap_or_default()
    }
}

/// The ExitCode payload (PayloadType 12): ASCII `EXIT_CODE: <n>` (agent
/// `agent/session/shell/shell.go` `sendExitCode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExitCode(pub i32);

impl ExitCode {
    /// The payload text.
    pub fn encode(self) -> Vec<u8> {
        format!("{EXIT_CODE_PREFIX}{}", self.0).into_bytes()
    }

    /// Parses `EXIT_CODE: <n>` (surrounding whitespace tolerated).
    pub fn decode(payload: &[u8]) -> Result<Self, PayloadError> {
        let text = std::str::from_utf8(payload).map_err(|_| PayloadError::BadExitCode)?;
        let number = text
            .trim()
            .strip_prefix(EXIT_CODE_PREFIX.trim_end())
            .ok_or(PayloadError::BadExitCode)?;
        number
            .trim()
            .parse()
            .map(Self)
            .map_err(|_| PayloadError::BadExitCode)
    }
}

/// Agent → service state message; clients ignore it (SPEC.md §4.10).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentSessionState {
    /// 1.
    #[serde(rename = "SchemaVersion")]
    pub schema_version: i64,
    /// `Connected` or `Terminating`.
    #[serde(rename = "SessionState")]
    pub session_state: String,
    /// The session.
    #[serde(rename = "SessionId")]
    pub session_id: String,
}

const EXIT_CODE_PREFIX: &str = "EXIT_CODE: ";
